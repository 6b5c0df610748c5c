"""Does the gated merge beat the equal-weight merge over several seeds of one setting? (issue 16)

    python -m experiments.gate_merge_seeds checkpoints/beauty-fame-gated RUN_S1 RUN_S2 --data ../shared/data/amazon/Beauty.txt

One FAME checkpoint per seed, all of one data set. Per seed, the reading of
`fame_core.facets.gate_merge_value` (per-user NDCG@20 of the gated merge against the equal-weight
merge and the best single head, two-sided Wilcoxon over users); pooled, the same test over each
user's NDCG@20 averaged over the seeds (`gate_merge_over_seeds`): one seed that ties no longer
hides what the others show, and no user counts twice. Test users by default (the setting was
chosen on validation before: this reads it, it chooses nothing). --gate-temperature reads every
model with its gate at a temperature chosen on validation (experiments/gate_temperature.py). Writes
experiments/results/gate-merge-seeds-<data>.json (--out to change; an existing file is replaced only with
--overwrite).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    from fame_core.checkpoint import read_config
    from fame_core.errors import FameError
    from fame_core.facets import gate_merge_over_seeds, gate_temperature, load_gated_fames, merge_ndcg, merge_reading
    from fame_core.safe_io import write_file_atomic

    p = argparse.ArgumentParser(prog="python -m experiments.gate_merge_seeds", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="FAME checkpoints of one setting, one per seed (two or more)")
    p.add_argument("--data", default=None, help="the data file, where the recorded path does not hold it")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--gate-temperature", type=float, default=None,
                   help="read every model with its gate at this temperature (chosen on validation by "
                        "experiments/gate_temperature.py); default: the temperature each checkpoint holds")
    p.add_argument("--out", default=None, help="default: experiments/results/gate-merge-seeds-<data>.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    a = p.parse_args()
    if len(a.checkpoints) < 2:
        print("error: the pooled test needs two or more checkpoints (one per seed); pass them all", file=sys.stderr)
        return 2
    if a.gate_temperature is not None and not a.gate_temperature > 0:
        print(f"error: --gate-temperature must be positive, not {a.gate_temperature}; 1 reads the models as trained",
              file=sys.stderr)
        return 2
    if a.k < 1:
        print(f"error: --k must be at least 1, not {a.k}", file=sys.stderr)
        return 2
    try:
        models, data, out = load_gated_fames(a.checkpoints, a.data, a.out,
                                             REPO / "experiments" / "results" / "gate-merge-seeds-{data}.json", a.overwrite)
    except FameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    per_seed, rows = [], []
    for c, m in zip(a.checkpoints, models):
        with gate_temperature(m, a.gate_temperature or m.config.gate_temperature):
            ndcg = merge_ndcg(m, data, a.split, a.k)
        per_seed.append(ndcg)
        row = {"checkpoint": c, "seed": read_config(c)[0].get("seed"),
               "gate_temperature": a.gate_temperature or m.config.gate_temperature, **merge_reading(ndcg, a.k)}
        rows.append(row)
        print(f"{c}: gated - equal {row['gated_vs_equal']['difference']:+.5f} (p {row['gated_vs_equal']['p']:.2g})",
              file=sys.stderr)
    pooled = gate_merge_over_seeds(per_seed, a.k)
    print(f"pooled over {len(rows)} seeds: gated - equal {pooled['gated_vs_equal']['difference']:+.5f} "
          f"(p {pooled['gated_vs_equal']['p']:.2g}), gated - best head "
          f"{pooled['gated_vs_best_head']['difference']:+.5f} (p {pooled['gated_vs_best_head']['p']:.2g})",
          file=sys.stderr)
    write_file_atomic(out, json.dumps({"data": data.name, "split": a.split, "metric": f"NDCG@{a.k}, history masked",
                                       "gate_temperature": a.gate_temperature, "per_seed": rows, "pooled": pooled},
                                      indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
