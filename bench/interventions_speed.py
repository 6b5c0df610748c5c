"""Speeds of interventions and counterfactual histories (issue 44), on checkpoints/sports-fame-gated.

    OMP_NUM_THREADS=1 FAME_DATA_ROOTS=../shared/data python bench/interventions_speed.py [--repeats 10]

Measured (one thread; torch.set_num_threads(1)):
  * one user's intervention: `intervene` for Sports user 230 (before and after, every merge's
    top-20 list and rank), for a head ablation, an expert knock-out, the rule gate and a router
    setting; the median and max over `--repeats` runs each (target < 0.3 s);
  * one counterfactual, budget 3: user 230 for each goal, and goal top-k for 10 sampled test
    users (median, max; target < 3 s);
  * a population intervention: `intervene_population` over every Sports test user for the
    knock-out of the expert that user 230's larger-gate head routes to (target < 60 s), with its summary.
No timed assertions. The core count and os.getloadavg() at start and end are recorded, since other
people's runs share the 2 cores. Writes bench/results/interventions-speed.json.
"""

import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.chdir(REPO)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FAME_DATA_ROOTS", str(REPO.parent / "shared" / "data"))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 4)


def main() -> int:
    import argparse

    import numpy as np
    import torch

    import fame_core
    from fame_core.counterfactual import counterfactual
    from fame_core.interventions import intervene, intervene_population

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/sports-fame-gated")
    p.add_argument("--data", default=None, help="the data file (default: found through FAME_DATA_ROOTS)")
    p.add_argument("--user", default="230")
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(1)
    result = {"checkpoint": a.checkpoint, "user": a.user, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_at_start": os.getloadavg()}
    (model, data), result["load_s"] = timed(lambda: fame_core.load(a.checkpoint, data=a.data))
    seq, target = data.example(data.user_row(a.user), "test")

    # warm-up (first-call allocations), then the one-user interventions
    intervene(model, [seq], [target], ["head:0"])
    one = {}
    for spec in ["head:0", "expert:1.0", "gate=rule", "router:1=argmax"]:
        times = [timed(lambda: intervene(model, [seq], [target], [spec], k=20))[1] for _ in range(a.repeats)]
        one[spec] = {"median_s": float(np.median(times)), "max_s": float(np.max(times))}
    result["one_user_intervention"] = one

    cfs = {}
    for goal in ["top-k", "flip-gate", "top-1"]:
        cf, s = timed(lambda: counterfactual(model, seq, target, goal=goal, k=20, budget=3))
        cfs[goal] = {"seconds": s, "found": cf.found, "size": cf.size, "searched": cf.searched, "message": cf.message}
    rng = np.random.default_rng(0)
    times, found = [], 0
    for r in rng.choice(data.splittable_rows(), 10, replace=False):
        s_, t_ = data.example(int(r), "test")
        cf, s = timed(lambda: counterfactual(model, s_, t_, goal="top-k", k=20, budget=3))
        times.append(s)
        found += cf.found
    cfs["top-k, 10 sampled users"] = {"median_s": float(np.median(times)), "max_s": float(np.max(times)), "found": found}
    result["one_counterfactual_budget3"] = cfs

    clean = intervene(model, [seq], [target], ["gate=user:self"]).before
    big = int(np.argmax(clean.gates[0]))
    spec = f"expert:{big}.{int(np.argmax(clean.router[0, big]))}"
    pop, s = timed(lambda: intervene_population(model, data, "test", [spec], k=20))
    result["population_intervention"] = {"intervention": spec, "seconds": s, "users": pop["summary"]["users"],
                                         "summary": pop["summary"]}
    result["load_average_at_end"] = os.getloadavg()
    out = REPO / "bench" / "results" / "interventions-speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "population_intervention"}, indent=2))
    print(f"population: {spec}, {pop['summary']['users']} users, {s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
