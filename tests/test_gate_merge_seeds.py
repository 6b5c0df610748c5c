"""bench/gate_merge_seeds.py: the gated merge against the equal-weight one, per seed and pooled."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gate_merge_seeds.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO)


def test_two_copies_of_one_model_pool_to_that_models_reading(tmp_path):
    out = tmp_path / "g.json"
    r = run("checkpoints/demo", "checkpoints/demo", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    one, pooled = res["per_seed"][0], res["pooled"]
    assert res["per_seed"][1]["NDCG@20"] == one["NDCG@20"]
    # the mean over two identical seeds is the seed itself: the pooled test is the per-seed one
    assert pooled["gated_vs_equal"] == pytest.approx(one["gated_vs_equal"])
    assert pooled["NDCG@20"]["best_head"] == pytest.approx(one["NDCG@20"][one["best_head"]])
    again = run("checkpoints/demo", "checkpoints/demo", "--out", str(out))
    assert again.returncode == 2 and again.stderr.startswith("error: --out") and "--overwrite" in again.stderr


@pytest.mark.fast
@pytest.mark.parametrize("args, says", [
    (("checkpoints/demo",), "two or more checkpoints"),
    (("checkpoints/demo", "checkpoints/demo-sasrec"), "not a FAME model"),
    (("checkpoints/demo", "checkpoints/demo-nomoe", "--k", "0"), "--k must be"),
    (("checkpoints/demo", "checkpoints/demo", "--gate-temperature", "0"), "--gate-temperature must be"),
])
def test_bad_input_is_one_error_line(args, says, tmp_path):
    r = run(*args, "--out", str(tmp_path / "g.json"))
    assert r.returncode == 2 and says in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert not (tmp_path / "g.json").exists()
