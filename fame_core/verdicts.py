"""One verdict per claim, against the strongest simple rules (issue 41): gate, router, heads, attention.

Every surface (the `facets` command, the app's badges, the Cohort page, docs tables) reads its
pass/fail from here. A `Verdict` serialises to exactly

    {"passed": bool, "model": float, "baselines": [{"name": str, "value": float}, ...],
     "best_baseline": str, "margin": float, "ci95": [lo, hi], "p": float, "test": str,
     "users": int, "split": "test"}

or, where it cannot be computed, to {"passed": false, "reason": "..."} naming why.

How a verdict is read (`paired_verdict`): every unit (a test user; for the heads verdict an item)
has a value under the model and under each baseline. The best baseline is the one with the largest
mean (the strongest competitor, whatever it is). `margin` is the mean per-unit difference
model - best baseline, `ci95` the 95 % paired bootstrap percentile interval of that mean (units
resampled with replacement, BOOTSTRAP_RESAMPLES = 2000, fixed seed; fame_core.stats.bootstrap_ci),
and `p` the two-sided p of the test named in `test`: the exact binomial (McNemar) test on the
discordant units where both values are 0/1, the Wilcoxon signed-rank test otherwise. `passed` is
true only when the interval's lower bound is above zero AND p < 0.05.

The four claims, their per-unit quantity and baselines:

- gate (`gate_verdict`): over test users whose heads rank the target differently (a unique best
  head, read from the cohort table's rank_head:h), 1 when the gate's largest-weight head is the head
  that ranks the target best, else 0. Baselines: always head h (each h); the history's majority
  head and the last item's head, where an item's head is its head cluster when the model has one
  (--head-cluster-bias; FAME.item_cluster) and otherwise the head under which it scores higher at
  the user's last position (argmax_h P^(h)(item)); a logistic regression fitted on VALIDATION users
  only, from history summaries (the share of history items per head, the last item's head,
  log history length), scored on test users; on planted worlds (dataset.truth) also "the facet
  whose values are most concentrated in the history", mapped to a head on validation users (each
  facet to the head most often better among the validation users whose history is most
  concentrated in it).
- router (`router_verdict`): over test users whose target has a label, 1 when the label read off the
  router's choice is the target's label, else 0. The label is the value of the user's planted facet
  active at the target step (planted worlds), else the target's value of the first item facet, else
  the target's head cluster. The read-off maps each combination of argmax experts (one per head,
  last position) to the label most frequent among VALIDATION users with that combination (an
  unseen combination: the validation majority label). Baselines: random routers (ROUTER_DRAWS
  draws, each user's value the mean over draws: the users' expert combinations permuted, in
  validation and in test separately, so every expert keeps its load; the read-off refitted each
  draw), the validation majority label, the last history item's label and the history's modal label.
- heads (`heads_verdict`): per item, 1 when a 5-fold cross-validated linear probe (facets.probe_accuracy's
  pipeline) on a representation predicts the item's facet label. The items (at most MAX_ITEMS) are
  split in two halves by a fixed seed: the first half chooses the (facet, head) pair with the
  largest margin over its best baseline, the second half gives the verdict, so the choice is never
  read on the units that judge it. Baselines: the other heads, a random projection of the full
  embedding to the head's size d', and the head with shuffled labels. The full embedding (d, not
  d', dimensions; every head is a linear function of it) is not a baseline a head can be asked to
  beat; facets.head_alignment reports it.
- attention (`attention_verdict`): per sampled test user (ATTENTION_USERS with at least 2 input items),
  the AOPC of the model's gated score when history items are MASKED (replaced in place by the
  padding id, which no position attends to; the others keep their positions) in the order of the
  effective attention (largest first), against: random orders (RANDOM_ORDERS per user, averaged),
  most recent first, and integrated gradients (completeness within 1 %, see
  fame_core.attribution.attribute). Wilcoxon signed-rank over users.

Settings (draws, orders, users) are fixed constants chosen by a stated rule, never read on test:
enough draws that a user's random-baseline noise is a small fraction of the spread between users.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .stats import bootstrap_ci, exact_binomial, wilcoxon_by_user

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

VERSION = 1
SEED = 0
ROUTER_DRAWS = 200
RANDOM_ORDERS = 20
ATTENTION_USERS = 100
MAX_DELETIONS = 10
MAX_ITEMS = 3000
ALPHA = 0.05
MCNEMAR = "exact binomial (McNemar) on discordant users"
WILCOXON = "Wilcoxon signed-rank over users, two-sided, zero differences dropped"
KEYS = ("passed", "model", "baselines", "best_baseline", "margin", "ci95", "p", "test", "users", "split")
CLAIMS = ("gate", "router", "heads", "attention")
LAST_TIMINGS: dict[str, float] = {}   # seconds per stage of the last computed (not cached) verdicts call


@dataclass
class Verdict:
    """One claim's verdict; `to_dict` gives the contract's JSON (module docstring)."""

    passed: bool
    model: float | None = None
    baselines: list[dict] = field(default_factory=list)
    best_baseline: str | None = None
    margin: float | None = None
    ci95: list[float] | None = None
    p: float | None = None
    test: str | None = None
    users: int | None = None
    split: str = "test"
    reason: str | None = None

    @classmethod
    def unavailable(cls, reason: str) -> Verdict:
        return cls(passed=False, reason=reason)

    def to_dict(self) -> dict:
        if self.reason is not None:
            return {"passed": False, "reason": self.reason}
        return {"passed": bool(self.passed), "model": float(self.model),
                "baselines": [{"name": str(b["name"]), "value": float(b["value"])} for b in self.baselines],
                "best_baseline": str(self.best_baseline), "margin": float(self.margin),
                "ci95": [float(self.ci95[0]), float(self.ci95[1])], "p": float(self.p), "test": str(self.test),
                "users": int(self.users), "split": self.split}

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        if "reason" in d:
            return cls.unavailable(d["reason"])
        return cls(**{k: d[k] for k in KEYS})


def _binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0.0, 1.0)).all())


def paired_verdict(model_values, baselines: dict, unit: str = "users", seed: int = SEED) -> Verdict:
    """The verdict of per-unit model values against several baselines' per-unit values (same
    units, same order): see the module docstring. Baselines tie-break in the order given."""
    m = np.asarray(model_values, dtype=np.float64)
    if len(m) == 0:
        return Verdict.unavailable(f"no {unit} to compare")
    if not baselines:
        return Verdict.unavailable("no baseline could be computed")
    vals = {k: np.asarray(v, dtype=np.float64) for k, v in baselines.items()}
    best = max(vals, key=lambda k: (round(float(vals[k].mean()), 12)))
    b = vals[best]
    diff = m - b
    lo, hi = bootstrap_ci(diff, seed=seed)
    if _binary(m) and _binary(b):
        p = exact_binomial(int((diff > 0).sum()), int((diff < 0).sum()))
        test = MCNEMAR.replace("users", unit)
    else:
        p = wilcoxon_by_user(m, b)[1]
        test = WILCOXON.replace("users", unit)
    margin = float(diff.mean())
    return Verdict(passed=bool(lo > 0 and p < ALPHA and margin > 0), model=float(m.mean()),
                   baselines=[{"name": k, "value": float(v.mean())} for k, v in vals.items()], best_baseline=best,
                   margin=margin, ci95=[lo, hi], p=float(p), test=test, users=int(len(m)))


# ---- the gate ------------------------------------------------------------------------------------------

def better_head(table: pd.DataFrame, H: int) -> np.ndarray:
    """Each user's head that ranks the target best (rank_head:h, 0-based), -1 where no head is uniquely best."""
    ranks = np.stack([table[f"rank_head:{h}"].to_numpy() for h in range(H)], 1)
    srt = np.sort(ranks, 1)
    unique = srt[:, 0] < srt[:, 1]
    return np.where(unique, ranks.argmin(1), -1)


def _history_features(shares: np.ndarray, last: np.ndarray, length: np.ndarray) -> np.ndarray:
    H = shares.shape[1]
    return np.column_stack([shares, np.eye(H)[last], np.log1p(length)])


def majority_head(shares: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The head most of the history prefers; a tie goes to the last item's head when it is among
    the tied, else to the lowest tied head."""
    top = shares.max(1, keepdims=True)
    tied = np.isclose(shares, top)
    lowest = tied.argmax(1)
    return np.where(tied[np.arange(len(last)), last], last, lowest)


def gate_rules(better_valid, shares_valid, last_valid, length_valid, shares_test, last_test, length_test,
               H: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """The simple rules' predicted head per test user (every user given): always head h, the
    history's majority head, the last item's head, and a logistic regression fitted on the
    validation users with a unique best head (left out where they hold one head only)."""
    rules = {f"always head {h}": np.full(len(last_test), h) for h in range(H)}
    rules["history's majority head"] = majority_head(shares_test, last_test)
    rules["last item's head"] = np.asarray(last_test)
    keep = np.asarray(better_valid) >= 0
    if len(np.unique(np.asarray(better_valid)[keep])) >= 2:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        clf.fit(_history_features(shares_valid, last_valid, length_valid)[keep], np.asarray(better_valid)[keep])
        rules["logistic regression on history (fitted on validation)"] = clf.predict(
            _history_features(shares_test, last_test, length_test))
    return rules


def gate_verdict_from(better_test, gate_test, rules: dict[str, np.ndarray], seed: int = SEED) -> Verdict:
    """The gate verdict from plain arrays: users with a unique best head (better_test >= 0), the
    gate's choice and each rule's choice per test user."""
    better_test = np.asarray(better_test)
    keep = better_test >= 0
    if not keep.any():
        return Verdict.unavailable("no test user has a uniquely better head (the heads rank every target alike)")
    y = better_test[keep]
    model = (np.asarray(gate_test)[keep] == y).astype(np.float64)
    base = {name: (np.asarray(pred)[keep] == y).astype(np.float64) for name, pred in rules.items()}
    return paired_verdict(model, base, seed=seed)


@torch.no_grad()
def history_heads(model: Recommender, inputs, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(shares (U, H): the share of each input's newest max_len items whose head is h; last (U,): the
    last item's head). An item's head is its head cluster where the model has one, else the head
    with the larger P^(h)(item) at the input's last position (one batched forward pass)."""
    cfg = model.config
    H = cfg.n_heads
    shares = np.zeros((len(inputs), H))
    last = np.zeros(len(inputs), dtype=np.int64)
    cluster = getattr(model, "item_cluster", None) if model.head_item_bias() is not None else None
    if cluster is not None:
        c = cluster.long().cpu().numpy()
        for i, x in enumerate(inputs):
            h = c[np.asarray(x[-cfg.max_len:])]
            shares[i] = np.bincount(h, minlength=H)[:H] / max(len(h), 1)
            last[i] = h[-1]
        return shares, last
    from .evaluate import left_pad

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    subs = model.item_sub_embeddings()                                       # (H, n+1, d')
    bias = model.head_item_bias()
    order = np.argsort([min(len(x), cfg.max_len) for x in inputs], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        seq = left_pad([inputs[i] for i in idx], cfg.max_len, device)       # (B, T)
        F = model(seq, last_only=True).heads[:, -1]                           # (B, H, d')
        P = torch.einsum("hbte,bhe->bht", subs[:, seq], F)                   # (B, H, T)
        if bias is not None:
            P = P + bias[:, seq].permute(1, 0, 2)
        pref = P.argmax(1)                                                    # (B, T)
        real = seq != 0
        onehot = torch.nn.functional.one_hot(pref, H) * real[..., None]
        shares[idx] = (onehot.sum(1) / real.sum(1, keepdim=True).clamp(min=1)).cpu().numpy()
        last[idx] = pref[:, -1].cpu().numpy()
    model.train(was_training)
    return shares, last


def concentrated_facet(dataset, inputs, max_len: int) -> np.ndarray:
    """Per input: the index (in dataset.facets order) of the facet whose values are most
    concentrated among its newest max_len items (share of the modal value among the items that
    have one; ties: the first facet), -1 where no item has a value of any facet."""
    from .labels import facet_labels

    names = list(dataset.facets)
    conc = np.full((len(inputs), len(names)), -1.0)
    for j, f in enumerate(names):
        labels, _ = facet_labels(dataset, f)
        for i, x in enumerate(inputs):
            y = labels[np.asarray(x[-max_len:])]
            y = y[y >= 0]
            if len(y):
                conc[i, j] = np.bincount(y).max() / len(y)
    return np.where(conc.max(1) >= 0, conc.argmax(1), -1)


def facet_head_rule(better_valid, facet_valid, facet_test, H: int) -> np.ndarray:
    """Each facet mapped to the head most often better among the validation users whose history is
    most concentrated in it (the overall validation majority where a facet has none), applied to test."""
    better_valid, facet_valid = np.asarray(better_valid), np.asarray(facet_valid)
    keep = better_valid >= 0
    overall = int(np.bincount(better_valid[keep], minlength=H).argmax()) if keep.any() else 0
    mapping = {}
    for f in np.unique(np.concatenate([facet_valid, np.asarray(facet_test)])):
        sel = keep & (facet_valid == f)
        mapping[int(f)] = int(np.bincount(better_valid[sel], minlength=H).argmax()) if sel.any() else overall
    return np.array([mapping[int(f)] for f in facet_test], dtype=np.int64)


def _inputs(dataset, table: pd.DataFrame, split: str) -> list[np.ndarray]:
    return [dataset.example(int(r), split)[0] for r in table["row"].to_numpy()]


def gate_verdict(model: Recommender, dataset, tables: dict[str, pd.DataFrame], seed: int = SEED) -> Verdict:
    """The gate verdict of a model on its data set from the cohort tables of "valid" and "test"."""
    if "gate" not in model.capabilities:
        return Verdict.unavailable(f"a {model.config.model} model has no gate (its score sums its heads)")
    H = model.config.n_heads
    if H < 2:
        return Verdict.unavailable("one head: there is no choice of head for a gate to make")
    inp, feats, better = {}, {}, {}
    for split in ("valid", "test"):
        t = tables[split]
        inp[split] = _inputs(dataset, t, split)
        shares, last = history_heads(model, inp[split])
        feats[split] = (shares, last, t["length"].to_numpy())
        better[split] = better_head(t, H)
    rules = gate_rules(better["valid"], *feats["valid"], *feats["test"], H=H, seed=seed)
    if dataset.truth is not None and len(dataset.facets) >= 2:
        fv = concentrated_facet(dataset, inp["valid"], model.config.max_len)
        ft = concentrated_facet(dataset, inp["test"], model.config.max_len)
        rules["most concentrated facet's head (mapped on validation)"] = facet_head_rule(better["valid"], fv, ft, H)
    return gate_verdict_from(better["test"], tables["test"]["top_gate_head"].to_numpy(), rules, seed=seed)


def rules_table(v: dict) -> pd.DataFrame:
    """A verdict (JSON) as a small table: the model's value and each baseline's, with the model's
    margin over each (the Cohort page's "gate against the rules")."""
    if "reason" in v:
        return pd.DataFrame(columns=["who", "value", "model minus this"])
    rows = [{"who": "the model", "value": v["model"], "model minus this": 0.0}]
    rows += [{"who": b["name"] + (" (best)" if b["name"] == v["best_baseline"] else ""), "value": b["value"],
              "model minus this": v["model"] - b["value"]} for b in v["baselines"]]
    return pd.DataFrame(rows)


# ---- the router ----------------------------------------------------------------------------------------

def _combos(table: pd.DataFrame, H: int, N: int) -> np.ndarray:
    c = np.zeros(len(table), dtype=np.int64)
    for h in range(H):
        c = c * N + table[f"expert_{h}"].to_numpy()
    return c


def readout(combo_fit, label_fit, combo, n_combos: int, n_labels: int) -> np.ndarray:
    """The label most frequent among the fitting users of each combination, for `combo`
    (an unseen combination: the fitting users' majority label)."""
    counts = np.zeros((n_combos, n_labels), dtype=np.int64)
    np.add.at(counts, (combo_fit, label_fit), 1)
    majority = int(np.bincount(label_fit, minlength=n_labels).argmax())
    best = np.where(counts.sum(1) > 0, counts.argmax(1), majority)
    return best[combo]


def router_verdict_from(combo_valid, label_valid, combo_test, label_test, rules: dict[str, np.ndarray],
                        n_combos: int, draws: int = ROUTER_DRAWS, seed: int = SEED) -> Verdict:
    """The router verdict from plain arrays: integer expert combinations and labels (-1 = none)
    per validation and test user, and each rule's predicted label per test user."""
    cv, lv, ct, lt = (np.asarray(a) for a in (combo_valid, label_valid, combo_test, label_test))
    kv, kt = lv >= 0, lt >= 0
    if not kv.any() or not kt.any():
        return Verdict.unavailable("no validation or test user's target has a label to read the router against")
    cv, lv, ct, lt = cv[kv], lv[kv], ct[kt], lt[kt]
    V = int(max(lv.max(), lt.max())) + 1
    model = (readout(cv, lv, ct, n_combos, V) == lt).astype(np.float64)
    rng = np.random.default_rng(seed)
    rand = np.zeros(len(lt))
    for _ in range(draws):
        rand += readout(rng.permutation(cv), lv, rng.permutation(ct), n_combos, V) == lt
    base = {f"random routers (same loads, mean of {draws})": rand / draws,
            "validation majority label": (lt == np.bincount(lv).argmax()).astype(np.float64)}
    base.update({name: (np.asarray(p)[kt] == lt).astype(np.float64) for name, p in rules.items()})
    return paired_verdict(model, base, seed=seed)


def _router_labels(model: Recommender, dataset, table: pd.DataFrame, split: str):
    """(per-user target label, per-item label function for the history rules, what the label is)."""
    from .labels import facet_labels

    rows = table["row"].to_numpy()
    targets = table["target"].to_numpy()
    if dataset.truth is not None:
        step = -1 if split == "test" else -2
        names = sorted({v for f in dataset.facets for vals in dataset.facets[f] for v in vals})
        code = {v: i for i, v in enumerate(names)}
        label = np.array([code[dataset.truth["active_value"][r][step]] for r in rows])
        facet = [dataset.truth["dominant_facet"][r] for r in rows]

        def item_label(i, items):
            vals = dataset.facets[facet[i]]
            return np.array([code[vals[v][0]] if vals[v] else -1 for v in items])
        return label, item_label, "the user's planted facet value active at the target step"
    if dataset.facets:
        f = next(iter(dataset.facets))
        labels, _ = facet_labels(dataset, f)
        return labels[targets], (lambda i, items: labels[items]), f"the target's {f}"
    if model.head_item_bias() is not None and getattr(model, "item_cluster", None) is not None:
        c = model.item_cluster.long().cpu().numpy()
        return c[targets], (lambda i, items: c[items]), "the target's head cluster"
    return None, None, None


def router_verdict(model: Recommender, dataset, tables: dict[str, pd.DataFrame], draws: int = ROUTER_DRAWS,
                   seed: int = SEED) -> Verdict:
    """The router verdict of a model on its data set from the cohort tables of "valid" and "test"."""
    if "experts" not in model.capabilities or "router" not in model.capabilities:
        return Verdict.unavailable(f"a {model.config.model} model has no router")
    H, N = model.config.n_heads, model.config.n_experts
    if N < 2:
        return Verdict.unavailable("one expert per head: the router has nothing to choose")
    labels = {s: _router_labels(model, dataset, tables[s], s) for s in ("valid", "test")}
    if labels["test"][0] is None:
        return Verdict.unavailable("no item facets and no head clusters: nothing to read the router's choice against")
    lt, item_label, _ = labels["test"]
    inputs = _inputs(dataset, tables["test"], "test")
    max_len = model.config.max_len
    last, modal = np.full(len(inputs), -1), np.full(len(inputs), -1)
    for i, x in enumerate(inputs):
        y = item_label(i, np.asarray(x[-max_len:]))
        last[i] = y[-1]
        y = y[y >= 0]
        if len(y):
            counts = np.bincount(y)
            modal[i] = counts.argmax()
    rules = {"last item's label": last, "history's modal label": modal}
    return router_verdict_from(_combos(tables["valid"], H, N), labels["valid"][0], _combos(tables["test"], H, N), lt,
                               rules, n_combos=N ** H, draws=draws, seed=seed)


# ---- the heads -----------------------------------------------------------------------------------------

def _probe_correct(X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = SEED) -> np.ndarray:
    """Per item: 1 when the 5-fold cross-validated probe (facets.probe_accuracy's) predicts its label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return (cross_val_predict(probe, X, y, cv=cv) == y).astype(np.float64)


def heads_verdict(model: Recommender, dataset, max_items: int = MAX_ITEMS, seed: int = SEED) -> Verdict:
    """The heads verdict (module docstring): probe correctness per item, choice on one half of the
    items, verdict on the other."""
    from .facets import item_representations
    from .labels import facet_labels

    if not dataset.facets:
        return Verdict.unavailable("the data set has no item facets (pass --items with an item table)")
    H = model.config.n_heads
    if H < 2:
        return Verdict.unavailable("one head: nothing to tell a head's facet from the other heads'")
    reps = item_representations(model, seed)
    rng = np.random.default_rng(seed)
    per_facet = {}
    for facet in dataset.facets:
        labels, _ = facet_labels(dataset, facet)
        items = np.flatnonzero(labels >= 0)
        if len(items) > max_items:
            items = np.sort(rng.choice(items, max_items, replace=False))
        y = labels[items]
        classes, counts = np.unique(y, return_counts=True)
        keep = np.isin(y, classes[counts >= 5])
        items, y = items[keep], y[keep]
        if len(np.unique(y)) < 2 or len(items) < 20:
            continue
        correct = {f"head {h}": _probe_correct(reps[f"head {h}"][items], y, seed=seed) for h in range(H)}
        correct["random projection"] = _probe_correct(reps["random projection"][items], y, seed=seed)
        shuffled = rng.permutation(y)
        shuffled_correct = {h: _probe_correct(reps[f"head {h}"][items], shuffled, seed=seed) for h in range(H)}
        half = rng.permutation(len(items)) < len(items) // 2          # True: the choosing half
        per_facet[facet] = (correct, shuffled_correct, half)
    if not per_facet:
        return Verdict.unavailable("no item facet has two values with enough items for a probe")

    def competitors(correct, shuffled_correct, h):
        base = {f"head {g} ({facet})": correct[f"head {g}"] for g in range(H) if g != h}
        base[f"random projection to {model.config.d_head} dims ({facet})"] = correct["random projection"]
        base[f"head {h}, shuffled labels ({facet})"] = shuffled_correct[h]
        return base

    best, best_gap = None, -np.inf
    for facet, (correct, shuffled_correct, half) in per_facet.items():
        for h in range(H):
            base = competitors(correct, shuffled_correct, h)
            gap = correct[f"head {h}"][half].mean() - max(v[half].mean() for v in base.values())
            if gap > best_gap:
                best, best_gap = (facet, h), gap
    facet, h = best
    correct, shuffled_correct, half = per_facet[facet]
    judge = ~half
    base = {k: v[judge] for k, v in competitors(correct, shuffled_correct, h).items()}
    v = paired_verdict(correct[f"head {h}"][judge], base, unit="items", seed=seed)
    if v.reason is None:
        v.test += f"; model = head {h} on {facet} (chosen on the other half of the items)"
    return v


# ---- attention -----------------------------------------------------------------------------------------

def attention_verdict(model: Recommender, dataset, n_users: int = ATTENTION_USERS, random_orders: int = RANDOM_ORDERS,
                      max_steps: int = MAX_DELETIONS, seed: int = SEED, progress: bool = False) -> Verdict:
    """The attention verdict (module docstring): per-user AOPC of the gated score under masking."""
    from tqdm.auto import tqdm

    from .attribution import attribute, deletion_curves

    rows = dataset.splittable_rows()
    rows = rows[[len(dataset.example(r, "test")[0]) >= 2 for r in rows]]
    if len(rows) == 0:
        return Verdict.unavailable("no test user has two input items to remove")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(rows, min(n_users, len(rows)), replace=False))
    names = ("attention", "integrated gradients", "most recent first", f"random orders (mean of {random_orders})")
    aopc = {n: [] for n in names}
    for r in tqdm(sample, desc="attention verdict", disable=None if progress else True, leave=False):
        seq, target = dataset.example(r, "test")
        res = attribute(model, seq, target, "gated")
        curve = deletion_curves(model, res, max_steps=max_steps, n_random=random_orders, seed=int(r), mode="mask",
                                recent=True, ranks=False)
        for method, name in zip(("attention", "integrated gradients", "most recent first", "random"), names):
            s = curve[curve["method"] == method].sort_values("removed")["score"].to_numpy()
            aopc[name].append(float((s[0] - s).mean()))
    model_values = np.array(aopc["attention"])
    return paired_verdict(model_values, {n: np.array(aopc[n]) for n in names[1:]}, seed=seed)


# ---- all four, cached ----------------------------------------------------------------------------------

def _key(model: Recommender, dataset, settings: dict) -> str:
    from .cohort import model_fingerprint

    h = hashlib.sha256(f"{VERSION}|{model_fingerprint(model)}|{dataset.fingerprint()}".encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(json.dumps({f: [list(v) for v in vals] for f, vals in dataset.facets.items()}, sort_keys=True).encode())
    if dataset.truth is not None:
        h.update(json.dumps(dataset.truth["dominant_facet"]).encode())
    return h.hexdigest()[:32]


def _check(value) -> bool:
    if not isinstance(value, dict) or set(value) != set(CLAIMS):
        return False
    for v in value.values():
        if not isinstance(v, dict) or not isinstance(v.get("passed"), bool):
            return False
        if set(v) != {"passed", "reason"} and set(v) != set(KEYS):
            return False
    return True


def _settings(n_users: int, seed: int) -> dict:
    return {"n_users": n_users, "seed": seed, "router_draws": ROUTER_DRAWS, "random_orders": RANDOM_ORDERS,
            "max_deletions": MAX_DELETIONS, "max_items": MAX_ITEMS}


def _path(name: str, model: Recommender, dataset, settings: dict):
    from pathlib import Path

    from . import cache as disk

    return Path(disk.cache_root()) / name / f"{_key(model, dataset, settings)}.json"


def is_cached(model: Recommender, dataset, n_users: int = ATTENTION_USERS, seed: int = SEED) -> bool:
    """True when `verdicts(model, dataset)` is on disk (reading it is instant)."""
    return _path("verdicts", model, dataset, _settings(n_users, seed)).is_file()


def cached(name: str, model: Recommender, dataset, settings: dict, compute, check=None, cache: bool = True):
    """compute() once per (model weights, data set content and facets, settings, VERSION): JSON-ready
    data kept in $FAME_CACHE/<name>/ in fame_core.cache's verified envelope (a damaged file is a miss)."""
    from . import cache as disk

    if not cache:
        return compute()
    path = _path(name, model, dataset, settings)
    if path.is_file():
        try:
            return disk._read_json(path, check)
        except (OSError, ValueError, TypeError, KeyError) as e:
            disk._note(path, str(e) if isinstance(e, ValueError) else e.__class__.__name__)
    value = json.loads(json.dumps(compute(), default=disk._plain))
    text = json.dumps({"format": disk.ENVELOPE, "sha256": disk._digest(disk._canonical(value)), "value": value})
    disk._write(path, lambda p: p.write_text(text))
    return value


def verdicts(model: Recommender, dataset, n_users: int = ATTENTION_USERS, seed: int = SEED, cache: bool = True,
             progress: bool = False, tables: dict | None = None) -> dict[str, dict]:
    """{"gate": V, "router": V, "heads": V, "attention": V} (JSON-ready) for a model on the data set
    it was trained on. Reuses the cohort tables (fame_core.cohort.cohort_table, disk-cached) of
    "valid" and "test", and caches its own result on disk ($FAME_CACHE/verdicts/) under a key of the
    model's weights, the data set's content and facets, the settings and VERSION. progress: tqdm
    bars on stderr (shown only on a terminal)."""
    settings = _settings(n_users, seed)

    def compute():
        from tqdm.auto import tqdm

        from .cohort import cohort_table

        import time

        stages = tqdm(total=4, desc="verdicts", disable=None if progress else True, leave=False)
        LAST_TIMINGS.clear()
        start = time.perf_counter()
        t = tables or {s: cohort_table(model, dataset, s, cache=cache, progress=progress) for s in ("valid", "test")}
        LAST_TIMINGS["cohort tables"] = time.perf_counter() - start
        out = {}
        for name, fn in (("gate", lambda: gate_verdict(model, dataset, t, seed)),
                         ("router", lambda: router_verdict(model, dataset, t, seed=seed)),
                         ("heads", lambda: heads_verdict(model, dataset, seed=seed)),
                         ("attention", lambda: attention_verdict(model, dataset, n_users=n_users, seed=seed,
                                                                 progress=progress))):
            stages.set_postfix_str(name)
            start = time.perf_counter()
            out[name] = fn().to_dict()
            LAST_TIMINGS[name] = time.perf_counter() - start
            stages.update()
        stages.close()
        return out

    return cached("verdicts", model, dataset, settings, compute, _check, cache)


def describe(v: dict) -> str:
    """One line for a verdict: passed/failed, the model against the best baseline, margin and interval."""
    if "reason" in v:
        return f"not computed: {v['reason']}"
    word = "passed" if v["passed"] else "failed"
    return (f"{word}: {v['model']:.4f} vs {v['best_baseline']} {v['model'] - v['margin']:.4f}, margin "
            f"{v['margin']:+.4f} (95 % CI {v['ci95'][0]:+.4f} to {v['ci95'][1]:+.4f}; p = {v['p']:.3g}, "
            f"{v['users']} {'items' if 'items' in v['test'] else 'users'})")
