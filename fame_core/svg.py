"""The case study's heatmaps and gate bars as SVG text, written directly (no matplotlib).

The case-study page redraws five figures on every user switch. matplotlib spends about 0.15 s on
each (its text layout runs twice under a tight bounding box), 0.75 s a user; writing the SVG
here takes milliseconds. What a figure shows is not decided here: the heatmaps take a
`fame_core.export.Heatmap` (values, tick labels, titles and the anchored `ColourScale` of
fame_core.scales), the same description the exported figures are drawn from, in the same
colour map; the colour bar is at the declared limits with the uniform level marked, masked cells
are hatched grey, text stays <text>. The downloads (PDF, SVG, PNG) remain matplotlib's.

Sizes are in points (the viewBox is in points, the font is the exports' DejaVu Sans); label
widths are measured with the exports' own FreeType measure (`export.text_width`), so no label
is cut.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np

from .export import CMAP, FONT, MASK_COLOUR, Heatmap, text_width
from .inspection import Inspection

TICK, LABEL, TITLE = 7.0, 8.0, 9.0     # font sizes (pt), as export.STYLE
PAD, TICK_LEN, BAR_W, BAR_STEPS = 3.0, 2.0, 8.0, 64
MASK_GREY = "#%02x%02x%02x" % ((round(float(MASK_COLOUR) * 255),) * 3)


def _colours(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Hex colours of `values` under the exports' colour map, clipped to [vmin, vmax]."""
    from matplotlib import colormaps

    t = np.clip((np.asarray(values, dtype=float) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgb = np.round(colormaps[CMAP](t)[..., :3] * 255).astype(int)
    return np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.reshape(-1, 3)]).reshape(t.shape)


def _text(x: float, y: float, s: str, size: float, anchor: str = "start", rotate: bool = False,
          fill: str = "#000000", weight: str | None = None) -> str:
    rot = f' transform="rotate(-90 {x:.2f} {y:.2f})"' if rotate else ""
    bold = f' font-weight="{weight}"' if weight else ""
    return (f'<text x="{x:.2f}" y="{y:.2f}" font-size="{size:g}" text-anchor="{anchor}" fill="{fill}"{bold}{rot}>'
            f"{escape(s)}</text>")


def _document(width: float, height: float, body: list[str], alt: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.1f}pt" height="{height:.1f}pt" '
            f'viewBox="0 0 {width:.2f} {height:.2f}" font-family="{FONT}, sans-serif" role="img">'
            f"<title>{escape(alt)}</title>" + "".join(body) + "</svg>")


def heatmap(hm: Heatmap, cell: float = 11.5) -> str:
    """One heatmap with its colour bar (ticks vmin, vmax and the uniform level, which is also
    drawn as a dashed line across the bar)."""
    rows, cols = hm.values.shape
    # about 8 cm wide at most, but never cells narrower than a tick label's line (labels would overprint)
    cell = max(min(cell, 400.0 / max(cols, 1), 540.0 / max(rows, 1)), TICK * 1.15)
    sc = hm.scale
    ytick_w = max((text_width(s, TICK) for s in hm.ylabels), default=0.0)
    xtick_h = max((text_width(s, TICK) for s in hm.xlabels), default=0.0)
    gw, gh = cols * cell, rows * cell
    ylabel_col = PAD + LABEL * 1.5                                # the rotated y title has this column alone
    x0 = ylabel_col + ytick_w + TICK_LEN + 3
    x0 = max(x0, ylabel_col + text_width(hm.xlabel, LABEL) / 2 - gw / 2)    # the x title, centred, not cut
    y0 = PAD + TITLE * 1.35 + TICK * 1.9                          # title line, then the colour bar's title line
    ylabel_w = text_width(hm.ylabel, LABEL)
    ylabel_y = max(y0 + gh / 2, y0 + ylabel_w / 2)                # centred on the grid, never above it
    bar_x = x0 + gw + 8
    ticks = sorted({sc.vmin, sc.vmax, sc.uniform})
    tick_text = {t: f"{t:.3g}" + (f" = {sc.uniform_label}" if t == sc.uniform else "") for t in ticks}
    bar_h = max(gh, 40.0)
    right = bar_x + BAR_W + TICK_LEN + 2 + max(text_width(s, TICK) for s in tick_text.values())
    width = max(right, PAD + text_width(hm.title, TITLE), bar_x + text_width(hm.cbar, TICK),
                x0 + gw / 2 + text_width(hm.xlabel, LABEL) / 2) + PAD
    height = max(y0 + gh + TICK_LEN + 2 + xtick_h + LABEL * 1.6, y0 + bar_h + TICK, ylabel_y + ylabel_w / 2) + PAD
    out = []
    if hm.mask is not None:
        out.append('<defs><pattern id="masked" width="4" height="4" patternUnits="userSpaceOnUse" '
                   f'patternTransform="rotate(45)"><rect width="4" height="4" fill="{MASK_GREY}"/>'
                   '<line x1="0" y1="0" x2="0" y2="4" stroke="#8c8c8c" stroke-width="0.8"/></pattern></defs>')
    out.append(_text(PAD, PAD + TITLE, hm.title, TITLE))
    colours = _colours(hm.values, sc.vmin, sc.vmax)
    cells = []
    for i in range(rows):
        for j in range(cols):
            fill = "url(#masked)" if hm.mask is not None and hm.mask[i, j] else colours[i, j]
            cells.append(f'<rect x="{x0 + j * cell:.2f}" y="{y0 + i * cell:.2f}" width="{cell + 0.05:.2f}" '
                         f'height="{cell + 0.05:.2f}" fill="{fill}"/>')
    out.append('<g id="cells" shape-rendering="crispEdges">' + "".join(cells) + "</g>")
    out.append(f'<rect x="{x0:.2f}" y="{y0:.2f}" width="{gw:.2f}" height="{gh:.2f}" fill="none" stroke="#000000" '
               'stroke-width="0.6"/>')
    for i, s in enumerate(hm.ylabels):                           # y ticks, right-aligned left of the grid
        y = y0 + (i + 0.5) * cell
        out.append(f'<line x1="{x0 - TICK_LEN:.2f}" y1="{y:.2f}" x2="{x0:.2f}" y2="{y:.2f}" stroke="#000000" '
                   'stroke-width="0.6"/>')
        out.append(_text(x0 - TICK_LEN - 1.5, y + TICK * 0.35, s, TICK, "end"))
    yb = y0 + gh
    for j, s in enumerate(hm.xlabels):                           # x ticks, read bottom to top, as matplotlib's
        x = x0 + (j + 0.5) * cell
        out.append(f'<line x1="{x:.2f}" y1="{yb:.2f}" x2="{x:.2f}" y2="{yb + TICK_LEN:.2f}" stroke="#000000" '
                   'stroke-width="0.6"/>')
        out.append(_text(x + TICK * 0.35, yb + TICK_LEN + 1.5, s, TICK, "end", rotate=True))
    out.append(_text(x0 + gw / 2, yb + TICK_LEN + 2 + xtick_h + LABEL * 1.2, hm.xlabel, LABEL, "middle"))
    out.append(_text(PAD + LABEL * 0.8, ylabel_y, hm.ylabel, LABEL, "middle", rotate=True))
    # the colour bar: BAR_STEPS vector bands from vmin (bottom) to vmax (top)
    out.append(f'<g id="colourbar" shape-rendering="crispEdges">{_text(bar_x, y0 - TICK * 0.9, hm.cbar, TICK)}')
    step = bar_h / BAR_STEPS
    mids = sc.vmin + (np.arange(BAR_STEPS) + 0.5) / BAR_STEPS * (sc.vmax - sc.vmin)
    for n, c in enumerate(_colours(mids, sc.vmin, sc.vmax)):
        out.append(f'<rect x="{bar_x:.2f}" y="{y0 + bar_h - (n + 1) * step:.2f}" width="{BAR_W}" '
                   f'height="{step + 0.05:.2f}" fill="{c}"/>')
    out.append(f'<rect x="{bar_x:.2f}" y="{y0:.2f}" width="{BAR_W}" height="{bar_h:.2f}" fill="none" '
               'stroke="#000000" stroke-width="0.6"/>')
    at = {t: y0 + bar_h * (1 - (t - sc.vmin) / max(sc.vmax - sc.vmin, 1e-12)) for t in ticks}
    text_y = dict(at)
    gap = TICK * 1.15
    for t in ticks:    # the uniform level's label moves off a limit's label it would overprint (a leader shows where)
        if t != sc.uniform and sc.uniform in at and abs(text_y[sc.uniform] - at[t]) < gap:
            text_y[sc.uniform] = at[t] - gap if at[sc.uniform] <= at[t] else at[t] + gap
    for t in ticks:
        y = at[t]
        if t == sc.uniform:
            out.append(f'<line x1="{bar_x:.2f}" y1="{y:.2f}" x2="{bar_x + BAR_W:.2f}" y2="{y:.2f}" stroke="#ffffff" '
                       'stroke-width="1.2"/>')
            out.append(f'<line class="uniform" x1="{bar_x:.2f}" y1="{y:.2f}" x2="{bar_x + BAR_W:.2f}" y2="{y:.2f}" '
                       'stroke="#000000" stroke-width="0.5" stroke-dasharray="2 1"/>')
        out.append(f'<line x1="{bar_x + BAR_W:.2f}" y1="{y:.2f}" x2="{bar_x + BAR_W + TICK_LEN:.2f}" y2="{y:.2f}" '
                   'stroke="#000000" stroke-width="0.6"/>')
        lead = ""
        if text_y[t] != y:
            lead = (f'<line x1="{bar_x + BAR_W + TICK_LEN:.2f}" y1="{y:.2f}" x2="{bar_x + BAR_W + TICK_LEN + 1.2:.2f}" '
                    f'y2="{text_y[t]:.2f}" stroke="#000000" stroke-width="0.4"/>')
        out.append(f'<g class="colourbar-tick" data-value="{float(t)!r}" data-y="{y:.2f}">{lead}'
                   f"{_text(bar_x + BAR_W + TICK_LEN + 1.5, text_y[t] + TICK * 0.35, tick_text[t], TICK)}</g>")
    out.append("</g>")
    return _document(width, height, out, hm.title)


def gates(insp: Inspection) -> str:
    """The gate at the last position as bars on a fixed 0..1 axis, the uniform level 1/H dashed."""
    H = insp.n_heads
    slot, axis_h = 30.0, 80.0
    ytick_w = text_width("0.5", TICK)
    x0 = PAD + LABEL * 1.5 + ytick_w + TICK_LEN + 3
    y0 = PAD + TITLE * 1.35 + TICK * 1.2
    uniform_text = [f"1/{H}", "uniform"]
    width = max(x0 + H * slot + 3 + max(text_width(s, 6.0) for s in uniform_text),
                PAD + text_width("Gate at the last position", TITLE)) + PAD
    height = y0 + axis_h + TICK_LEN + 2 + TICK * 1.3 + PAD

    def y(v: float) -> float:
        return y0 + axis_h * (1 - v)

    out = [_text(PAD, PAD + TITLE, "Gate at the last position", TITLE)]
    for v in (0.0, 0.5, 1.0):
        out.append(f'<line x1="{x0 - TICK_LEN:.2f}" y1="{y(v):.2f}" x2="{x0:.2f}" y2="{y(v):.2f}" stroke="#000000" '
                   'stroke-width="0.6"/>')
        out.append(_text(x0 - TICK_LEN - 1.5, y(v) + TICK * 0.35, f"{v:g}", TICK, "end"))
    out.append(f'<line x1="{x0:.2f}" y1="{y0:.2f}" x2="{x0:.2f}" y2="{y(0):.2f}" stroke="#000000" stroke-width="0.6"/>')
    out.append(f'<line x1="{x0:.2f}" y1="{y(0):.2f}" x2="{x0 + H * slot:.2f}" y2="{y(0):.2f}" stroke="#000000" '
               'stroke-width="0.6"/>')
    out.append(_text(PAD + LABEL * 0.8, y0 + axis_h / 2, "gate g(h)", LABEL, "middle", rotate=True))
    bars = []
    u = y(1.0 / H)
    for h, g in enumerate(np.asarray(insp.gates, dtype=float)):
        cx = x0 + (h + 0.5) * slot
        bars.append(f'<rect class="gate" data-value="{float(g)!r}" x="{cx - 0.3 * slot:.2f}" y="{y(g):.2f}" '
                    f'width="{0.6 * slot:.2f}" height="{axis_h * g:.2f}" fill="#4c72b0"/>')
        base = y(g) - 2          # the value above its bar, lifted above the uniform line where that would cross it
        if base - TICK - 1 <= u <= base + 1:
            base = u - 2
        bars.append(_text(cx, base, f"{g:.2f}", TICK, "middle"))
        bars.append(_text(cx, y(0) + TICK_LEN + 1.5 + TICK, f"head {h}", TICK, "middle"))
    out.append("".join(bars))
    out.append(f'<line class="uniform" x1="{x0:.2f}" y1="{u:.2f}" x2="{x0 + H * slot:.2f}" y2="{u:.2f}" '
               'stroke="#4d4d4d" stroke-width="0.7" stroke-dasharray="3 2"/>')
    out.append(_text(x0 + H * slot + 3, u - 1, uniform_text[0], 6.0, fill="#4d4d4d"))
    out.append(_text(x0 + H * slot + 3, u + 6, uniform_text[1], 6.0, fill="#4d4d4d"))
    return _document(width, height, out, "Gate weight of each head")
