"""Colour scales of the attention and router maps: one rule for the app and the exports.

A picture must never look more decisive than its numbers, so every map is anchored at 0 and its
colour bar marks the uniform level (1/L for attention over L positions, 1/N for routing over N
experts). Three policies, one name each from CLI to app to sidecar JSON:

    unit    0 .. 1 (default): the full range a softmax weight can take; maps of any user,
            head and expert compare directly.
    shared  0 .. the largest weight of that kind over every head and expert of this inspection:
            detail visible, still one scale for all heads and experts.
    own     0 .. this map's largest weight: the most detail, comparable only within the map.

No plotting library is imported here: the app (plotly) and fame_core.export (matplotlib) both
take their limits from `attention_scale` / `router_scale`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCALES = ("unit", "shared", "own")
DEFAULT_SCALE = "unit"


@dataclass(frozen=True)
class ColourScale:
    """Limits of one colour bar and the uniform level it marks."""

    vmin: float
    vmax: float
    uniform: float
    uniform_label: str   # e.g. "1/4 uniform"
    policy: str

    def to_dict(self) -> dict:
        return asdict(self)


def _check(policy: str) -> None:
    if policy not in SCALES:
        raise ValueError(f"unknown colour scale {policy!r}; use one of {', '.join(SCALES)}")


def _top(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(max(finite.max(), 1e-9)) if finite.size else 1.0


def attention_scale(insp, head: int, expert: int | None = None, policy: str = DEFAULT_SCALE) -> ColourScale:
    """Scale of an attention map: `expert=None` for the experts x positions map from the last
    position, an expert for that expert's full positions x positions map."""
    _check(policy)
    L = len(insp.sequence)
    if expert is None:
        values = {"shared": insp.attention[:, :, -1, :], "own": insp.attention[head, :, -1, :]}
    else:
        values = {"shared": insp.attention, "own": insp.attention[head, expert]}
    vmax = 1.0 if policy == "unit" else _top(values[policy])
    label = f"1/{L} uniform" + (" (last row)" if expert is not None else "")
    return ColourScale(0.0, vmax, 1.0 / L, label, policy)


def router_scale(insp, head: int, policy: str = DEFAULT_SCALE) -> ColourScale:
    """Scale of a router map (positions x experts) of one head."""
    _check(policy)
    values = {"shared": insp.router, "own": insp.router[head]}
    vmax = 1.0 if policy == "unit" else _top(values[policy])
    return ColourScale(0.0, vmax, 1.0 / insp.n_experts, f"1/{insp.n_experts} uniform", policy)


def causal_mask(L: int) -> np.ndarray:
    """True where position i cannot attend to j (j > i): masked, not attention 0."""
    return np.triu(np.ones((L, L), dtype=bool), k=1)


MASK_NOTE = "upper triangle (j > i) masked by the causal mask: not attention 0; drawn hatched grey, empty in the CSV"
