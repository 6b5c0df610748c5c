"""Interactive plotly charts of an Inspection (hover shows item labels and exact values).

The paper-ready static versions of the same charts live in fame_core.export.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

HEIGHT_PER_ROW = 26


def _positions(sequence, label) -> list[str]:
    """Axis ticks: position and item id (the hover shows the full label)."""
    return [f"{i + 1}: {v}" for i, v in enumerate(sequence)]


def gates_chart(gates: np.ndarray) -> go.Figure:
    heads = [f"head {h}" for h in range(len(gates))]
    fig = go.Figure(go.Bar(x=heads, y=gates, text=[f"{g:.3f}" for g in gates], textposition="outside",
                           hovertemplate="%{x}: gate %{y:.4f}<extra></extra>", marker_color="#4c72b0"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Gate g at the last position",
                      yaxis=dict(range=[0, 1.1], title="gate"), showlegend=False)
    return fig


def heatmap(values: np.ndarray, x: list[str], y: list[str], hover_x: list[str], hover_y: list[str], title: str,
            colorbar: str) -> go.Figure:
    custom = np.empty(values.shape + (2,), dtype=object)
    custom[..., 0] = np.array(hover_y, dtype=object)[:, None]
    custom[..., 1] = np.array(hover_x, dtype=object)[None, :]
    fig = go.Figure(go.Heatmap(z=values, x=x, y=y, customdata=custom, colorscale="Viridis", zmin=0,
                               colorbar=dict(title=colorbar),
                               hovertemplate="%{customdata[0]} → %{customdata[1]}<br>%{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, height=max(300, HEIGHT_PER_ROW * len(y) + 160), margin=dict(l=10, r=10, t=40, b=10),
                      yaxis=dict(autorange="reversed"))
    return fig


def expert_attention_chart(insp, head: int, label) -> go.Figure:
    pos = _positions(insp.sequence, label)
    experts = [f"expert {n}" for n in range(insp.n_experts)]
    return heatmap(insp.attention[head, :, -1, :], pos, experts, [label(v) for v in insp.sequence], experts,
                   f"Head {head}: each expert's attention from the last position", "α")


def attention_map_chart(insp, head: int, expert: int, label) -> go.Figure:
    pos = _positions(insp.sequence, label)
    full = [label(v) for v in insp.sequence]
    return heatmap(insp.attention[head, expert], pos, pos, full, full,
                   f"Head {head}, expert {expert}: position i (row) attending to j (column)", "α")


def router_chart(insp, head: int, label) -> go.Figure:
    pos = _positions(insp.sequence, label)
    experts = [f"expert {n}" for n in range(insp.n_experts)]
    return heatmap(insp.router[head], experts, pos, experts, [label(v) for v in insp.sequence],
                   f"Head {head}: router weights β per position", "β")
