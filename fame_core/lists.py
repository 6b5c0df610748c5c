"""The case study's lists, as the app and the Figure-7 export both show them.

One inspection, read one way: each head's top-k, gated and concatenated merging, which items
several heads recommend, how far each item moves between gated and concatenated merging, and
where the target is (or why it has no rank). No plotting here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

TOP_K = 20   # list length of the case study: the app's default and the CLI's `export --top-k`
LIST_MODES = ("gated", "concat")
TARGET_MARK, SHARED_MARK = "▶", "●"        # text shapes, not emoji: they render in any font
LABEL_RULES = ("ids", "short", "full")
LIST_NAMES = {"gated": ("Gated merge", "Gated"), "concat": ("Concatenated", "Concat.")}   # longest first: figures
# use the first that fits a column
HEAD_NUMBERING = ("heads and experts are numbered from 0 everywhere (ids, JSON, URLs, figures, pages): head 0 and "
                  "head 1 are the paper's Head 1 and Head 2")


def head_name(h: int) -> str:
    """A head's name in figures and pages: "Head 0" for head id 0 (`HEAD_NUMBERING`; JSON key "head:0")."""
    return f"Head {int(h)}"
SHORT_WIDTH = 28                           # characters of a "short" label (then "…")


def item_text(item: int, label=None, rule: str = "short") -> str:
    """The text shown for an item under a label rule: 'ids' (item 4144), 'short' (the label's
    short form -- a title where the data has titles, else the item id and its named facet values,
    no anonymous value ids; see `SequenceDataset.label` -- cut to SHORT_WIDTH characters with
    '…'), 'full' (the whole label; figures wrap it)."""
    if rule not in LABEL_RULES:
        raise ValueError(f"unknown label rule {rule!r}; use one of {', '.join(LABEL_RULES)}")
    if rule == "ids" or label is None:
        return f"item {int(item)}"
    text = label(int(item), short=True) if rule == "short" and takes_short(label) else label(int(item))
    if rule == "short" and len(text) > SHORT_WIDTH:
        return text[: SHORT_WIDTH - 1].rstrip() + "…"
    return text


def takes_short(label) -> bool:
    """Whether a label function has a short form (`label(item, short=True)`, as
    `SequenceDataset.label`); plain functions of the item alone are used as they are."""
    import inspect

    try:
        return "short" in inspect.signature(label).parameters
    except (TypeError, ValueError):
        return False


def list_modes(insp) -> list[str]:
    """Columns of the case study, left to right: each head, then gated, then concatenated."""
    return [f"head:{h}" for h in range(insp.n_heads)] + list(LIST_MODES)


def lists_table(insp, k: int = TOP_K) -> pd.DataFrame:
    """Rank x list: the top-k item ids of every head and of gated and concatenated merging."""
    return pd.DataFrame({m: [int(v) for v in insp.top[m][:k]] for m in list_modes(insp)},
                        index=pd.RangeIndex(1, k + 1, name="rank"))


def shared_items(insp, k: int = TOP_K) -> set[int]:
    """Items in the top-k of more than one head."""
    sets = [set(int(v) for v in insp.top[f"head:{h}"][:k]) for h in range(insp.n_heads)]
    return {v for v in set().union(*sets) if sum(v in s for s in sets) > 1}


def rank_change(insp, k: int = TOP_K, mode: str = "gated", reference: str = "concat") -> dict[int, int | None]:
    """For each item of `mode`'s top-k: places it gains over `reference` (reference rank minus
    its rank; positive = higher under `mode`), None where `reference`'s top-k lacks it."""
    ref = {int(v): r for r, v in enumerate(insp.top[reference][:k], start=1)}
    return {int(v): (ref[int(v)] - r if int(v) in ref else None) for r, v in enumerate(insp.top[mode][:k], start=1)}


def target_in_history(insp) -> bool:
    """True when the target is one of the input items: history items are excluded from every
    list, so its 'rank' says nothing."""
    return insp.target is not None and insp.mask_history and int(insp.target) in set(insp.sequence.tolist())


def target_note(insp) -> str | None:
    """One line for a target that cannot be ranked, else None."""
    if target_in_history(insp):
        return (f"The target (item {insp.target}) is already in this history; history items are excluded from "
                "every list, so it has no meaningful rank here.")
    return None


def cluster_bias_note(model: Recommender) -> str | None:
    """One line for a model trained with --head-cluster-bias (else None): each head's part of the
    catalogue, its size, and how the gate moves the ranking towards it, so that a head's list full
    of one part is read as the design, not as a finding."""
    if model.head_item_bias() is None:
        return None
    L = model.config.head_cluster_bias
    c = model.item_cluster.long()[1:].cpu().numpy()
    H = model.config.n_heads
    parts = ", ".join(f"head {h}: {int((c == h).sum()):,} items" for h in range(H))
    return (f"This model gives each head a fixed bias of {L:g} towards its own part of the catalogue (k-means "
            f"clusters of the contexts that lead to the items; {parts}). The heads differ by that part, and the "
            "gate moves the merged ranking towards the part it expects the next item in: a larger gate for head h "
            "reads \"the next item is more likely in head h's part\".")


def gate_temperature_note(model: Recommender) -> str | None:
    """One line for a FAME whose gate is read at a temperature other than 1 (else None), so that a
    gate of 0.52 is read as what it is: a softened gate, pointing the same way as the trained one."""
    tau = model.gate_temperature
    if tau is None or tau == 1.0:
        return None
    how = "softer (closer to equal weights)" if tau > 1 else "bolder (further from equal weights)"
    return (f"This checkpoint's gate is read at temperature {tau:g} (gate = softmax(logits / {tau:g}), chosen on "
            f"validation users): its weights are {how} than as trained; which head it favours is unchanged.")


def target_ranks(insp) -> dict[str, int | None] | None:
    """merge mode -> 1-based rank of the target, None for every mode when the target is in the
    history, None overall without a target."""
    if insp.target_rank is None:
        return None
    if target_in_history(insp):
        return {m: None for m in insp.target_rank}
    return dict(insp.target_rank)


def parse_count(text, lo: int, hi: int, default: int, name: str) -> tuple[int, str | None]:
    """A whole number from a URL or text box, in lo..hi: (value used, None) or (value used,
    one-line warning). Never raises: inf, nan, 1e309, 10**400, 'abc' all give a warning."""
    if text is None or str(text).strip() == "":
        return default, None
    raw = str(text).strip()
    shown = raw if len(raw) <= 24 else raw[:21] + "…"
    try:
        value = float(raw) if len(raw) <= 40 else float("nan")
    except ValueError:
        return default, f"`{name}={shown}` is not a whole number from {lo} to {hi}; using {name}={default}."
    if not np.isfinite(value) or value != int(value):
        return default, f"`{name}={shown}` is not a whole number from {lo} to {hi}; using {name}={default}."
    value = int(value)
    if not lo <= value <= hi:
        used = min(max(value, lo), hi)
        return used, f"`{name}={shown}` is outside {lo} to {hi}; using {name}={used}."
    return value, None


def shown_lists(insp, k: int, label, modes, rule: str = "full") -> pd.DataFrame:
    """The lists as the app's one table shows them, aligned rank by rank: one column per mode,
    each cell '▶ ' for the target, '● ' for an item in several heads' top-k, then id and label."""
    shared = shared_items(insp, k)
    columns = {}
    for m in modes:
        cells = []
        for v in insp.top[m][:k]:
            v = int(v)
            mark = TARGET_MARK + " " if insp.target is not None and v == insp.target else (
                SHARED_MARK + " " if v in shared else "")
            text = item_text(v, label, rule)
            cells.append(f"{mark}{text}" if text.startswith(f"item {v}") else f"{mark}{v} · {text}")
        columns[mode_title(m)] = cells
    return pd.DataFrame(columns, index=pd.RangeIndex(1, k + 1, name="rank"))


def mode_title(mode: str) -> str:
    return {"gated": "gated", "concat": "concat"}.get(mode, mode.replace("head:", "head "))


def default_user(dataset, split: str = "test"):
    """The first user (in data order) whose history can be split and whose target is not
    already in the history: a case study whose target rank means something."""
    for row in dataset.splittable_rows():
        seq, target = dataset.example(int(row), split)
        if target is not None and int(target) not in set(np.asarray(seq).tolist()):
            return dataset.user_ids[int(row)]
    return dataset.user_ids[int(dataset.splittable_rows()[0])]
