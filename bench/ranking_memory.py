"""Extra memory of the chunked ranking (ranking.streaming_rank) over a large catalogue.

    python bench/ranking_memory.py                      # 1024 users x 10^5 items, ranks only (as evaluate)
    python bench/ranking_memory.py --items 1000000 --k 20

Random user and item vectors (d 64), 20 excluded items per user, one thread. Peak resident
memory of this process before and after ranking one batch of users; the difference is what the
ranking added (scores chunk, counts, top-k). Writes bench/results/ranking-memory-<items>[-k<k>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1024, help="users ranked at once (evaluate's batch)")
    p.add_argument("--k", type=int, default=0, help="top-k lists too (0: target ranks only, as evaluate)")
    a = p.parse_args()
    import numpy as np
    import torch

    from fame_core import ranking

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    E = torch.randn(a.items + 1, 64, generator=g)
    u = torch.randn(a.users, 64, generator=g)
    targets = torch.randint(1, a.items + 1, (a.users,), generator=g)
    rng = np.random.default_rng(0)
    excluded = [np.concatenate([[0], rng.integers(1, a.items + 1, 20)]) for _ in range(a.users)]
    before = peak_mib()
    t0 = time.perf_counter()
    ranking.streaming_rank(ranking.embedding_scorer(u, E), a.items + 1, targets, k=a.k, excluded=excluded)
    report = {"items": a.items, "users": a.users, "k": a.k, "chunk": ranking.ITEM_CHUNK,
              "count_rows": ranking.COUNT_ROWS, "scores_chunk_mib": a.users * min(ranking.ITEM_CHUNK, a.items + 1) * 4 / 2**20,
              "peak_before_mib": round(before), "peak_after_mib": round(peak_mib()),
              "extra_mib": round(peak_mib() - before), "seconds": round(time.perf_counter() - t0, 1),
              "torch_threads": torch.get_num_threads(), "load_average_after": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}
    out = REPO / "bench" / "results" / f"ranking-memory-{a.items}{f'-k{a.k}' if a.k else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
