"""experiments/study.py, the Optuna study of issue 15, end to end on a tiny world: trials run on
validation only, a repeated command adds no trial (the study is resumable from its SQLite file),
a larger --trials adds the missing ones, and --report retrains the best over seeds."""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import experiments.study
from tests.conftest import REPO, TINY_WORLD

pytestmark = pytest.mark.research
pytest.importorskip("optuna")


def study(tmp_path, *args):
    cmd = [sys.executable, "-m", "experiments.study", "--data", TINY_WORLD, "--epochs", "1",
           "--runs", str(tmp_path / "runs"), "--keep", str(tmp_path / "kept.db"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)


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
    assert all(t["state"] == "COMPLETE" for t in report["trials"])      # the waiting seeded trials are not listed
    ndcg = [s["test"]["NDCG@20"] for s in report["seeds"]]
    assert report["test_summary"]["NDCG@20"]["std"] == pytest.approx(np.std(ndcg, ddof=1))


def load(tmp_path, model):
    import optuna

    return optuna.load_study(study_name=f"synthetic-3-{model}", storage=f"sqlite:///{tmp_path / 'runs' / 'study.db'}")


def test_a_killed_trial_is_resumed_under_its_run_name_and_counted_once(tmp_path):
    assert study(tmp_path, "--model", "sasrec", "--trials", "1").returncode == 0
    st = load(tmp_path, "sasrec")
    killed = st.ask()                       # the waiting seeded trial, left RUNNING as by a kill
    module = experiments.study
    module.suggest(killed, "sasrec")         # its parameters drawn, as the study does before training
    r = study(tmp_path, "--model", "sasrec", "--trials", "2")
    assert r.returncode == 0, r.stderr
    assert trials(tmp_path) == [("COMPLETE", 2), ("FAIL", 1)]
    redo = [t for t in load(tmp_path, "sasrec").trials if t.state.name == "COMPLETE"][-1]
    assert redo.user_attrs["run"] == f"sasrec-t{killed.number}" and redo.user_attrs["replaces"] == killed.number
    assert redo.params["d"] == 128                                      # the killed trial's parameters
    assert study(tmp_path, "--model", "sasrec", "--trials", "2").returncode == 0
    assert trials(tmp_path) == [("COMPLETE", 2), ("FAIL", 1)]           # the budget counts it once


def test_report_reads_a_trial_made_before_the_activation_was_searched(tmp_path):
    import optuna
    from optuna.distributions import CategoricalDistribution as C, FloatDistribution as F

    (tmp_path / "runs").mkdir()
    st = optuna.create_study(study_name="synthetic-3-sasrec", storage=f"sqlite:///{tmp_path / 'runs' / 'study.db'}",
                             direction="maximize")
    params = {"d": 64, "n_heads": 2, "ffn_mult": 1, "dropout": 0.2, "lr": 1e-3, "max_len": 50,
              "weight_decay": 0.0, "patience": 10}
    dists = {"d": C([64, 128]), "n_heads": C([1, 2, 4, 8, 16]), "ffn_mult": C([1, 4]), "dropout": F(0.1, 0.6),
             "lr": F(1e-4, 3e-3, log=True), "max_len": C([50, 100]), "weight_decay": C([0.0, 1e-5, 1e-4]),
             "patience": C([10, 20, 40])}
    st.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=0.5))
    out = tmp_path / "report.json"
    r = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    conf = json.loads((tmp_path / "runs" / "best-sasrec-s0" / "config.json").read_text())
    assert conf["model"]["activation"] == "relu" and conf["model"]["ffn_dim"] == 64
    assert json.loads(out.read_text())["budget"]["trials"] == 1


def load_module():
    return experiments.study


def test_a_trial_reports_every_epoch_and_a_pruned_run_stays_resumable(tmp_path):
    import optuna

    from fame_core.checkpoint import read_metrics
    from fame_core.data import load_dataset

    class PruneAtEpoch2(optuna.pruners.BasePruner):     # a pruner that says "stop" at epoch 2, whatever the value
        def prune(self, study, trial):
            return max(trial.intermediate_values, default=0) >= 2

    module, data = load_module(), load_dataset(TINY_WORLD)
    st = optuna.create_study(direction="maximize", pruner=PruneAtEpoch2())
    p = {**module.SEEDED[0], "patience": 40}
    st.optimize(lambda t: module.run_trial(data, "sasrec", p, tmp_path, "run", epochs=5, trial=t)["valid"]["NDCG@20"],
                n_trials=1)
    t = st.trials[0]
    assert t.state == optuna.trial.TrialState.PRUNED
    lines = read_metrics(tmp_path / "run")
    assert len(lines) == 2 and (tmp_path / "run" / "train_state.pt").exists()     # stopped as if killed
    assert t.intermediate_values == {ln["epoch"]: ln["valid"]["NDCG@20"] for ln in lines}
    # a run that is not pruned reports all its epochs and ends finished, with the value of its best epoch
    st2 = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    st2.optimize(lambda t: module.run_trial(data, "sasrec", p, tmp_path, "full", epochs=3, trial=t)["valid"]["NDCG@20"],
                 n_trials=1)
    done = st2.trials[0]
    full = read_metrics(tmp_path / "full")
    assert done.state == optuna.trial.TrialState.COMPLETE and sorted(done.intermediate_values) == [1, 2, 3]
    assert done.value == pytest.approx(max(ln["valid"]["NDCG@20"] for ln in full))
    assert not (tmp_path / "full" / "train_state.pt").exists()
    # a run at its natural end (here the epoch cap, 2) is finished, not pruned, whatever the pruner says
    st3 = optuna.create_study(direction="maximize", pruner=PruneAtEpoch2())
    st3.optimize(lambda t: module.run_trial(data, "sasrec", p, tmp_path, "capped", epochs=2, trial=t)["valid"]["NDCG@20"],
                 n_trials=1)
    assert st3.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert not (tmp_path / "capped" / "train_state.pt").exists()


def test_a_study_keeps_its_pruner(tmp_path):
    assert study(tmp_path, "--model", "sasrec", "--trials", "1", "--pruner", "none").returncode == 0
    r = study(tmp_path, "--model", "sasrec", "--trials", "2")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "'none'" in r.stderr
    assert trials(tmp_path) == [("COMPLETE", 1)]
    bad = study(tmp_path, "--model", "sasrec", "--trials", "1", "--pruner", "none", "--prune-warmup", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_the_kept_copy_brings_a_study_back_after_the_runs_are_lost(tmp_path):
    import shutil

    assert study(tmp_path, "--model", "sasrec", "--trials", "1").returncode == 0
    kept = tmp_path / "kept.db"
    with sqlite3.connect(kept) as db:    # the copy is a whole database with the finished trial
        assert db.execute("select state from trials where state != 'WAITING'").fetchall() == [("COMPLETE",)]
    shutil.rmtree(tmp_path / "runs")     # the machine is lost
    r = study(tmp_path, "--model", "sasrec", "--trials", "1")
    assert r.returncode == 0, r.stderr
    assert "kept copy" in r.stderr and trials(tmp_path) == [("COMPLETE", 1)]
    assert not (tmp_path / "runs" / "sasrec-t0").exists(), "the finished trial was trained again"
    # the report's budget still counts the lost trial's epochs (from the database, not its run folder)
    r = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "runs" / "report-sasrec.json").read_text())
    assert report["budget"]["epochs_trained"] == 1
    # a seed whose run folder is lost again is read back from its kept record, not trained again
    shutil.rmtree(tmp_path / "runs" / "best-sasrec-s0")
    r = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0")
    assert r.returncode == 0, r.stderr
    assert "read back from its record" in r.stderr and not (tmp_path / "runs" / "best-sasrec-s0").exists()
    again = json.loads((tmp_path / "runs" / "report-sasrec.json").read_text())
    assert again["seeds"][0]["test"] == report["seeds"][0]["test"]
    # ...but only a record of the same settings: a record naming another dropout is not read back;
    # the seed is trained anew
    meta = tmp_path / "runs" / "records" / "study-sasrec-s0.json"
    rec = json.loads(meta.read_text())
    meta.write_text(json.dumps({**rec, "model": {**rec["model"], "dropout": rec["model"]["dropout"] + 0.1}}))
    r = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0")
    assert "read back" not in r.stderr and (tmp_path / "runs" / "best-sasrec-s0" / "config.json").exists()
    # a runs database lacking a finished trial of the copy never replaces it
    before = kept.read_bytes()
    with sqlite3.connect(tmp_path / "runs" / "study.db") as db:
        db.execute("delete from trials where state = 'COMPLETE'")
    r = study(tmp_path, "--model", "sasrec", "--trials", "2")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "move" in r.stderr
    assert kept.read_bytes() == before


def test_a_bad_kept_copy_is_one_error_line_and_is_not_copied_in(tmp_path):
    kept = tmp_path / "kept.db"
    kept.write_text("version https://git-lfs.github.com/spec/v1\n")     # e.g. a pointer, not the database
    r = study(tmp_path, "--model", "sasrec", "--trials", "1")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "not a study database" in r.stderr
    assert not (tmp_path / "runs" / "study.db").exists()
    (tmp_path / "runs").mkdir(exist_ok=True)
    r = study(tmp_path, "--model", "sasrec", "--trials", "1", "--keep", str(tmp_path / "runs" / "study.db"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "itself" in r.stderr


def test_the_copy_is_made_after_every_trial_and_never_over_another_lines_trials(tmp_path, monkeypatch):
    import optuna

    module = load_module()
    seen = []

    def fake_trial(data, model, p, runs, name, seed=0, epochs=200, device="auto", trial=None):
        with sqlite3.connect(tmp_path / "kept.db") if (tmp_path / "kept.db").exists() else sqlite3.connect(":memory:") \
                as db:
            has = db.execute("select name from sqlite_master where name = 'trials'").fetchall()
            seen.append(db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0] if has else 0)
        return {"valid": {"NDCG@20": 0.01 * len(seen)}, "best_epoch": 1}

    monkeypatch.setattr(module, "run_trial", fake_trial)
    argv = ["study.py", "--data", TINY_WORLD, "--model", "sasrec", "--runs", str(tmp_path / "runs"),
            "--keep", str(tmp_path / "kept.db")]
    monkeypatch.setattr(sys, "argv", [*argv, "--trials", "3"])
    assert module.main() == 0
    assert seen == [0, 1, 2]     # each trial found the trials before it already in the copy
    # another line of runs with its own database must not write over this copy's trials
    monkeypatch.setattr(sys, "argv", ["study.py", "--data", TINY_WORLD, "--model", "sasrec", "--runs",
                                      str(tmp_path / "other"), "--keep", str(tmp_path / "kept.db"), "--trials", "1"])
    (tmp_path / "other").mkdir()
    optuna.create_study(study_name="x", storage=f"sqlite:///{tmp_path / 'other' / 'study.db'}")
    before = (tmp_path / "kept.db").read_bytes()
    assert module.main() == 2
    assert (tmp_path / "kept.db").read_bytes() == before


def test_a_fame_base_already_trained_as_a_sasrec_trial_is_copied_not_retrained(tmp_path):
    assert study(tmp_path, "--model", "sasrec", "--trials", "1").returncode == 0
    r = study(tmp_path, "--model", "fame", "--trials", "1")
    assert r.returncode == 0, r.stderr
    runs = tmp_path / "runs"
    (base,) = (runs / "bases").iterdir()
    assert "is a copy of the finished run sasrec-t0" in r.stderr
    for f in ("weights.safetensors", "config.json", "metrics.jsonl"):
        assert (base / f).read_bytes() == (runs / "sasrec-t0" / f).read_bytes()
    assert not (base / "train_state.pt").exists() and not list((runs / "bases").glob(".*"))
    assert json.loads((runs / "fame-t0" / "config.json").read_text())["train"]["init_from"] == str(base.resolve())


def test_a_base_differing_in_any_setting_is_not_taken_from_a_sasrec_run(tmp_path):
    from fame_core.data import load_dataset

    module = load_module()
    data = load_dataset(TINY_WORLD)
    assert study(tmp_path, "--model", "sasrec", "--trials", "1").returncode == 0
    runs = tmp_path / "runs"
    p = {**module.SEEDED[0], **module.SEEDED_FAME}
    assert module.twin_run(data, p, 0, runs, epochs=1) == runs / "sasrec-t0"
    assert module.twin_run(data, p, 1, runs, epochs=1) is None                        # another seed
    assert module.twin_run(data, {**p, "lr": p["lr"] * 2}, 0, runs, epochs=1) is None  # another training
    assert module.twin_run(data, {**p, "dropout": 0.3}, 0, runs, epochs=1) is None     # another model
    assert module.twin_run(data, p, 0, runs, epochs=2) is None                         # another epoch cap
    (runs / "sasrec-t0" / "train_state.pt").write_bytes(b"")                           # as if unfinished
    assert module.twin_run(data, p, 0, runs, epochs=1) is None


def test_a_fame_twin_needs_the_same_base_folder_and_settings(tmp_path):
    from fame_core.data import load_dataset

    module = load_module()
    data = load_dataset(TINY_WORLD)
    assert study(tmp_path, "--model", "fame", "--trials", "1").returncode == 0
    runs = tmp_path / "runs"
    (base,) = (runs / "bases").iterdir()
    p = {**module.SEEDED[0], **module.SEEDED_FAME}
    assert module.twin_run(data, p, 0, runs, 1, "fame", base) == runs / "fame-t0"
    (tmp_path / "link").symlink_to(runs)                                          # the same base by another path
    assert module.twin_run(data, p, 0, runs, 1, "fame", tmp_path / "link" / "bases" / base.name) == runs / "fame-t0"
    other = runs / "bases" / "other"
    other.mkdir()
    assert module.twin_run(data, p, 0, runs, 1, "fame", other) is None             # another base
    assert module.twin_run(data, {**p, "warm": False}, 0, runs, 1, "fame", base) is None
    assert module.twin_run(data, {**p, "n_experts": 2}, 0, runs, 1, "fame", base) is None
    assert module.twin_run(data, {**p, "lr": p["lr"] * 2}, 0, runs, 1, "fame", base) is None
    assert module.twin_run(data, p, 0, runs, 1, "sasrec") != runs / "fame-t0"     # never a run of the other model


def test_a_restart_draws_new_parameters_and_a_repeated_draw_is_not_trained_again(tmp_path):
    # with the sampler seeded alike at every start, the first trial sampled after a restart repeated
    # the first one sampled before it (a whole training spent on a configuration already judged)
    assert study(tmp_path, "--model", "sasrec", "--trials", "3").returncode == 0
    assert study(tmp_path, "--model", "sasrec", "--trials", "4").returncode == 0
    sampled = [t for t in load(tmp_path, "sasrec").trials if t.number >= 2]
    assert [t.state.name for t in sampled] == ["COMPLETE", "COMPLETE"]
    assert sampled[0].params != sampled[1].params
    # a trial left RUNNING with an ended trial's exact parameters (as such a replay, killed) is failed,
    # not enqueued again, and not counted: the next start trains one new configuration, not it
    st = load(tmp_path, "sasrec")
    st.enqueue_trial(sampled[1].params)
    replay = st.ask()
    module = experiments.study
    module.suggest(replay, "sasrec")
    assert replay.params == sampled[1].params
    r = study(tmp_path, "--model", "sasrec", "--trials", "5")
    assert r.returncode == 0, r.stderr
    after = load(tmp_path, "sasrec").trials
    assert after[replay.number].state.name == "FAIL"
    assert [t.state.name for t in after[replay.number + 1:]] == ["COMPLETE"]   # one new trial, not the replay
    assert after[-1].params not in [t.params for t in after[:replay.number + 1]]
    assert trials(tmp_path) == [("COMPLETE", 5), ("FAIL", 1)]
    # --list beside a trial training in another process: it reads, and leaves that trial RUNNING
    busy = load(tmp_path, "sasrec").ask()
    module.suggest(busy, "sasrec")
    before = (tmp_path / "runs" / "study.db").read_bytes()
    listed = study(tmp_path, "--model", "sasrec", "--list", "--out", str(tmp_path / "list.json"))
    assert listed.returncode == 0, listed.stderr
    listing = json.loads((tmp_path / "list.json").read_text())
    assert listing["budget"]["trials"] == 5 and listing["left_running"] == [busy.number]
    assert [r["number"] for r in listing["trials"]] == [0, 1, 2, 3, replay.number + 1]   # the replay is not counted
    assert (tmp_path / "runs" / "study.db").read_bytes() == before                     # nothing written
    assert trials(tmp_path) == [("COMPLETE", 5), ("FAIL", 1), ("RUNNING", 1)]
    # a study not begun: one error line, and no database or study made for it
    r = study(tmp_path, "--model", "fame", "--list", "--out", str(tmp_path / "none.json"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert (tmp_path / "runs" / "study.db").read_bytes() == before and not (tmp_path / "none.json").exists()
    empty = tmp_path / "empty"
    r = subprocess.run([sys.executable, "-m", "experiments.study", "--data", TINY_WORLD, "--model", "sasrec",
                        "--list", "--runs", str(empty)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 2 and "start the study first" in r.stderr and not empty.exists()


def test_compare_pairs_the_two_bests_by_seed_and_by_user_from_their_records(tmp_path):
    from scipy import stats

    from fame_core.checkpoint import load_checkpoint
    from fame_core.data import load_dataset
    from fame_core.evaluate import evaluate

    early = study(tmp_path, "--compare", "--seeds", "0", "1")
    assert early.returncode == 2 and early.stderr.count("\n") == 1 and "run --model sasrec --report" in early.stderr
    for model in ("sasrec", "fame"):
        assert study(tmp_path, "--model", model, "--trials", "1").returncode == 0
        r = study(tmp_path, "--model", model, "--report", "--seeds", "0", "1", "--out", str(tmp_path / f"{model}.json"))
        assert r.returncode == 0, r.stderr
        # seed 0 is the best trial itself (the study trains at seed 0): copied, not trained again
        assert f"best-{model}-s0 is a copy of the finished run {model}-t0" in r.stderr
        assert f"best-{model}-s1 is a copy" not in r.stderr
        runs = tmp_path / "runs"
        assert (runs / f"best-{model}-s0" / "weights.safetensors").read_bytes() == \
            (runs / f"{model}-t0" / "weights.safetensors").read_bytes()
        assert {p.name for p in (tmp_path / "runs" / "records").glob(f"study-{model}-s*")} == \
            {f"study-{model}-s{s}.{x}" for s in (0, 1) for x in ("json", "npz")}
    r = study(tmp_path, "--compare", "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "runs" / "compare.json").read_text())
    cmp = got["fame_against_sasrec"]
    # the same statistics computed directly from the retrained checkpoints
    data = load_dataset(TINY_WORLD)
    runs = tmp_path / "runs"

    def user_ndcg(run):
        ranks = np.asarray(evaluate(load_checkpoint(runs / run), data, "test", return_ranks=True)["ranks"])
        return np.where(ranks < 20, 1.0 / np.log2(ranks + 2.0), 0.0)

    fame = [user_ndcg(f"best-fame-s{s}") for s in (0, 1)]
    sasrec = [user_ndcg(f"best-sasrec-s{s}") for s in (0, 1)]
    mf, ms = np.mean(fame, axis=0), np.mean(sasrec, axis=0)
    assert cmp["seeds"] == [0, 1] and cmp["users"] == len(mf)
    assert cmp["relative_gain"] == pytest.approx(mf.mean() / ms.mean() - 1, abs=1e-9)
    assert cmp["seed_ttest_p"] == pytest.approx(stats.ttest_rel([f.mean() for f in fame],
                                                                [s.mean() for s in sasrec]).pvalue, nan_ok=True)
    if (mf != ms).any():
        assert cmp["user_wilcoxon_p"] == pytest.approx(stats.wilcoxon(mf, ms).pvalue)
    assert "different_base_seeds" not in cmp    # FAME's own base is not a remade one of SASRec's
    assert got["rows"]["fame"]["test"]["NDCG@20"]["std"] == pytest.approx(np.std([f.mean() for f in fame], ddof=1))
    assert got["rows"]["fame"]["row"] == "study-fame" and got["rows"]["sasrec"]["train"]["seed"] == 0
    with_model = study(tmp_path, "--compare", "--model", "fame")
    assert with_model.returncode == 2 and "leave --model out" in with_model.stderr

    # a best-* folder or a record of another configuration (an earlier best) is refused, not reused
    conf = runs / "best-sasrec-s1" / "config.json"
    c = json.loads(conf.read_text())
    conf.write_text(json.dumps({**c, "train": {**c["train"], "lr": c["train"]["lr"] * 2}}))
    stale = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0", "1", "--out", str(tmp_path / "x.json"))
    assert stale.returncode == 2 and stale.stderr.count("\n") == 1 and "another configuration" in stale.stderr
    conf.write_text(json.dumps(c))
    rec = runs / "records" / "study-sasrec-s1.json"
    r1 = json.loads(rec.read_text())
    rec.write_text(json.dumps({**r1, "weights_sha256": "0" * 64}))
    stale = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0", "1", "--out", str(tmp_path / "x.json"))
    assert stale.returncode == 2 and stale.stderr.count("\n") == 1 and "other weights" in stale.stderr


def test_best_from_retrains_another_data_sets_best_here_and_never_writes_its_database(tmp_path):
    assert study(tmp_path, "--model", "sasrec", "--trials", "1").returncode == 0
    kept = tmp_path / "kept.db"
    before = kept.read_bytes()
    other = "synthetic:seed=4,n_users=120,n_items=50,genre=4,actor=6,min_len=4,max_len=12"
    cmd = [sys.executable, "-m", "experiments.study", "--data", other, "--epochs", "1", "--model", "sasrec",
           "--runs", str(tmp_path / "other"), "--seeds", "0", "--out", str(tmp_path / "other.json")]

    def run(*args):
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)

    r = run("--report", "--best-from", str(kept))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "other.json").read_text())
    assert report["best_from"]["data"] == "synthetic-3" and report["best_from"]["trial"] == 0
    assert report["budget"]["trials"] == 1 and report["budget"]["epochs_trained"] is None
    # named apart from the data set's own study: runs, records and report never mix
    trained = json.loads((tmp_path / "other" / "best-from-synthetic-3-sasrec-s0" / "config.json").read_text())
    source = json.loads((tmp_path / "runs" / "sasrec-t0" / "config.json").read_text())
    assert trained["data"].startswith(other) and {k: v for k, v in trained["model"].items() if k != "n_items"} == \
        {k: v for k, v in source["model"].items() if k != "n_items"}
    assert (tmp_path / "other" / "records" / "study-sasrec-from-synthetic-3-s0.npz").exists()
    assert kept.read_bytes() == before                       # read from a private copy
    missing = run("--report", "--best-from", str(kept), "--model", "fame")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no study 'synthetic-3-fame'" in missing.stderr
    nothing = subprocess.run([*cmd[:-8], "--compare", "--best-from", str(kept), "--runs", str(tmp_path / "other"),
                              "--seeds", "0"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert nothing.returncode == 2 and "study-sasrec-from-synthetic-3" not in nothing.stderr and \
        "--report --best-from" in nothing.stderr                  # the FAME record is what is missing
    for args, says in ((("--best-from", str(kept)), "goes with --report"),
                       (("--report", "--best-from", str(tmp_path / "none.db")), "not one data set's study database"),
                       (("--report", "--best-from", str(tmp_path / "other.json")), "not one data set's study database")):
        bad = run(*args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, bad.stderr
    same = study(tmp_path, "--model", "sasrec", "--report", "--best-from", str(kept))
    assert same.returncode == 2 and "own study" in same.stderr


def test_a_run_is_matched_by_its_datas_fingerprint_not_the_path_that_named_it(tmp_path):
    """A study run from one work tree names the data by another path than a --report from the next
    (/work/shared/... against ../shared/...): the same file must match, other contents must not."""
    from fame_core.data import load_dataset

    module = load_module()
    seqs = load_dataset(TINY_WORLD).sequences
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "toy.txt").write_text("".join(f"{u + 1} {' '.join(map(str, s))}\n" for u, s in enumerate(seqs)))
    (tmp_path / "elsewhere").symlink_to(tmp_path / "d")
    r = subprocess.run([sys.executable, "-m", "experiments.study", "--data", str(tmp_path / "d" / "toy.txt"),
                        "--epochs", "1", "--runs", str(tmp_path / "runs"), "--model", "sasrec", "--trials", "1"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert r.returncode == 0, r.stderr
    p = dict(module.SEEDED[0])
    via_link = load_dataset(str(tmp_path / "elsewhere" / "toy.txt"))
    assert module.twin_run(via_link, p, 0, tmp_path / "runs", epochs=1) == tmp_path / "runs" / "sasrec-t0"
    (tmp_path / "d" / "other.txt").write_text("".join(f"{u + 1} {' '.join(map(str, s[::-1]))}\n"
                                                      for u, s in enumerate(seqs)))
    assert module.twin_run(load_dataset(str(tmp_path / "d" / "other.txt")), p, 0, tmp_path / "runs", epochs=1) is None


def test_report_leaves_a_running_trial_alone(tmp_path):
    """--report may run beside the study: a RUNNING trial may be training now, and failing it
    (what a restarted study does with a killed one) would throw that training away."""
    assert study(tmp_path, "--model", "sasrec", "--trials", "1").returncode == 0
    running = load(tmp_path, "sasrec").ask()
    r = study(tmp_path, "--model", "sasrec", "--report", "--seeds", "0", "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert load(tmp_path, "sasrec").trials[running.number].state.name == "RUNNING"
