"""Paper-ready figures of an `Inspection`, drawn on the server with matplotlib (no browser).

Every builder returns `(figure, table)`: a matplotlib Figure in one publication style (fixed size
in inches, readable fonts, labelled axes, colour bars) and the numbers it shows as a DataFrame.
`save_figure` writes PDF and SVG (vector; PDF fonts embedded as TrueType, `pdf.fonttype` 42, SVG
text as outlines) and PNG at 300 dpi, plus the numbers as CSV and a sidecar JSON that says what
the figure shows (checkpoint, data set, user, head, expert, merge mode).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # no display, no browser: the figures are drawn on the server

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from .inspection import Inspection  # noqa: E402

STYLE = {
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path",
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
}
FORMATS = ("pdf", "svg", "png")
TARGET_COLOUR, SHARED_COLOUR, CMAP = "#d62728", "#1f77b4", "viridis"
Label = Callable[[int], str]


def default_label(item: int) -> str:
    return f"item {item}"


def short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _positions(insp: Inspection, label: Label) -> list[str]:
    return [f"{i + 1}: {short(label(v), 22)}" for i, v in enumerate(insp.sequence)]


def gates_figure(insp: Inspection) -> tuple[Figure, pd.DataFrame]:
    table = pd.DataFrame({"head": np.arange(insp.n_heads), "gate": insp.gates})
    with rc_context(STYLE):
        fig = Figure(figsize=(2.4, 1.8))
        ax = fig.add_subplot()
        ax.bar([f"head {h}" for h in table["head"]], table["gate"], color="#4c72b0")
        for h, g in enumerate(table["gate"]):
            ax.text(h, g, f"{g:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, max(1.0, float(table["gate"].max()) * 1.15))
        ax.set_ylabel("gate g(h)")
        ax.set_title("Gate at the last position")
    return fig, table


def _heatmap(fig: Figure, values: np.ndarray, xlabels, ylabels, xlabel: str, ylabel: str, title: str, cbar: str):
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap=CMAP, vmin=0.0, vmax=max(1e-9, float(values.max())), aspect="auto")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=60, ha="right")
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=cbar, fraction=0.046, pad=0.03)
    return ax


def expert_attention_figure(insp: Inspection, head: int, label: Label = default_label) -> tuple[Figure, pd.DataFrame]:
    """Experts x history positions: each expert's attention from the last position."""
    values = insp.attention[head, :, -1, :]                     # (N, L)
    cols = _positions(insp, label)
    table = pd.DataFrame(values, columns=cols, index=[f"expert {n}" for n in range(insp.n_experts)])
    with rc_context(STYLE):
        fig = Figure(figsize=(max(3.2, 0.28 * len(cols) + 1.6), 0.35 * insp.n_experts + 1.9))
        _heatmap(fig, values, cols, table.index, "history position (oldest first)", "expert",
                 f"Head {head}: expert attention from the last position", "attention α")
    return fig, table


def attention_map_figure(insp: Inspection, head: int, expert: int, label: Label = default_label) -> tuple[Figure, pd.DataFrame]:
    """Positions x positions: expert `expert` of head `head`, row i attending to column j <= i."""
    values = insp.attention[head, expert]
    cols = _positions(insp, label)
    table = pd.DataFrame(values, columns=cols, index=cols)
    with rc_context(STYLE):
        side = max(3.0, 0.26 * len(cols) + 1.8)
        fig = Figure(figsize=(side + 0.6, side))
        _heatmap(fig, values, cols, cols, "attended position j", "query position i",
                 f"Head {head}, expert {expert}: attention α_ij", "attention α")
    return fig, table


def router_figure(insp: Inspection, head: int, label: Label = default_label) -> tuple[Figure, pd.DataFrame]:
    """Positions x experts: router weights β of head `head`."""
    values = insp.router[head]                                   # (L, N)
    rows = _positions(insp, label)
    table = pd.DataFrame(values, index=rows, columns=[f"expert {n}" for n in range(insp.n_experts)])
    with rc_context(STYLE):
        fig = Figure(figsize=(0.45 * insp.n_experts + 3.2, max(2.2, 0.24 * len(rows) + 1.2)))
        _heatmap(fig, values, table.columns, rows, "expert", "position", f"Head {head}: router weights β", "router β")
    return fig, table


def lists_table(insp: Inspection, k: int, label: Label = default_label) -> pd.DataFrame:
    """Rank x list: the top-k of every head and of gated and concatenated merging."""
    modes = [f"head:{h}" for h in range(insp.n_heads)] + ["gated", "concat"]
    return pd.DataFrame({m: [int(v) for v in insp.top[m][:k]] for m in modes}, index=pd.RangeIndex(1, k + 1, name="rank"))


def case_study_figure(insp: Inspection, k: int = 10, label: Label = default_label, title: str = "") -> tuple[Figure, pd.DataFrame]:
    """The paper's Figure 7 layout: history, each head's top-k with its gate, then gated and
    concatenated lists; the target in red, items that several heads recommend in blue."""
    table = lists_table(insp, k, label)
    H = insp.n_heads
    head_items = [set(table[f"head:{h}"]) for h in range(H)]
    shared = {v for v in set().union(*head_items) if sum(v in s for s in head_items) > 1}
    columns = list(table.columns)
    headers = [f"Head {h}  (g = {insp.gates[h]:.2f})" for h in range(H)] + ["Gated merge", "Concatenated"]
    if insp.target_rank:
        headers = [f"{hd}\ntarget rank {insp.target_rank[m]}" for hd, m in zip(headers, columns)]
    with rc_context(STYLE):
        col_w, row_h = 1.95, 0.2
        fig = Figure(figsize=(col_w * len(columns) + 0.4, row_h * (k + 6) + 0.9))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_xlim(0, len(columns))
        ax.set_ylim(k + 6.5, 0)
        history = " → ".join(short(label(v), 18) for v in insp.sequence[-6:])
        more = f"({len(insp.sequence) - 6} earlier) … " if len(insp.sequence) > 6 else ""
        ax.text(0.05, 0.6, title or "Case study", fontsize=9, fontweight="bold")
        ax.text(0.05, 1.4, f"History: {more}{history}", fontsize=7)
        if insp.target is not None:
            ax.text(0.05, 2.2, f"Target: {label(insp.target)}", fontsize=7, color=TARGET_COLOUR)
        for c, (m, header) in enumerate(zip(columns, headers)):
            ax.text(c + 0.05, 3.6, header, fontsize=7.5, fontweight="bold", va="center")
            if c == H:
                ax.axvline(c - 0.02, ymin=0.02, ymax=0.75, color="0.6", lw=0.8)
            for r, v in enumerate(table[m], start=1):
                y = 4.1 + r
                text = f"{r:2d}. {short(label(v), 24)}"
                colour = TARGET_COLOUR if v == insp.target else (SHARED_COLOUR if v in shared and m.startswith("head") else "black")
                if v == insp.target:
                    ax.add_patch(FancyBboxPatch((c + 0.02, y - 0.42), 0.93, 0.8, boxstyle="round,pad=0.01",
                                                fc="#fde0dd", ec=TARGET_COLOUR, lw=0.6))
                ax.text(c + 0.05, y, text, fontsize=6.5, va="center", color=colour,
                        fontweight="bold" if v == insp.target else "normal")
    return fig, table


def embedding_maps_figure(coords: dict[str, np.ndarray], labels: np.ndarray, values: list[str], facet: str,
                          title: str = "") -> tuple[Figure, pd.DataFrame]:
    """Side-by-side 2-d maps (one per representation) of the items, coloured by a facet's value
    (grey: items without one). coords: name -> (n_items+1, 2), row = item id (row 0 unused)."""
    import matplotlib as mpl

    names = list(coords)
    items = np.arange(1, len(labels))
    cmap = mpl.colormaps["tab10" if len(values) <= 10 else "tab20"]
    with rc_context(STYLE):
        fig = Figure(figsize=(2.4 * len(names) + 1.4, 2.6))
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            xy = coords[name][items]
            lab = labels[items]
            ax.scatter(xy[lab < 0, 0], xy[lab < 0, 1], s=2, c="0.85", linewidths=0)
            for v in range(len(values)):
                sel = lab == v
                ax.scatter(xy[sel, 0], xy[sel, 1], s=3, color=cmap(v % cmap.N), linewidths=0, label=values[v])
            ax.set_title(name)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[-1].legend(title=facet, fontsize=6, title_fontsize=7, markerscale=3, frameon=False,
                        loc="center left", bbox_to_anchor=(1.0, 0.5))
        if title:
            fig.suptitle(title, fontsize=9)
    table = pd.DataFrame({"item": items, f"{facet}": [values[v] if v >= 0 else "" for v in labels[items]]})
    for name in names:
        table[f"{name} x"], table[f"{name} y"] = coords[name][items, 0], coords[name][items, 1]
    return fig, table


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    with rc_context(STYLE):
        fig.savefig(buf, format=fmt, dpi=300 if fmt == "png" else None, metadata=None)
    return buf.getvalue()


def save_figure(fig: Figure, table: pd.DataFrame, stem, meta: dict, formats=FORMATS) -> list[Path]:
    """Write stem.{pdf,svg,png}, stem.csv (the numbers) and stem.json (what it shows)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        path.write_bytes(figure_bytes(fig, fmt))
        written.append(path)
    table.to_csv(stem.with_suffix(".csv"))
    stem.with_suffix(".json").write_text(json.dumps(dict(meta, files=[p.name for p in written] + [stem.name + ".csv"]),
                                                    indent=2, default=str) + "\n")
    return written + [stem.with_suffix(".csv"), stem.with_suffix(".json")]


def export_all(insp: Inspection, out_dir, meta: dict, label: Label = default_label, k: int = 10,
               formats=FORMATS) -> list[Path]:
    """Every figure of one inspection: case study, gates, and per head the expert attention and
    router maps (and each expert's full attention map)."""
    out_dir = Path(out_dir)
    written = []
    fig, table = case_study_figure(insp, k, label, title=meta.get("title", ""))
    written += save_figure(fig, table, out_dir / "case_study", dict(meta, figure="case study", top_k=k), formats)
    fig, table = gates_figure(insp)
    written += save_figure(fig, table, out_dir / "gates", dict(meta, figure="gates"), formats)
    for h in range(insp.n_heads):
        fig, table = expert_attention_figure(insp, h, label)
        written += save_figure(fig, table, out_dir / f"attention_head{h}", dict(meta, figure="expert attention", head=h), formats)
        fig, table = router_figure(insp, h, label)
        written += save_figure(fig, table, out_dir / f"router_head{h}", dict(meta, figure="router", head=h), formats)
        for n in range(insp.n_experts):
            fig, table = attention_map_figure(insp, h, n, label)
            written += save_figure(fig, table, out_dir / f"attention_head{h}_expert{n}",
                                   dict(meta, figure="attention map", head=h, expert=n), formats)
    return written
