"""experiments/facet_tradeoff.py, issue 16's trade-off figure: every (setting, seed) with a validation
reading is a point at (validation NDCG@20 against the seed's best ablation row, gate margin), the
numbers in the CSV are those of a direct computation, the criteria are drawn where the issue puts
them, and bad input is one error line."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import experiments.facet_tradeoff
from tests.conftest import REPO

pytestmark = pytest.mark.research



def valid(ndcg, gate, majority, z):
    return {"NDCG@20": ndcg, "gate picks better head": gate, "better-head majority": majority, "expert z": z}


def write_inputs(tmp_path):
    ablation = {"rows": {   # best valid row: seed 0 "b" (0.050), seed 1 "a" (0.052)
        "a": {"seeds": [0, 1], "valid": {"NDCG@20": {"values": [0.049, 0.052]}}},
        "b": {"seeds": [0, 1], "valid": {"NDCG@20": {"values": [0.050, 0.051]}}}}}
    s0 = {"data": "toy", "settings": {"seed": 0}, "rows": [
        {"variant": "mix", "valid": valid(0.0495, 0.52, 0.51, 4.0)},
        {"variant": "clusters", "valid": valid(0.0485, 0.60, 0.52, 2.0)},
        {"variant": "old", "valid": None},                                          # no validation reading
        {"variant": "probe", "options": {"facet_heads": [0]}, "valid": valid(0.05, 0.7, 0.5, 5.0)}]}
    s1 = {"data": "toy", "settings": {"seed": 1}, "rows": [{"variant": "mix", "valid": valid(0.0520, 0.50, 0.52, 3.5)}]}
    paths = []
    for name, obj in (("ablation", ablation), ("s0", s0), ("s1", s1)):
        (tmp_path / f"{name}.json").write_text(json.dumps(obj))
        paths.append(str(tmp_path / f"{name}.json"))
    return paths


def run(*args):
    return subprocess.run([sys.executable, "-m", "experiments.facet_tradeoff", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_points_are_the_settings_read_on_validation_against_the_seeds_best_row(tmp_path):
    paths = write_inputs(tmp_path)
    stem = tmp_path / "fig" / "tradeoff"
    r = run("--panel", *paths, "--out", str(stem))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(stem.with_suffix(".csv")).set_index(["setting", "seed"])
    assert sorted(table.index) == [("clusters", 0), ("mix", 0), ("mix", 1)]   # unread and metadata rows left out
    assert np.isclose(table.loc[("mix", 0), "relative"], 0.0495 / 0.050 - 1)
    assert np.isclose(table.loc[("mix", 1), "relative"], 0.0520 / 0.052 - 1)
    assert table.loc[("mix", 1), "reference row"] == "a" and table.loc[("clusters", 0), "reference row"] == "b"
    assert np.isclose(table.loc[("clusters", 0), "gate margin"], 0.60 - 0.52)
    side = json.loads(stem.with_suffix(".json").read_text())
    assert side["left out"]["toy"] == ["old (seed 0: no validation reading)",
                                       "probe (seed 0: metadata-supervised heads)"]
    svg = stem.with_suffix(".svg").read_text()
    assert "passes both" in svg and "mean over the seeds" in svg       # text, not paths


def test_the_drawing_puts_each_point_and_the_criteria_where_the_numbers_say(tmp_path):
    mod = experiments.facet_tradeoff
    panel = mod.read_panel(write_inputs(tmp_path))
    fig, table = mod.tradeoff_figure([panel], tolerance=0.01, margin=0.05)
    ax = fig.axes[0]
    drawn = np.vstack([c.get_offsets() for c in ax.collections if len(c.get_offsets()) and c.get_alpha() == 0.6])
    want = np.c_[100 * table["relative"], 100 * table["gate margin"]]
    assert sorted(map(tuple, np.round(drawn, 9))) == sorted(map(tuple, np.round(want, 9)))
    mean = [c.get_offsets()[0] for c in ax.collections if c.get_alpha() is None and len(c.get_offsets()) == 1]
    mix = table[table.setting == "mix"]
    assert any(np.allclose(m, [100 * mix.relative.mean(), 100 * mix["gate margin"].mean()]) for m in mean)
    lines = {(tuple(ln.get_xdata()), tuple(ln.get_ydata())) for ln in ax.lines}
    assert ((-1.0, -1.0), (0, 1)) in lines and ((0, 1), (5.0, 5.0)) in lines and ((0, 1), (0, 0)) in lines


def test_bad_panels_are_one_error_line(tmp_path):
    paths = write_inputs(tmp_path)
    unseeded = tmp_path / "unseeded.json"
    unseeded.write_text(json.dumps({"data": "toy", "rows": []}))
    for args in (["--panel", paths[0]], ["--panel", paths[1], paths[2]], ["--panel", *paths, paths[1]],
                 ["--panel", paths[0], str(tmp_path / "missing.json")], ["--panel", paths[0], str(unseeded)]):
        r = run(*args, "--out", str(tmp_path / "x"))
        assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, args
    assert not list(tmp_path.glob("x.*"))
