"""How long the four verdicts (fame_core.verdicts) take on a bundled checkpoint: cold and cached (issue 41).

    python bench/verdicts_speed.py [--checkpoint checkpoints/sports-fame-gated] [--out bench/results/verdicts-speed.json]

Cold: $FAME_CACHE set to a fresh temporary folder (so the cohort tables of validation and test are
computed too); cached: the same call again. The machine's load average (os.getloadavg) is recorded
at the start and the end of each, with torch's thread count: on a shared 2-core machine a load
of 5 slows every stage several-fold. Writes one JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="checkpoints/sports-fame-gated")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default="bench/results/verdicts-speed.json")
    a = p.parse_args(argv)
    os.environ["FAME_CACHE"] = tempfile.mkdtemp(prefix="fame-verdicts-bench-")
    import torch

    from fame_core.checkpoint import load
    from fame_core.verdicts import LAST_TIMINGS, verdicts

    t = time.perf_counter()
    model, dataset = load(a.checkpoint, data=a.data)
    result = {"checkpoint": a.checkpoint, "dataset": dataset.name, "users": int(len(dataset.splittable_rows())),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_s": round(time.perf_counter() - t, 3)}
    for run in ("cold", "cached"):
        before = os.getloadavg()
        t = time.perf_counter()
        out = verdicts(model, dataset)
        result[f"{run}_s"] = round(time.perf_counter() - t, 3)
        if run == "cold":
            result["cold_stages_s"] = {k: round(v, 2) for k, v in LAST_TIMINGS.items()}
        result[f"{run}_load_average_start"] = [round(x, 2) for x in before]
        result[f"{run}_load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["goal"] = "under 60 s cold, under 1 s cached (issue 41)"
    result["verdicts"] = out
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "verdicts"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
