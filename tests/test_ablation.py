"""bench/ablation.py, issue 15's equal-budget ablation, end to end on a tiny world: finished runs
leave records in the results folder, the report's statistics equal a direct computation from the
checkpoints, a report survives the loss of the run folders, a recorded row is not retrained, and a
report that would hold fewer (row, seed) pairs than the one on disk is refused."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from fame_core.checkpoint import load_checkpoint
from fame_core.data import load_dataset
from fame_core.evaluate import evaluate
from tests.conftest import TINY_WORLD

REPO = Path(__file__).resolve().parents[1]
ROWS = ["sasrec-cont", "fame-h2-n1"]


def ablation(tmp_path, *args):
    cmd = [sys.executable, str(REPO / "bench" / "ablation.py"), *args, "--data", TINY_WORLD, "--epochs", "2",
           "--patience", "1", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def ndcg20(ranks):
    ranks = np.asarray(ranks)
    return np.where(ranks < 20, 1.0 / np.log2(ranks + 2.0), 0.0)


def test_records_make_the_report_survive_lost_runs_and_a_shrinking_report_is_refused(tmp_path):
    r = ablation(tmp_path, "run", "--seeds", "0", "1", "--rows", *ROWS)
    assert r.returncode == 0, r.stderr
    data = load_dataset(TINY_WORLD)
    records = tmp_path / "results" / "ablation-runs" / data.name
    # the base SASRec was trained for the rows and recorded too
    assert sorted(p.name for p in records.glob("*.json")) == sorted(
        f"{n}-s{s}.json" for n in ["sasrec", *ROWS] for s in (0, 1))

    # ranks straight from the checkpoints, before the run folders go
    runs = tmp_path / "runs"
    direct = {(n, s): np.asarray(evaluate(load_checkpoint(runs / f"{n}-s{s}"), data, "test", return_ranks=True)["ranks"])
              for n in ROWS for s in (0, 1)}
    tests = {(n, s): json.loads((runs / f"{n}-s{s}" / "config.json").read_text())["test"]["NDCG@20"]
             for n in ROWS for s in (0, 1)}

    r = ablation(tmp_path, "report", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "results" / f"ablation-{data.name}.json"
    report = json.loads(path.read_text())
    row = report["rows"]["fame-h2-n1"]
    mine = np.array([tests["fame-h2-n1", s] for s in (0, 1)])
    theirs = np.array([tests["sasrec-cont", s] for s in (0, 1)])
    assert row["test"]["NDCG@20"]["std"] == np.std(mine, ddof=1)
    c = row["against_control"]
    assert c["against"] == "sasrec-cont"
    assert np.isclose(c["seed_ttest_p"], stats.ttest_rel(mine, theirs).pvalue, equal_nan=True)
    u_mine = np.mean([ndcg20(direct["fame-h2-n1", s]) for s in (0, 1)], axis=0)
    u_theirs = np.mean([ndcg20(direct["sasrec-cont", s]) for s in (0, 1)], axis=0)
    assert c["users_better"] == int((u_mine > u_theirs).sum()) and c["users_worse"] == int((u_mine < u_theirs).sum())
    if (u_mine != u_theirs).any():
        assert np.isclose(c["user_wilcoxon_p"], stats.wilcoxon(u_mine, u_theirs).pvalue)

    # the machine is lost: the records alone give the same report, and run trains nothing
    shutil.rmtree(runs)
    r = ablation(tmp_path, "report", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text()) == report
    r = ablation(tmp_path, "run", "--seeds", "0", "1", "--rows", *ROWS)
    assert r.returncode == 0, r.stderr
    assert not any(runs.iterdir()), "a recorded row was trained again"

    # a report over fewer seeds would drop seed 1's rows: refused, the old report kept
    before = path.read_bytes()
    r = ablation(tmp_path, "report", "--seeds", "0")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--allow-fewer" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    r = ablation(tmp_path, "report", "--seeds", "0", "--allow-fewer")
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text())["rows"]["fame-h2-n1"]["seeds"] == [0]
