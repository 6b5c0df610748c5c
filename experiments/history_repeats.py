"""Targets that repeat a history item (issue 15): how many users, and the metrics three ways.

    python -m experiments.history_repeats checkpoints/beauty-sasrec checkpoints/beauty-fame \
        checkpoints/sports-sasrec checkpoints/sports-fame

The protocol of docs/results.md masks every history item at evaluation (ICLRec's code does the
same), so a test target the user already interacted with can never be hit. This counts those
users per data set and reports each checkpoint's test metrics
  - "mask history" (the protocol: such a target is a certain miss),
  - "mask history except the target" (the target stays rankable; other history items masked),
  - "no masking" (every item ranked),
and the metrics over the users whose target is new only; next to them the test metrics recorded in
the checkpoint at training time (float32) and the difference (bundled checkpoints are compacted
to float16). Writes experiments/results/history-repeats.json.
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
import torch  # noqa: E402


def ranks_three_ways(model, dataset, split: str = "test", batch: int = 512) -> dict:
    from fame_core.evaluate import score_last, target_ranks

    rows = dataset.splittable_rows()
    examples = [dataset.example(r, split) for r in rows]
    out = {k: np.empty(len(rows), dtype=np.int64) for k in ("mask history", "mask history except the target", "no masking")}
    repeat = np.zeros(len(rows), dtype=bool)
    model.eval()
    for start in range(0, len(rows), batch):
        chunk = examples[start:start + batch]
        seqs = [np.asarray(s) for s, _ in chunk]
        targets = torch.tensor([int(t) for _, t in chunk])
        scores = score_last(model, seqs)
        scores[:, 0] = -torch.inf
        out["no masking"][start:start + len(chunk)] = target_ranks(scores, targets).numpy()
        for i, (s, t) in enumerate(zip(seqs, targets.tolist())):
            repeat[start + i] = t in set(s.tolist())
        keep = scores.clone()
        for i, s in enumerate(seqs):
            others = s[s != int(targets[i])]
            keep[i, torch.as_tensor(others)] = -torch.inf
        out["mask history except the target"][start:start + len(chunk)] = target_ranks(keep, targets).numpy()
        for i, s in enumerate(seqs):
            scores[i, torch.as_tensor(s)] = -torch.inf
        # a masked target is -inf like the masked items: count it as ranked after every item
        r = target_ranks(scores, targets).numpy()
        r[np.array([int(targets[i]) in set(seqs[i].tolist()) for i in range(len(seqs))])] = dataset.n_items
        out["mask history"][start:start + len(chunk)] = r
    return {"ranks": out, "repeat": repeat}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.history_repeats", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    a = p.parse_args()

    from fame_core.evaluate import metrics_from_ranks
    from fame_core.checkpoint import load

    report = {"split": a.split, "checkpoints": {}}
    for ck in a.checkpoints:
        model, data = load(ck)
        if data is None:
            print(f"{ck}: its data set is not here; skipped", file=sys.stderr)
            continue
        r = ranks_three_ways(model, data, a.split)
        rep = r["repeat"]
        entry = {"data": data.name, "users": int(len(rep)), "target_in_history": int(rep.sum()),
                 "share": float(rep.mean()),
                 "metrics": {k: metrics_from_ranks(v) for k, v in r["ranks"].items()},
                 "metrics_new_targets_only": metrics_from_ranks(r["ranks"]["mask history"][~rep])}
        conf = json.loads((Path(ck) / "config.json").read_text())
        if "test" in conf:   # recorded at training time, in float32; bundled weights may be float16
            entry["recorded_test"] = conf["test"]
            from safetensors import safe_open

            with safe_open(str(Path(ck) / "weights.safetensors"), "pt") as f:   # as stored, before loading
                entry["weights_dtype"] = str(f.get_slice(next(iter(f.keys()))).get_dtype())
            entry["now_minus_recorded"] = {k: entry["metrics"]["mask history"][k] - v for k, v in conf["test"].items()
                                           if k in entry["metrics"]["mask history"]}
        report["checkpoints"][ck] = entry
        m = entry["metrics"]
        print(f"{ck}: {entry['target_in_history']} of {entry['users']} users ({entry['share']:.2%}) have a target in "
              f"their history; NDCG@20 masked {m['mask history']['NDCG@20']:.4f}, except target "
              f"{m['mask history except the target']['NDCG@20']:.4f}, unmasked {m['no masking']['NDCG@20']:.4f}, "
              f"new targets only {entry['metrics_new_targets_only']['NDCG@20']:.4f}")
    out = REPO / "experiments" / "results" / "history-repeats.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
