"""Does the case study's user table answer its filters in under 1 s for 10^6 users? (issue 18.4)

    python bench/user_table_speed.py [--users 1000000]

Ranking 10^6 real users is not what is timed here (that is `rank_users`, linear in users; see
docs/scaling.md and bench/population_speed.py). What is timed is everything after it, with a
cohort table of the real schema filled with random values for `--users` users:

1. the parquet cache: writing and reading the cohort table (`fame_core.cohort` keeps it on disk
   per checkpoint fingerprint and split), and deriving the user table from it (`users.from_cohort`);
2. the filters in pandas, the same expressions as the page (history length, dominant head, gate
   entropy, "gated hit, concat miss"), and the same filters in DuckDB over the parquet file when
   duckdb is installed;
3. the page itself, server side (streamlit.testing.v1.AppTest on the bundled demo checkpoint,
   its user table replaced by the 10^6-row one): each re-run after moving a filter, which also
   sends the first `session.TABLE_ROWS` matching rows to the browser.

Writes bench/results/user-table-speed.json (with the machine's load average).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 1):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, round(statistics.median(times), 4)


def fake_cohort(n: int, seed: int = 0):
    """A cohort table of the real schema (H = 2, N = 4) with random values."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    g0 = rng.beta(5, 5, n)
    gates = np.stack([g0, 1 - g0], 1)
    entropy = -(gates * np.log(gates)).sum(1) / np.log(2)
    table = pd.DataFrame({"user": np.arange(1, n + 1).astype(str), "row": np.arange(n),
                          "length": rng.integers(3, 200, n), "target": rng.integers(1, 10**5, n),
                          "rank_gated": rng.integers(0, 10**5, n), "rank_concat": rng.integers(0, 10**5, n),
                          "gate_0": g0, "gate_1": 1 - g0, "gate_entropy": entropy, "top_gate_head": gates.argmax(1)})
    table.attrs.update(model="fame", heads=2, experts=4, split="test", dataset="random")
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1_000_000)
    a = p.parse_args()
    if a.users < 1:
        print("error: --users must be at least 1", file=sys.stderr)
        return 2
    import pandas as pd

    from fame_core.users import from_cohort, gated_wins

    result = {"users": a.users, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    cohort = fake_cohort(a.users)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cohort.parquet"
        _, result["parquet_write_s"] = timed(lambda: cohort.to_parquet(path, index=False))
        read, result["parquet_read_s"] = timed(lambda: pd.read_parquet(path), repeat=3)
        result["parquet_mb"] = round(path.stat().st_size / 1e6, 1)
        read.attrs.update(cohort.attrs)
        table, result["from_cohort_s"] = timed(lambda: from_cohort(read, None, 20), repeat=3)

        def page_filter():
            shown = table[table["length"].between(10, 100) & table["dominant_head"].isin([0])
                          & table["gate_entropy"].between(0.0, 0.9)]
            return gated_wins(shown, 20)

        _, result["pandas_filter_s"] = timed(page_filter, repeat=5)
        try:
            import duckdb
        except ImportError:
            result["duckdb_filter_s"] = None
        else:
            sql = (f"SELECT * FROM read_parquet('{path}') WHERE length BETWEEN 10 AND 100 AND "
                   "top_gate_head = 0 AND gate_entropy BETWEEN 0 AND 0.9 AND rank_gated < 20 AND rank_concat >= 20")
            _, result["duckdb_filter_s"] = timed(lambda: duckdb.sql(sql).df(), repeat=5)

    import importlib.util

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    # the app's own session module, loaded from its file under the name its pages import: the
    # AppTest run below finds it in sys.modules and uses it, with its table swapped in
    spec = importlib.util.spec_from_file_location("session", REPO / "app" / "session.py")
    session = sys.modules["session"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(session)
    st.cache_data.clear()
    session.users = lambda path, data_path, split, k: table        # the page's table, 10^6 rows
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=600)
    at.run()
    _, result["page_toggle_table_s"] = timed(lambda: at.toggle(key="show_user_table").set_value(True).run())
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"of {a.users:,} users match" in c.value for c in at.caption)   # the page holds the big table
    moves = []
    for lo in (5, 20, 50, 3, 10):
        _, s = timed(lambda: at.slider[0].set_range(lo, 150).run())
        assert not at.exception and len(at.dataframe[0].value) <= session.TABLE_ROWS
        moves.append(s)
    _, gated = timed(lambda: at.checkbox[0].check().run())
    result["page_filter_rerun_s"] = {"median": round(statistics.median(moves), 3), "max": round(max(moves), 3),
                                     "n": len(moves), "gated_wins_checkbox": gated}
    result["rows_sent_to_browser"] = len(at.dataframe[0].value)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = REPO / "bench" / "results" / "user-table-speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
