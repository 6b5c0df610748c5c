"""Item facet labels shared by training (facet probes) and analysis (`fame_core.facets`).

Multi-valued facets (MovieLens genres, Amazon attributes) are reduced to one label per item: its
most frequent value among the facet's `max_values` most frequent ones, ignoring values carried by
more than half of all items (such as Amazon's top category); items without one are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import SequenceDataset
from .errors import DataError


def facet_labels(dataset: SequenceDataset, facet: str, max_values: int = 10) -> tuple[np.ndarray, list[str]]:
    """One label per item id (-1 = none) and the value names; see the module docstring."""
    if facet not in dataset.facets:
        raise DataError(f"data set {dataset.name!r} has no item facet {facet!r} (has: {', '.join(dataset.facets) or 'none'})")
    values = dataset.facets[facet]
    counts = pd.Series([v for vals in values for v in vals]).value_counts()
    counts = counts[counts <= 0.5 * dataset.n_items]
    kept = list(counts.index[:max_values])
    rank = {v: i for i, v in enumerate(kept)}
    labels = np.full(dataset.n_items + 1, -1, dtype=np.int64)
    for item in range(1, dataset.n_items + 1):
        ranked = [rank[v] for v in values[item] if v in rank]
        if ranked:
            labels[item] = min(ranked)
    return labels, kept


__all__ = ["facet_labels"]
