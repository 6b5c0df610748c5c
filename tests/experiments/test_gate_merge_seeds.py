"""experiments/gate_merge_seeds.py: the gated merge against the equal-weight one, per seed and pooled."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.research
SCRIPT = "experiments.gate_merge_seeds"   # run as python -m SCRIPT from the repository root


def run(*args):
    return subprocess.run([sys.executable, "-m", SCRIPT, *args], capture_output=True, text=True, cwd=REPO)


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


def test_each_checkpoint_is_read_at_its_own_temperature_unless_one_is_given(tmp_path):
    hot = tmp_path / "hot"
    assert subprocess.run([sys.executable, "-m", "fame_core", "compact", "--checkpoint", "checkpoints/demo", "--out",
                           str(hot), "--gate-temperature", "2"], cwd=REPO, capture_output=True).returncode == 0
    own, given = tmp_path / "own.json", tmp_path / "given.json"
    assert run(str(hot), "checkpoints/demo", "--out", str(own)).returncode == 0
    assert run(str(hot), "checkpoints/demo", "--gate-temperature", "1", "--out", str(given)).returncode == 0
    own, given = json.loads(own.read_text())["per_seed"], json.loads(given.read_text())["per_seed"]
    assert [r["gate_temperature"] for r in own] == [2.0, 1.0] and [r["gate_temperature"] for r in given] == [1.0, 1.0]
    assert own[0]["NDCG@20"]["gated"] != given[0]["NDCG@20"]["gated"]      # the copy at 2 against it at 1
    assert own[0]["NDCG@20"]["concat"] == pytest.approx(given[0]["NDCG@20"]["concat"], abs=1e-3)   # no gate in it


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
