"""fame_core.svg: the page's figures, checked from the SVG text itself (no browser)."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib import colormaps

import fame_core
from fame_core import export, svg
from fame_core.scales import ColourScale, causal_mask

pytestmark = pytest.mark.fast
NS = "{http://www.w3.org/2000/svg}"


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def text_boxes(root: ET.Element) -> list[tuple[str, float, float, float, float]]:
    """(text, x0, y0, x1, y1) of every <text>, from its anchor, rotation and measured width."""
    boxes = []
    for t in root.iter(f"{NS}text"):
        x, y, size = float(t.get("x")), float(t.get("y")), float(t.get("font-size"))
        w = export.text_width(t.text or "", size)
        start = {"start": 0.0, "middle": -w / 2, "end": -w}[t.get("text-anchor")]
        if t.get("transform"):          # rotate(-90 x y): the run goes up from the anchor
            boxes.append((t.text, x - 0.8 * size, y - start - w, x + 0.25 * size, y - start))
        else:
            boxes.append((t.text, x + start, y - 0.8 * size, x + start + w, y + 0.25 * size))
    return boxes


def check_layout(text: str) -> None:
    """Every label inside the picture (nothing cut) and no two labels overprinting."""
    root = parse(text)
    _, _, W, H = map(float, root.get("viewBox").split())
    boxes = text_boxes(root)
    for s, x0, y0, x1, y1 in boxes:
        assert x0 >= -0.01 and y0 >= -0.01 and x1 <= W + 0.01 and y1 <= H + 0.01, (s, (x0, y0, x1, y1), (W, H))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap_x = min(a[3], b[3]) - max(a[1], b[1])
            overlap_y = min(a[4], b[4]) - max(a[2], b[2])
            assert overlap_x <= 0.5 or overlap_y <= 0.5, (a, b)


@pytest.fixture(scope="module")
def insp():
    model, data = fame_core.load("checkpoints/demo")
    return fame_core.inspect(model, *fame_core.user_example(data, data.user_ids[3]), top_k=20)


def test_heatmap_cells_are_the_values_in_the_exports_colour_map_at_the_declared_limits(insp):
    hm = export.router_heatmap(insp, 1, scale="own")
    root = parse(svg.heatmap(hm))
    cells = [r.get("fill") for r in root.find(f".//{NS}g[@id='cells']")]
    rows, cols = hm.values.shape
    assert len(cells) == rows * cols
    sc = hm.scale
    want = colormaps[export.CMAP](np.clip((hm.values - sc.vmin) / (sc.vmax - sc.vmin), 0, 1))[..., :3]
    got = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in cells]).reshape(rows, cols, 3) / 255
    np.testing.assert_allclose(got, want, atol=0.5 / 255 + 1e-9)
    assert sc.vmin == 0.0 and sc.vmax == pytest.approx(hm.values.max())      # "own": 0 .. this map's largest


def test_colour_bar_says_its_limits_and_marks_the_uniform_level(insp):
    for policy in ("unit", "shared", "own"):
        hm = export.expert_attention_heatmap(insp, 0, scale=policy)
        root = parse(svg.heatmap(hm))
        bar = root.find(f".//{NS}g[@id='colourbar']")
        ticks = {float(g.get("data-value")): "".join(g.itertext()) for g in bar.iter(f"{NS}g")
                 if g.get("class") == "colourbar-tick"}
        sc = hm.scale
        assert sorted(ticks) == sorted({sc.vmin, sc.vmax, sc.uniform})
        assert ticks[sc.uniform] == f"{sc.uniform:.3g} = {sc.uniform_label}"
        assert ticks[sc.vmax] == f"{sc.vmax:.3g}" and ticks[0.0] == "0"
        # the dashed mark sits where the uniform level is on the bar (vmin at the bottom, vmax at the top)
        ys = {float(g.get("data-value")): float(g.get("data-y")) for g in bar.iter(f"{NS}g")
              if g.get("class") == "colourbar-tick"}
        mark = next(line for line in bar.iter(f"{NS}line") if line.get("class") == "uniform")
        frac = (ys[sc.vmin] - float(mark.get("y1"))) / (ys[sc.vmin] - ys[sc.vmax])
        assert frac == pytest.approx((sc.uniform - sc.vmin) / (sc.vmax - sc.vmin), abs=1e-3)
        # vmax on top, and the bands run from the colour of vmin (bottom) to that of vmax (top)
        bands = sorted(((float(r.get("y")), r.get("fill")) for r in bar.iter(f"{NS}rect") if r.get("fill") != "none"))
        assert ys[sc.vmax] < ys[sc.vmin] and bands[0][0] == pytest.approx(ys[sc.vmax], abs=0.01)
        cmap = colormaps[export.CMAP]
        hexof = lambda c: "#%02x%02x%02x" % tuple(round(v * 255) for v in c[:3])   # noqa: E731
        assert bands[0][1] == hexof(cmap(1 - 0.5 / svg.BAR_STEPS)) and bands[-1][1] == hexof(cmap(0.5 / svg.BAR_STEPS))


def test_every_tick_label_is_text_whole_inside_the_picture_and_none_overprints(insp):
    for hm in (export.expert_attention_heatmap(insp, 0), export.router_heatmap(insp, 1),
               export.expert_attention_heatmap(insp, 1, labels="short")):
        text = svg.heatmap(hm)
        shown = ["".join(t.itertext()) for t in parse(text).iter(f"{NS}text")]
        for label in list(hm.xlabels) + list(hm.ylabels) + [hm.title, hm.xlabel, hm.ylabel, hm.cbar]:
            assert label in shown, label
        check_layout(text)
    check_layout(svg.gates(insp))


def test_short_and_long_histories_keep_every_title_and_label_whole(insp):
    model, data = fame_core.load("checkpoints/demo")
    for L in (1, 2, 3, 4):                 # a 5-interaction user has a 4-item test input; edited sequences fewer
        short = fame_core.inspect(model, [int(v) for v in insp.sequence[:L]], top_k=5)
        for hm in (export.expert_attention_heatmap(short, 0), export.router_heatmap(short, 1)):
            check_layout(svg.heatmap(hm))
    sc = ColourScale(0.0, 1.0, 1 / 200, "1/200 uniform", "unit")
    ticks = [f"{i + 1} · {1000 + i}" for i in range(200)]
    check_layout(svg.heatmap(export.Heatmap(np.full((4, 200), 0.005), ticks, [f"expert {n}" for n in range(4)],
                                            "history position · item (oldest first)", "expert", "t", "α", sc)))


def test_a_uniform_level_next_to_a_limit_moves_its_label_not_its_mark():
    sc = ColourScale(0.0, 1.0, 1 / 40, "1/40 uniform", "unit")
    hm = export.Heatmap(np.full((2, 40), 0.025), [str(i) for i in range(40)], ["a", "b"], "x", "y", "t", "c", sc)
    text = svg.heatmap(hm)
    check_layout(text)
    assert "0.025 = 1/40 uniform" in text
    bar = parse(text).find(f".//{NS}g[@id='colourbar']")
    ys = {float(g.get("data-value")): float(g.get("data-y")) for g in bar.iter(f"{NS}g")
          if g.get("class") == "colourbar-tick"}
    mark = next(line for line in bar.iter(f"{NS}line") if line.get("class") == "uniform")
    assert float(mark.get("y1")) == pytest.approx(ys[0.0] - (ys[0.0] - ys[1.0]) / 40, abs=0.01)   # still at 1/40
    label = next(t for t in bar.iter(f"{NS}text") if t.text.startswith("0.025"))
    assert abs(float(label.get("y")) - float(mark.get("y1"))) > 1.0                                 # the text moved


def test_masked_cells_are_hatched_not_coloured_as_zero():
    L = 5
    mask = causal_mask(L)
    values = np.where(mask, 0.0, 0.2)
    hm = export.Heatmap(values, list("abcde"), list("abcde"), "j", "i", "map", "α",
                        ColourScale(0.0, 1.0, 0.2, "1/5 uniform", "unit"), mask=mask)
    fills = [r.get("fill") for r in parse(svg.heatmap(hm)).find(f".//{NS}g[@id='cells']")]
    assert [f == "url(#masked)" for f in fills] == mask.ravel().tolist()
    assert len({f for f, m in zip(fills, mask.ravel()) if not m}) == 1


def test_gate_bars_stand_on_a_fixed_zero_to_one_axis(insp):
    root = parse(svg.gates(insp))
    bars = [r for r in root.iter(f"{NS}rect") if r.get("class") == "gate"]
    assert [float(b.get("data-value")) for b in bars] == pytest.approx(insp.gates.tolist())
    texts = {t.text: t for t in root.iter(f"{NS}text")}
    axis_y = {v: float(texts[v].get("y")) for v in ("0", "1")}          # tick labels sit 0.35 em below their tick
    top, bottom = axis_y["1"], axis_y["0"]
    for b, g in zip(bars, insp.gates):                                   # each bar from 0 up to its gate, on 0..1
        y, h = float(b.get("y")), float(b.get("height"))
        assert y + h == pytest.approx(bottom - svg.TICK * 0.35, abs=0.02)
        assert h == pytest.approx(g * (bottom - top), rel=1e-3)
    labels = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert {"0", "0.5", "1"} <= set(labels) and f"1/{insp.n_heads}" in labels
    assert not re.search(r"<image", svg.gates(insp))           # vector only, no embedded raster
