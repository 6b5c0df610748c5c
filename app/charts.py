"""Interactive plotly charts of an Inspection (hover shows item labels and exact values).

Colour limits are explicit (zmin/zmax from fame_core.scales, the same as the exported figures):
anchored at 0, 0..1 by default, the uniform level named on the colour bar; the causally masked
upper triangle of a full attention map is left empty on a grey ground. The paper-ready static
versions of the same charts live in fame_core.export.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from fame_core.scales import MASK_NOTE, attention_scale, causal_mask, router_scale

HEIGHT_PER_ROW = 26
LABEL_HEIGHT = 0.08   # a bar's value label on the gate chart's 0..1.1 axis (260 px high), in axis units
MASK_GROUND = "#d0d0d0"


def _positions(sequence) -> list[str]:
    """Axis ticks: position and item id (the hover shows the full label)."""
    return [f"{i + 1} · {int(v)}" for i, v in enumerate(sequence)]


def gates_chart(gates: np.ndarray) -> go.Figure:
    heads = [f"head {h}" for h in range(len(gates))]
    uniform = 1 / len(gates)
    fig = go.Figure(go.Bar(x=heads, y=gates, hovertemplate="%{x}: gate %{y:.4f}<extra></extra>", marker_color="#4c72b0"))
    fig.add_hline(y=uniform, line_dash="dash", line_color="#555", annotation_text=f"uniform 1/{len(gates)}",
                  annotation_position="top right")
    for head, g in zip(heads, gates):
        # the value above its bar; a bar just below the uniform line has its value lifted above the line
        y = uniform if g < uniform < g + LABEL_HEIGHT else float(g)
        fig.add_annotation(x=head, y=y, text=f"{g:.3f}", showarrow=False, yanchor="bottom", yshift=2)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Gate g at the last position",
                      yaxis=dict(range=[0, 1.1], title="gate"), showlegend=False)
    return fig


def heatmap(values: np.ndarray, x: list[str], y: list[str], hover_x: list[str], hover_y: list[str], title: str,
            colorbar: str, scale, mask: np.ndarray | None = None) -> go.Figure:
    custom = np.empty(values.shape + (2,), dtype=object)
    custom[..., 0] = np.array(hover_y, dtype=object)[:, None]
    custom[..., 1] = np.array(hover_x, dtype=object)[None, :]
    z = np.where(mask, np.nan, values) if mask is not None else values
    ticks = sorted({scale.vmin, scale.uniform, scale.vmax})
    text = [f"{t:.3g}" + (f" = {scale.uniform_label}" if t == scale.uniform else "") for t in ticks]
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, customdata=custom, colorscale="Viridis", zmin=scale.vmin, zmax=scale.vmax,
                               zauto=False, colorbar=dict(title=colorbar, tickvals=ticks, ticktext=text),
                               hovertemplate="%{customdata[0]} → %{customdata[1]}<br>%{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, height=max(300, HEIGHT_PER_ROW * len(y) + 160), margin=dict(l=10, r=10, t=40, b=10),
                      yaxis=dict(autorange="reversed"), plot_bgcolor=MASK_GROUND if mask is not None else None)
    return fig


def expert_attention_chart(insp, head: int, label, scale: str = "unit") -> go.Figure:
    pos = _positions(insp.sequence)
    experts = [f"expert {n}" for n in range(insp.n_experts)]
    return heatmap(insp.attention[head, :, -1, :], pos, experts, [label(v) for v in insp.sequence], experts,
                   f"Head {head}: each expert's attention from the last position", "α",
                   attention_scale(insp, head, None, scale))


def attention_map_chart(insp, head: int, expert: int, label, scale: str = "unit") -> go.Figure:
    pos = _positions(insp.sequence)
    full = [label(v) for v in insp.sequence]
    return heatmap(insp.attention[head, expert], pos, pos, full, full,
                   f"Head {head}, expert {expert}: position i (row) attending to j (column); grey: masked",
                   "α", attention_scale(insp, head, expert, scale), mask=causal_mask(len(insp.sequence)))


def router_chart(insp, head: int, label, scale: str = "unit") -> go.Figure:
    pos = _positions(insp.sequence)
    experts = [f"expert {n}" for n in range(insp.n_experts)]
    return heatmap(insp.router[head], experts, pos, experts, [label(v) for v in insp.sequence],
                   f"Head {head}: router weights β per position", "β", router_scale(insp, head, scale))


__all__ = ["MASK_NOTE", "attention_map_chart", "expert_attention_chart", "gates_chart", "router_chart"]
