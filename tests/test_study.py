"""bench/study.py, the Optuna study of issue 15, end to end on a tiny world: trials run on
validation only, a repeated command adds no trial (the study is resumable from its SQLite file),
a larger --trials adds the missing ones, and --report retrains the best over seeds."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_WORLD

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("optuna")


def study(tmp_path, *args):
    cmd = [sys.executable, str(REPO / "bench" / "study.py"), "--data", TINY_WORLD, "--epochs", "1",
           "--runs", str(tmp_path / "runs"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def trials(tmp_path):
    with sqlite3.connect(tmp_path / "runs" / "study.db") as db:
        return db.execute("select state, count(*) from trials where state != 'WAITING' group by state").fetchall()


def test_study_is_resumable_and_reports_the_best_over_seeds(tmp_path):
    r = study(tmp_path, "--model", "fame", "--trials", "1")
    assert r.returncode == 0, r.stderr
    assert trials(tmp_path) == [("COMPLETE", 1)]
    runs = tmp_path / "runs"
    fame = json.loads((runs / "fame-t0" / "config.json").read_text())   # the first trial: ICLRec's defaults
    assert fame["model"]["model"] == "fame" and fame["model"]["activation"] == "gelu"
    assert fame["model"]["ffn_dim"] == 4 * fame["model"]["d"] == 256 and fame["model"]["n_experts"] == 4
    assert fame["train"]["patience"] == 40 and fame["train"]["warm"]
    assert [p.name for p in (runs / "bases").iterdir()][0].startswith("sasrec-d")   # FAME built from its own SASRec
    again = study(tmp_path, "--model", "fame", "--trials", "1")
    assert again.returncode == 0 and trials(tmp_path) == [("COMPLETE", 1)]        # nothing retrained
    more = study(tmp_path, "--model", "fame", "--trials", "2")
    assert more.returncode == 0 and trials(tmp_path) == [("COMPLETE", 2)]
    second = json.loads((runs / "fame-t1" / "config.json").read_text())         # then the same at d = 128
    assert second["model"]["d"] == 128 and second["model"]["ffn_dim"] == 512
    out = tmp_path / "report.json"
    rep = study(tmp_path, "--model", "fame", "--report", "--seeds", "0", "1", "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    report = json.loads(out.read_text())
    assert report["budget"]["trials"] == 2 and len(report["seeds"]) == 2
    best = max(report["trials"], key=lambda t: t["value"])
    assert report["best"]["valid_NDCG@20"] == best["value"]
    ndcg = [s["test"]["NDCG@20"] for s in report["seeds"]]
    assert report["test_summary"]["NDCG@20"]["std"] == pytest.approx(np.std(ndcg, ddof=1))
