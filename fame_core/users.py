"""A table of every user, for finding the interesting ones ("users like Sports 230").

One row per user with at least 3 items: input length, target, the target's rank under gated and
concatenated merging, hit@k under each, the dominant head by gate, the gate entropy, and (in the
synthetic world) the user's planted dominant facet. Computed in batches with one forward pass
per batch (`fame_core.evaluate.rank_users`), or read from the cohort table
(`from_cohort(fame_core.cohort.cohort_table(...))`: the app does this, so the case study's user
table and the Cohort page share one computation and its parquet cache on disk).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import SequenceDataset
from .evaluate import rank_users

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender


def user_table(model: Recommender, dataset: SequenceDataset,
               split: str = "test", k: int = 20, mask_history: bool = True) -> pd.DataFrame:
    r = rank_users(model, dataset, split, merges=("gated", "concat"), mask_history=mask_history)
    rows, gates = r["rows"], r["gates"].astype(np.float64)
    H = gates.shape[1]
    entropy = -(gates * np.log(np.clip(gates, 1e-12, None))).sum(1) / np.log(H) if H > 1 else np.zeros(len(rows))
    table = pd.DataFrame({
        "user": [dataset.user_ids[i] for i in rows],
        "length": r["lengths"],
        "target": [int(dataset.example(i, split)[1]) for i in rows],
        "rank_gated": r["ranks"]["gated"] + 1,
        "rank_concat": r["ranks"]["concat"] + 1,
    })
    table[f"hit_gated@{k}"] = table["rank_gated"] <= k
    table[f"hit_concat@{k}"] = table["rank_concat"] <= k
    table["dominant_head"] = gates.argmax(1)
    table["gate_max"] = gates.max(1).round(4)
    table["gate_entropy"] = np.round(entropy, 4)  # 0 = one head decides, 1 = all heads equal
    if dataset.truth is not None:
        table["planted_facet"] = [dataset.truth["dominant_facet"][i] for i in rows]
    return table


def from_cohort(cohort: pd.DataFrame, dataset: SequenceDataset | None = None, k: int = 20) -> pd.DataFrame:
    """`user_table` from a cohort table (`fame_core.cohort`, history masked): the same columns and
    values, without ranking anyone again (the cohort's ranks are 0-based, the user table's 1-based)."""
    H = int(cohort.attrs.get("heads") or sum(c.startswith("gate_") and c[5:].isdigit() for c in cohort.columns))
    gates = cohort[[f"gate_{h}" for h in range(H)]].to_numpy(np.float64)
    table = pd.DataFrame({"user": cohort["user"].to_numpy(), "length": cohort["length"].to_numpy(),
                          "target": cohort["target"].to_numpy(),
                          "rank_gated": cohort["rank_gated"].to_numpy() + 1,
                          "rank_concat": cohort["rank_concat"].to_numpy() + 1})
    table[f"hit_gated@{k}"] = table["rank_gated"] <= k
    table[f"hit_concat@{k}"] = table["rank_concat"] <= k
    table["dominant_head"] = gates.argmax(1)
    table["gate_max"] = gates.max(1).round(4)
    table["gate_entropy"] = cohort["gate_entropy"].to_numpy(np.float64).round(4)
    if dataset is not None and dataset.truth is not None:
        table["planted_facet"] = [dataset.truth["dominant_facet"][i] for i in cohort["row"]]
    return table


def gated_wins(table: pd.DataFrame, k: int = 20) -> pd.DataFrame:
    """Users whose target gated merging ranks in the top k and concatenation does not."""
    return table[table[f"hit_gated@{k}"] & ~table[f"hit_concat@{k}"]]
