"""A hyperparameter study on validation only (issue 15), resumable: Optuna with SQLite storage.

    python -m experiments.study --data ../shared/data/amazon/Beauty.txt --model sasrec --trials 12
    python -m experiments.study --data ../shared/data/amazon/Beauty.txt --model fame   --trials 12
    python -m experiments.study --data ../shared/data/amazon/Beauty.txt --model fame --report   # best, then test
    python -m experiments.study --data ../shared/data/amazon/Beauty.txt --compare   # FAME's best vs SASRec's
    python -m experiments.study --data ../shared/data/amazon/Sports_and_Outdoors.txt --model fame --report \
        --best-from experiments/results/study-Beauty.db   # Beauty's best, retrained on Sports

One study per (data set, model) in runs/study/<data>/study.db, so SASRec and FAME are tuned with
the same trial budget and neither more than the other; a killed study continues where it
stopped (`--trials` is the total wanted, finished and failed trials count, except a failed trial
that another resumed and one that repeated an ended trial's exact parameters; an interrupted trial
is resumed from its checkpoint). After every trial the database is copied (SQLite's backup, then
an atomic rename) to `--keep` (with the default --runs: experiments/results/study-<data>.db, committed),
and a machine that has no runs/study/<data>/study.db starts from that copy: the finished trials
survive the loss of runs/, as the ablation's records do (a trial cut by the loss is trained again
from its start). A copy holding a finished trial the database lacks, or that is not a study
database, is never replaced (checked at the start and before every copy; error, exit 2).
Each trial is one full training with early stopping on validation NDCG@20; the objective is
that validation NDCG@20 — test is never looked at while searching. FAME trials follow the
paper's pipeline: a SASRec with the trial's shared settings (embedding size, heads, layers, max
length, dropout, feed-forward) is trained first (or copied from a finished SASRec trial of
the same folder trained with exactly its settings and seed) and reused by every later trial with
the same shared settings; FAME is built from it.

Search space (the paper's grids where it states one, Sec. 5.1; ICLRec's code defaults included):
embedding size {64, 128}; heads {1, 2, 4, 8, 16} (those dividing d); experts {2, 4, 8, 16, 32}
(FAME); feed-forward width {d, 4d} and activation {ReLU, GELU}; dropout [0.1, 0.6]; learning rate [1e-4, 3e-3] (log);
max length {50, 100}; weight decay {0, 1e-5, 1e-4}; patience {10, 20, 40}; warm start and
residual (FAME). The first two trials of each study are the SEEDED settings (ICLRec's code
defaults at d = 64 and d = 128), then Optuna's TPE sampler.

Pruning (`--pruner median`, the default): a trial reports its validation NDCG@20 after every
epoch and Optuna's MedianPruner stops it once, past `--prune-warmup` epochs, its best so far is
below the median of the earlier trials at the same epoch (the seeded trials always run to the
end). It makes a study affordable on a CPU; its known bias is against settings that start slowly
(low learning rates), so both studies use the same pruner and the report counts pruned trials and
epochs trained. FAME trials are pruned on FAME's epochs; the shared base SASRec is never pruned.
`--pruner none` runs every trial to its early stop. `--report` retrains the best configuration over
`--seeds` (a seed the study already trained it at, seed 0, is copied from that trial's run) and
writes experiments/results/study-<data>-<model>.json with the budget, every trial, the best configuration
and its test numbers (mean and sample std over seeds), and keeps each seed's per-user test ranks as
an ablation record `study-<model>-s<seed>` (experiments/results/ablation-runs/<data>/, as
experiments/ablation.py's rows). `--compare` trains nothing: it pairs FAME's best with SASRec's (each
tuned with the same budget) on --seeds (each model needs a record of each), by seed (paired t-test)
and by user (Wilcoxon), and writes experiments/results/study-<data>-compare.json. `--report --best-from
DB` retrains the best of another data set's study (its database, read from a private copy) on
--data, with no search there: both models' bests transferred alike (on this CPU, Sports is reported
this way; its report says so under "best_from"). Its runs, records and report are named apart
(`best-from-<source>-<model>-s<seed>`, row `study-<model>-from-<source>`,
`study-<data>-<model>-from-<source>.json`), and `--compare --best-from DB` pairs those. `--list`
trains nothing: it prints the trials so far and writes them with the budget to
experiments/results/study-<data>-<model>-trials.json (with another --runs: <runs>/trials-<model>.json);
it only reads the database (safe beside a running study).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]


def suggest(trial, model: str) -> dict:
    d = trial.suggest_categorical("d", [64, 128])
    heads = trial.suggest_categorical("n_heads", [1, 2, 4, 8, 16])
    if d % heads:
        heads = 2            # keep the trial valid; recorded as the value used
        trial.set_user_attr("n_heads_used", heads)
    p = {"d": d, "n_heads": heads, "ffn_mult": trial.suggest_categorical("ffn_mult", [1, 4]),
         "activation": trial.suggest_categorical("activation", ["relu", "gelu"]),
         "dropout": trial.suggest_float("dropout", 0.1, 0.6), "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
         "max_len": trial.suggest_categorical("max_len", [50, 100]),
         "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-5, 1e-4]),
         "patience": trial.suggest_categorical("patience", [10, 20, 40])}
    if model == "fame":
        p["n_experts"] = trial.suggest_categorical("n_experts", [2, 4, 8, 16, 32])
        p["warm"] = trial.suggest_categorical("warm", [False, True])
        p["residual"] = trial.suggest_categorical("residual", [False, True])
    return p


# The first trials of every study, so that both models are tried at the settings the paper's
# data files come with before the sampler explores: ICLRec's code defaults (d 64, 2 heads,
# feed-forward 4d with GELU, dropout 0.5, lr 1e-3, max length 50, patience 40), and the same at
# the paper's other embedding size, 128. FAME adds the paper's N = 4 with warm start + residual.
SEEDED = [{"d": 64, "n_heads": 2, "ffn_mult": 4, "activation": "gelu", "dropout": 0.5, "lr": 1e-3, "max_len": 50,
           "weight_decay": 0.0, "patience": 40},
          {"d": 128, "n_heads": 2, "ffn_mult": 4, "activation": "gelu", "dropout": 0.5, "lr": 1e-3, "max_len": 50,
           "weight_decay": 0.0, "patience": 40}]
SEEDED_FAME = {"n_experts": 4, "warm": True, "residual": True}
# parameters a trial of a study made before they were searched ran at (the model's defaults)
EARLIER_DEFAULTS = {"activation": "relu"}


def key(p: dict) -> str:
    """The settings a FAME trial shares with the SASRec it is built from: names its base run."""
    act = "" if p["activation"] == "relu" else p["activation"]     # relu: the names of runs made before GELU was searched
    return f"d{p['d']}-h{p['n_heads']}-f{p['ffn_mult']}{act}-l{p['max_len']}-do{p['dropout']:.3f}"


def report_epochs(trial, out: Path) -> None:
    """Tell the trial its validation NDCG@20 of every epoch it has not been told yet (a resumed
    trial is told the epochs of the run it resumes first)."""
    from fame_core.checkpoint import read_metrics

    told = trial.user_attrs.get("epochs_told", 0)
    lines = read_metrics(out)
    for line in lines[told:]:
        trial.report(line["valid"]["NDCG@20"], line["epoch"])
    trial.set_user_attr("epochs_told", len(lines))


def run_is_over(out: Path, tcfg) -> bool:
    """True when the run's next call would train nothing: the epoch cap is reached or patience ran out."""
    from fame_core.checkpoint import read_metrics

    lines = read_metrics(out)
    since_best = next((i for i, line in enumerate(reversed(lines)) if line.get("best")), len(lines))
    return len(lines) >= tcfg.epochs or since_best >= tcfg.patience


def configs(data, model: str, p: dict, seed: int, base: Path | None, epochs: int, device: str):
    """The model and training configurations of one run of a trial's parameters."""
    from fame_core.models import model_config
    from fame_core.training import TrainConfig

    extra = dict(n_experts=p["n_experts"], residual=p["residual"]) if model == "fame" else {}
    mcfg = model_config(model, n_items=data.n_items, d=p["d"], n_heads=p["n_heads"], max_len=p["max_len"],
                        dropout=p["dropout"], attn_dropout=p["dropout"], ffn_dim=p["d"] * p["ffn_mult"],
                        activation=p["activation"], **extra)
    tcfg = TrainConfig(seed=seed, lr=p["lr"],
                       weight_decay=p["weight_decay"], patience=p["patience"], epochs=epochs,
                       # resolved: a later start from another work tree (runs/ reached by a link) names it alike
                       init_from=str(Path(base).resolve()) if base else None, warm=bool(p.get("warm")) and base is not None,
                       device=device)
    return mcfg, tcfg


def train_config(data, model: str, p: dict, seed: int, out: Path, base: Path | None = None, epochs: int = 200,
                 device: str = "auto", trial=None):
    """Train (or resume, or read back) one run. With a trial, one epoch at a time, its validation
    NDCG@20 reported after each, and optuna.TrialPruned raised where the study's pruner says so."""
    from fame_core.training import train

    config = out / "config.json"
    if config.exists() and not (out / "train_state.pt").exists():
        return json.loads(config.read_text())
    mcfg, tcfg = configs(data, model, p, seed, base, epochs, device)
    while True:
        r = train(data, mcfg, tcfg, out, resume=(out / "train_state.pt").exists(), progress=sys.stderr.isatty(),
                  stop_after=None if trial is None else 1)
        if trial is None:
            break
        report_epochs(trial, out)
        if r["status"] == "finished":
            break
        if run_is_over(out, tcfg):   # its last epoch: one more call lets train finish it (never pruned there)
            continue
        if trial.should_prune():
            import optuna

            raise optuna.TrialPruned()
    return json.loads(config.read_text())


def same_model(record, mcfg) -> bool:
    """Whether a recorded "model" object is the configuration mcfg, read as a checkpoint reads it (a
    record written before a later option existed holds that option at its default)."""
    from fame_core.errors import FameError
    from fame_core.models import config_from_dict

    try:
        return config_from_dict(record) == mcfg
    except FameError:
        return False


def run_matches(run: Path, data, model: str, p: dict, seed: int, base: Path | None, epochs: int) -> bool:
    """Whether a finished run is `model` with parameters `p` and `seed` trained on `data`: the same
    data (by fingerprint: the same file named by another path, from another work tree, is the same
    data), the same model record, the same training record (device and evaluation batch aside: they
    do not change what is computed; a FAME's base compared as the folder it names, through links)."""
    from fame_core.training import RESUME_MAY_CHANGE, same_file, train_record

    try:
        config = json.loads((run / "config.json").read_text())
        fingerprint = json.loads((run / "dataset.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        return False
    mcfg, tcfg = configs(data, model, p, seed, base, epochs, "auto")
    want_train = {k: v for k, v in train_record(tcfg).items() if k not in RESUME_MAY_CHANGE}
    train = {k: v for k, v in config.get("train", {}).items() if k not in RESUME_MAY_CHANGE}
    if want_train.get("init_from") and same_file(train.get("init_from"), want_train["init_from"]):
        train["init_from"] = want_train["init_from"]   # the same base reached by another path
    return config.get("status") == "finished" and same_model(config.get("model"), mcfg) and \
        fingerprint == data.fingerprint() and train == want_train


def record_matches(rec: dict, data, model: str, p: dict, seed: int, base: Path | None, epochs: int) -> bool:
    """Whether a kept record (experiments/ablation.py's) is of `model` with parameters `p` and `seed` on
    `data`: the same model record and training record as run_matches asks of a run folder (the
    base's path aside: a record outlives the folder it named). A --report seed whose run folder is
    gone (a fresh machine) but whose record matches is read back, not trained again."""
    from fame_core.training import RESUME_MAY_CHANGE, train_record

    mcfg, tcfg = configs(data, model, p, seed, base, epochs, "auto")
    skip = (*RESUME_MAY_CHANGE, "init_from")
    want_train = {k: v for k, v in train_record(tcfg).items() if k not in skip}
    train = {k: v for k, v in (rec.get("train") or {}).items() if k not in skip}
    return same_model(rec.get("model"), mcfg) and rec.get("data_fingerprint") == data.fingerprint() and \
        train == want_train and (base is None) == (rec.get("base_sha256") is None)


def twin_run(data, p: dict, seed: int, runs: Path, epochs: int = 200, model: str = "sasrec",
             base: Path | None = None, prefer: Path | None = None) -> Path | None:
    """A finished run of this study folder (a trial, a --report run) trained with exactly the
    settings `model` with parameters `p` and `seed` would be trained with (`run_matches`), `prefer`
    first (the best trial's own run); None where there is none. A FAME trial's base, and a
    --report's seed that a trial already trained, are copied from it rather than trained again."""
    candidates = sorted(c.parent for c in runs.glob(f"*{model}-*/config.json"))
    if prefer is not None and prefer in candidates:
        candidates.remove(prefer)
        candidates.insert(0, prefer)
    for run in candidates:
        if run.name.startswith(".") or (run / "train_state.pt").exists() or not (run / "weights.safetensors").exists():
            continue   # unfinished, or not a checkpoint
        if run_matches(run, data, model, p, seed, base, epochs):
            return run
    return None


def copy_run(src: Path, dst: Path) -> None:
    """Copy a finished run's checkpoint and metrics into a new folder, atomically (a kill leaves no
    half folder; an existing folder is never replaced)."""
    import shutil

    from fame_core.checkpoint import FILES

    tmp = dst.with_name(f".{dst.name}.copy-{os.getpid()}")
    tmp.mkdir(parents=True)
    for f in (*FILES, "metrics.jsonl"):
        shutil.copy2(src / f, tmp / f)
    tmp.rename(dst)   # refuses a non-empty dst: a base trained meanwhile is kept


def run_trial(data, model: str, p: dict, runs: Path, name: str, seed: int = 0, epochs: int = 200,
              device: str = "auto", trial=None) -> dict:
    """One trial's training; with `trial`, its epochs are reported and it may be pruned (never the
    shared base SASRec of a FAME trial). A FAME trial's base that a SASRec trial has already trained
    (the same settings and seed: the seeded trials are) is copied from it, not trained again."""
    if model == "sasrec":
        return train_config(data, "sasrec", p, seed, runs / name, epochs=epochs, device=device, trial=trial)
    base = runs / "bases" / f"sasrec-{key(p)}-s{seed}"
    if not base.exists() and (twin := twin_run(data, p, seed, runs, epochs)) is not None:
        copy_run(twin, base)
        print(f"study: the base {base.name} is a copy of the finished run {twin.name} (same settings and seed)",
              file=sys.stderr)
    train_config(data, "sasrec", p, seed, base, epochs=epochs, device=device)
    return train_config(data, "fame", p, seed, runs / name, base=base, epochs=epochs, device=device, trial=trial)


def epochs_trained(runs: Path, t) -> int:
    """Epochs a trial's own run trained (FAME: not counting its shared base). From the run's metrics,
    or, where its run folder is gone (a fresh machine continues from the committed database), from
    the epochs the trial was told (the same count: one report per epoch trained)."""
    from fame_core.checkpoint import read_metrics

    run = runs / t.user_attrs.get("run", "")
    return len(read_metrics(run)) if (run / "metrics.jsonl").exists() else int(t.user_attrs.get("epochs_told", 0))


class RepeatedDraw(Exception):
    """A trial whose parameters an ended trial already had: one configuration is judged once."""


class KeepError(Exception):
    """The kept copy cannot be used or would lose trials: the message says what to do."""


def ended_trials(db: Path) -> dict | None:
    """{(study, trial number): (state, value)} of a study database's finished (COMPLETE or PRUNED)
    trials; None where the file is not a study database."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            rows = con.execute(
                "select s.study_name, t.number, t.state, v.value from trials t join studies s using (study_id) "
                "left join trial_values v on v.trial_id = t.trial_id and v.objective = 0 "
                "where t.state in ('COMPLETE', 'PRUNED')").fetchall()
    except sqlite3.DatabaseError:   # not a database, or one without Optuna's tables
        return None
    return {(study, number): (state, value) for study, number, state, value in rows}


def sound_copy(keep: Path) -> dict:
    """The kept copy's finished trials, or KeepError where it is not a study database."""
    kept = ended_trials(keep)
    if kept is None:
        raise KeepError(f"the kept copy {keep} is not a study database; restore it from git (git checkout -- {keep}) "
                        "or pass another --keep")
    return kept


def check_keep(keep: Path, db: Path) -> None:
    """Refuse a kept copy that is the database itself, is not a study database, or holds a finished
    trial the database lacks (or holds otherwise): copying the database over it would lose that."""
    if keep.resolve() == db.resolve():
        raise KeepError(f"--keep {keep} is the study database itself; pass another path")
    kept = sound_copy(keep)
    have = ended_trials(db) if db.exists() else {}
    if have is None:
        raise KeepError(f"{db} is not a study database; move it aside to start from the kept copy {keep}")
    lost = sorted(k for k, v in kept.items() if have.get(k) != v)
    if lost:
        raise KeepError(f"the kept copy {keep} holds {len(lost)} finished trial(s) that {db} lacks or holds otherwise "
                        f"(first: {lost[0][0]} trial {lost[0][1]}); it would be replaced by this study's database: move "
                        f"{db} aside to start from the kept copy, or pass another --keep")


def restore(keep: Path, db: Path) -> None:
    """Start this machine's study from the kept copy (only where it has none: link() refuses to
    replace, so two studies starting together restore once)."""
    import shutil

    tmp = db.with_name(f"{db.name}.tmp-{os.getpid()}")
    shutil.copyfile(keep, tmp)
    try:
        os.link(tmp, db)
        print(f"study: started from the kept copy {keep}", file=sys.stderr)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def keep_copy(db: Path, keep: Path) -> None:
    """Copy the study database to `keep` as one consistent snapshot (SQLite's backup API, which
    other writers may use meanwhile) and rename it into place: a kill leaves the previous copy.
    Checked first, every time: a copy holding finished trials this database lacks is never replaced
    (another study line writing to the same --keep)."""
    import sqlite3

    if keep.exists():
        check_keep(keep, db)
    tmp = keep.with_name(f"{keep.name}.tmp-{os.getpid()}")
    with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(tmp)) as dst:
        src.backup(dst)
    tmp.replace(keep)


def repeats_an_ended_trial(study, trial) -> bool:
    """Whether `trial` drew exactly the parameters of a completed or pruned trial: one configuration
    trained twice is one trial of the budget, and is not trained a third time."""
    import optuna

    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return any(t.number != trial.number and t.state in ended and t.params == trial.params for t in study.trials)


def trial_rows(trials) -> list[dict]:
    """The JSON rows of a study's trials: state, validation NDCG@20, parameters and what the trial recorded."""
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "best_valid_reported": max(t.intermediate_values.values(), default=None), **t.user_attrs}
            for t in trials]


def counted_trials(study) -> list:
    """The trials the budget counts: completed and pruned ones, and failed ones that were neither
    replaced by a trial resuming them nor a repeat of an ended trial's exact parameters."""
    import optuna

    # "resumes" names the run of the trial first killed; studies made before "replaces" have only it
    replaced = {t.user_attrs.get("replaces") for t in study.trials} | \
        {int(t.user_attrs["resumes"].rsplit("-t", 1)[1]) for t in study.trials if "resumes" in t.user_attrs}
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in ended or
            (t.state == optuna.trial.TrialState.FAIL and t.number not in replaced
             and not repeats_an_ended_trial(study, t))]


def list_trials(a, data, runs: Path, db: Path, keep: Path | None) -> int:
    """--list: the trials so far, printed and as JSON, read without writing the database (no study
    is created, nothing restored from the kept copy, no RUNNING trial touched: it may be training
    in another process). With no database yet, the kept copy is read."""
    import optuna

    src = db if db.exists() else keep if keep is not None and keep.exists() else None
    name = f"{data.name}-{a.model}"
    if src is None:
        print(f"error: no study database in {runs} (nor a kept copy); start the study first", file=sys.stderr)
        return 2
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{src}")
    except KeyError:
        print(f"error: {src} holds no study {name!r}; start it with --model {a.model} first", file=sys.stderr)
        return 2
    finished = counted_trials(study)
    budget = {"trials": len(finished), "epochs_cap": a.epochs, "pruner": study.user_attrs.get("pruner", "none yet"),
              "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
              "epochs_trained": sum(epochs_trained(runs, t) for t in finished)}
    # RUNNING in the database: training now, or killed (the next start fails and resumes it)
    left_running = [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    listing = {"data": data.name, "model": a.model, "source": str(src), "budget": budget,
               "left_running": left_running, "objective": "validation NDCG@20 (test never used in the search)",
               "trials": trial_rows(finished)}
    for row in listing["trials"]:
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        print(f"{row['number']:>3} {row['state']:<8} {value:>7}  {row['params']}")
    print(f"{len(finished)} trials counted ({budget['pruned']} pruned); left RUNNING (training now or killed): "
          f"{left_running or 'none'}")
    # the committed listing goes with the default runs folder only, as the kept copy does
    out = Path(a.out) if a.out else runs / f"trials-{a.model}.json" if a.runs else \
        REPO / "experiments" / "results" / f"study-{data.name}-{a.model}-trials.json"
    out.write_text(json.dumps(listing, indent=2) + "\n")
    return 0


def compare_bests(a, data, records: Path, out: Path, ablation, sfx: str = "") -> int:
    """The two studies' bests on the same seeds: FAME's against SASRec's (each tuned with the same
    trial budget on validation), the ablation's statistics (paired t-test by seed, Wilcoxon over the
    test users on each user's mean NDCG@20 over the seeds)."""
    table = {}
    for model in ("sasrec", "fame"):
        name = f"study-{model}{sfx}"
        recs = {s: ablation.read_record(records, name, s, data) for s in a.seeds}
        missing = [s for s, r in recs.items() if r is None]
        if missing:
            how = f" --best-from {a.best_from}" if sfx else ""
            raise ablation.RecordError(f"no {name} record for seed(s) {' '.join(map(str, missing))} in {records}; run "
                                       f"--model {model} --report{how} --seeds {' '.join(map(str, a.seeds))} first")
        table[name] = recs
    lengths = np.array([len(data.sequences[r]) - 1 for r in data.splittable_rows()])
    cmp = ablation.compare_own_bases(table, f"study-fame{sfx}", f"study-sasrec{sfx}", lengths)
    summary = {name: {split: {m: {"mean": float(np.mean([r[split][m] for r in by.values()])),
                                  "std": float(np.std([r[split][m] for r in by.values()], ddof=1))
                                  if len(by) > 1 else None} for m in METRICS} for split in ("valid", "test")}
               for name, by in table.items()}
    result = {"data": data.name, "seeds": a.seeds, "best_from": a.best_from if sfx else None,
              # each model's row: its record name, its model and training settings (seed 0's), its metrics
              "rows": {model: {"row": f"study-{model}{sfx}", "model": table[f"study-{model}{sfx}"][a.seeds[0]].get("model"),
                               "train": table[f"study-{model}{sfx}"][a.seeds[0]].get("train"),
                               "best_epoch": [table[f"study-{model}{sfx}"][s]["best_epoch"] for s in a.seeds],
                               **summary[f"study-{model}{sfx}"]} for model in ("sasrec", "fame")},
              "fame_against_sasrec": cmp,
              "statistics": "mean and sample std (ddof=1) over seeds; paired t-test by seed (scipy.stats.ttest_rel); "
                            "per-user Wilcoxon signed-rank test on NDCG@20 (each user's mean over the seeds; "
                            "scipy.stats.wilcoxon, two-sided, zero differences dropped)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    f, s = result["rows"]["fame"]["test"]["NDCG@20"], result["rows"]["sasrec"]["test"]["NDCG@20"]
    print(f"test NDCG@20: FAME's best {f['mean']:.4f} ± {f['std'] or 0:.4f}, SASRec's best {s['mean']:.4f} ± "
          f"{s['std'] or 0:.4f}: {cmp['relative_gain']:+.1%} (p {cmp.get('seed_ttest_p', float('nan')):.2g} by seed, "
          f"{cmp['user_wilcoxon_p']:.2g} over {cmp['users']} users)")
    print(f"written to {out}", file=sys.stderr)
    return 0


def source_data(db: Path) -> str:
    """The data set whose studies a study database holds (its studies are named <data>-<model>),
    or KeepError."""
    ended = ended_trials(db) if db.exists() else None
    studies = sorted({name for name, _ in ended or {}})
    names = {name.rsplit("-", 1)[0] for name in studies}
    if ended is None or len(names) != 1:
        held = ", ".join(studies) or "no finished trial"
        raise KeepError(f"--best-from {db} is not one data set's study database ({held}); pass one such as "
                        "experiments/results/study-Beauty.db")
    return names.pop()


def transferred_study(db: Path, model: str, tmp: Path):
    """The study of `model` in another data set's study database, read from a private copy in `tmp`
    (SQLite's backup from a read-only connection: this command never writes to that file, and a
    study writing it meanwhile leaves a consistent copy): (study, where it came from) or KeepError."""
    import sqlite3

    import optuna

    data = source_data(db)
    copy = tmp / "study.db"
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as src, \
            contextlib.closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
    name = f"{data}-{model}"
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{copy}")
    except KeyError:
        raise KeepError(f"--best-from {db} holds no study {name!r}; run it first") from None
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise KeepError(f"the study {name} in {db} has no completed trial yet; run it first")
    best = study.best_trial
    return study, {"database": str(db), "study": name, "data": data, "trial": best.number,
                   "valid_NDCG@20_there": best.value}


def report_best(a, data, runs: Path, records: Path, study, finished, source: dict | None = None) -> int:
    """Retrain the study's best over --seeds (a seed whose run the study already has is copied),
    keep each seed's record, write the report JSON. source: where the study came from when it was
    run on another data set (--best-from): its runs, records and report are named apart
    (`-from-<data>`), so a data set's own study and a transferred one never mix."""
    import optuna

    from fame_core.errors import FameError

    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        print(f"error: the study {study.study_name!r} has no completed trial yet; run it first", file=sys.stderr)
        return 2
    best = study.best_trial
    p = suggest(optuna.trial.FixedTrial({**EARLIER_DEFAULTS, **best.params}), a.model)
    sfx = f"-from-{source['data']}" if source else ""
    row = f"study-{a.model}{sfx}"
    rows = []
    from experiments import ablation
    for seed in a.seeds:
        run = runs / f"best{sfx}-{a.model}-s{seed}"
        base = runs / "bases" / f"sasrec-{key(p)}-s{seed}" if a.model == "fame" else None
        try:
            old = ablation.read_record(records, row, seed, data)
            if not run.exists() and old is not None and record_matches(old, data, a.model, p, seed, base, a.epochs):
                print(f"study: {row}-s{seed} read back from its record in {records} (its run folder is gone)",
                      file=sys.stderr)
                rows.append({"seed": seed, "valid": old["valid"], "test": old["test"], "best_epoch": old["best_epoch"],
                             "epochs": old["epochs"], "run": None, "record": f"{row}-s{seed}"})
                continue
            if (run / "config.json").exists() and not (run / "train_state.pt").exists() and not run_matches(
                    run, data, a.model, p, seed, base, a.epochs):
                raise ablation.RecordError(f"{run} holds a run of another configuration (an earlier best?); move it "
                                           "aside to retrain the study's best there")
            if not run.exists() and (base is None or base.exists()) and (twin := twin_run(
                    data, p, seed, runs, a.epochs, a.model, base, prefer=runs / best.user_attrs.get("run", "-"))):
                copy_run(twin, run)   # the best trial itself (seed 0) is not trained a second time
                print(f"study: {run.name} is a copy of the finished run {twin.name} (same settings and seed)",
                      file=sys.stderr)
            conf = run_trial(data, a.model, p, runs, run.name, seed=seed, epochs=a.epochs, device=a.device)
            # per-user test ranks kept as an ablation record (row study-<model>): --compare pairs the
            # two studies' bests by user as well as by seed, after the run folders are gone
            if old is not None and old.get("weights_sha256") != ablation.fingerprint(run):
                raise ablation.RecordError(f"the record {row}-s{seed} in {records} is of other weights than {run} (an "
                                           "earlier best?); move its .json and .npz aside to record this run")
            ablation.write_record(data, runs, records, row, seed, a.device, out=run, base_out=base)
        except (ablation.RecordError, FameError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows.append({"seed": seed, "valid": conf["valid"], "test": conf["test"], "best_epoch": conf["best_epoch"],
                     "epochs": conf["epochs"], "run": run.name, "record": f"{row}-s{seed}"})
    summary = {m: {"mean": float(np.mean([r["test"][m] for r in rows])),
                   "std": float(np.std([r["test"][m] for r in rows], ddof=1)) if len(rows) > 1 else None}
               for m in METRICS}
    budget = {"trials": len(finished), "epochs_cap": a.epochs,
              "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
              # a transferred best's trials ran on another data set, in runs not here
              "epochs_trained": None if source else sum(epochs_trained(runs, t) for t in finished),
              "pruner": study.user_attrs.get("pruner", "not recorded")}
    report = {"data": data.name, "model": a.model, "budget": budget, **({"best_from": source} if source else {}),
              "objective": "validation NDCG@20 (test never used in the search)",
              "trials": trial_rows(finished),
              "best": {"params": best.params, "valid_NDCG@20": best.value}, "seeds": rows, "test_summary": summary}
    out = Path(a.out) if a.out else runs / f"report-{a.model}{sfx}.json" if a.runs else \
        REPO / "experiments" / "results" / f"study-{data.name}-{a.model}{sfx}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary["NDCG@20"]), f"written to {out}", file=sys.stderr)
    return 0


def main() -> int:
    import optuna

    ap = argparse.ArgumentParser(prog="python -m experiments.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", choices=["sasrec", "fame"], default=None, help="the study: sasrec or fame (not with "
                    "--compare, which reads both)")
    ap.add_argument("--trials", type=int, default=20, help="total trials wanted in the study (default 20)")
    ap.add_argument("--epochs", type=int, default=200, help="at most this many epochs per training")
    ap.add_argument("--runs", default=None, help="default runs/study/<data name>")
    ap.add_argument("--report", action="store_true", help="retrain the best over --seeds and write the JSON")
    ap.add_argument("--compare", action="store_true", help="train nothing: pair the two studies' --report records "
                    "(FAME's best against SASRec's) by seed and by user; writes experiments/results/study-<data>-compare.json "
                    "(with another --runs: <runs>/compare.json)")
    ap.add_argument("--best-from", default=None, metavar="DB", help="with --report: retrain the best of the study "
                    "of --model in another data set's study database (e.g. experiments/results/study-Beauty.db) on --data, "
                    "instead of this data set's study (its best configuration transferred; no search here); with "
                    "--compare: pair the two models' transferred bests")
    ap.add_argument("--records", default=None, help="where --report keeps each seed's per-user test ranks (default "
                    "experiments/results/ablation-runs/<data>, beside the ablation's; with another --runs: <runs>/records)")
    ap.add_argument("--list", action="store_true", help="train nothing: print the study's trials so far and write "
                    "them as JSON (default experiments/results/study-<data>-<model>-trials.json)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sampler-seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    ap.add_argument("--pruner", choices=["median", "none"], default="median",
                    help="median: stop a trial whose best validation NDCG@20 so far is below the median of earlier "
                         "trials at the same epoch (default); none: every trial runs to its early stop")
    ap.add_argument("--prune-warmup", type=int, default=8, help="epochs a trial always trains before it may be "
                    "pruned (default 8)")
    ap.add_argument("--keep", default=None, help="the study database's durable copy, updated after every trial "
                    "(default with the default --runs: experiments/results/study-<data>.db; with another --runs, none); a "
                    "runs folder without study.db starts from it")
    ap.add_argument("--out", default=None,
                    help="the --report JSON (default experiments/results/study-<data>-<model>[-from-<source>].json; with "
                    "another --runs, <runs>/report-<model>[-from-<source>].json), the --list or the --compare JSON")
    a = ap.parse_args()

    from fame_core.data import load_dataset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if a.prune_warmup < 1:
        print(f"error: --prune-warmup must be 1 or more epochs, not {a.prune_warmup}", file=sys.stderr)
        return 2
    # the seeded trials (ICLRec's defaults) run to the end and are the first yardstick
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(SEEDED), n_warmup_steps=a.prune_warmup) \
        if a.pruner == "median" else optuna.pruners.NopPruner()
    if a.report + a.list + a.compare > 1:
        print("error: --report, --list and --compare do different things; pass one of them", file=sys.stderr)
        return 2
    if a.model is None and not a.compare:
        print("error: --model is needed (sasrec or fame); only --compare reads both studies", file=sys.stderr)
        return 2
    if a.best_from and not (a.report or a.compare):
        print("error: --best-from goes with --report (it retrains another data set's best here) or --compare (it "
              "pairs the two transferred bests); add one", file=sys.stderr)
        return 2
    if a.compare and a.model is not None:
        print("error: --compare reads both studies (FAME's best against SASRec's); leave --model out", file=sys.stderr)
        return 2
    data = load_dataset(a.data)
    runs = Path(a.runs or REPO / "runs" / "study" / data.name)
    db = runs / "study.db"
    records = Path(a.records) if a.records else runs / "records" if a.runs else \
        REPO / "experiments" / "results" / "ablation-runs" / data.name
    sfx = ""
    if a.best_from:
        try:
            src = source_data(Path(a.best_from))
        except KeepError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if src == data.name:
            print(f"error: --best-from {a.best_from} holds {data.name}'s own study; leave --best-from out to report it",
                  file=sys.stderr)
            return 2
        sfx = f"-from-{src}"
    if a.best_from and a.report:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="best-from-") as tmp:
            try:
                study, source = transferred_study(Path(a.best_from), a.model, Path(tmp))
            except KeepError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            return report_best(a, data, runs, records, study, counted_trials(study), source)
    if a.compare:
        out = Path(a.out) if a.out else runs / f"compare{sfx}.json" if a.runs else \
            REPO / "experiments" / "results" / f"study-{data.name}-compare{sfx}.json"
        from experiments import ablation
        try:
            return compare_bests(a, data, records, out, ablation, sfx)
        except ablation.RecordError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    # the durable copy: the committed default goes with the default runs folder only (a trial study
    # in a scratch folder must not write into the repository's copy)
    keep = Path(a.keep) if a.keep else None if a.runs else REPO / "experiments" / "results" / f"study-{data.name}.db"
    if a.list:
        return list_trials(a, data, runs, db, keep)
    runs.mkdir(parents=True, exist_ok=True)
    try:
        if keep is not None and keep.exists():
            if not db.exists():
                sound_copy(keep)   # never copy a bad file in: every later start would fail
                restore(keep, db)
            check_keep(keep, db)
    except KeepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=f"{data.name}-{a.model}", storage=f"sqlite:///{db}",
                                direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=a.sampler_seed), pruner=pruner)
    # the sampler's seed moves on with the trials already in the study: with a fixed seed every
    # restart replays the same random draws, so the first trial sampled after a restart repeated
    # the first trial sampled before it (Beauty's SASRec trial 4 = trial 2/3, found in stop 33)
    study.sampler = optuna.samplers.TPESampler(seed=a.sampler_seed + len(study.trials))
    # one pruner per study, so that every trial of it was judged alike
    pruner_name = f"median, warmup {a.prune_warmup} epochs" if a.pruner == "median" else "none"
    if not a.report:
        recorded = study.user_attrs.get("pruner")
        if recorded is None and study.trials:
            recorded = "none"     # a study begun before pruning existed ran every trial to its end
        if recorded is not None and recorded != pruner_name:
            print(f"error: the study {study.study_name!r} was run with the pruner {recorded!r}, not {pruner_name!r}; "
                  f"pass the same --pruner/--prune-warmup, or a new --runs", file=sys.stderr)
            return 2
        study.set_user_attr("pruner", pruner_name)
    if not a.report:   # first in every study, new or not (a study made before the seeding gets them next)
        for params in SEEDED:
            study.enqueue_trial({**params, **(SEEDED_FAME if a.model == "fame" else {})}, skip_if_exists=True)
    # a trial killed mid-training stays RUNNING in the database: fail it and enqueue its parameters
    # under the same run name, so its checkpoint is resumed (and it counts once in the budget).
    # Not from --report: a RUNNING trial may be training now, in the study beside it
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)) if not a.report else []:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if repeats_an_ended_trial(study, t):   # a replayed draw: its configuration is already judged
            continue
        study.enqueue_trial({**EARLIER_DEFAULTS, **t.params},
                            user_attrs={"resumes": t.user_attrs.get("resumes", f"{a.model}-t{t.number}"),
                                        "replaces": t.number})

    def objective(trial):
        p = suggest(trial, a.model)
        if repeats_an_ended_trial(study, trial):   # fails at once: not trained, not counted
            raise RepeatedDraw(f"trial {trial.number} drew exactly the parameters of an ended trial")
        name = trial.user_attrs.get("resumes", f"{a.model}-t{trial.number}")
        trial.set_user_attr("run", name)
        t0 = time.time()
        try:
            conf = run_trial(data, a.model, p, runs, name, epochs=a.epochs, device=a.device, trial=trial)
        finally:
            trial.set_user_attr("seconds", round(time.time() - t0, 1))
        trial.set_user_attr("best_epoch", conf["best_epoch"])
        return conf["valid"]["NDCG@20"]

    finished = counted_trials(study)
    if not a.report:
        left = max(0, a.trials - len(finished))
        if left:
            try:
                study.optimize(objective, n_trials=left, catch=(Exception,),
                               callbacks=[lambda st, t: keep_copy(db, keep)] if keep is not None else [])
                if keep is not None:
                    keep_copy(db, keep)
            except KeepError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        print(f"{len(done)} trials complete, {pruned} pruned; best validation NDCG@20 {study.best_value:.4f} "
              f"with {study.best_params}")
        return 0

    return report_best(a, data, runs, records, study, finished)


if __name__ == "__main__":
    raise SystemExit(main())
