"""What the app's "What if" panel and Interventions page compute (issue 44), over
`fame_core.interventions` and `fame_core.counterfactual`; no Streamlit here.

    choices = intervention_choices(model)            # {"head": [...], "expert": [...], ...} by capability
    side = reading(res.user(0)["before"])           # or reading(cf.before): {"rank", "gates", "top"}
    marks = list_changes(before_top, after_top)     # which items entered or left a top-k list
    summary, table = population(model, data, checkpoint, "test", ["expert:1.3"], k=20)   # cached on disk
    change_histogram(table, 20), most_changed(table, 20)

Which choices a model gets follows from its `capabilities` (heads, experts, router, gate), never
from its name: a SASRec checkpoint (capabilities: heads) is offered head ablations and the goals
top-k and top-1 only.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

GATE_SETTINGS = ("uniform", "rule")     # plus onehot:h per head; user:V is typed, not listed
ROUTER_SETTINGS = ("uniform", "argmax")


def intervention_choices(model: Recommender) -> dict[str, list[str]]:
    """The intervention specs a model can take, by group (only the groups its capabilities give):
    head:H, expert:H.N (heads of more than one expert), router:H=uniform|argmax, gate=uniform|rule|onehot:h."""
    caps, cfg = model.capabilities, model.config
    H, N = cfg.n_heads, getattr(cfg, "n_experts", 1)
    out = {"head": [f"head:{h}" for h in range(H)]}
    if "experts" in caps and "router" in caps and N > 1:
        out["expert"] = [f"expert:{h}.{n}" for h in range(H) for n in range(N)]
    if "router" in caps:
        out["router"] = [f"router:{h}={v}" for h in range(H) for v in ROUTER_SETTINGS]
    if "gate" in caps:
        out["gate"] = [f"gate={v}" for v in GATE_SETTINGS] + [f"gate=onehot:{h}" for h in range(H)]
    return out


def flat_choices(model: Recommender) -> list[str]:
    return [s for group in intervention_choices(model).values() for s in group]


def takes_mode(spec: str) -> bool:
    """Whether a spec has a mode (zero or mean): head and expert ablations."""
    return spec.startswith(("head:", "expert:"))


def goal_choices(model: Recommender, target) -> list[str]:
    """The counterfactual goals a model and target allow: top-k needs a target, flip-gate a gate."""
    goals = (["top-k"] if target is not None else []) + (["flip-gate"] if "gate" in model.capabilities else [])
    return goals + ["top-1"]


def reading(side: dict) -> dict:
    """One side (before or after) as {"rank": {merge: int or None} or None, "gates": [...], "top": {merge: [...]}},
    from `InterventionResult.user(i)["before"]` (key "rank") or an inspection's `to_dict` (key "target_rank")."""
    rank = side.get("rank", side.get("target_rank"))
    return {"rank": None if rank is None else {m: (None if r is None else int(r)) for m, r in rank.items()},
            "gates": [float(g) for g in side["gates"]], "top": {m: [int(v) for v in t] for m, t in side["top"].items()}}


def rank_table(before: dict, after: dict, merges) -> pd.DataFrame:
    """The target's rank under every merge, before and after (1 = top; None: target in the history)."""
    rows = []
    for m in merges:
        b = before["rank"][m] if before["rank"] else None
        a = after["rank"][m] if after["rank"] else None
        rows.append({"merge": m, "rank before": b, "rank after": a,
                     "change": None if b is None or a is None else a - b})
    return pd.DataFrame(rows)


def gate_table(before: dict, after: dict) -> pd.DataFrame:
    g0, g1 = np.asarray(before["gates"], float), np.asarray(after["gates"], float)
    return pd.DataFrame({"head": np.arange(len(g0)), "gate before": g0, "gate after": g1, "change": g1 - g0})


def list_changes(before: list, after: list) -> tuple[list[str], list[str]]:
    """Marks for two top-k lists of item ids: before's items that left the list ('−'), after's
    items that entered it ('＋'); items in both: '' (their position may differ)."""
    b, a = set(before), set(after)
    return ["−" if v not in a else "" for v in before], ["＋" if v not in b else "" for v in after]


def marked_lists(before: list, after: list, label, target=None) -> pd.DataFrame:
    """The two lists side by side, rank by rank, each cell 'mark id · label' (▶ the target)."""
    mb, ma = list_changes(before, after)

    def cell(mark, v):
        return f"{mark}{'▶ ' if target is not None and v == target else ''}{label(int(v))}".strip()

    n = max(len(before), len(after))
    pad = [""] * n
    col_b = [cell(m, v) for m, v in zip(mb, before)] + pad[len(before):]
    col_a = [cell(m, v) for m, v in zip(ma, after)] + pad[len(after):]
    return pd.DataFrame({"before": col_b, "after": col_a}, index=pd.RangeIndex(1, n + 1, name="rank"))


def edit_table(edits: list[dict], label) -> pd.DataFrame:
    """A counterfactual's edits, in the order they apply (positions 0-based, as they are when it applies)."""
    return pd.DataFrame([{"step": i + 1, "edit": e["op"], "position": int(e["position"]),
                          "item": label(int(e["item"])), "replaces": label(int(e["old"])) if "old" in e else ""}
                         for i, e in enumerate(edits)], columns=["step", "edit", "position", "item", "replaces"])


def replay_command(checkpoint: str, edited, target=None) -> str:
    """The CLI command that inspects an edited history (as `counterfactual --json`'s `replay`)."""
    return (f"python -m fame_core inspect --checkpoint {checkpoint} --items {','.join(str(int(v)) for v in edited)}"
            + (f" --target {int(target)}" if target is not None else ""))


# ---- the population ----------------------------------------------------------------------------------------

def population_key(split: str, specs, k: int, mode: str = "zero", data_key: str = "") -> str:
    """The disk-cache name of one population run: split, interventions (parsed form), k, mode."""
    digest = hashlib.sha256(json.dumps([split, list(specs), int(k), mode, data_key]).encode()).hexdigest()[:16]
    return f"interventions-{split}-k{int(k)}-{mode}-{digest}"


def _valid(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("summary"), dict) and isinstance(value.get("table"), dict)
            and all(isinstance(v, list) for v in value["table"].values()))


def population(model: Recommender, dataset, checkpoint, split: str = "test", interventions=(), k: int = 20, mode: str = "zero",
               data_key: str = "") -> tuple[dict, pd.DataFrame]:
    """(summary, per-user table) of `intervene_population`, computed once per checkpoint
    fingerprint, split, interventions, k and mode, then read from the disk cache
    (`fame_core.cache.cached_json`: verified; floats kept to full precision). summary["from_cache"]
    says which. data_key: tells apart data sets given by hand for the same checkpoint."""
    from .cache import cached_json
    from .interventions import intervene_population, parse_all

    specs = [iv.spec for iv in parse_all(model, interventions, mode)]   # refused before anything runs
    computed = []

    def compute():
        pop = intervene_population(model, dataset, split, specs, k=k, mode=mode)
        computed.append(True)
        return {"summary": pop["summary"], "table": {c: pop["table"][c].tolist() for c in pop["table"].columns}}

    value = cached_json(checkpoint, population_key(split, specs, k, mode, data_key), compute, check=_valid)
    summary = dict(value["summary"], from_cache=not computed)
    return summary, pd.DataFrame(value["table"])


def ndcg_change(table: pd.DataFrame, k: int) -> np.ndarray:
    return (table[f"ndcg@{k}_after"] - table[f"ndcg@{k}_before"]).to_numpy(dtype=float)


def change_histogram(table: pd.DataFrame, k: int, bins: int = 41) -> pd.DataFrame:
    """Histogram of per-user NDCG@k changes (after - before) on a stated symmetric range
    [-m, m], m = the largest |change| (an odd number of bins, so 0 is the middle bin's centre);
    share = users / all users (0..1). attrs: range, unchanged (users with change 0)."""
    d = ndcg_change(table, k)
    m = float(np.abs(d).max()) if len(d) else 0.0
    m = m if m > 0 else 1e-6
    edges = np.linspace(-m, m, bins + 1)
    counts, _ = np.histogram(d, bins=edges)
    out = pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "users": counts,
                        "share": counts / max(1, len(d))})
    out.attrs.update(range=[-m, m], unchanged=int((d == 0).sum()), users=int(len(d)))
    return out


def most_changed(table: pd.DataFrame, k: int, n: int = 20) -> pd.DataFrame:
    """The n users whose NDCG@k changed most (by |change|, then by |rank change|), largest first."""
    t = table.copy()
    t[f"ndcg@{k}_change"] = ndcg_change(table, k)
    t["_a"], t["_r"] = -t[f"ndcg@{k}_change"].abs(), -(t["rank_after"] - t["rank_before"]).abs()
    t = t.sort_values(["_a", "_r"], kind="stable").head(n)
    return t[["user", "target", "rank_before", "rank_after", f"ndcg@{k}_before", f"ndcg@{k}_after",
              f"ndcg@{k}_change"]].reset_index(drop=True)


__all__ = ["intervention_choices", "flat_choices", "goal_choices", "takes_mode", "reading", "rank_table", "gate_table",
           "list_changes", "marked_lists", "edit_table", "replay_command", "population", "population_key",
           "change_histogram", "most_changed", "ndcg_change"]
