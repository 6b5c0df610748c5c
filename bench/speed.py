"""Speed and memory of SASRec and FAME side by side, on one data set, in one run.

    python bench/speed.py                                  # Beauty from ../shared/data
    python bench/speed.py --data PATH --epochs 2 --json

For each model (each in its own process, so peak memory is its own): seconds per training
epoch (full-softmax CE, batch 256, logits only at targets), seconds per full-ranking evaluation
of all users (test split, history masked), and peak resident memory. Prints a table and writes
JSON to bench/results/speed-<data>.json. Records torch threads and the load average: absolute
times on a shared 2-core machine are noisy, the FAME / SASRec ratios hold better.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # this checkout's fame_core, not an installed one (as bench/scaling.py)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon" / "Beauty.txt"
MODELS = {"sasrec": {}, "fame": dict(n_experts=4)}


def measure_one(kind: str, data_path: str, epochs: int, device: str) -> dict:
    import numpy as np
    import torch

    from fame_core.data import load_dataset
    from fame_core.evaluate import evaluate, left_pad
    from fame_core.models import build_model, model_config
    from fame_core.training import epoch_batches, loss_on_batch, resolve_device, training_pairs

    dev = resolve_device(device)
    data = load_dataset(data_path)
    torch.manual_seed(0)
    cfg = model_config(kind, n_items=data.n_items, d=64, n_layers=2, n_heads=2, max_len=50, dropout=0.5,
                      attn_dropout=0.5, **MODELS[kind])
    model = build_model(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pairs = training_pairs(data, cfg.max_len)
    epoch_s = []
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for idx in epoch_batches(pairs, 256, np.random.default_rng([0, epoch])):
            inputs = left_pad([pairs[i][0] for i in idx], cfg.max_len, dev)
            targets = left_pad([pairs[i][1] for i in idx], cfg.max_len, dev)
            loss = loss_on_batch(model, inputs, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        epoch_s.append(time.perf_counter() - t0)
    eval_s = []
    for _ in range(2):
        t0 = time.perf_counter()
        result = evaluate(model, data, "test")
        eval_s.append(time.perf_counter() - t0)
    return {
        "model": kind, "params": sum(p.numel() for p in model.parameters()),
        "epoch_seconds": [round(s, 2) for s in epoch_s], "epoch_seconds_best": round(min(epoch_s), 2),
        "eval_seconds": [round(s, 2) for s in eval_s], "eval_seconds_best": round(min(eval_s), 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "targets_per_epoch": int(sum(len(t) for _, t in pairs)), "users_evaluated": result["users"],
        "test_after_training": {k: round(v, 4) for k, v in result["metrics"].items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--epochs", type=int, default=2, help="training epochs timed per model")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default="sasrec,fame")
    p.add_argument("--json", action="store_true", help="print the JSON result instead of a table")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure_one(a.one, a.data, a.epochs, a.device)))
        return 0
    if not Path(a.data).exists():
        print(f"error: data not found: {a.data} (pass --data PATH)", file=sys.stderr)
        return 2
    import torch

    rows = []
    for kind in a.models.split(","):
        print(f"measuring {kind} ...", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--data", a.data, "--epochs", str(a.epochs),
                              "--device", a.device], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for r in rows:
        r["epoch_vs_first"] = round(r["epoch_seconds_best"] / base["epoch_seconds_best"], 3)
        r["eval_vs_first"] = round(r["eval_seconds_best"] / base["eval_seconds_best"], 3)
    report = {
        "data": a.data, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "device": a.device, "load_average_after": os.getloadavg(),
        "settings": "d=64, L=2, H=2, N=4 (FAME), max_len=50, batch 256, full-softmax CE",
        "results": rows,
    }
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"speed-{Path(a.data).stem}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'model':>8} {'epoch s':>9} {'eval s':>8} {'peak GiB':>9} {'epoch x':>8} {'eval x':>7}")
        for r in rows:
            print(f"{r['model']:>8} {r['epoch_seconds_best']:9.2f} {r['eval_seconds_best']:8.2f} "
                  f"{r['peak_rss_gib']:9.2f} {r['epoch_vs_first']:8.2f} {r['eval_vs_first']:7.2f}")
        print(f"written to {path.relative_to(REPO)} (threads {report['torch_threads']}, "
              f"load {report['load_average_after'][0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
