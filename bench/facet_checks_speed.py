"""The real-data facet checks at scale (issue 18, item 4): seconds and peak memory of
`fame_core.facets.real_checks` (gate against heads over all users and over the top 20, experts
against random routers) on a large synthetic world.

    python bench/facet_checks_speed.py [--users 100000] [--items 10000] [--out JSON]

The world is the one of bench/scaling.py (seed 0, cached under runs/scaling-worlds/), with one
item facet of 10 values drawn at random (timing only: the checks' verdicts mean nothing here),
and FAME (H = 2, N = 4, the paper's settings) at its initialisation: the checks cost the same for
a trained model. Ranking runs over users in batches (`evaluate.rank_users`), so memory grows with
the per-user outputs kept (heads, gates, router: about 0.3 KB a user), not with users x items.
Writes bench/results/facet-checks-speed-u<users>.json with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)

    import numpy as np
    import torch

    from fame_core.facets import real_checks
    from fame_core.models import build_model, model_config
    from scaling import load_world   # bench/scaling.py: `python bench/THIS.py` puts bench/ first on the path

    load_before = os.getloadavg()
    data, made = load_world(a.users, a.items)
    rng = np.random.default_rng(0)
    data.facets = {"genre": [()] + [(f"value {v}",) for v in rng.integers(0, 10, a.items)]}
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    torch.manual_seed(0)
    model = build_model(model_config("fame", n_items=a.items, n_heads=2, n_experts=4)).eval()
    t = time.perf_counter()
    checks = real_checks(model, data, "genre")
    seconds = time.perf_counter() - t
    out = {"command": "python bench/facet_checks_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "users": a.users, "items": a.items, "real_checks_seconds": round(seconds, 1),
           "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
           "rss_after_world_gib": round(rss_data, 2), "world_make_seconds": made,
           "torch_threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
           "checks": {k: v for k, v in checks.items() if isinstance(v, (int, float, str, bool)) or v is None},
           "note": "an untrained model on a synthetic world with a random facet: the time and memory, not the verdicts"}
    path = Path(a.out) if a.out else REPO / "bench" / "results" / f"facet-checks-speed-u{a.users}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("users", "items", "real_checks_seconds", "peak_rss_gib")}))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
