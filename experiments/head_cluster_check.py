"""Can a gate name the next item's cluster? The check behind `--head-clusters` (issue 16).

    python -m experiments.head_cluster_check runs/reproduce/Beauty/fame-h2-n4-warm-res-s0 --clusters 2 4

`--head-clusters` gives head c the items of k-means cluster c (of the items in the heads' scoring
space, weighted by 1 + each item's count as a training target) and teaches the gate the next item's cluster; the
larger-gate head can only beat "always trust one head" if that cluster is predictable from the
history. Before training, this measures it on a trained checkpoint with two simple readers:
the cluster most of the user's history falls in, and the cluster of the last item, against always
naming the largest cluster (the share of test targets in it). Writes
experiments/results/head-cluster-check-<data>.json (one row per checkpoint and number of clusters).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402


def cluster_predictability(model, dataset, k: int, seed: int = 0) -> dict:
    """Test-target cluster shares and the two readers' accuracy for k frequency-weighted clusters."""
    from sklearn.cluster import KMeans

    subs = model.item_sub_embeddings()[:, 1:].detach().float().cpu()             # (H, n, d')
    full = subs.permute(1, 0, 2).reshape(subs.shape[1], -1).numpy()              # the heads' scoring space
    counts = np.zeros(dataset.n_items + 1)
    max_len = model.config.max_len
    for row in dataset.splittable_rows():      # the training targets, as training counts them
        seq, _ = dataset.example(row, "train")
        if len(seq) >= 2:
            np.add.at(counts, seq[1:][-max_len:], 1)
    # k-means++ with 3 restarts to convergence (training warm-starts 10 iterations a epoch: close, not equal)
    labels = np.concatenate([[-1], KMeans(k, n_init=3, random_state=seed).fit(
        full, sample_weight=counts[1:] + 1).labels_])
    hist, target = [], []
    for row in dataset.splittable_rows():
        seq, t = dataset.example(row, "test")
        hist.append(labels[seq])
        target.append(labels[t])
    target = np.array(target)
    share = np.bincount(target, minlength=k) / len(target)
    majority = np.array([np.bincount(h, minlength=k).argmax() for h in hist])
    last = np.array([h[-1] for h in hist])
    return {"clusters": k, "users": len(target), "target share": share.round(4).tolist(),
            "largest cluster": float(share.max()), "history majority": float((majority == target).mean()),
            "last item": float((last == target).mean())}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.head_cluster_check", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--clusters", type=int, nargs="+", default=[2])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if any(k < 2 for k in a.clusters):
        print("error: --clusters needs whole numbers of 2 or more (one cluster per head)", file=sys.stderr)
        return 2
    from fame_core.checkpoint import load
    from fame_core.errors import FameError

    rows, name = [], None
    for path in a.checkpoints:
        try:
            model, data = load(path)
        except FameError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        name = data.name
        for k in a.clusters:
            row = {"checkpoint": str(path), **cluster_predictability(model, data, k, a.seed)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = REPO / "experiments" / "results" / f"head-cluster-check-{name}.json"
    out.write_text(json.dumps({"seed": a.seed, "rows": rows}, indent=2) + "\n")
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
