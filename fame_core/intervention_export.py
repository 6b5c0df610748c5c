"""The before/after figure of an intervention or a counterfactual history (issue 44), in the
style of `fame_core.export`: `(figure, table)`; write it with `export.save_figure` (PDF, SVG, PNG
+ CSV + sidecar JSON) with `save`, or one file with `figure_file`.

Two panels. Left: the target's rank under every merge (gated, concat, each head) before (open
circle) and after (filled), on a log axis anchored at 1 (top) .. the catalogue size, the top-k
boundary dashed. Right: the gate g(h) of every head before and after on a 0..1 axis with the
uniform gate 1/H dashed (a model without a gate: its fixed head weights, said in the title).
The figure is exactly the stated width (`WIDTHS`: single 3.3 in, double 7 in, or inches): PDF,
SVG and PNG are not cropped. The sidecar holds the numbers, the axes and what was changed.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from .export import STYLE, WIDTHS

BEFORE, AFTER = "#8c8c8c", "#c0392b"
UNIFORM = dict(color="0.35", ls="--", lw=0.8)


def before_after_figure(before: dict, after: dict, merges, n_items: int, k: int, what: str = "",
                        has_gate: bool = True, width: float | str = "single", font_size: float = 6.0,
                        title: str = "") -> tuple[Figure, pd.DataFrame]:
    """before/after: `fame_core.what_if.reading` dicts ({"rank": {merge: int} or None, "gates": [...]}).
    what: the intervention or the edits, for the title and sidecar. Returns (figure, table of
    every number drawn: quantity, before, after)."""
    w = WIDTHS[width] if isinstance(width, str) else float(width)
    merges = list(merges)
    H = len(before["gates"])
    rows = []
    for m in merges:
        b = before["rank"][m] if before["rank"] else None
        a = after["rank"][m] if after["rank"] else None
        rows.append({"quantity": f"target rank ({m})", "before": b, "after": a})
    for h in range(H):
        rows.append({"quantity": f"gate g({h})", "before": float(before["gates"][h]), "after": float(after["gates"][h])})
    table = pd.DataFrame(rows, dtype=object).set_index("quantity")   # ranks stay whole numbers
    style = dict(STYLE, **{"font.size": font_size, "axes.titlesize": font_size + 1, "axes.labelsize": font_size,
                           "xtick.labelsize": font_size, "ytick.labelsize": font_size})
    height = max(1.6, 0.22 * max(len(merges), H) + 1.0)
    with rc_context(style):
        fig = Figure(figsize=(w, height))
        a1, a2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        y = np.arange(len(merges))[::-1]
        if before["rank"]:
            for yi, m in zip(y, merges):
                b, a = before["rank"][m], after["rank"][m]
                if b is not None and a is not None:
                    a1.plot([b, a], [yi, yi], color="0.7", lw=0.8, zorder=1)
                if b is not None:
                    a1.scatter([b], [yi], s=14, facecolors="white", edgecolors=BEFORE, zorder=2,
                               label="before" if yi == y[0] else None)
                if a is not None:
                    a1.scatter([a], [yi], s=14, color=AFTER, zorder=3, label="after" if yi == y[0] else None)
            a1.axvline(k, **UNIFORM, label=f"top {k}")
            a1.legend(frameon=False, fontsize=font_size - 1, loc="lower right")
        else:
            a1.text(0.5, 0.5, "no target", transform=a1.transAxes, ha="center", va="center")
        a1.set_xscale("log")
        a1.set_xlim(0.8, max(n_items, k) * 1.25)
        a1.invert_xaxis()                            # better (rank 1) to the right
        a1.set_yticks(y, merges)
        a1.set_ylim(-0.6, len(merges) - 0.4)
        a1.set_xlabel(f"target rank (log, 1..{n_items:,}; right = better)")
        a1.set_title("Target rank")
        x = np.arange(H)
        a2.bar(x - 0.2, before["gates"], 0.4, color=BEFORE, label="before")
        a2.bar(x + 0.2, after["gates"], 0.4, color=AFTER, label="after")
        a2.axhline(1.0 / H, **UNIFORM, label=f"uniform 1/H = {1 / H:.2f}")
        a2.set_ylim(0, 1)
        a2.set_xticks(x, [f"head {h}" for h in x])
        a2.set_ylabel("gate g(h)" if has_gate else "head weight")
        a2.set_title("Gate" if has_gate else "Head weights (no gate: fixed)")
        a2.legend(frameon=False, fontsize=font_size - 1, loc="upper right")
        fig.suptitle(title or (f"What if: {what}" if what else "What if"), fontsize=font_size + 1)
        fig.tight_layout(pad=0.3)
    fig.fame_exact_size = True          # drawn at the stated width; figure_bytes does not crop it
    fig.fame_sidecar = {"figure": "what-if before/after", "what": what, "width_in": w, "height_in": height,
                        "rank_axis": {"scale": "log", "range": [1, int(n_items)], "better": "right", "top_k": int(k)},
                        "gate_axis": [0.0, 1.0], "uniform_gate": 1.0 / H, "has_gate": bool(has_gate),
                        "merges": merges, "before": {"rank": before["rank"], "gates": list(map(float, before["gates"]))},
                        "after": {"rank": after["rank"], "gates": list(map(float, after["gates"]))}}
    return fig, table


def figure_file(fig: Figure, table: pd.DataFrame, fmt: str, meta: dict) -> bytes:
    """One file of the figure: pdf/svg/png, its numbers (csv) or its sidecar (json)."""
    import json

    from .export import sidecar

    if fmt == "csv":
        return table.to_csv().encode()
    if fmt == "json":
        return (json.dumps(sidecar(fig, meta), indent=2, default=str) + "\n").encode()
    return figure_bytes(fig, fmt)


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """pdf/svg/png at exactly the figure's size. (savefig's bbox_inches=None means the style's
    "savefig.bbox", which is "tight": the crop is switched off here, so the width is the stated one.)"""
    from .export import FORMATS, NO_DATE

    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    with rc_context(dict(STYLE, **{"savefig.bbox": "standard"})):
        fig.savefig(buf, format=fmt, dpi=300 if fmt == "png" else None, metadata=NO_DATE[fmt])
    return buf.getvalue()


def save(fig: Figure, table: pd.DataFrame, stem, meta: dict) -> list[Path]:
    """Write stem.{pdf,svg,png}, stem.csv and stem.json (as `export.save_figure`, at the exact width)."""
    from .export import FORMATS

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS + ("csv", "json"):
        path = stem.with_suffix(f".{fmt}")
        path.write_bytes(figure_file(fig, table, fmt, dict(meta, files=[f"{stem.name}.{f}" for f in FORMATS + ("csv",)])))
        written.append(path)
    return written


__all__ = ["before_after_figure", "figure_bytes", "figure_file", "save"]
