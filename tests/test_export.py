"""Exported figures parse as PDF (TrueType fonts), SVG and 300-dpi PNG, with their numbers and sidecar."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import fame_core
from fame_core import export
from fame_core.cli import main
from tests.conftest import REPO

DEMO = REPO / "checkpoints" / "demo"


@pytest.fixture(scope="module")
def insp_and_label():
    model, data = fame_core.load(DEMO)
    return fame_core.inspect(model, *fame_core.user_example(data, "42"), top_k=20), data.label


def check_pdf(raw: bytes):
    assert raw.startswith(b"%PDF") and b"%%EOF" in raw[-64:]
    assert b"/FontFile2" in raw and b"/Type3" not in raw      # fonts embedded as TrueType (fonttype 42)


def check_svg(raw: bytes):
    root = ET.fromstring(raw)
    assert root.tag.endswith("svg") and len(list(root.iter())) > 20


def check_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and round(im.info["dpi"][0]) == 300 and im.size[0] > 600


def test_each_figure_renders_in_every_format(insp_and_label, tmp_path):
    insp, label = insp_and_label
    figures = [export.case_study_figure(insp, 10, label), export.gates_figure(insp),
               export.expert_attention_figure(insp, 1, label), export.router_figure(insp, 0, label),
               export.attention_map_figure(insp, 0, 3, label)]
    for i, (fig, _) in enumerate(figures):
        check_pdf(export.figure_bytes(fig, "pdf"))
        check_svg(export.figure_bytes(fig, "svg"))
        (tmp_path / f"{i}.png").write_bytes(export.figure_bytes(fig, "png"))
        check_png(tmp_path / f"{i}.png")
    with pytest.raises(ValueError, match="unknown figure format 'gif'"):
        export.figure_bytes(figures[0][0], "gif")


def test_tables_hold_the_inspected_numbers(insp_and_label):
    insp, label = insp_and_label
    _, att = export.expert_attention_figure(insp, 1, label)
    np.testing.assert_allclose(att.to_numpy(), insp.attention[1, :, -1, :])
    _, router = export.router_figure(insp, 0, label)
    np.testing.assert_allclose(router.to_numpy(), insp.router[0])
    _, lists = export.case_study_figure(insp, 10, label)
    assert lists["head:0"].tolist() == insp.top["head:0"][:10].tolist()
    assert lists["concat"].tolist() == insp.top["concat"][:10].tolist()
    _, gates = export.gates_figure(insp)
    np.testing.assert_allclose(gates["gate"], insp.gates)


def test_cli_export_writes_figures_numbers_and_sidecars(tmp_path, capsys):
    out = tmp_path / "fig"
    assert main(["export", "--checkpoint", str(DEMO), "--user", "42", "--formats", "pdf,png", "--out", str(out), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    names = {p.split("/")[-1] for p in files}
    # case study + gates + per head (2): expert attention, router, 4 expert maps -> 14 figures x 4 files
    assert len(names) == 14 * 4 and {"case_study.pdf", "case_study.png", "case_study.csv", "case_study.json"} <= names
    check_pdf((out / "attention_head1_expert2.pdf").read_bytes())
    check_png(out / "router_head0.png")
    side = json.loads((out / "attention_head1_expert2.json").read_text())
    assert side["figure"] == "attention map" and side["head"] == 1 and side["expert"] == 2 and side["user"] == "42"
    assert side["dataset"] == "synthetic-0" and side["checkpoint"] == str(DEMO)
    table = pd.read_csv(out / "gates.csv", index_col=0)
    assert table["gate"].sum() == pytest.approx(1.0, abs=1e-5)
    assert json.loads((out / "gates.json").read_text())["gate_temperature"] == 1.0   # the temperature the gates are read at


def test_cli_export_never_writes_into_other_files(tmp_path, capsys):
    """--out: new, empty, or a previous export (its manifest lists every file) -- nothing else (issue 11)."""
    theirs = tmp_path / "paper"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("precious")
    args = ["export", "--checkpoint", str(DEMO), "--user", "42", "--formats", "svg"]
    assert main(args + ["--out", str(theirs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "thesis.tex" in err and err.count("\n") == 1
    assert sorted(p.name for p in theirs.iterdir()) == ["thesis.tex"]
    (tmp_path / "afile").write_text("x")
    assert main(args + ["--out", str(tmp_path / "afile")]) == 2
    assert (tmp_path / "afile").read_text() == "x"
    out = tmp_path / "fig"
    assert main(args + ["--out", str(out)]) == 0
    listed = json.loads((out / ".fame-export.json").read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != ".fame-export.json")
    before = (out / "gates.svg").stat().st_mtime_ns
    assert main(args + ["--out", str(out)]) == 0               # a previous export may be replaced
    assert (out / "gates.svg").stat().st_mtime_ns >= before
    (out / "notes.txt").write_text("mine")                      # ... but not once the user added a file
    assert main(args + ["--out", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*export-tmp*"))


# ---- figures are evidence: checked from the written files ---------------------------------------------

def long_label(v: int) -> str:
    return f"Brand {v % 7}: a rather long product title for item number {v} in the catalogue"


def svg_texts(path) -> list[str]:
    """Every <text> of a written SVG (text kept as text: svg.fonttype 'none'), in document order."""
    root = ET.parse(path).getroot()
    return ["".join(t.itertext()) for t in root.iter() if t.tag.endswith("}text") or t.tag == "text"]


def joined(texts) -> str:
    return " ".join(" ".join(texts).split())


@pytest.mark.parametrize("width", ["single", "double"])
@pytest.mark.parametrize("rule", ["ids", "short", "full"])
def test_case_study_labels_are_never_cut_below_the_chosen_rule(insp_and_label, tmp_path, rule, width):
    """ids and full are drawn whole (full wraps); a short text that does not fit its cell in
    CELL_LINES lines (or would break inside a word) is the item id instead, and the sidecar says which."""
    from fame_core.catalogue import FigureSpec
    from fame_core.lists import SHORT_WIDTH, item_text

    insp, _ = insp_and_label
    fig, table = export.build_figure(insp, FigureSpec("case_study"), long_label, 20, "t", labels=rule, width=width)
    export.save_figure(fig, table, tmp_path / "case", {}, ("svg", "pdf"))
    texts = svg_texts(tmp_path / "case.svg")
    assert len(texts) > 100                                   # text kept as text, not outlined paths
    check_pdf((tmp_path / "case.pdf").read_bytes())           # TrueType, no Type 3
    drawn = joined(texts)
    side = json.loads((tmp_path / "case.json").read_text())
    as_ids = set(side["ids_for_long_labels"])
    assert rule == "short" or not as_ids                      # only the short rule falls back to ids
    assert not as_ids if width == "double" else True          # 28 characters fit two lines of a double-width cell
    for mode in table.columns:                                # every list, every rank, wrapped or not
        for v in table[mode]:
            expected = f"item {int(v)}" if int(v) in as_ids else item_text(int(v), long_label, rule)
            assert expected in drawn, (mode, v, expected)
            if rule == "short" and int(v) not in as_ids:
                assert len(expected) == SHORT_WIDTH and expected.endswith("…")
            if rule == "full":
                assert expected == long_label(int(v))
    assert f"History ({len(insp.sequence)} items" in drawn and "Target" in drawn
    assert side["label_rule"] == rule and side["width_in"] == export.WIDTHS[width]
    assert side["full_labels"][str(int(table.iloc[0, 0]))] == long_label(int(table.iloc[0, 0]))


def colour_bar_ticks(texts, uniform_label):
    """The colour bar's tick texts: the last ones of the figure, ending at the bar's title."""
    i = next(i for i, t in enumerate(texts) if uniform_label in t)
    return texts[i - 1:i + 2]


@pytest.mark.parametrize("policy", ["unit", "shared", "own"])
def test_colour_bar_limits_are_the_declared_ones_with_the_uniform_level(insp_and_label, tmp_path, policy):
    from fame_core import scales
    from fame_core.catalogue import FigureSpec

    insp, label = insp_and_label
    cases = [(FigureSpec("router", 0), scales.router_scale(insp, 0, policy), insp.router),
             (FigureSpec("expert_attention", 1), scales.attention_scale(insp, 1, None, policy), insp.attention[:, :, -1, :]),
             (FigureSpec("attention_map", 0, 2), scales.attention_scale(insp, 0, 2, policy), insp.attention)]
    for spec, declared, every in cases:
        fig, table = export.build_figure(insp, spec, label, 20, "", scale=policy)
        export.save_figure(fig, table, tmp_path / spec.stem, {}, ("svg",))
        side = json.loads((tmp_path / f"{spec.stem}.json").read_text())
        assert side["colour_scale"] == declared.to_dict()
        assert side["colour_scale"]["vmin"] == 0.0                       # anchored at 0, always
        expected_top = {"unit": 1.0, "shared": float(every.max())}.get(policy)
        if expected_top is not None:
            assert side["colour_scale"]["vmax"] == pytest.approx(expected_top)
        lo, mid, hi = colour_bar_ticks(svg_texts(tmp_path / f"{spec.stem}.svg"), declared.uniform_label)
        assert float(lo) == 0.0 and float(hi) == pytest.approx(declared.vmax, rel=5e-3)
        assert mid == f"{declared.uniform:.3g} = {declared.uniform_label}"
        clim = [a for a in fig.axes[0].collections if a.get_array() is not None][0].get_clim()
        assert clim == (declared.vmin, declared.vmax)


def test_heatmap_cells_are_vector_and_the_causal_mask_is_named(insp_and_label, tmp_path):
    from fame_core.catalogue import FigureSpec

    insp, label = insp_and_label
    fig, table = export.build_figure(insp, FigureSpec("attention_map", 1, 0), long_label, 20, "")
    export.save_figure(fig, table, tmp_path / "map", {}, ("svg", "pdf"))
    svg = (tmp_path / "map.svg").read_text()
    assert "<image" not in svg                                         # no embedded raster
    texts = svg_texts(tmp_path / "map.svg")
    assert "masked (causal: j > i)" in texts
    L = len(insp.sequence)
    assert [t for t in texts if " · " in t][:L] == [f"{i + 1} · {int(v)}" for i, v in enumerate(insp.sequence)]
    side = json.loads((tmp_path / "map.json").read_text())
    assert "causal" in side["masked"] and side["cells"] == "vector rectangles"
    csv = pd.read_csv(tmp_path / "map.csv", index_col=0)
    assert list(csv.columns) == [f"{i + 1}: {long_label(int(v))}" for i, v in enumerate(insp.sequence)]  # full labels
    upper = np.triu(np.ones((L, L), dtype=bool), k=1)
    assert csv.to_numpy()[upper].size and np.isnan(csv.to_numpy()[upper]).all()
    np.testing.assert_allclose(csv.to_numpy()[~upper], insp.attention[1, 0][~upper], rtol=1e-6)


def test_cli_and_app_draw_the_case_study_with_one_top_k_default():
    from fame_core.lists import TOP_K
    import inspect as pyinspect

    from fame_core.cli import build_parser

    args = build_parser().parse_args(["export", "--checkpoint", str(DEMO), "--user", "42", "--out", "x"])
    assert args.top_k == TOP_K == 20
    assert pyinspect.signature(export.build_figure).parameters["k"].default == TOP_K


# ---- issue 42: the case study is the width it states, and no text runs into another or off the page --------

def pdf_page_points(raw: bytes) -> tuple[float, float]:
    """(width, height) in points of a one-page PDF, from its /MediaBox."""
    import re

    boxes = re.findall(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", raw)
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1 = map(float, boxes[0])
    return x1 - x0, y1 - y0


def text_boxes(fig):
    """Window extents (pixels) of every visible, non-empty text of a drawn figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from matplotlib import rc_context

    canvas = FigureCanvasAgg(fig)     # the Agg renderer measures text as the PNG draws it (in the export's style)
    with rc_context(export.STYLE):
        canvas.draw()
        renderer = canvas.get_renderer()
        return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
                if t.get_visible() and t.get_text().strip()]


def check_layout(fig, tol: float = 0.5):
    """No two texts overlap (touching within `tol` pixels allowed) and none leaves the page."""
    boxes = text_boxes(fig)
    page = fig.bbox
    for text, b in boxes:
        assert b.x0 >= page.x0 - tol and b.x1 <= page.x1 + tol and b.y0 >= page.y0 - tol and b.y1 <= page.y1 + tol, \
            (text, b.bounds, page.bounds)
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= tol or overlap_y <= tol, (ta, tb, a.bounds, b.bounds)
    return boxes


def check_stated_width(fig, width_in: float, tmp_path, stem="case"):
    export.save_figure(fig, pd.DataFrame(), tmp_path / stem, {}, ("pdf", "svg"))
    w, _ = pdf_page_points((tmp_path / f"{stem}.pdf").read_bytes())
    assert w == pytest.approx(width_in * 72, abs=0.5)
    root = ET.parse(tmp_path / f"{stem}.svg").getroot()
    assert float(root.get("width").removesuffix("pt")) == pytest.approx(width_in * 72, abs=0.5)
    assert json.loads((tmp_path / f"{stem}.json").read_text())["width_in"] == width_in


def sports_230():
    from tests.conftest import needs_shared

    path = needs_shared("amazon/Sports_and_Outdoors.txt")
    model, data = fame_core.load(REPO / "checkpoints" / "sports-fame-gated", data=str(path))
    return fame_core.inspect(model, *fame_core.user_example(data, "230"), top_k=20), data.label


@pytest.mark.parametrize("width", ["single", "double"])
@pytest.mark.parametrize("case", ["demo", "sports"])
def test_case_study_is_the_stated_width_and_no_text_overlaps(insp_and_label, tmp_path, width, case):
    insp, label = insp_and_label if case == "demo" else sports_230()
    fig, _ = export.case_study_figure(insp, 20, label, f"Case study: user {'42' if case == 'demo' else '230'}", width)
    texts = [t for t, _ in check_layout(fig)]
    check_stated_width(fig, export.WIDTHS[width], tmp_path)
    assert any(t.startswith("History (") for t in texts)
    if case == "sports":                       # Amazon: the short rule is the item id, not "item 4144 · attribute ..."
        assert not any("attribute" in t for t in texts)


@pytest.mark.parametrize("rule", ["ids", "short", "full"])
def test_case_study_long_labels_fit_at_single_width(insp_and_label, tmp_path, rule):
    insp, _ = insp_and_label
    fig, _ = export.case_study_figure(insp, 20, long_label, "A case study with a title long enough to need two lines "
                                      "at single width", "single", labels=rule)
    check_layout(fig)
    check_stated_width(fig, 3.3, tmp_path)


def test_history_never_breaks_between_a_position_and_its_item(insp_and_label):
    import re

    insp, label = insp_and_label
    for width in ("single", "double"):
        for rule in ("ids", "short"):
            fig, _ = export.case_study_figure(insp, 20, label, "t", width, labels=rule)
            lines = [t for t, _ in text_boxes(fig)]
            start = next(i for i, t in enumerate(lines) if t.startswith("History ("))
            end = next(i for i, t in enumerate(lines) if i > start and not ("→" in t or t.startswith("item")))
            assert end - start > 1                          # the history wraps at these widths
            for line in lines[start:end]:
                assert not re.search(r"(→|:)\s+\d+\s*$", line) and not line.rstrip().endswith("item"), (width, line)


def test_cli_export_single_width_page_is_3_3_inches(tmp_path, capsys):
    out = tmp_path / "fig"
    assert main(["export", "--checkpoint", str(DEMO), "--user", "42", "--formats", "pdf", "--width", "single",
                 "--out", str(out)]) == 0
    w, _ = pdf_page_points((out / "case_study.pdf").read_bytes())
    assert w == pytest.approx(3.3 * 72, abs=0.5)
    assert json.loads((out / "case_study.json").read_text())["width_in"] == 3.3


def test_exported_figures_number_heads_from_0_and_say_so(insp_and_label, tmp_path):
    """Issue 42 (E): one numbering, stated once (docs/design.md) and in every sidecar; figures follow it."""
    from fame_core.lists import HEAD_NUMBERING

    insp, label = insp_and_label
    meta = {"user": "42"}
    files = export.export_all(insp, tmp_path, meta, label, formats=("svg",))
    assert "the paper's Head 1 and Head 2" in HEAD_NUMBERING and "numbered from 0 everywhere" in HEAD_NUMBERING
    design = " ".join((REPO / "docs" / "design.md").read_text().split())
    assert "numbered from 0 everywhere" in design and "the paper's Head 1 and Head 2 are head 0 and head 1 here" in design
    for side in [f for f in files if f.suffix == ".json"]:
        assert json.loads(side.read_text())["head_numbering"] == HEAD_NUMBERING, side.name
    case = joined(svg_texts(tmp_path / "case_study.svg"))
    assert "Head 0" in case and "Head 1" in case and "Head 2" not in case      # H = 2: heads 0 and 1
    assert "Head 1: router weights β" in svg_texts(tmp_path / "router_head1.svg")
    assert "Head 0, expert 3: attention α_ij" in svg_texts(tmp_path / "attention_head0_expert3.svg")
