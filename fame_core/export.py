"""Paper-ready figures of an `Inspection`, drawn on the server with matplotlib (no browser).

Every builder returns `(figure, table)`: a matplotlib Figure in one publication style and the
numbers it shows as a DataFrame (full item labels in its index and columns). `save_figure` writes
PDF and SVG (vector and editable: every heatmap cell a vector rectangle, PDF fonts embedded as
TrueType (`pdf.fonttype` 42), SVG text kept as <text> (`svg.fonttype` 'none')) and PNG at 300
dpi, plus the numbers as CSV and a sidecar JSON that says what the figure shows (checkpoint,
data set, user, head, expert, colour scale, masked cells, label rule, the full labels).

Colour scales come from `fame_core.scales` (the app uses the same): anchored at 0, 0..1 by
default, the uniform level marked on the colour bar. The case study (the paper's Figure 7) has
width presets (`WIDTHS`: single column 3.3 in, double column 7 in; the PDF/SVG page is that wide,
exactly), a font size, and a label rule (`LABEL_RULES`: ids / short / full; short is a title, else
the item id, and the id where it would not fit its cell in CELL_LINES lines; full labels wrap,
nothing is cut). No two texts overlap and none leaves the page (tests/test_export.py measures it).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # no display, no browser: the figures are drawn on the server

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties, findfont, get_font  # noqa: E402
from matplotlib.ft2font import LoadFlags  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from .catalogue import FigureSpec, figure_catalogue  # noqa: E402
from .inspection import Inspection  # noqa: E402
from .lists import (HEAD_NUMBERING, LABEL_RULES, LIST_NAMES, SHARED_MARK, TARGET_MARK, TOP_K,  # noqa: E402
                    head_name, item_text, list_modes, lists_table, rank_change, shared_items, target_in_history,
                    target_ranks)
from .scales import DEFAULT_SCALE, MASK_NOTE, SCALES, ColourScale, attention_scale, causal_mask, router_scale  # noqa: E402

FONT = "DejaVu Sans"
STYLE = {
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
    "font.family": FONT, "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.bbox": "tight", "savefig.pad_inches": 0.02, "hatch.linewidth": 0.4,
    "svg.hashsalt": "fame",    # fixed ids: the same figure gives the same bytes (diffable, testable)
    "text.hinting": "no_hinting",   # the PNG's text set as the PDF's and SVG's: one layout, measured once (text_width)
}
NO_DATE = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": None}  # no timestamp in the file
FORMATS = ("pdf", "svg", "png")
TARGET_COLOUR, SHARED_COLOUR, CMAP, MASK_COLOUR = "#c0392b", "#1f4e9c", "viridis", "0.85"
WIDTHS = {"single": 3.3, "double": 7.0}   # inches: one and two columns of a two-column paper
MAX_VECTOR_CELLS = 20_000                  # beyond this many cells a heatmap is rasterised (and says so)
CELL_LINES = 2                             # lines a 'short' label may take in a case-study cell (else its id)
NBSP = "\u00a0"                            # joins what a line must not break (a position and its item)
Label = Callable[[int], str]


def default_label(item: int) -> str:
    return f"item {item}"


# ---- item texts ------------------------------------------------------------------------------------

@lru_cache(maxsize=65536)
def text_width(text: str, size: float, weight: str = "normal") -> float:
    """Width in points of `text` set in the figures' font at `size` points and `weight` (normal,
    bold), with 2 % to spare: FreeType's unhinted layout at 720 dpi, as PDF and SVG set it (and
    the PNG, drawn without hinting: STYLE). Hinted at 72 dpi, as it was, widths came out up to
    15 % short at some sizes and labels ran into their neighbours (issue 42)."""
    if not text:
        return 0.0
    font = get_font(findfont(FontProperties(family=FONT, weight=weight)))
    font.set_size(size, 720)
    font.set_text(text, 0.0, flags=LoadFlags.NO_HINTING)
    return font.get_width_height()[0] / 64 / 10 * 1.02


def wrap(text: str, width_pt: float, size: float, weight: str = "normal") -> list[str]:
    """Greedy line breaks at spaces, then at '|', then anywhere: every character is kept
    ("".join of the lines, spaces aside, is the text). A no-break space (U+00A0) joins what
    must stay on one line (a position and its item)."""
    def text_width(t, s):
        return _text_width(t, s, weight)

    def pieces(word: str) -> list[str]:
        if text_width(word, size) <= width_pt:
            return [word]
        parts, cur = [], ""
        for token in word.replace("|", "|\x00").split("\x00"):
            if text_width(cur + token, size) <= width_pt or not cur:
                cur += token
            else:
                parts.append(cur)
                cur = token
        out = []
        for p in parts + [cur]:
            while text_width(p, size) > width_pt and len(p) > 1:   # a token too long even alone
                n = len(p) - 1
                while n > 1 and text_width(p[:n], size) > width_pt:
                    n -= 1
                out.append(p[:n])
                p = p[n:]
            out.append(p)
        return out

    lines, cur = [], ""
    for word in text.split(" "):
        for piece in pieces(word):
            trial = f"{cur} {piece}" if cur else piece
            if text_width(trial, size) <= width_pt:
                cur = trial
            else:
                if cur:
                    lines.append(cur)
                cur = piece
    return lines + ([cur] if cur else [])


_text_width = text_width


def _glued(text: str) -> str:
    """"item 4144 · …" with "item" and its id joined by a no-break space: never split over lines."""
    return text.replace("item ", "item" + NBSP, 1) if text.startswith("item ") else text


def _positions(insp: Inspection, label: Label) -> pd.DataFrame:
    return pd.DataFrame({"position": np.arange(1, len(insp.sequence) + 1), "item": insp.sequence.astype(int),
                         "label": [label(int(v)) for v in insp.sequence]})


def _ticks(insp: Inspection, label: Label, rule: str = "ids") -> list[str]:
    """Compact axis ticks: position and item id (or a short label); full labels go to CSV/sidecar."""
    if rule == "ids":
        return [f"{i + 1} · {int(v)}" for i, v in enumerate(insp.sequence)]
    return [f"{i + 1} · {item_text(v, label, 'short' if rule == 'full' else rule)}" for i, v in enumerate(insp.sequence)]


def _full_names(insp: Inspection, label: Label) -> list[str]:
    return [f"{i + 1}: {label(int(v))}" for i, v in enumerate(insp.sequence)]


# ---- heatmaps ----------------------------------------------------------------------------------------

def _heatmap(fig: Figure, values: np.ndarray, xlabels, ylabels, xlabel: str, ylabel: str, title: str, cbar: str,
             scale: ColourScale, mask: np.ndarray | None = None) -> dict:
    """Cells as vector rectangles (pcolormesh), the colour bar at the declared limits with the
    uniform level marked, masked cells hatched grey. Returns what the sidecar should say."""
    ax = fig.add_subplot()
    rows, cols = values.shape
    data = np.ma.masked_array(values, mask=mask) if mask is not None else values
    raster = values.size > MAX_VECTOR_CELLS
    if mask is not None:
        ax.add_patch(Rectangle((-0.5, -0.5), cols, rows, facecolor=MASK_COLOUR, edgecolor="0.55", hatch="////",
                               linewidth=0, zorder=0))
    mesh = ax.pcolormesh(np.arange(cols + 1) - 0.5, np.arange(rows + 1) - 0.5, data, cmap=CMAP,
                         vmin=scale.vmin, vmax=scale.vmax, rasterized=raster, zorder=1, linewidth=0)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xticks(range(cols), xlabels, rotation=90)
    ax.set_yticks(range(rows), ylabels)
    ax.tick_params(length=2, pad=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    cb = fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02, aspect=25)
    cb.solids.set_edgecolor("face")     # no white seams between the bar's segments in a PDF viewer at 150 dpi
    cb.ax.set_title(cbar, fontsize=7, loc="left")
    cb.solids.set_rasterized(False)   # matplotlib rasterises bars of 50+ colours; keep them vector
    cb.ax.set_gid("colourbar")
    ticks = sorted({scale.vmin, scale.vmax, scale.uniform})
    cb.set_ticks(ticks, labels=[f"{t:.3g}" + (f" = {scale.uniform_label}" if t == scale.uniform else "") for t in ticks])
    cb.ax.axhline(scale.uniform, color="white", linewidth=1.2)
    cb.ax.axhline(scale.uniform, color="black", linewidth=0.5, linestyle=(0, (2, 1)))
    if mask is not None:
        ax.legend(handles=[Patch(facecolor=MASK_COLOUR, edgecolor="0.55", hatch="////", label="masked (causal: j > i)")],
                  loc="lower left", bbox_to_anchor=(0.0, 1.06), fontsize=6, frameon=False, borderaxespad=0)
    return {"colour_scale": scale.to_dict(), "tick_labels": "position · item id (full labels: 'positions' and the CSV)", "cells": "raster (more than %d cells)" % MAX_VECTOR_CELLS if raster
            else "vector rectangles", "masked": MASK_NOTE if mask is not None else None}


def _draw(fig: Figure, hm: Heatmap) -> dict:
    return _heatmap(fig, hm.values, hm.xlabels, hm.ylabels, hm.xlabel, hm.ylabel, hm.title, hm.cbar, hm.scale, hm.mask)


def _heat_size(rows: int, cols: int, tick_chars: tuple[int, int], font: float) -> tuple[float, float, float]:
    """(width, height, cell) in inches: cells of 0.16 in (smaller past 7 in), room for ticks."""
    char = 0.6 * font / 72
    cell = min(0.16, 5.6 / max(cols, 1), 7.5 / max(rows, 1))
    width = cols * cell + tick_chars[1] * char + 1.6
    height = rows * cell + tick_chars[0] * char + 0.9
    return width, height, cell


@dataclass(frozen=True)
class Heatmap:
    """What one heatmap shows, whoever draws it (matplotlib here, fame_core.svg on the page)."""

    values: np.ndarray            # (rows, cols)
    xlabels: list[str]
    ylabels: list[str]
    xlabel: str
    ylabel: str
    title: str
    cbar: str
    scale: ColourScale
    mask: np.ndarray | None = None


def expert_attention_heatmap(insp: Inspection, head: int, label: Label = default_label, scale: str = DEFAULT_SCALE,
                             labels: str = "ids") -> Heatmap:
    """Experts x history positions: each expert's attention from the last position."""
    return Heatmap(insp.attention[head, :, -1, :], _ticks(insp, label, labels),
                   [f"expert {n}" for n in range(insp.n_experts)], "history position · item (oldest first)", "expert",
                   f"{head_name(head)}: expert attention from the last position", "attention α",
                   attention_scale(insp, head, None, scale))


def router_heatmap(insp: Inspection, head: int, label: Label = default_label, scale: str = DEFAULT_SCALE,
                   labels: str = "ids") -> Heatmap:
    """Positions x experts: router weights β of head `head`."""
    return Heatmap(insp.router[head], [f"expert {n}" for n in range(insp.n_experts)], _ticks(insp, label, labels),
                   "expert", "position · item", f"{head_name(head)}: router weights β", "router β",
                   router_scale(insp, head, scale))


def expert_attention_figure(insp: Inspection, head: int, label: Label = default_label, scale: str = DEFAULT_SCALE,
                            labels: str = "ids") -> tuple[Figure, pd.DataFrame]:
    """Experts x history positions: each expert's attention from the last position."""
    hm = expert_attention_heatmap(insp, head, label, scale, labels)
    table = pd.DataFrame(hm.values, columns=_full_names(insp, label), index=hm.ylabels)
    with rc_context(STYLE):
        w, h, _ = _heat_size(insp.n_experts, len(hm.xlabels), (max(map(len, hm.xlabels)), 8), 7)
        fig = Figure(figsize=(w + 0.9, h))
        fig.fame_sidecar = {"positions": _positions(insp, label).to_dict("records")}
        fig.fame_sidecar |= _draw(fig, hm)
    return fig, table


def attention_map_figure(insp: Inspection, head: int, expert: int, label: Label = default_label,
                         scale: str = DEFAULT_SCALE, labels: str = "ids") -> tuple[Figure, pd.DataFrame]:
    """Positions x positions: expert `expert` of head `head`, row i attending to column j <= i;
    the causally masked upper triangle is hatched grey (and empty in the table)."""
    L = len(insp.sequence)
    mask = causal_mask(L)
    values = insp.attention[head, expert]
    ticks = _ticks(insp, label, labels)
    names = _full_names(insp, label)
    table = pd.DataFrame(np.where(mask, np.nan, values), columns=names, index=names)
    cs = attention_scale(insp, head, expert, scale)
    with rc_context(STYLE):
        chars = max(map(len, ticks))
        w, h, _ = _heat_size(L, L, (chars, chars), 7)
        fig = Figure(figsize=(w + 0.9, h + 0.2))
        fig.fame_sidecar = {"positions": _positions(insp, label).to_dict("records")}
        fig.fame_sidecar |= _heatmap(fig, values, ticks, ticks, "attended position j · item", "query position i · item",
                                    f"{head_name(head)}, expert {expert}: attention α_ij", "attention α", cs,
                                    mask=mask)
    return fig, table


def router_figure(insp: Inspection, head: int, label: Label = default_label, scale: str = DEFAULT_SCALE,
                  labels: str = "ids") -> tuple[Figure, pd.DataFrame]:
    """Positions x experts: router weights β of head `head`."""
    hm = router_heatmap(insp, head, label, scale, labels)
    table = pd.DataFrame(hm.values, index=_full_names(insp, label), columns=hm.xlabels)
    with rc_context(STYLE):
        w, h, _ = _heat_size(len(hm.ylabels), insp.n_experts, (8, max(map(len, hm.ylabels))), 7)
        fig = Figure(figsize=(w + 1.0, h))
        fig.fame_sidecar = {"positions": _positions(insp, label).to_dict("records")}
        fig.fame_sidecar |= _draw(fig, hm)
    return fig, table


def gates_figure(insp: Inspection) -> tuple[Figure, pd.DataFrame]:
    """The gate at the last position on a 0..1 axis, the uniform level 1/H dashed."""
    table = pd.DataFrame({"head": np.arange(insp.n_heads), "gate": insp.gates})
    uniform = 1.0 / insp.n_heads
    with rc_context(STYLE):
        fig = Figure(figsize=(0.45 * insp.n_heads + 1.5, 1.8))
        ax = fig.add_subplot()
        ax.bar([f"head {h}" for h in table["head"]], table["gate"], color="#4c72b0", width=0.6)
        for h, g in enumerate(table["gate"]):
            ax.text(h, g + 0.02, f"{g:.2f}", ha="center", va="bottom", fontsize=7)
        ax.axhline(uniform, color="0.3", linewidth=0.7, linestyle=(0, (3, 2)))
        ax.text(insp.n_heads - 0.5, uniform, f" 1/{insp.n_heads}\n uniform", va="center", ha="left", fontsize=6, color="0.3")
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("gate g(h)")
        ax.set_title("Gate at the last position")
        fig.fame_sidecar = {"y_axis": [0.0, 1.0], "uniform": uniform}
    return fig, table


# ---- the case study (Figure 7) -------------------------------------------------------------------------

def case_study_figure(insp: Inspection, k: int = TOP_K, label: Label = default_label, title: str = "",
                      width: float | str = "double", font_size: float | None = None, labels: str = "short",
                      history_max: int | None = None) -> tuple[Figure, pd.DataFrame]:
    """The paper's Figure 7: the history (all of it, wrapped; or elided in the middle with a count
    past `history_max`), then, aligned rank by rank, each head's top-k with its gate, the gated
    and concatenated lists and the places each gated item gains over concatenation. The target is
    marked in every list with its rank (also when below the top-k), items in several heads'
    lists are marked, and nothing is cut shorter than the label rule says."""
    W = WIDTHS.get(width, width) if isinstance(width, str) else float(width)
    if isinstance(W, str) or not 2.0 <= W <= 12.0:
        raise ValueError(f"width {width!r}: use 'single' (3.3 in), 'double' (7 in) or inches between 2 and 12")
    fs = float(font_size) if font_size is not None else (6.0 if W < 5 else 7.0)
    if not 4.0 <= fs <= 14.0:
        raise ValueError(f"font size {font_size}: use 4 to 14 points")
    item_text(1, label, labels)   # validates the rule
    table = lists_table(insp, k)
    modes = list_modes(insp)
    H = insp.n_heads
    shared = shared_items(insp, k)
    delta = rank_change(insp, k)
    ranks = target_ranks(insp)
    in_history = target_in_history(insp)
    target = insp.target
    line = fs * 1.32 / 72                           # inches per text line
    pad = 0.04
    gap = 0.05                                      # inches between a column's text and the next column
    full_w_pt = (W - 2 * pad) * 72
    rank_w = text_width(f"{k}.", fs) / 72 + 0.06
    delta_w = max(text_width(t, fs - 0.5) for t in (f"+{k}", f"-{k}", "new")) / 72 + gap
    delta_w = max(delta_w, text_width("Δ", fs, "bold") / 72 + gap)
    col_w = (W - 2 * pad - rank_w - delta_w) / len(modes)
    mark_w = max(text_width(m + " ", fs) for m in (SHARED_MARK, TARGET_MARK)) / 72
    text_w_pt = (col_w - mark_w - gap) * 72        # every column's text ends `gap` before the next column
    fallback: list[int] = []                        # items whose short label does not fit their cell: ids

    def cell(v: int, weight: str) -> list[str]:
        """An item's lines in a list cell: the rule's text, wrapped; under 'short' a text that
        would need more than CELL_LINES lines or a break inside a word is the item id instead."""
        text = item_text(v, label, labels)
        lines = wrap(text, text_w_pt, fs, weight)
        if labels == "short" and (len(lines) > CELL_LINES or " ".join(lines) != text):
            fallback.append(v)
            lines = wrap(item_text(v, label, "ids"), text_w_pt, fs, weight)
        return lines

    # what to draw, top to bottom, each (y, x, text, style)
    items: list = []
    title_size = fs + 1.5
    title_line = title_size * 1.32 / 72
    y = pad + title_line * 0.5
    for text in wrap(title or "Case study", full_w_pt, title_size, "bold"):
        items.append((y, pad, text, dict(fontsize=title_size, fontweight="bold")))
        y += title_line
    y += line * 0.3
    seq = [int(v) for v in insp.sequence]
    shown = list(enumerate(seq, start=1))
    if history_max is not None and len(shown) > history_max:
        half = max(history_max // 2, 1)
        shown = shown[:half] + [(None, len(shown) - 2 * half)] + shown[-half:]
    tokens = [f"… {v} more …" if pos is None else f"{pos}{NBSP}{_glued(item_text(v, label, labels))}"
              for pos, v in shown]
    hist_lines = wrap(f"History ({len(seq)} items, oldest first): " + " → ".join(tokens), full_w_pt, fs)
    for text in hist_lines:
        items.append((y, pad, text, dict(fontsize=fs)))
        y += line
    if insp.dropped:
        for text in wrap(f"({insp.dropped} older items beyond the model's max_len are not used.)", full_w_pt, fs - 0.5):
            items.append((y, pad, text, dict(fontsize=fs - 0.5, color="0.35")))
            y += line
    if target is not None:
        if in_history:
            summary = "already in the history: excluded from every list, so it has no rank"
        else:
            g, c = ranks["gated"], ranks["concat"]
            move = f"gated ranks it {c - g} places higher" if g < c else (
                f"gated ranks it {g - c} places lower" if g > c else "same rank")
            summary = f"rank {g} gated vs {c} concatenated ({move})"
        for text in wrap(f"{TARGET_MARK} Target: {_glued(item_text(target, label, labels))}; {summary}", full_w_pt, fs):
            items.append((y, pad, text, dict(fontsize=fs, color=TARGET_COLOUR)))
            y += line
    y += line * 0.5

    # column headers: the longest name that fits the column (HEAD_NAMES / LIST_NAMES), else wrapped
    x0 = [pad + rank_w + c * col_w + (delta_w if c > H else 0) for c in range(len(modes))]
    choices = [[head_name(h)] for h in range(H)] + [list(LIST_NAMES["gated"]), list(LIST_NAMES["concat"])]
    subs = [[f"gate {insp.gates[h]:.2f}", f"{insp.gates[h]:.2f}"] for h in range(H)] + [[], []]

    def fitted(options: list[str], weight: str) -> list[str]:
        for text in options:
            if text_width(text, fs, weight) <= text_w_pt:
                return [text]
        return wrap(options[-1], text_w_pt, fs, weight)

    header_top = y
    header_lines = 1
    for c, m in enumerate(modes):
        lines = fitted(choices[c], "bold")
        bold = len(lines)
        lines += fitted(subs[c], "normal") if subs[c] else []
        for j, text in enumerate(lines):
            items.append((y + j * line, x0[c] + mark_w, text, dict(fontsize=fs, fontweight="bold" if j < bold else "normal")))
        header_lines = max(header_lines, len(lines))
    items.append((y, x0[H] + col_w, "Δ", dict(fontsize=fs, fontweight="bold", ha="left")))
    y += max(header_lines, 2 if H else 1) * line + line * 0.3
    rule_y = y - line * 0.45
    boxes = []
    drawn_texts: dict[str, list[str]] = {m: [] for m in modes}
    for r in range(1, k + 1):
        wrapped = []
        for m in modes:
            v = int(table.at[r, m])
            wrapped.append(cell(v, "bold" if target is not None and v == target else "normal"))
        n_lines = max(len(w) for w in wrapped)
        items.append((y, pad, f"{r}.", dict(fontsize=fs, color="0.35")))
        for c, m in enumerate(modes):
            v = int(table.at[r, m])
            is_target = target is not None and v == target
            colour = TARGET_COLOUR if is_target else "black"
            if is_target:
                boxes.append((x0[c] - 0.015, y - line * 0.6, col_w - 0.01, n_lines * line + line * 0.1))
                items.append((y, x0[c], TARGET_MARK, dict(fontsize=fs, color=TARGET_COLOUR)))
            elif v in shared:
                items.append((y, x0[c], SHARED_MARK, dict(fontsize=fs, color=SHARED_COLOUR)))
            for j, text in enumerate(wrapped[c]):
                items.append((y + j * line, x0[c] + mark_w, text, dict(fontsize=fs, color=colour,
                                                                        fontweight="bold" if is_target else "normal")))
            drawn_texts[m].append(" ".join(wrapped[c]))
            if m == "gated":
                d = delta[v]
                items.append((y, x0[c] + col_w, "new" if d is None else ("·" if d == 0 else f"{d:+d}"),
                              dict(fontsize=fs - 0.5, color="0.35", ha="left")))
        y += n_lines * line + line * 0.15
    if target is not None and not in_history and any(ranks[m] > k for m in modes):
        y += line * 0.1
        items.append((y, pad, "…", dict(fontsize=fs, color="0.35")))
        n_lines = 1
        for c, m in enumerate(modes):
            if ranks[m] > k:
                for j, text in enumerate(wrap(f"{TARGET_MARK} target at rank {ranks[m]}", (col_w - gap) * 72, fs)):
                    items.append((y + j * line, x0[c], text, dict(fontsize=fs, color=TARGET_COLOUR)))
                    n_lines = max(n_lines, j + 1)
        y += n_lines * line + line * 0.15
    elif target is not None and in_history:
        for text in wrap(f"{TARGET_MARK} target: in the history, not ranked", (W - pad - x0[0]) * 72, fs):
            items.append((y, x0[0], text, dict(fontsize=fs, color=TARGET_COLOUR)))
            y += line
        y += line * 0.15
    bottom = y - line * 0.5
    y += line * 0.4
    legend = (f"{TARGET_MARK} target   {SHARED_MARK} in more than one head's top {k}   Δ: places the gated list "
              "ranks an item above concatenation (new: not in its top {k}; · same)").replace("{k}", str(k))
    if target is not None and not in_history:
        legend += ". History items are excluded from every list."
    legend_lines = wrap(legend, (W - 2 * pad) * 72, fs - 0.5)
    for text in legend_lines:
        items.append((y, pad, text, dict(fontsize=fs - 0.5, color="0.3")))
        y += line
    height = y + pad - line * 0.4

    with rc_context(STYLE):
        fig = Figure(figsize=(W, height))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_xlim(0, W)
        ax.set_ylim(height, 0)
        for bx, by, bw, bh in boxes:
            ax.add_patch(Rectangle((bx, by), bw, bh, facecolor="#fbe3e0", edgecolor=TARGET_COLOUR, linewidth=0.5))
        for yy, xx, text, style in items:
            style = dict(style)
            ax.text(xx, yy, text, va="center", ha=style.pop("ha", "left"), parse_math=False, **style)
        x_div = x0[H] - 0.04
        ax.plot([x_div, x_div], [header_top - line * 0.5, bottom], color="0.6", linewidth=0.6)
        ax.plot([pad, W - pad], [rule_y, rule_y], color="0.6", linewidth=0.5)
    fig.fame_exact_size = True
    fig.fame_sidecar = {"width_in": W, "height_in": round(height, 3), "font_size": fs, "label_rule": labels,
                        "top_k": k, "shared_items": sorted(shared), "target_ranks": ranks,
                        "target_in_history": in_history,
                        "gated_vs_concat": {str(v): d for v, d in delta.items()},
                        "history": [{"position": i + 1, "item": v, "label": label(v)} for i, v in enumerate(seq)],
                        "drawn_labels": drawn_texts,
                        "ids_for_long_labels": sorted(set(fallback)),   # 'short' texts too long for a cell
                        "full_labels": {str(v): label(v) for v in sorted(set(table.to_numpy().ravel().tolist()))}}
    return fig, table


# ---- embedding maps ---------------------------------------------------------------------------------------

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
            ax.scatter(xy[lab < 0, 0], xy[lab < 0, 1], s=2, c="0.85", linewidths=0, rasterized=len(items) > 3000)
            for v in range(len(values)):
                sel = lab == v
                ax.scatter(xy[sel, 0], xy[sel, 1], s=3, color=cmap(v % cmap.N), linewidths=0, label=values[v],
                           rasterized=len(items) > 3000)
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


# ---- the catalogue of one inspection's figures, and writing them ------------------------------------------

def build_figure(insp: Inspection, spec: FigureSpec, label: Label = default_label, k: int = TOP_K, title: str = "",
                 scale: str = DEFAULT_SCALE, labels: str = "short", width: float | str = "double",
                 font_size: float | None = None, history_max: int | None = None) -> tuple[Figure, pd.DataFrame]:
    """(figure, numbers) of one catalogue entry, with the export options."""
    ticks = "ids"   # heatmap ticks stay compact; the full labels are in the CSV and sidecar
    if spec.kind == "case_study":
        return case_study_figure(insp, k, label, title, width, font_size, labels, history_max)
    if spec.kind == "gates":
        return gates_figure(insp)
    if spec.kind == "expert_attention":
        return expert_attention_figure(insp, spec.head, label, scale, ticks)
    if spec.kind == "router":
        return router_figure(insp, spec.head, label, scale, ticks)
    return attention_map_figure(insp, spec.head, spec.expert, label, scale, ticks)


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    exact = getattr(fig, "fame_exact_size", False)   # width presets are the page's width, exactly
    # bbox_inches=None alone falls back to STYLE's savefig.bbox "tight", which grew a 3.3 in case
    # study to 3.36 in (issue 42): an exact-size figure is saved at its own size, "standard".
    with rc_context(dict(STYLE, **{"savefig.bbox": "standard"}) if exact else STYLE):
        fig.savefig(buf, format=fmt, dpi=300 if fmt == "png" else None, metadata=NO_DATE[fmt],
                    bbox_inches=None if exact else "tight")
    return buf.getvalue()


def sidecar(fig: Figure, meta: dict) -> dict:
    """What a written figure shows: the caller's meta plus the figure's own (colour scale, masked
    cells, label rule, full labels) and how heads are numbered (`HEAD_NUMBERING`, docs/design.md)."""
    return dict(meta, **getattr(fig, "fame_sidecar", {}), head_numbering=HEAD_NUMBERING)


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
    stem.with_suffix(".json").write_text(json.dumps(
        sidecar(fig, dict(meta, files=[p.name for p in written] + [stem.name + ".csv"])), indent=2, default=str) + "\n")
    return written + [stem.with_suffix(".csv"), stem.with_suffix(".json")]


def export_all(insp: Inspection, out_dir, meta: dict, label: Label = default_label, k: int = TOP_K,
               formats=FORMATS, progress: bool = False, **options) -> list[Path]:
    """Every figure of one inspection (`figure_catalogue`): case study, gates, and per head the
    expert attention and router maps and each expert's full attention map. `options` are
    build_figure's (scale, labels, width, font_size, history_max). `progress`: a tqdm bar over
    the figures on stderr."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    written = []
    specs = figure_catalogue(insp)
    for spec in tqdm(specs, desc="figures", unit="figure", leave=False, disable=not progress):
        fig, table = build_figure(insp, spec, label, k, meta.get("title", ""), **options)
        written += save_figure(fig, table, out_dir / spec.stem, dict(meta, **spec.meta(), top_k=k, **options), formats)
    return written


__all__ = ["FORMATS", "LABEL_RULES", "SCALES", "TOP_K", "WIDTHS", "FigureSpec", "attention_map_figure", "build_figure",
           "case_study_figure", "embedding_maps_figure", "expert_attention_figure", "export_all", "figure_bytes",
           "figure_catalogue", "gates_figure", "item_text", "lists_table", "router_figure", "save_figure", "sidecar",
           "wrap"]
