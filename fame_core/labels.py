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

MAX_VALUES = 10
# One colour per facet value (up to MAX_VALUES) on the maps: D3's categorical ten (matplotlib's tab10, as the
# exported maps use), pairwise far apart (CIE76 distance over 20, tested); items without a value are NONE_COLOUR.
VALUE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf")
NONE_COLOUR = "#dddddd"


def facet_rule(max_values: int = MAX_VALUES) -> str:
    """The rule `facet_labels` applies, in one line, for pages and figures to state where they use it."""
    return (f"One value per item: of the {max_values} most frequent values carried by at most half of all items, the "
            "item's own most frequent one (items with several values, such as Amazon attributes, count as 'same' "
            "when these agree); items with none of them are grey, (none).")


def facet_labels(dataset: SequenceDataset, facet: str, max_values: int = MAX_VALUES) -> tuple[np.ndarray, list[str]]:
    """One label per item id (-1 = none) and the value names; see the module docstring and `facet_rule`."""
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


__all__ = ["MAX_VALUES", "NONE_COLOUR", "VALUE_COLOURS", "facet_labels", "facet_rule"]
