"""Would a bolder or a more cautious gate make the gated merge beat equal weights? (issue 16)

    python -m experiments.gate_temperature checkpoints/beauty-fame-gated --data ../shared/data/amazon/Beauty.txt

For each FAME checkpoint and each temperature tau (gate = softmax(W_g F / tau),
`fame_core.facets.gate_temperature`; tau < 1 sharpens, tau > 1 softens, tau = 1 is the gate as
trained, whatever temperature the checkpoint holds), the reading of `gate_merge_value` on
validation users: NDCG@20 of the gated merge, the equal-weight merge and the best head, and the
gated merge against the equal-weight one (two-sided Wilcoxon over users). Validation only by
default: this is where a temperature would be chosen (the largest gated NDCG@20; tau = 1 unless
another is higher; for checkpoints that are seeds of one setting, the largest mean over them), so
test users stay unread. Writes
experiments/results/gate-temperature-<data>.json (--out to change; --overwrite to replace).
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
    from fame_core.compare import ndcg_at
    from fame_core.errors import FameError
    from fame_core.evaluate import rank_users
    from fame_core.facets import (choose_gate_temperature, gate_temperature, load_gated_fames, merge_ndcg,
                                  merge_reading)
    from fame_core.safe_io import write_file_atomic

    p = argparse.ArgumentParser(prog="python -m experiments.gate_temperature", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="FAME checkpoints of one data set")
    p.add_argument("--data", default=None, help="the data file, where the recorded path does not hold it")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    p.add_argument("--split", choices=("valid", "test"), default="valid")
    p.add_argument("--out", default=None, help="default: experiments/results/gate-temperature-<data>.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    a = p.parse_args()
    default_out = REPO / "experiments" / "results" / "gate-temperature-{data}.json"
    try:
        bad = [t for t in a.temperatures if not t > 0]
        if bad:
            raise FameError(f"--temperatures must be positive, not {bad[0]}; pass values such as 0.5 1 2")
        models, data, out = load_gated_fames(a.checkpoints, a.data, a.out, default_out, a.overwrite)
    except FameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    taus = sorted(set(a.temperatures) | {1.0})
    rows = []
    for c, m in zip(a.checkpoints, models):
        readings = {}
        with gate_temperature(m, 1.0):   # the paper's gate, whatever temperature the checkpoint holds
            trained = merge_ndcg(m, data, a.split)
        for tau in taus:
            ndcg = dict(trained)
            if tau != 1.0:   # only the gated merge depends on the gate: the others are ranked once
                with gate_temperature(m, tau):
                    ranks = rank_users(m, data, a.split, merges=("gated",))["ranks"]["gated"]
                ndcg["gated"] = ndcg_at(ranks, 20)
            readings[tau] = v = merge_reading(ndcg)
            print(f"{c} tau {tau:g}: gated {v['NDCG@20']['gated']:.5f}, equal {v['NDCG@20']['concat']:.5f}, "
                  f"p {v['gated_vs_equal']['p']:.2g}", file=sys.stderr)
        best = choose_gate_temperature({t: readings[t]["NDCG@20"]["gated"] for t in taus})
        rows.append({"checkpoint": c, "chosen_temperature": best,
                     "readings": [{"temperature": t, **readings[t]} for t in taus]})
    mean = {t: sum(r["readings"][taus.index(t)]["NDCG@20"]["gated"] for r in rows) / len(rows) for t in taus}
    chosen = choose_gate_temperature(mean)
    print(f"over the checkpoints (seeds of one setting): tau {chosen:g}", file=sys.stderr)
    write_file_atomic(out, json.dumps({"data": data.name, "split": a.split, "metric": "NDCG@20, history masked",
                                       "rule": "chosen: the largest gated NDCG@20 on this split (tau = 1 on ties); "
                                               "over the checkpoints: the largest mean over them",
                                       "chosen_over_checkpoints": chosen, "mean_gated_NDCG@20": mean,
                                       "rows": rows}, indent=2) + "\n")
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
