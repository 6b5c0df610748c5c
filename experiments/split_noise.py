"""How noisy is a one-seed accuracy comparison on one split? (issue 16's 1 % validation window)

    python -m experiments.split_noise --reference checkpoints/beauty-fame \\
        checkpoints/beauty-fame-mixture checkpoints/beauty-sasrec

For each checkpoint against the reference, on the validation and the test users: the relative
NDCG@20 difference (mean per-user difference / the reference's NDCG@20) and its standard error
(sample sd of the per-user differences / sqrt(users) / the reference's NDCG@20). A selection window
of 1 % is only meaningful where this standard error is well below 1 %. All checkpoints must be
of the same data set. Writes experiments/results/split-noise-<data>.json.
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


def relative_difference(ndcg: np.ndarray, reference: np.ndarray) -> dict:
    """Relative mean difference of per-user NDCG values and its standard error (paired, ddof=1)."""
    d = ndcg - reference
    base = reference.mean()
    return {"relative": float(d.mean() / base), "se": float(d.std(ddof=1) / np.sqrt(len(d)) / base),
            "users": int(len(d))}


def main() -> int:
    import fame_core
    from fame_core.compare import ndcg_at
    from fame_core.errors import FameError
    from fame_core.evaluate import evaluate

    p = argparse.ArgumentParser(prog="python -m experiments.split_noise", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoints compared with the reference")
    p.add_argument("--reference", required=True, help="the checkpoint the differences are taken against")
    p.add_argument("--data", default=None, help="the data file, where the recorded path does not hold it")
    p.add_argument("--out", default=None, help="default: experiments/results/split-noise-<data>.json")
    a = p.parse_args()
    try:
        model, data = fame_core.load(a.reference, data=a.data)
        models = {a.reference: model, **{c: fame_core.load(c, data=data)[0] for c in a.checkpoints}}
    except FameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if data is None:
        print("error: the comparison needs the data set; pass --data PATH", file=sys.stderr)
        return 2
    ndcg = {(c, split): ndcg_at(evaluate(m, data, split, return_ranks=True)["ranks"], 20)
            for c, m in models.items() for split in ("valid", "test")}
    rows = []
    for c in a.checkpoints:
        row = {"checkpoint": c, "reference": a.reference}
        for split in ("valid", "test"):
            row[split] = relative_difference(ndcg[c, split], ndcg[a.reference, split])
            print(f"{c} vs {a.reference}, {split}: {row[split]['relative']:+.2%} "
                  f"(standard error {row[split]['se']:.2%}, {row[split]['users']} users)")
        rows.append(row)
    out = Path(a.out) if a.out else REPO / "experiments" / "results" / f"split-noise-{data.name}.json"
    out.write_text(json.dumps({"data": data.name, "metric": "NDCG@20, history masked",
                               "statistics": "paired per-user differences; se = sample sd / sqrt(users) / "
                                             "reference mean", "rows": rows}, indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
