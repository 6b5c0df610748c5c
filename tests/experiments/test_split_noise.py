"""experiments/split_noise.py: the standard error of a one-seed relative NDCG@20 difference."""

import json
import subprocess
import sys

import numpy as np
import pytest

import experiments.split_noise
from tests.conftest import REPO

pytestmark = pytest.mark.research
SCRIPT = "experiments.split_noise"   # run as python -m SCRIPT from the repository root


def _module():
    return experiments.split_noise


def test_relative_difference_is_the_paired_mean_and_its_standard_error():
    reference = np.array([1.0, 0.0, 0.5, 0.5])
    other = np.array([0.5, 0.0, 1.0, 0.5])          # differences -0.5, 0, 0.5, 0: mean 0
    out = _module().relative_difference(other, reference)
    assert out["relative"] == 0.0 and out["users"] == 4
    # sample sd of (-0.5, 0, 0.5, 0) is sqrt(0.5 / 3); / sqrt(4) / the reference's mean 0.5
    assert out["se"] == pytest.approx(np.sqrt(0.5 / 3) / 2 / 0.5)
    assert _module().relative_difference(reference * 1.1, reference)["relative"] == pytest.approx(0.1)


def test_script_writes_both_splits_and_refuses_a_missing_checkpoint(tmp_path):
    out = tmp_path / "noise.json"
    run = subprocess.run([sys.executable, "-m", SCRIPT, "--reference", str(REPO / "checkpoints" / "demo"),
                          str(REPO / "checkpoints" / "demo-sasrec"), "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    row = json.loads(out.read_text())["rows"][0]
    recorded = {c: json.loads((REPO / "checkpoints" / c / "config.json").read_text())["test"]["NDCG@20"]
                for c in ("demo", "demo-sasrec")}
    # the test split's relative difference is that of the metrics recorded at training time
    assert row["test"]["relative"] == pytest.approx(recorded["demo-sasrec"] / recorded["demo"] - 1, abs=1e-3)
    assert 0 < row["valid"]["se"] < 1 and row["test"]["users"] == 2000
    bad = subprocess.run([sys.executable, "-m", SCRIPT, "--reference", str(tmp_path / "none"), "x",
                          "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.startswith("error: checkpoint not found") and bad.stderr.count("\n") == 1
