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
