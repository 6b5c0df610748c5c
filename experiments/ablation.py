"""What makes FAME better (issue 15): the ablation on equal budgets, with paired statistics.

    python -m experiments.ablation run    --data ../shared/data/amazon/Beauty.txt --seeds 0 1 2 3 4
    python -m experiments.ablation report --data ../shared/data/amazon/Beauty.txt --seeds 0 1 2 3 4

Every row starts from the same trained SASRec of its seed (`sasrec-s<seed>`, the paper's
pipeline, Sec. 4.4.2) and trains on with a fresh optimizer under the same stopping rule
(at most --epochs, patience --patience on validation NDCG@20), so each row gets the same extra
budget:

    sasrec            the base SASRec (H = 2)
    sasrec-cont       the same SASRec trained on: the equal-budget control
    fame-h2-n1        FAME without the mixture of experts (one expert per head)
    fame-h2-n4        the paper's recipe (H = 2, N = 4)
    fame-h2-n4-warm-res   our variant: warm-started expert queries and W_f, residual slice
    sasrec-h1 / sasrec-h1-cont / fame-h1-n1   one head, one expert: FAME without multi-head
                      prediction and without MoE, on its own H = 1 base and control
    sasrec-bce        SASRec trained from scratch with the original SASRec loss (`--loss bce`: binary
                      cross-entropy, one negative per position), compared with `sasrec`: is this
                      the paper's SASRec row?
    sasrec-restart / sasrec-h1-restart   the restart controls: the base trained on with its last
                      block drawn afresh except W_K and W_V (`--reinit-last`), as FAME's build draws
                      its last layer afresh: every FAME row is also compared with it ("against_restart")

`run` trains what is missing (a finished run is skipped, an interrupted one resumed), so it can
be repeated after a kill or in the next session. Each finished run leaves a record in the
repository, `experiments/results/ablation-runs/<data>/<row>-s<seed>.json` (its validation and test
metrics, epochs, settings, the sha256 of its weights and of its base's) beside `.npz` (its per-user
test ranks, clipped at 255: exact for every cutoff the report uses), so a row survives the loss of
its run folder (machines here are not kept between sessions). `run` skips a recorded row and
remakes only a base that an unrecorded row still needs; when the remade base's weights differ
from its record, it stops (`--allow-remade-base` goes on, and the report then marks the pairs built
on different remakes). A run folder is trained by one process at a time (a lock file `.<row>-s<seed>.lock` beside it).

`report` also reads experiments/study.py's recorded bests (rows `study-sasrec`, `study-fame`, or
`study-<model>-from-<data>` for another data set's best retrained here): FAME's best against
SASRec's best, SASRec's best against the untuned `sasrec` (what tuning gives SASRec), with the same
tests; they are drawn last in the figure.

`by-seed --control ROW` pairs the report's rows by seed with a row known only from its records
(Beauty's restart controls, run after the rows' run folders were lost): mean, gain and a paired
t-test by seed, written to experiments/results/ablation-<data>-by-seed-<ROW>.json.

`report` records every finished run that has no record yet (evaluated once on the test users,
history masked, as in training's selection; its ranks must give the run's recorded test NDCG@20),
then reads the records and writes experiments/results/ablation-<data>.json. It refuses to replace a
report that holds a (row, seed) pair it cannot provide (run those seeds first, or pass
--allow-fewer).

The report gives per row mean and sample std (ddof = 1) over seeds; for each
FAME row against `sasrec-cont` of the same seed, a paired t-test over seeds (scipy.stats.ttest_rel)
and a per-user paired test over the test users (Wilcoxon signed-rank on per-user NDCG@20, users
pooled over seeds by taking each user's mean over seeds; scipy.stats.wilcoxon, two-sided, zero
differences dropped, zero_method="wilcox").
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]

# name: (model, heads, experts, warm, residual, base row or None, loss)
ROWS = {
    "sasrec": ("sasrec", 2, 1, False, False, None, "full"),
    "sasrec-cont": ("sasrec", 2, 1, False, False, "sasrec", "full"),
    "fame-h2-n4": ("fame", 2, 4, False, False, "sasrec", "full"),
    "fame-h2-n1": ("fame", 2, 1, False, False, "sasrec", "full"),
    "fame-h2-n4-warm-res": ("fame", 2, 4, True, True, "sasrec", "full"),
    "sasrec-h1": ("sasrec", 1, 1, False, False, None, "full"),
    "fame-h1-n1": ("fame", 1, 1, False, False, "sasrec-h1", "full"),
    "sasrec-h1-cont": ("sasrec", 1, 1, False, False, "sasrec-h1", "full"),
    # the original SASRec objective (BCE, one negative per position): is it the paper's SASRec row?
    "sasrec-bce": ("sasrec", 2, 1, False, False, None, "bce"),
    # the restart controls: the base trained on with its last block drawn afresh except W_K and W_V,
    # as FAME's build does (--reinit-last): how much of a FAME row's gain a restart alone gives
    "sasrec-restart": ("sasrec", 2, 1, False, False, "sasrec", "full"),
    "sasrec-h1-restart": ("sasrec", 1, 1, False, False, "sasrec-h1", "full"),
}
RESTART = {"sasrec-restart", "sasrec-h1-restart"}
CONTROL = {"sasrec": "sasrec-cont", "sasrec-h1": "sasrec-h1-cont"}   # a base's equal-budget control
RESTART_CONTROL = {"sasrec": "sasrec-restart", "sasrec-h1": "sasrec-h1-restart"}   # FAME rows: the second control
COMPARE = {"sasrec-bce": "sasrec"}    # base rows compared with another base row (same tests)
# experiments/study.py's bests, recorded here by its --report (`study-<model>`, or `study-<model>-from-<data>`
# for another data set's best retrained on this one): FAME's best against SASRec's, SASRec's against
# the untuned base row `sasrec` (what tuning gives SASRec)
STUDY_ROW = re.compile(r"study-(sasrec|fame)(-from-.+)?")


def row_model(name: str) -> str:
    """'sasrec' or 'fame': the model of a row."""
    return ROWS[name][0] if name in ROWS else STUDY_ROW.fullmatch(name).group(1)


def study_control(name: str) -> str:
    m = STUDY_ROW.fullmatch(name)
    return f"study-sasrec{m.group(2) or ''}" if m.group(1) == "fame" else "sasrec"


def study_rows(records: Path, seeds) -> list[str]:
    """The study rows that have a record at any of `seeds`, SASRec's before FAME's."""
    names = {f.name.rsplit("-s", 1)[0] for s in seeds for f in records.glob(f"study-*-s{s}.json")}
    found = [STUDY_ROW.fullmatch(n) for n in names]
    return [m.group(0) for m in sorted((m for m in found if m), key=lambda m: (m.group(2) or "", m.group(1) == "fame"))]


RANK_CLIP = 255   # ranks are stored as uint8: exact for every cutoff below 255 (the report uses 5, 10, 20)


class RecordError(Exception):
    """A record or report that cannot be read as one: the message says which file and what to do."""


def finished(out: Path) -> bool:
    return (out / "config.json").exists() and not (out / "train_state.pt").exists()


def fingerprint(out: Path) -> str:
    """sha256 of a run's weights: which base a row was built from, so a pair built on different
    remakes of a base is seen."""
    return hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()


def record_paths(records: Path, name: str, seed: int) -> tuple[Path, Path]:
    return records / f"{name}-s{seed}.json", records / f"{name}-s{seed}.npz"


def read_record(records: Path, name: str, seed: int, data=None) -> dict | None:
    """A finished row's durable record (metrics, settings and per-user test ranks), or None."""
    meta, arrays = record_paths(records, name, seed)
    if not meta.exists() and not arrays.exists():
        return None
    if not (meta.exists() and arrays.exists()):
        have, lack = (meta, arrays) if meta.exists() else (arrays, meta)
        raise RecordError(f"{have} has no {lack.name} beside it; restore it from git (git checkout -- {lack}) or move "
                          f"{have.name} aside to retrain the row")
    try:
        rec = json.loads(meta.read_text())
        with np.load(arrays, allow_pickle=False) as z:   # never unpickle
            ranks = z["ranks"]
        ok = (rec["row"], rec["seed"]) == (name, seed) and ranks.ndim == 1 and len(ranks) == rec["users"]
        ok = ok and (data is None or rec["data_fingerprint"] == data.fingerprint())
    except (ValueError, KeyError, TypeError, OSError) as e:   # bad JSON or zip, a missing field
        raise RecordError(f"{meta} or {arrays.name} is not an ablation record ({e.__class__.__name__}: {e}); restore it "
                          "from git or move both aside to retrain the row") from None
    if not ok:
        raise RecordError(f"{meta} is not the record of {name} seed {seed} on this data set "
                          f"(another data version, or {len(ranks)} ranks for {rec.get('users')} users); "
                          "restore it from git or move it aside")
    rec["ranks"] = ranks.astype(np.int64)
    return rec


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")   # unique per process; *.tmp-* is git-ignored
    write(tmp)
    tmp.replace(path)


def write_record(data, runs: Path, records: Path, name: str, seed: int, device: str = "cpu",
                 out: Path | None = None, base_out: Path | None = None) -> dict:
    """Evaluate a finished run on the test users once and keep what the report needs in the
    repository. The .npz is written first and the .json last (each atomically), so a kill leaves
    either no record or a whole one. The ranks must give the run's recorded test NDCG@20 (a
    config.json beside weights of another run is refused). An existing record is kept.
    out / base_out: the run and its base where they are not this script's (experiments/study.py's
    retrained best configurations, recorded as rows `study-<model>`)."""
    from fame_core.checkpoint import load_checkpoint
    from fame_core.evaluate import evaluate
    from fame_core.training import resolve_device

    out = out or runs / f"{name}-s{seed}"
    old = read_record(records, name, seed, data)
    if old is not None:
        return old
    conf = json.loads((out / "config.json").read_text())
    device = resolve_device(device)
    ranks = np.asarray(evaluate(load_checkpoint(out, device=device), data, "test",
                                return_ranks=True)["ranks"])
    if abs(per_user_ndcg(ranks).mean() - conf["test"]["NDCG@20"]) > 1e-5:
        raise RecordError(f"{out}: its weights give test NDCG@20 {per_user_ndcg(ranks).mean():.6f}, its config.json "
                          f"says {conf['test']['NDCG@20']:.6f}; the folder mixes two runs: move it aside and run again")
    base = ROWS[name][5] if name in ROWS else None
    base_out = base_out or (runs / f"{base}-s{seed}" if base else None)
    rec = {"row": name, "seed": seed, "data": data.name, "data_fingerprint": data.fingerprint(),
           "test": conf["test"], "valid": conf["valid"],
           "best_epoch": conf["best_epoch"], "epochs": conf["epochs"], "users": int(len(ranks)),
           "model": conf.get("model"), "train": conf.get("train"), "environment": conf.get("environment"),
           "resumed_in_environment": conf.get("resumed_in_environment"),
           "weights_sha256": fingerprint(out),
           "base_sha256": fingerprint(base_out) if base_out else None,
           "ranks": f"{name}-s{seed}.npz: per-user test ranks (0 = top), clipped at {RANK_CLIP}"}
    meta, arrays = record_paths(records, name, seed)
    records.mkdir(parents=True, exist_ok=True)
    _write_atomic(arrays, lambda f: np.savez_compressed(
        open(f, "wb"), ranks=np.minimum(ranks, RANK_CLIP).astype(np.uint8)))
    _write_atomic(meta, lambda f: f.write_text(json.dumps(rec, indent=2) + "\n"))
    print(f"recorded {meta.relative_to(REPO) if meta.is_relative_to(REPO) else meta}", file=sys.stderr, flush=True)
    return {**rec, "ranks": np.minimum(ranks, RANK_CLIP)}


def train_row(data, name: str, seed: int, runs: Path, a) -> None:
    from fame_core.models import model_config
    from fame_core.training import TrainConfig, train

    model, heads, experts, warm, residual, base, loss = ROWS[name]
    out = runs / f"{name}-s{seed}"
    if finished(out):
        return
    resume = (out / "train_state.pt").exists()
    extra = dict(n_experts=experts, residual=residual) if model == "fame" else {}
    mcfg = model_config(model, n_items=data.n_items, n_heads=heads, dropout=a.dropout, attn_dropout=a.dropout, **extra)
    tcfg = TrainConfig(seed=seed, patience=a.patience, epochs=a.epochs, device=a.device, warm=warm, loss=loss,
                       init_from=str(runs / f"{base}-s{seed}") if base else None, reinit_last=name in RESTART)
    print(f"{time.strftime('%H:%M:%S')} {'resuming' if resume else 'training'} {out}", file=sys.stderr, flush=True)
    with run_lock(out):
        train(data, mcfg, tcfg, out, resume=resume, progress=sys.stderr.isatty())


@contextlib.contextmanager
def run_lock(out: Path):
    """One process trains a run folder at a time: two `run`s whose rows share a base would
    otherwise both train it into the same folder."""
    lock = out.with_name(f".{out.name}.lock")   # beside the folder: train() refuses a new folder holding anything
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pid = lock.read_text().strip()
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            raise RecordError(f"{out} is being trained by process {pid}; run this row after it ends, or pass "
                              "--rows that do not need it") from None
        lock.unlink()   # ours, left by a killed run
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def cmd_run(a, data, runs: Path, records: Path) -> int:
    rows = a.rows or list(ROWS)
    for seed in a.seeds:
        for name in rows:
            if read_record(records, name, seed, data) is not None:
                continue   # recorded: done, even where its run folder is gone
            base = ROWS[name][5]
            if base and not finished(runs / f"{base}-s{seed}"):
                train_row(data, base, seed, runs, a)   # remade where only its record survived
                kept = read_record(records, base, seed, data)
                if kept is not None and kept.get("weights_sha256") != fingerprint(runs / f"{base}-s{seed}") \
                        and not a.allow_remade_base:
                    remade = json.loads((runs / f"{base}-s{seed}" / "config.json").read_text())["test"]["NDCG@20"]
                    raise RecordError(f"{base} seed {seed} was remade and its weights differ from the recorded run's "
                                      f"(test NDCG@20 {remade:.6f} vs {kept['test']['NDCG@20']:.6f}); rows built on "
                                      "it would be compared with rows built on the original: pass --allow-remade-base "
                                      "to go on (the report marks such pairs)")
            if base:
                write_record(data, runs, records, base, seed, a.device)   # kept if recorded; else recorded now
            train_row(data, name, seed, runs, a)
            write_record(data, runs, records, name, seed, a.device)
    return 0


def per_user_ndcg(ranks: np.ndarray, k: int = 20) -> np.ndarray:
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def length_groups(lengths: np.ndarray, n: int = 4) -> tuple[np.ndarray, list[str]]:
    """Test users in (about) equal-count groups by the length of their test history: group 0 is
    lengths <= the first edge, group k lengths in (edge k, edge k+1]. The edges are lengths that
    occur (numpy's `inverted_cdf` quantiles), so no group is empty; tied quantiles merge (a value
    held by more than a quarter of the users may fill several quartiles), but two values never share
    a group when each is held by a quarter of the users or more."""
    lengths = np.asarray(lengths)
    edges = np.quantile(lengths, np.linspace(0, 1, n + 1)[1:-1], method="inverted_cdf")
    inner = np.unique(edges)
    inner = inner[inner < lengths.max()].astype(int)   # an edge at the maximum would leave the top group empty
    groups = np.searchsorted(inner, lengths, side="left")
    lows = [int(lengths.min()), *(int(e) + 1 for e in inner)]
    highs = [*(int(e) for e in inner), int(lengths.max())]
    return groups, [f"{lo}-{hi}" if lo != hi else f"{lo}" for lo, hi in zip(lows, highs)]


def compare(table: dict, name: str, control: str, base: str | None, lengths: np.ndarray | None = None) -> dict:
    """Row `name` against row `control` on their common seeds: the test NDCG@20 difference, a paired
    t-test by seed, and the per-user Wilcoxon signed-rank test (each user's mean over the seeds);
    with `lengths` (each test user's history length), the same per-user reading within quartiles
    of history length: where the gain lands."""
    from scipy import stats

    by_seed = table[name]
    common = [s for s in sorted(by_seed) if s in table[control]]
    mine = np.array([by_seed[s]["test"]["NDCG@20"] for s in common])
    theirs = np.array([table[control][s]["test"]["NDCG@20"] for s in common])
    cmp = {"against": control, "seeds": common, "mean_difference": float((mine - theirs).mean()) if common else None,
           "relative_gain": float(mine.mean() / theirs.mean() - 1) if common else None}
    if len(common) >= 2:
        cmp["seed_ttest_p"] = float(stats.ttest_rel(mine, theirs).pvalue)
    bases = [s for s in common if by_seed[s].get("base_sha256") != table[control][s].get("base_sha256")]
    if bases:   # built on different remakes of the base: the pair is not on equal terms
        cmp["different_base_seeds"] = bases
        print(f"note: {name} and {control} were built on different remakes of {base} at seeds {bases}", file=sys.stderr)
    if common:
        u_mine = np.mean([per_user_ndcg(by_seed[s]["ranks"]) for s in common], axis=0)
        u_theirs = np.mean([per_user_ndcg(table[control][s]["ranks"]) for s in common], axis=0)
        d = u_mine - u_theirs
        cmp["users"] = int(len(d))
        cmp["users_better"] = int((d > 0).sum())
        cmp["users_worse"] = int((d < 0).sum())
        cmp["user_wilcoxon_p"] = float(stats.wilcoxon(u_mine, u_theirs).pvalue) if (d != 0).any() else 1.0
        if lengths is not None and len(lengths) == len(d):
            groups, labels = length_groups(lengths)
            cmp["by_history_length"] = []
            for g, label in enumerate(labels):
                sel = groups == g
                m, t, dg = u_mine[sel], u_theirs[sel], d[sel]
                cmp["by_history_length"].append({
                    "history_length": label, "users": int(sel.sum()), "ndcg20": float(m.mean()),
                    "control_ndcg20": float(t.mean()),
                    "relative_gain": float(m.mean() / t.mean() - 1) if t.mean() > 0 else None,
                    "users_better": int((dg > 0).sum()), "users_worse": int((dg < 0).sum()),
                    "user_wilcoxon_p": float(stats.wilcoxon(m, t).pvalue) if (dg != 0).any() else 1.0})
    return cmp


def compare_own_bases(table: dict, name: str, control: str, lengths: np.ndarray | None = None) -> dict:
    """compare() for rows built on their own bases by design (a study's FAME on a SASRec with its
    own shared settings, a SASRec on none): their bases differ without being remakes of one."""
    mine = {k: {s: {**r, "base_sha256": None} for s, r in table[k].items()} for k in (name, control)}
    return compare(mine, name, control, None, lengths)


def cmd_report(a, data, runs: Path, records: Path) -> int:
    table: dict[str, dict] = {}
    for name in [*ROWS, *study_rows(records, a.seeds)]:
        for seed in a.seeds:
            rec = read_record(records, name, seed, data)
            if rec is None and name in ROWS and finished(runs / f"{name}-s{seed}"):
                rec = write_record(data, runs, records, name, seed, a.device)
            if rec is not None:
                table.setdefault(name, {})[seed] = rec
    out = Path(a.results) / f"ablation-{data.name}.json"
    if out.exists() and not a.allow_fewer:
        try:
            held = {(n, s) for n, r in json.loads(out.read_text())["rows"].items() for s in r["seeds"]}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RecordError(f"{out} is not an ablation report ({e.__class__.__name__}: {e}); move it aside or pass "
                              "--allow-fewer to replace it") from None
        lost = sorted(held - {(n, s) for n, by_seed in table.items() for s in by_seed})
        if lost:
            seeds = sorted({s for _, s in lost})
            raise RecordError(f"{out} holds {len(lost)} (row, seed) pairs that neither a record in {records} nor a "
                              f"finished run provides (e.g. {lost[0][0]} seed {lost[0][1]}); rerun seeds "
                              f"{' '.join(map(str, seeds))} with `run` first, or pass --allow-fewer to replace it")
    # each test user's history length, in the order of the records' ranks (evaluate's row order)
    lengths = np.array([len(data.sequences[r]) - 1 for r in data.splittable_rows()])
    report = {"data": data.name, "seeds": a.seeds, "protocol": "leave-one-out, full ranking, history masked; "
              "every run selected on validation NDCG@20; test metrics of the selected epoch",
              "statistics": "mean and sample std (ddof=1) over seeds; paired t-test by seed (scipy.stats.ttest_rel); "
              "per-user Wilcoxon signed-rank test on NDCG@20 (each user's mean over the common seeds; "
              "scipy.stats.wilcoxon, two-sided, zero differences dropped); by_history_length: the same per-user "
              "reading within quartiles of the test users' history length (no correction for the several groups' tests)",
              "rows": {}}
    for name, by_seed in table.items():
        seeds = sorted(by_seed)
        row = {"seeds": seeds, "best_epoch": [by_seed[s]["best_epoch"] for s in seeds],
               "epochs": [by_seed[s]["epochs"] for s in seeds], "test": {}, "valid": {}}
        for split in ("test", "valid"):
            for m in METRICS:
                v = np.array([by_seed[s][split][m] for s in seeds])
                row[split][m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                                 "values": v.tolist()}
        if name not in ROWS:   # a study's best: built on its own base (FAME) or none, so no remade-base pairs
            control = study_control(name)
            if control in table:
                row["against_control"] = compare_own_bases(table, name, control, lengths)
            report["rows"][name] = row
            continue
        base = ROWS[name][5]
        control = CONTROL.get(base) if base else COMPARE.get(name)
        if control and control != name and control in table:
            row["against_control"] = compare(table, name, control, base, lengths)
        restart = RESTART_CONTROL.get(base) if ROWS[name][0] == "fame" else None
        if restart and restart in table:
            row["against_restart"] = compare(table, name, restart, base, lengths)
        report["rows"][name] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, lambda f: f.write_text(json.dumps(report, indent=2) + "\n"))   # a kill leaves the previous one
    print(f"{'row':>22} {'seeds':>5} " + " ".join(f"{m:>15}" for m in METRICS) + "   vs control (p seed / p user)")
    for name, row in report["rows"].items():
        cells = " ".join((f"{row['test'][m]['mean']:.4f}" + (f"±{row['test'][m]['std']:.4f}" if row['test'][m]['std']
                          is not None else " (1 seed)")).rjust(15) for m in METRICS)   # no sd from one seed
        c = row.get("against_control")
        tail = (f"   {c['relative_gain']:+.1%} (p={c.get('seed_ttest_p', float('nan')):.3f} / "
                f"{c.get('user_wilcoxon_p', float('nan')):.2g})") if c else ""
        r = row.get("against_restart")
        tail += (f"; vs restart {r['relative_gain']:+.1%} (p={r.get('seed_ttest_p', float('nan')):.3f} / "
                 f"{r.get('user_wilcoxon_p', float('nan')):.2g})") if r else ""
        print(f"{name:>22} {len(row['seeds']):>5} {cells}{tail}")
    print(f"written to {out}", file=sys.stderr)
    return 0


# the figure's rows, top to bottom: each family's controls, then its FAME rows (sasrec-bce, far
# below, would squash the axis: it is in the report and the docs, not here)
FIGURE_ROWS = ["sasrec", "sasrec-cont", "sasrec-restart", "fame-h2-n1", "fame-h2-n4", "fame-h2-n4-warm-res",
               "sasrec-h1", "sasrec-h1-cont", "sasrec-h1-restart", "fame-h1-n1"]


def ablation_figure(report: dict):
    """Test NDCG@20 of every row: each seed a dot, the mean a tick with +-1 sample sd, the
    equal-budget control's mean a dashed line per family; beside each row, in a table, its seeds and
    its gain over the equal-budget and the restart controls with both tests. Returns (figure,
    table of the plotted numbers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib import rc_context

    from fame_core.export import SHARED_COLOUR, STYLE, TARGET_COLOUR, WIDTHS

    names = [n for n in FIGURE_ROWS if n in report["rows"]] + [n for n in report["rows"] if STUDY_ROW.fullmatch(n)]
    if not names:
        raise RecordError("the report holds none of the figure's rows; run `report` after some rows finished")

    def gain(c: dict | None, row: dict) -> str:
        if not c or c.get("relative_gain") is None:   # no control, or no seed in common with it
            return "–"
        seed = f"{c['seed_ttest_p']:.2g} / " if "seed_ttest_p" in c else ""
        fewer = f" [seed {', '.join(map(str, c['seeds']))}]" if len(c["seeds"]) < len(row["seeds"]) else ""
        remade = " \u2020" if c.get("different_base_seeds") else ""   # the pair's bases differ at some seed
        return f"{c['relative_gain']:+.1%} (p {seed}{c['user_wilcoxon_p']:.1g}){fewer}{remade}"

    table = []
    with rc_context(STYLE):
        fig, (ax, tx) = plt.subplots(1, 2, figsize=(WIDTHS["double"], 0.24 * len(names) + 1.0), sharey=True,
                                     gridspec_kw={"width_ratios": [1.0, 1.25]}, constrained_layout=True)
        for y, name in enumerate(names):
            row = report["rows"][name]
            v = row["test"]["NDCG@20"]
            colour = TARGET_COLOUR if row_model(name) == "fame" else SHARED_COLOUR
            ax.scatter(v["values"], [y] * len(v["values"]), s=10, color=colour, alpha=0.5, lw=0, zorder=2)
            ax.errorbar(v["mean"], y, xerr=v["std"], fmt="|", ms=9, color=colour, capsize=2, lw=1, zorder=3)
            for x, text in ((0.0, str(len(v["values"]))), (0.12, gain(row.get("against_control"), row)),
                            (0.58, gain(row.get("against_restart"), row))):
                tx.text(x, y, text, va="center", fontsize=6.5, transform=tx.get_yaxis_transform())
            table.append({"row": name, "seeds": len(v["values"]), "mean": v["mean"], "sample_std": v["std"],
                          **{f"seed {s}": x for s, x in zip(row["seeds"], v["values"])},
                          **{f"{k} gain": row[k]["relative_gain"] for k in ("against_control", "against_restart")
                             if k in row}})
        for control in ("sasrec-cont", "sasrec-h1-cont"):
            if control in names:
                base = ROWS[control][5]
                ys = [i for i, n in enumerate(names) if n == base or (n in ROWS and ROWS[n][5] == base)]
                ax.vlines(report["rows"][control]["test"]["NDCG@20"]["mean"], min(ys) - 0.4, max(ys) + 0.4,
                          colors="0.45", linestyles="--", lw=0.7, zorder=1)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(len(names) - 0.5, -1.2)
        ax.set_xlabel("test NDCG@20\ndots: seeds; tick: mean \u00b1 1 sample sd; dashed: equal-budget control")
        for x, head in ((0.0, "seeds"), (0.12, "vs equal-budget control"), (0.58, "vs restart control")):
            tx.text(x, -1.0, head, va="center", fontsize=6.5, fontweight="bold", transform=tx.get_yaxis_transform())
        tx.axis("off")
        tx.set_title("gain in mean test NDCG@20 (p: t by seed / Wilcoxon over users)", fontsize=7, loc="left")
        remade = sorted({s for n in names for k in ("against_control", "against_restart")
                         for s in (report["rows"][n].get(k) or {}).get("different_base_seeds", [])})
        if remade:
            tx.text(0.0, len(names) - 0.1, f"\u2020 at seed {', '.join(map(str, remade))} the row and its control were "
                    "built on two remakes of their base SASRec", va="top", fontsize=6, transform=tx.get_yaxis_transform())
        if any(STUDY_ROW.fullmatch(n) for n in names):
            tx.text(0.0, len(names) + (0.35 if remade else -0.1), "study-* rows (experiments/study.py's bests): FAME's best is\n"
                    "compared with SASRec's best, SASRec's best with sasrec", va="top", fontsize=6,
                    transform=tx.get_yaxis_transform())
        seeds = sorted({s for n in names for s in report["rows"][n]["seeds"]})
        ax.set_title(f"{report['data']}, seeds {', '.join(map(str, seeds))}", fontsize=8, loc="left")
    return fig, pd.DataFrame(table).set_index("row")


def cmd_by_seed(a, data, records: Path) -> int:
    """The report's rows against a control that has records but is not in the report (Beauty: the
    rows predate the records, the restart controls came later on remade bases), paired by seed:
    mean test NDCG@20, relative gain and a paired t-test by seed (scipy.stats.ttest_rel). Per user
    it cannot pair: the rows' per-user ranks were never recorded."""
    from scipy import stats

    if a.control is None:
        raise RecordError("by-seed needs --control ROW, the recorded row to pair with (e.g. sasrec-h1-restart)")
    src = Path(a.results) / f"ablation-{data.name}.json"
    try:
        rows = json.loads(src.read_text())["rows"]
    except (OSError, ValueError, KeyError) as e:
        raise RecordError(f"{src} is not an ablation report ({e.__class__.__name__}); run `report` first") from None
    seeds = a.seeds if a.seeds_given else json.loads(src.read_text()).get("seeds", a.seeds)   # default: the report's
    control = {s: read_record(records, a.control, s, data) for s in seeds}
    missing = [s for s, r in control.items() if r is None]
    if missing:
        raise RecordError(f"{a.control} has no record for seed(s) {' '.join(map(str, missing))} in {records}; "
                          f"run `run --rows {a.control} --seeds {' '.join(map(str, missing))}` first")
    theirs = np.array([control[s]["test"]["NDCG@20"] for s in seeds])
    out = {"data": data.name, "control": a.control, "seeds": seeds, "metric": "test NDCG@20",
           "statistics": "mean and sample std (ddof=1) over seeds; paired t-test by seed (scipy.stats.ttest_rel); "
                         "rows from the report, the control from its records",
           "control_values": theirs.tolist(), "control_mean": float(theirs.mean()),
           "control_std": float(theirs.std(ddof=1)) if len(theirs) > 1 else None,
           "control_best_epochs": [control[s]["best_epoch"] for s in seeds],
           "control_valid_mean": float(np.mean([control[s]["valid"]["NDCG@20"] for s in seeds])), "rows": {}}
    print(f"| {data.name}, seeds {', '.join(map(str, seeds))} | test NDCG@20 (mean) | against {a.control} (p by seed) |")
    print("|---|---|---|")
    print(f"| {a.control} | {theirs.mean():.4f} ± {out['control_std'] or 0:.4f} | – |")
    for name, row in rows.items():
        by_seed = dict(zip(row["seeds"], row["test"]["NDCG@20"]["values"]))
        if name == a.control:
            continue
        if not all(s in by_seed for s in seeds):   # said, not dropped silently
            out.setdefault("rows_left_out", {})[name] = f"no value for seed(s) {sorted(set(seeds) - set(by_seed))}"
            print(f"{name}: left out, no value for seed(s) {sorted(set(seeds) - set(by_seed))}", file=sys.stderr)
            continue
        mine = np.array([by_seed[s] for s in seeds])
        p = float(stats.ttest_rel(mine, theirs).pvalue) if len(seeds) > 1 else None
        p = p if p is not None and np.isfinite(p) else None    # identical values: no test (JSON null, not NaN)
        gain = float(mine.mean() / theirs.mean() - 1)
        out["rows"][name] = {"values": mine.tolist(), "mean": float(mine.mean()), "relative_gain": gain,
                             "seed_ttest_p": p}
        print(f"| {name} | {mine.mean():.4f} | {gain:+.1%} ({p:.2g}) |" if p is not None else
              f"| {name} | {mine.mean():.4f} | {gain:+.1%} |")
    dst = Path(a.results) / f"ablation-{data.name}-by-seed-{a.control}.json"
    dst.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {dst}", file=sys.stderr)
    return 0


def cmd_figure(a, data) -> int:
    from fame_core.export import save_figure

    path = Path(a.results) / f"ablation-{data.name}.json"
    if not path.exists():
        raise RecordError(f"{path} does not exist; run `report` first")
    report = json.loads(path.read_text())
    fig, table = ablation_figure(report)
    stem = Path(a.figure) if a.figure else REPO / "docs" / f"ablation-{data.name}"
    written = save_figure(fig, table, stem, {"figure": "equal-budget ablation", "source": str(path.name),
                                             "statistics": report.get("statistics")})
    print("written " + ", ".join(str(w) for w in written), file=sys.stderr)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["run", "report", "figure", "by-seed"])
    p.add_argument("--control", default=None, help="by-seed: the recorded row the report's rows are paired with")
    p.add_argument("--figure", default=None, help="figure: the files' stem (default docs/ablation-<data>)")
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="default 0 1 2 (by-seed: the report's seeds)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=None, help="default: all rows")
    p.add_argument("--runs", default=None, help="default runs/reproduce/<data name> (shared with bench/reproduce.py)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--results", default=str(REPO / "experiments" / "results"),
                   help="where the report and the runs' records (ablation-runs/<data>/) go (default experiments/results)")
    p.add_argument("--allow-fewer", action="store_true",
                   help="report: replace an existing report even if it held (row, seed) pairs this one lacks")
    p.add_argument("--allow-remade-base", action="store_true",
                   help="run: go on when a base remade for an unrecorded row differs from its record (the report "
                   "marks the pairs built on different remakes)")
    a = p.parse_args()
    a.seeds_given = a.seeds is not None
    a.seeds = a.seeds if a.seeds_given else [0, 1, 2]

    from fame_core.data import load_dataset

    data = load_dataset(a.data)
    runs = Path(a.runs or REPO / "runs" / "reproduce" / data.name)
    runs.mkdir(parents=True, exist_ok=True)
    records = Path(a.results) / "ablation-runs" / data.name
    try:
        if a.command == "figure":
            return cmd_figure(a, data)
        if a.command == "by-seed":
            return cmd_by_seed(a, data, records)
        return cmd_run(a, data, runs, records) if a.command == "run" else cmd_report(a, data, runs, records)
    except RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
