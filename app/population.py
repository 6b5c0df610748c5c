"""What the Cohort and Compare pages share: cached calls into fame_core.cohort / compare /
attribution, deep links to the case study, plotly charts with anchored axes and the uniform level
marked, and export buttons over fame_core.population_export. Presentation glue only.
"""

from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import session

FORMATS = (("pdf", "application/pdf"), ("svg", "image/svg+xml"), ("png", "image/png"), ("csv", "text/csv"))


cohort = session.cohort_table   # one cached table for this page and the case study's user table


@st.cache_data(show_spinner="Ranking every user under both checkpoints…", max_entries=8)
def compare(path_a: str, path_b: str, data_path: str | None, split: str, k: int, names: tuple):
    from fame_core.compare import compare as run

    model_a, data = session.open_checkpoint(path_a, data_path)
    model_b, _ = session.open_checkpoint(path_b, data_path)
    return run(model_a, model_b, data, split=split, k=k, names=names)


@st.cache_data(show_spinner="Integrated gradients and deletion curves…", max_entries=64)
def attribution(path: str, data_path: str | None, sequence: tuple, target: int, merge: str):
    from fame_core.attribution import aopc, attribute, deletion_curves

    model, _ = session.open_checkpoint(path, data_path)
    res = attribute(model, list(sequence), target, merge)
    curve = deletion_curves(model, res)
    return res, curve, aopc(curve)


def case_link(checkpoint: str, user) -> str:
    return "/?" + urlencode({"checkpoint": checkpoint, "user": user})


def with_links(users: pd.DataFrame, checkpoint: str, column: str = "case study") -> pd.DataFrame:
    out = users.copy()
    out.insert(0, column, [case_link(checkpoint, u) for u in out["user"]])
    return out


def link_config(column: str = "case study") -> dict:
    return {column: st.column_config.LinkColumn(column, display_text="open", help="the user's case study")}


def _layout(fig: go.Figure, title: str, y_title: str, height: int = 280) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10), yaxis_title=y_title,
                      legend=dict(orientation="h", y=-0.25), barmode="group")
    return fig


def _uniform_legend(fig: go.Figure, name: str) -> None:
    """The dashed uniform line named in the legend: a label on the line was clipped at the plot's
    edge or drawn over a bar (issue 42.4)."""
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, hoverinfo="skip",
                             line=dict(dash="dash", color="#555")))


def share_bars(x, series: dict, title: str, uniform: float | None, uniform_name: str, y_title: str = "share of users",
               customdata=None, y_max: float = 1.0) -> go.Figure:
    """Grouped bars on a [0, y_max] axis ([0, 1] for shares) with the uniform level as a dashed
    line named in the legend."""
    fig = go.Figure([go.Bar(x=x, y=y, name=name, customdata=customdata, hovertemplate="%{x}: %{y:.4f}<extra>" + name + "</extra>")
                     for name, y in series.items()])
    if uniform is not None:
        fig.add_hline(y=uniform, line_dash="dash", line_color="#555")
        _uniform_legend(fig, f"{uniform_name} = {uniform:.3f}")
    fig.update_yaxes(range=[0, y_max])
    return _layout(fig, title, y_title)


METRIC_AXIS = "0 to the largest value"    # short enough for a 280 px chart; the legend names HR and NDCG


def metric_bars(x, series: dict, title: str, customdata=None) -> go.Figure:
    """HR/NDCG bars on an axis anchored at 0 and sized to the data (largest value x 1.15): values of
    0.01-0.07 on a 0..1 axis were flat slivers. The axis title says so."""
    top = max((float(np.nanmax(np.asarray(y, dtype=float))) for y in series.values() if len(y)), default=0.0)
    return share_bars(x, series, title, None, "", y_title=METRIC_AXIS, customdata=customdata,
                      y_max=1.15 * top if top > 0 else 1.0)


def histogram(dist: pd.DataFrame, series: str, uniform: float | None, x_title: str) -> go.Figure:
    d = dist[dist["series"] == series]
    fig = go.Figure(go.Bar(x=(d["bin_lo"] + d["bin_hi"]) / 2, y=d["share"], width=d["bin_hi"] - d["bin_lo"],
                           customdata=d["users"], hovertemplate="%{x:.3f}: %{y:.3f} (%{customdata} users)<extra></extra>",
                           marker_color="#4c72b0", name="users", showlegend=False))
    if uniform is not None:
        fig.add_vline(x=uniform, line_dash="dash", line_color="#555")
        x_title += f"<br>dashed: 1/H = {uniform:.2f}"     # under the axis (a legend there overlapped it)
    fig.update_xaxes(range=[0, 1], title=x_title)
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, series, "share of users", 240)


def export_buttons(key: str, stem: str, build, label: str = "") -> None:
    """PDF/SVG/PNG/CSV download buttons; `build()` returns (matplotlib figure, table), called on click."""
    def render(fmt: str) -> bytes:
        from fame_core.export import figure_bytes

        fig, table = build()
        return table.to_csv(index=False).encode() if fmt == "csv" else figure_bytes(fig, fmt)

    st.caption(label or "Export")
    session.download_row(stem, render, formats=tuple(f for f, _ in FORMATS), key=key)


def score_name(merge: str, caps) -> str:
    """The score a merge mode names, in this model's terms: a model without a gate sums its heads."""
    if merge == "gated":
        return "gated score" if "gate" in caps else "full score (heads summed)"
    return f"{merge} score"


def attention_name(merge: str, caps) -> str:
    """What the attention bars are for this model and score (experts only where the model has them)."""
    experts = "experts weighted by the router" if "experts" in caps else ""
    if merge != "gated":
        return "attention of " + merge + (f" ({experts})" if experts else "")
    if "gate" in caps:
        return "attention (heads weighted by the gate" + (f", {experts})" if experts else ")")
    return "attention (mean over heads)"


def attribution_section(name: str, path: str, data_path: str | None, model, data, user, split: str, key: str) -> None:
    """Integrated gradients beside attention for one user, with deletion curves (one column)."""
    from fame_core import population_export as px

    seq, target = data.example(data.user_row(user), split)
    caps = model.capabilities      # only what this model has: no gate or experts offered for a SASRec
    scores = ["gated"] + ([f"head:{h}" for h in range(model.config.n_heads)] if "heads" in caps else [])
    merge = st.segmented_control("Score to explain", scores, default="gated", key=f"{key}_score",
                                 format_func=lambda m: score_name(m, caps)) or "gated"
    res, curve, area = attribution(path, data_path, tuple(int(v) for v in seq), int(target), merge)
    table = res.table(data.label)
    fig = go.Figure()
    fig.add_bar(x=table["position"], y=table["integrated_gradients"], name="integrated gradients",
                customdata=table["label"], hovertemplate="%{customdata}: %{y:.4f}<extra>IG</extra>", yaxis="y")
    fig.add_bar(x=table["position"], y=table["attention"], name=attention_name(merge, caps),
                customdata=table["label"], hovertemplate="%{customdata}: %{y:.4f}<extra>attention</extra>", yaxis="y2")
    m = float(np.abs(table["integrated_gradients"]).max()) or 1.0
    fig.update_layout(yaxis=dict(title="integrated gradients", range=[-1.1 * m, 1.1 * m]),
                      yaxis2=dict(title="attention", overlaying="y", side="right", range=[-1, 1]))
    st.plotly_chart(_layout(fig, f"{score_name(merge, caps)} of the target, per history position", "", 300),
                    key=f"{key}_attr")
    lines = go.Figure([go.Scatter(x=curve[curve["method"] == meth]["removed"], y=curve[curve["method"] == meth]["score"],
                                  mode="lines+markers", name=f"{meth} (AOPC {a:.3f})")
                       for meth, a in zip(area["method"], area["aopc_score"])])
    st.plotly_chart(_layout(lines, "Deletion curves: target score after removing k items", "target score", 260),
                    key=f"{key}_deletion")
    st.caption(f"Attention on the right axis (0 at the centre line, 1 at the top); integrated gradients on the left, "
               f"centred at 0 and scaled to this user's largest |IG| ({m:.3g}), so bar heights compare positions, "
               f"not users; completeness error "
               f"{res.delta:+.1e}. AOPC = mean drop of the score over the removals: larger = the order found what "
               "the score rests on. Random: mean of 5 orders.")
    export_buttons(f"{key}_attr_dl", f"fame_{name.replace('/', '_')}_user{user}_attribution_{merge.replace(':', '')}",
                   lambda: px.attribution_figure(res, data.label), "Attribution")
    export_buttons(f"{key}_del_dl", f"fame_{name.replace('/', '_')}_user{user}_deletion_{merge.replace(':', '')}",
                   lambda: px.deletion_figure(curve, area), "Deletion curves")
