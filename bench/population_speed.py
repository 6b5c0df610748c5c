"""Speeds of the population views (issue 14) and the population numbers of the bundled models.

    python bench/population_speed.py [--users 100] [--skip-numbers]

Measured with the bundled checkpoints and the data in ../shared/data:
  * cohort: `fame_core.cohort.cohort_table` over every Sports user, from a cold disk cache (a fresh
    temporary cache folder) and again from the cache (what the Cohort page waits for);
  * compare: `fame_core.compare.compare(beauty-sasrec, beauty-fame)` cold (no cache exists);
  * attribution: integrated gradients + deletion curves of the gated score for one user, the
    median over 20 Sports users.
Load times of checkpoint and data are reported apart. The machine's core count, load average and
the other busiest processes at the start are recorded, since other agents share the 2 cores.
With the numbers (default) it also writes the cohort summary and the attribution faithfulness
average (`--users` sampled users) of beauty-fame and sports-fame. Writes
bench/results/population-speed.json and bench/results/population-numbers.json.
"""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.chdir(REPO)


def machine() -> dict:
    ps = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout.splitlines()
    return {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "busiest_processes": [" ".join(line.split()[:4])[:120] for line in ps[1:7]]}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 3)


def main() -> int:
    import argparse

    import numpy as np
    import torch

    import fame_core
    from fame_core import cohort
    from fame_core.attribution import aopc, attribute, deletion_curves, faithfulness_sample
    from fame_core.compare import compare

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100, help="users sampled for the faithfulness average")
    p.add_argument("--skip-numbers", action="store_true")
    a = p.parse_args()
    result = {"machine_at_start": machine(), "torch_threads": torch.get_num_threads()}

    (sports, sports_data), result["load_sports_s"] = timed(lambda: fame_core.load("checkpoints/sports-fame"))
    with tempfile.TemporaryDirectory() as cache:
        table, result["cohort_sports_cold_s"] = timed(lambda: cohort.cohort_table(sports, sports_data, directory=cache))
        again, result["cohort_sports_cached_s"] = timed(lambda: cohort.cohort_table(sports, sports_data, directory=cache))
        assert again.attrs["from_cache"] and len(again) == len(table)
    result["cohort_sports_users"] = int(len(table))

    (beauty, beauty_data), result["load_beauty_s"] = timed(lambda: fame_core.load("checkpoints/beauty-fame"))
    beauty_sasrec = fame_core.load_checkpoint("checkpoints/beauty-sasrec")
    (_, summary), result["compare_beauty_cold_s"] = timed(
        lambda: compare(beauty_sasrec, beauty, beauty_data, names=("beauty-sasrec", "beauty-fame")))
    result["compare_beauty"] = summary

    rng = np.random.default_rng(0)
    rows = sports_data.splittable_rows()
    times = []
    for r in rng.choice(rows, 20, replace=False):
        seq, target = sports_data.example(int(r))
        _, s = timed(lambda: aopc(deletion_curves(sports, attribute(sports, seq, target, "gated"))))
        times.append(s)
    result["attribution_one_user_s"] = {"median": float(np.median(times)), "max": float(np.max(times)), "users": 20}
    result["machine_at_end"] = machine()
    out = REPO / "bench" / "results" / "population-speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))

    if not a.skip_numbers:
        numbers = {}
        for name, (model, data), t in (("sports-fame", (sports, sports_data), table),
                                        ("beauty-fame", (beauty, beauty_data), None)):
            t = t if t is not None else cohort.cohort_table(model, data)
            numbers[name] = {"cohort": cohort.cohort_summary(t, 20),
                             "faithfulness": faithfulness_sample(model, data, n_users=a.users, seed=0)}
        numbers["machine"] = machine()
        out = REPO / "bench" / "results" / "population-numbers.json"
        out.write_text(json.dumps(numbers, indent=2) + "\n")
        print(json.dumps(numbers, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
