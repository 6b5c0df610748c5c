"""experiments/ablation.py, issue 15's equal-budget ablation, end to end on a tiny world: finished runs
leave records in the results folder, the report's statistics equal a direct computation from the
checkpoints, a report survives the loss of the run folders, a recorded row is not retrained, and a
report that would hold fewer (row, seed) pairs than the one on disk is refused."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from fame_core.checkpoint import load_checkpoint
from fame_core.data import load_dataset
from fame_core.evaluate import evaluate
from hypothesis import given, settings
from hypothesis import strategies as st

import experiments.ablation as ablation_script
from tests.conftest import REPO, TINY_WORLD

pytestmark = pytest.mark.research
ROWS = ["sasrec-cont", "fame-h2-n1", "sasrec-restart"]


def ablation(tmp_path, *args):
    cmd = [sys.executable, "-m", "experiments.ablation", *args, "--data", TINY_WORLD, "--epochs", "2",
           "--patience", "1", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)


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

    # a kill between training and recording: report records the finished run itself
    for f in records.glob("fame-h2-n1-s1.*"):
        f.unlink()
    r = ablation(tmp_path, "report", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    assert (records / "fame-h2-n1-s1.npz").exists() and (records / "fame-h2-n1-s1.json").exists()
    rec = json.loads((records / "fame-h2-n1-s1.json").read_text())
    assert rec["base_sha256"] == json.loads((records / "sasrec-s1.json").read_text())["weights_sha256"]
    path = tmp_path / "results" / f"ablation-{data.name}.json"
    report = json.loads(path.read_text())
    row = report["rows"]["fame-h2-n1"]
    mine = np.array([tests["fame-h2-n1", s] for s in (0, 1)])
    theirs = np.array([tests["sasrec-cont", s] for s in (0, 1)])
    assert row["test"]["NDCG@20"]["mean"] == mine.mean() and row["test"]["NDCG@20"]["std"] == np.std(mine, ddof=1)
    c = row["against_control"]
    assert c["against"] == "sasrec-cont" and "different_base_seeds" not in c
    assert np.isclose(c["mean_difference"], (mine - theirs).mean())
    assert np.isclose(c["relative_gain"], mine.mean() / theirs.mean() - 1)
    assert not np.isnan(stats.ttest_rel(mine, theirs).pvalue), "the two rows scored alike: the check would be void"
    assert np.isclose(c["seed_ttest_p"], stats.ttest_rel(mine, theirs).pvalue)
    u_mine = np.mean([ndcg20(direct["fame-h2-n1", s]) for s in (0, 1)], axis=0)
    u_theirs = np.mean([ndcg20(direct["sasrec-cont", s]) for s in (0, 1)], axis=0)
    assert np.isclose(u_mine.mean(), mine.mean())   # the stored ranks are the runs' own
    assert c["users_better"] == int((u_mine > u_theirs).sum()) and c["users_worse"] == int((u_mine < u_theirs).sum())
    assert (u_mine != u_theirs).any()
    assert np.isclose(c["user_wilcoxon_p"], stats.wilcoxon(u_mine, u_theirs).pvalue)
    # where the gain lands: quartiles of history length, each read directly from the users' lengths
    lengths = np.array([len(data.sequences[i]) - 1 for i in data.splittable_rows()])
    groups = c["by_history_length"]
    assert len(groups) >= 2 and sum(g["users"] for g in groups) == len(u_mine)
    for g in groups:   # every group, read straight from its label's range of lengths
        lo, hi = (int(x) for x in (g["history_length"].split("-") * 2)[:2])
        sel = (lengths >= lo) & (lengths <= hi)
        assert g["users"] == sel.sum() > 0
        assert np.isclose(g["ndcg20"], u_mine[sel].mean()) and np.isclose(g["control_ndcg20"], u_theirs[sel].mean())
        d = u_mine[sel] - u_theirs[sel]
        assert (g["users_better"], g["users_worse"]) == (int((d > 0).sum()), int((d < 0).sum()))
    assert int(groups[0]["history_length"].split("-")[0]) == lengths.min()
    assert np.isclose(sum(g["ndcg20"] * g["users"] for g in groups) / len(u_mine), u_mine.mean())
    assert int(groups[-1]["history_length"].split("-")[-1]) == lengths.max()
    # the second control of a FAME row: the same base with its last block restarted (--reinit-last)
    restart = np.array([tests["sasrec-restart", s] for s in (0, 1)])
    assert json.loads((records / "sasrec-restart-s0.json").read_text())["train"]["reinit_last"] is True
    assert report["rows"]["sasrec-restart"]["against_control"]["against"] == "sasrec-cont"
    r = row["against_restart"]
    assert r["against"] == "sasrec-restart" and np.isclose(r["relative_gain"], mine.mean() / restart.mean() - 1)
    assert "against_restart" not in report["rows"]["sasrec-cont"]

    # by-seed: the report's rows paired by seed with a control read from its records alone
    r = ablation(tmp_path, "by-seed", "--control", "sasrec-restart")     # the report's seeds, 0 and 1
    assert r.returncode == 0, r.stderr
    paired = json.loads((tmp_path / "results" / f"ablation-{data.name}-by-seed-sasrec-restart.json").read_text())
    assert paired["seeds"] == [0, 1] and paired["control_values"] == restart.tolist()
    assert "sasrec-restart" not in paired["rows"] and "rows_left_out" not in paired
    got = paired["rows"]["fame-h2-n1"]
    assert got["values"] == mine.tolist() and np.isclose(got["relative_gain"], mine.mean() / restart.mean() - 1)
    assert np.isclose(got["seed_ttest_p"], stats.ttest_rel(mine, restart).pvalue)
    assert np.isclose(got["seed_ttest_p"], report["rows"]["fame-h2-n1"]["against_restart"]["seed_ttest_p"])
    r = ablation(tmp_path, "by-seed", "--seeds", "0", "1", "--control", "sasrec-h1-restart")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: sasrec-h1-restart has no record for seed(s) 0 1") and "run --rows" in r.stderr

    # the machine is lost: the records alone give the same report, and run trains nothing
    shutil.rmtree(runs)
    r = ablation(tmp_path, "report", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text()) == report
    r = ablation(tmp_path, "run", "--seeds", "0", "1", "--rows", *ROWS)
    assert r.returncode == 0, r.stderr
    assert not any(runs.iterdir()), "a recorded row was trained again"

    # a row that lost its record needs its base again: a remake that differs from the base's record stops
    for f in records.glob("sasrec-cont-s0.*"):
        f.unlink()
    base_rec = records / "sasrec-s0.json"
    kept = json.loads(base_rec.read_text())
    base_rec.write_text(json.dumps({**kept, "weights_sha256": "0" * 64}))
    before = base_rec.read_bytes()
    r = ablation(tmp_path, "run", "--seeds", "0", "--rows", "sasrec-cont")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "--allow-remade-base" in r.stderr
    assert base_rec.read_bytes() == before and not (records / "sasrec-cont-s0.json").exists()
    base_rec.write_text(json.dumps(kept))
    r = ablation(tmp_path, "run", "--seeds", "0", "--rows", "sasrec-cont")   # the remake equals the record: goes on
    assert r.returncode == 0, r.stderr
    assert json.loads((records / "sasrec-cont-s0.json").read_text())["test"]["NDCG@20"] == tests["sasrec-cont", 0]
    # a pair built on different remakes of its base is marked in the report
    row_rec = records / "fame-h2-n1-s0.json"
    row_rec.write_text(json.dumps({**json.loads(row_rec.read_text()), "base_sha256": "1" * 64}))
    r = ablation(tmp_path, "report", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text())["rows"]["fame-h2-n1"]["against_control"]["different_base_seeds"] == [0]

    # a report over fewer seeds would drop seed 1's rows: refused, the old report kept
    before = path.read_bytes()
    r = ablation(tmp_path, "report", "--seeds", "0")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--allow-fewer" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    r = ablation(tmp_path, "report", "--seeds", "0", "--allow-fewer")
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text())["rows"]["fame-h2-n1"]["seeds"] == [0]


def test_a_record_round_trips_ranks_past_the_clip_and_a_half_record_is_an_error(tmp_path):
    ablation_mod = ablation_script
    data = load_dataset(TINY_WORLD)
    records = tmp_path / "rec"
    records.mkdir()
    ranks = np.array([0, 19, 20, 254, 255, 256, 300, 59_999])
    meta, arrays = ablation_mod.record_paths(records, "sasrec", 0)
    np.savez_compressed(arrays, ranks=np.minimum(ranks, ablation_mod.RANK_CLIP).astype(np.uint8))
    meta.write_text(json.dumps({"row": "sasrec", "seed": 0, "data": data.name, "data_fingerprint": data.fingerprint(),
                                "users": len(ranks)}))
    back = ablation_mod.read_record(records, "sasrec", 0, data)["ranks"]
    assert back.tolist() == [0, 19, 20, 254, 255, 255, 255, 255]   # no uint8 wrap-around (256 -> 0)
    assert (ablation_mod.per_user_ndcg(back) == ablation_mod.per_user_ndcg(ranks)).all()
    # the record of another data version is refused, not misaligned
    other = load_dataset("synthetic:seed=4,n_users=150,n_items=60")
    with pytest.raises(ablation_mod.RecordError, match="another data version"):
        ablation_mod.read_record(records, "sasrec", 0, other)
    arrays.unlink()
    with pytest.raises(ablation_mod.RecordError, match="has no sasrec-s0.npz"):
        ablation_mod.read_record(records, "sasrec", 0, data)
    # one process trains a run folder at a time; a lock left by a killed process is taken over
    out = tmp_path / "runs" / "sasrec-s0"
    lock = out.with_name(".sasrec-s0.lock")
    lock.parent.mkdir()
    lock.write_text(str(os.getpid()))
    with pytest.raises(ablation_mod.RecordError, match="is being trained by process"):
        with ablation_mod.run_lock(out):
            pass
    lock.write_text("999999999")
    with ablation_mod.run_lock(out):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists() and not out.exists()


def test_the_figure_is_drawn_from_the_report_with_its_numbers_and_editable_text(tmp_path):
    data = load_dataset(TINY_WORLD)
    r = ablation(tmp_path, "figure")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "report" in r.stderr   # no report yet
    ndcg = {"sasrec-cont": [0.0300, 0.0304], "fame-h2-n4": [0.0306, 0.0310]}
    rows = {n: {"seeds": [0, 1], "test": {"NDCG@20": {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                                                        "values": v}}} for n, v in ndcg.items()}
    rows["fame-h2-n4"]["against_control"] = {"against": "sasrec-cont", "seeds": [0, 1], "relative_gain": 0.0203,
                                             "seed_ttest_p": 0.004, "user_wilcoxon_p": 3e-5,
                                             "different_base_seeds": [1]}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / f"ablation-{data.name}.json").write_text(json.dumps({"data": data.name, "rows": rows}))
    stem = tmp_path / "fig" / "ablation"
    r = ablation(tmp_path, "figure", "--figure", str(stem))
    assert r.returncode == 0, r.stderr
    import pandas as pd
    table = pd.read_csv(stem.with_suffix(".csv"), index_col="row")
    assert list(table.index) == ["sasrec-cont", "fame-h2-n4"]            # the figure's order, top to bottom
    assert np.isclose(table.loc["fame-h2-n4", "mean"], 0.0308) and np.isclose(table.loc["fame-h2-n4", "sample_std"],
                                                                              np.std([0.0306, 0.0310], ddof=1))
    svg = stem.with_suffix(".svg").read_text()
    assert "fame-h2-n4" in svg and "+2.0% (p 0.004 / 3e-05) \u2020" in svg and "sample sd" in svg   # text, not paths
    assert "at seed 1 the row and its control were built on two remakes" in svg
    assert stem.with_suffix(".pdf").stat().st_size > 0 and stem.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize("lengths, labels", [
    ([4] * 50 + [5] * 50, ["4", "5"]),                        # two values: two groups (the old flooring merged them)
    ([4] * 30 + [6] * 40 + [9] * 30, ["4", "5-6", "7-9"]),   # gaps between values: no empty group
    (list(range(1, 9)), ["1-2", "3-4", "5-6", "7-8"]),        # distinct values: quartiles
    ([7] * 10, ["7"]),
])
def test_length_groups_are_never_empty_and_keep_distinct_values_apart(lengths, labels):
    groups, got = ablation_script.length_groups(np.array(lengths))
    assert got == labels
    assert sorted(set(groups.tolist())) == list(range(len(labels)))   # every group holds users


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=300))
def test_length_groups_labels_hold_their_users(lengths):
    lengths = np.array(lengths)
    groups, labels = ablation_script.length_groups(lengths)
    assert 1 <= len(labels) <= 4 and np.all(np.diff(groups[np.argsort(lengths, kind="stable")]) >= 0)
    for g, label in enumerate(labels):
        lo, hi = (int(x) for x in (label.split("-") * 2)[:2])
        sel = groups == g
        assert sel.any() and lengths[sel].min() >= lo and lengths[sel].max() <= hi
        assert ((lengths >= lo) & (lengths <= hi) == sel).all()


def test_the_report_pairs_the_studys_bests_from_their_records(tmp_path):
    """experiments/study.py's --report records rows study-<model>[-from-<data>]: the report reads them,
    FAME's best against SASRec's best of the same source, SASRec's best against the untuned sasrec."""
    data = load_dataset(TINY_WORLD)
    users = len(data.splittable_rows())
    records = tmp_path / "results" / "ablation-runs" / data.name
    records.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ranks = {}
    for name, scale in (("sasrec", 40), ("study-sasrec", 30), ("study-fame", 20),
                        ("study-sasrec-from-Other", 25), ("study-fame-from-Other", 35)):
        for seed in (0, 1):
            r = rng.geometric(1 / scale, users) - 1
            ranks[name, seed] = np.minimum(r, 255)
            metrics = {m: 0.0 for m in ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "MRR")}
            metrics["NDCG@20"] = float(ndcg20(ranks[name, seed]).mean())
            rec = {"row": name, "seed": seed, "data": data.name, "data_fingerprint": data.fingerprint(),
                   "test": metrics, "valid": metrics, "best_epoch": 3, "epochs": 5, "users": users,
                   "base_sha256": "1" * 64 if "fame" in name else None}
            (records / f"{name}-s{seed}.json").write_text(json.dumps(rec))
            np.savez_compressed(records / f"{name}-s{seed}.npz", ranks=ranks[name, seed].astype(np.uint8))
    r = ablation(tmp_path, "report", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "results" / f"ablation-{data.name}.json").read_text())["rows"]
    assert list(rows) == ["sasrec", "study-sasrec", "study-fame", "study-sasrec-from-Other", "study-fame-from-Other"]
    for name, control in (("study-fame", "study-sasrec"), ("study-sasrec", "sasrec"),
                          ("study-fame-from-Other", "study-sasrec-from-Other"), ("study-sasrec-from-Other", "sasrec")):
        c = rows[name]["against_control"]
        mine = np.mean([ndcg20(ranks[name, s]) for s in (0, 1)], axis=0)
        theirs = np.mean([ndcg20(ranks[control, s]) for s in (0, 1)], axis=0)
        assert c["against"] == control and "different_base_seeds" not in c   # own bases by design
        assert np.isclose(c["relative_gain"], mine.mean() / theirs.mean() - 1)
        assert np.isclose(c["user_wilcoxon_p"], stats.wilcoxon(mine, theirs).pvalue)
        assert np.isclose(c["seed_ttest_p"], stats.ttest_rel([ndcg20(ranks[name, s]).mean() for s in (0, 1)],
                                                             [ndcg20(ranks[control, s]).mean() for s in (0, 1)]).pvalue)
    stem = tmp_path / "fig"
    assert ablation(tmp_path, "figure", "--figure", str(stem)).returncode == 0
    import pandas as pd
    assert list(pd.read_csv(stem.with_suffix(".csv"), index_col="row").index) == \
        ["sasrec", "study-sasrec", "study-fame", "study-sasrec-from-Other", "study-fame-from-Other"]
    svg = stem.with_suffix(".svg").read_text()
    assert "FAME's best is" in svg and "compared with SASRec's best, SASRec's best with sasrec" in svg
