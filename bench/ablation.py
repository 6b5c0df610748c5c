"""What makes FAME better (issue 15): the ablation on equal budgets, with paired statistics.

    python bench/ablation.py run    --data ../shared/data/amazon/Beauty.txt --seeds 0 1 2 3 4
    python bench/ablation.py report --data ../shared/data/amazon/Beauty.txt --seeds 0 1 2 3 4

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

`run` trains what is missing (a finished run is skipped, an interrupted one resumed), so it can
be repeated after a kill or in the next session. Each finished run leaves a record in the
repository, `bench/results/ablation-runs/<data>/<row>-s<seed>.json` (its validation and test
metrics, epochs) beside `.npz` (its per-user test ranks, clipped at 255: exact for every cutoff the
report uses), so a row survives the loss of its run folder (machines here are not kept between
sessions): `run` skips a recorded row and remakes only a base that an unrecorded row still needs
(a remade base keeps its first record; a differing remake is reported on the terminal). `report`
evaluates every finished run without a record on the test users once (history masked, as in
training's selection), then reads the records, and writes bench/results/ablation-<data>.json. It
refuses to write a report that would hold fewer (row, seed) pairs than the one already there (pass
the seeds whose records exist, or --allow-fewer): per row mean and sample std (ddof = 1) over seeds; for each
FAME row against `sasrec-cont` of the same seed, a paired t-test over seeds (scipy.stats.ttest_rel)
and a per-user paired test over the test users (Wilcoxon signed-rank on per-user NDCG@20, users
pooled over seeds by taking each user's mean over seeds; scipy.stats.wilcoxon, two-sided, zero
differences dropped, zero_method="wilcox").
"""

from __future__ import annotations

import argparse
import json
import os
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
}
CONTROL = {"sasrec": "sasrec-cont", "sasrec-h1": "sasrec-h1-cont"}   # a base's equal-budget control
COMPARE = {"sasrec-bce": "sasrec"}    # base rows compared with another base row (same tests)


RANK_CLIP = 255   # ranks are stored as uint8: exact for every cutoff below 255 (the report uses 5, 10, 20)


def finished(out: Path) -> bool:
    return (out / "config.json").exists() and not (out / "train_state.pt").exists()


def record_paths(records: Path, name: str, seed: int) -> tuple[Path, Path]:
    return records / f"{name}-s{seed}.json", records / f"{name}-s{seed}.npz"


def read_record(records: Path, name: str, seed: int) -> dict | None:
    """A finished row's durable record (metrics and per-user test ranks), or None."""
    meta, arrays = record_paths(records, name, seed)
    if not (meta.exists() and arrays.exists()):
        return None
    rec = json.loads(meta.read_text())
    with np.load(arrays, allow_pickle=False) as z:   # never unpickle
        rec["ranks"] = z["ranks"].astype(np.int64)
    return rec


def write_record(data, runs: Path, records: Path, name: str, seed: int) -> dict:
    """Evaluate a finished run on the test users once and keep what the report needs in the
    repository. The .npz is written first and the .json last (each atomically), so a kill leaves
    either no record or a whole one. An existing record is kept: a remade run that differs from it
    is reported, not written over."""
    from fame_core.checkpoint import load_checkpoint
    from fame_core.evaluate import evaluate

    out = runs / f"{name}-s{seed}"
    conf = json.loads((out / "config.json").read_text())
    old = read_record(records, name, seed)
    if old is not None:
        if old["test"] != conf["test"] or old["valid"] != conf["valid"]:
            print(f"note: {out} was remade and differs from its record (test NDCG@20 {conf['test']['NDCG@20']:.6f} "
                  f"vs recorded {old['test']['NDCG@20']:.6f}); the record is kept", file=sys.stderr)
        return old
    ranks = np.asarray(evaluate(load_checkpoint(out), data, "test", return_ranks=True)["ranks"])
    rec = {"row": name, "seed": seed, "data": data.name, "test": conf["test"], "valid": conf["valid"],
           "best_epoch": conf["best_epoch"], "epochs": conf["epochs"], "users": int(len(ranks)),
           "ranks": f"{name}-s{seed}.npz: per-user test ranks (0 = top), clipped at {RANK_CLIP}"}
    meta, arrays = record_paths(records, name, seed)
    records.mkdir(parents=True, exist_ok=True)
    tmp = arrays.with_name(arrays.stem + ".tmp.npz")
    np.savez_compressed(tmp, ranks=np.minimum(ranks, RANK_CLIP).astype(np.uint8))
    tmp.replace(arrays)
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=2) + "\n")
    tmp.replace(meta)
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
                       init_from=str(runs / f"{base}-s{seed}") if base else None)
    print(f"{time.strftime('%H:%M:%S')} {'resuming' if resume else 'training'} {out}", file=sys.stderr, flush=True)
    train(data, mcfg, tcfg, out, resume=resume, progress=sys.stderr.isatty())


def cmd_run(a, data, runs: Path, records: Path) -> int:
    rows = a.rows or list(ROWS)
    for seed in a.seeds:
        for name in rows:
            out = runs / f"{name}-s{seed}"
            if read_record(records, name, seed) is not None and not (out / "train_state.pt").exists():
                continue   # recorded: done, even where its run folder is gone
            base = ROWS[name][5]
            if base and not finished(runs / f"{base}-s{seed}"):
                train_row(data, base, seed, runs, a)   # remade where only its record survived
                write_record(data, runs, records, base, seed)
            train_row(data, name, seed, runs, a)
            write_record(data, runs, records, name, seed)
    return 0


def per_user_ndcg(ranks: np.ndarray, k: int = 20) -> np.ndarray:
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def cmd_report(a, data, runs: Path, records: Path) -> int:
    from scipy import stats

    table: dict[str, dict] = {}
    for name in ROWS:
        for seed in a.seeds:
            rec = read_record(records, name, seed)
            if rec is None and finished(runs / f"{name}-s{seed}"):
                rec = write_record(data, runs, records, name, seed)
            if rec is not None:
                table.setdefault(name, {})[seed] = rec
    out = Path(a.results) / f"ablation-{data.name}.json"
    if out.exists() and not a.allow_fewer:
        held = {(n, s) for n, r in json.loads(out.read_text())["rows"].items() for s in r["seeds"]}
        lost = sorted(held - {(n, s) for n, by_seed in table.items() for s in by_seed})
        if lost:
            print(f"error: {out} holds {len(lost)} (row, seed) pairs that neither a record in {records} nor a "
                  f"finished run provides (e.g. {lost[0][0]} seed {lost[0][1]}); pass --seeds whose runs or records "
                  "exist, or --allow-fewer to replace it", file=sys.stderr)
            return 2
    report = {"data": data.name, "seeds": a.seeds, "protocol": "leave-one-out, full ranking, history masked; "
              "every run selected on validation NDCG@20; test metrics of the selected epoch",
              "statistics": "mean and sample std (ddof=1) over seeds; paired t-test by seed (scipy.stats.ttest_rel); "
              "per-user Wilcoxon signed-rank test on NDCG@20 (each user's mean over the common seeds; "
              "scipy.stats.wilcoxon, two-sided, zero differences dropped)",
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
        base = ROWS[name][5]
        control = CONTROL.get(base) if base else COMPARE.get(name)
        if control and control != name and control in table:
            common = [s for s in seeds if s in table[control]]
            mine = np.array([by_seed[s]["test"]["NDCG@20"] for s in common])
            theirs = np.array([table[control][s]["test"]["NDCG@20"] for s in common])
            cmp = {"against": control, "seeds": common, "mean_difference": float((mine - theirs).mean()) if common else None,
                   "relative_gain": float(mine.mean() / theirs.mean() - 1) if common else None}
            if len(common) >= 2:
                cmp["seed_ttest_p"] = float(stats.ttest_rel(mine, theirs).pvalue)
            if common:
                u_mine = np.mean([per_user_ndcg(by_seed[s]["ranks"]) for s in common], axis=0)
                u_theirs = np.mean([per_user_ndcg(table[control][s]["ranks"]) for s in common], axis=0)
                d = u_mine - u_theirs
                cmp["users"] = int(len(d))
                cmp["users_better"] = int((d > 0).sum())
                cmp["users_worse"] = int((d < 0).sum())
                cmp["user_wilcoxon_p"] = float(stats.wilcoxon(u_mine, u_theirs).pvalue) if (d != 0).any() else 1.0
            row["against_control"] = cmp
        report["rows"][name] = row
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)   # a kill mid-write leaves the previous report
    print(f"{'row':>22} {'seeds':>5} " + " ".join(f"{m:>15}" for m in METRICS) + "   vs control (p seed / p user)")
    for name, row in report["rows"].items():
        cells = " ".join(f"{row['test'][m]['mean']:.4f}±{(row['test'][m]['std'] or 0):.4f}".rjust(15) for m in METRICS)
        c = row.get("against_control")
        tail = (f"   {c['relative_gain']:+.1%} (p={c.get('seed_ttest_p', float('nan')):.3f} / "
                f"{c.get('user_wilcoxon_p', float('nan')):.2g})") if c else ""
        print(f"{name:>22} {len(row['seeds']):>5} {cells}{tail}")
    print(f"written to {out}", file=sys.stderr)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=None, help="default: all rows")
    p.add_argument("--runs", default=None, help="default runs/reproduce/<data name> (shared with bench/reproduce.py)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--results", default=str(REPO / "bench" / "results"),
                   help="where the report and the runs' records (ablation-runs/<data>/) go (default bench/results)")
    p.add_argument("--allow-fewer", action="store_true",
                   help="report: replace an existing report even if it held (row, seed) pairs this one lacks")
    a = p.parse_args()

    from fame_core.data import load_dataset

    data = load_dataset(a.data)
    runs = Path(a.runs or REPO / "runs" / "reproduce" / data.name)
    runs.mkdir(parents=True, exist_ok=True)
    records = Path(a.results) / "ablation-runs" / data.name
    return cmd_run(a, data, runs, records) if a.command == "run" else cmd_report(a, data, runs, records)


if __name__ == "__main__":
    raise SystemExit(main())
