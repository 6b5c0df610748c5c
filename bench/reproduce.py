"""Reproduce the paper's Table 2 protocol: SASRec, then FAME built from it, per seed, resumable.

    python bench/reproduce.py --data ../shared/data/amazon/Beauty.txt --seeds 0 1 2
    python bench/reproduce.py --data ../shared/data/amazon/Sports_and_Outdoors.txt --seeds 0 --fame-warm

Each run writes its checkpoint under --runs (default runs/reproduce/<data>/); a finished run is
skipped, an interrupted one resumed (train_state.pt), so the command can simply be repeated after
a kill or in a later session. Test metrics (history masked; selection on validation NDCG@20 only)
are collected into bench/results/reproduce-<data>.json with mean and std over seeds, next to the
paper's Table 2 where it has the data set.
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

PAPER = {  # Table 2, full ranking
    "Beauty": {
        "SASRec": {"HR@5": 0.0508, "HR@10": 0.0761, "HR@20": 0.1057, "NDCG@5": 0.0318, "NDCG@10": 0.0400, "NDCG@20": 0.0474},
        "FAME": {"HR@5": 0.0710, "HR@10": 0.0978, "HR@20": 0.1345, "NDCG@5": 0.0508, "NDCG@10": 0.0593, "NDCG@20": 0.0687}},
    "Sports_and_Outdoors": {
        "SASRec": {"HR@5": 0.0266, "HR@10": 0.0412, "HR@20": 0.0618, "NDCG@5": 0.0158, "NDCG@10": 0.0205, "NDCG@20": 0.0256},
        "FAME": {"HR@5": 0.0400, "HR@10": 0.0580, "HR@20": 0.0820, "NDCG@5": 0.0277, "NDCG@10": 0.0337, "NDCG@20": 0.0402}},
}
METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", default=None, help="default runs/reproduce/<data name>")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--fame-lr", type=float, default=1e-3)
    p.add_argument("--fame-warm", action="store_true", help="warm-start experts and W_f from SASRec")
    p.add_argument("--fame-residual", action="store_true", help="the residual option (docs/design.md, \"Options\")")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--device", default="auto")
    a = p.parse_args()

    from fame_core.data import load_dataset
    from fame_core.models import SASRecConfig, FAMEConfig
    from fame_core.training import TrainConfig, train_or_resume

    data = load_dataset(a.data)
    runs = Path(a.runs or REPO / "runs" / "reproduce" / data.name)
    variant = f"fame-h{a.heads}-n{a.experts}" + ("-warm" if a.fame_warm else "") + ("-res" if a.fame_residual else "") + \
        (f"-lr{a.fame_lr:g}" if a.fame_lr != 1e-3 else "")
    results = {"sasrec": [], variant: []}
    for seed in a.seeds:
        common = dict(n_items=data.n_items, n_heads=a.heads, dropout=a.dropout, attn_dropout=a.dropout)
        sas_dir = runs / f"sasrec-s{seed}"
        t0 = time.time()
        sas = train_or_resume(data, SASRecConfig(**common),
                              TrainConfig(seed=seed, patience=a.patience, epochs=a.epochs, device=a.device), sas_dir)
        fame = train_or_resume(data, FAMEConfig(n_experts=a.experts, residual=a.fame_residual, **common),
                               TrainConfig(seed=seed, patience=a.patience, epochs=a.epochs, lr=a.fame_lr, device=a.device,
                                           init_from=str(sas_dir), warm=a.fame_warm), runs / f"{variant}-s{seed}")
        for name, conf in (("sasrec", sas), (variant, fame)):
            results[name].append({"seed": seed, "best_epoch": conf["best_epoch"], "epochs": conf["epochs"],
                                  "seconds_per_epoch": conf.get("seconds_per_epoch"), "valid": conf["valid"],
                                  "test": conf["test"]})
        print(f"seed {seed} done in {time.time() - t0:.0f}s", file=sys.stderr)
    summary = {}
    for name, rows in results.items():
        summary[name] = {m: {"mean": float(np.mean([r["test"][m] for r in rows])),
                             "std": float(np.std([r["test"][m] for r in rows], ddof=1)) if len(rows) > 1 else None}
                         for m in METRICS}
    report = {"data": data.name, "seeds": a.seeds, "protocol": "leave-one-out, full ranking, history masked, "
              "selection on validation NDCG@20", "settings": vars(a), "runs": results, "test_summary": summary,
              "paper": PAPER.get(data.name)}
    out = REPO / "bench" / "results" / f"reproduce-{data.name}-{variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':>24} " + " ".join(f"{m:>16}" for m in METRICS))
    for name, s in summary.items():
        print(f"{name:>24} " + " ".join(f"{s[m]['mean']:.4f}±{(s[m]['std'] or 0):.4f}".rjust(16) for m in METRICS))
    for name, s in (PAPER.get(data.name) or {}).items():
        print(f"{'paper ' + name:>24} " + " ".join(f"{s[m]:.4f}".rjust(16) for m in METRICS))
    print(f"written to {out.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
