"""Issue 16's choice of a gate/router setting, on validation users only.

    python bench/facet_choose.py --results bench/results/facet-real-beauty.json \\
        --ablation bench/results/ablation-Beauty.json --seed 0

Reads the rows bench/facet_real.py wrote (their "valid" readings: NDCG@20, the gate against
always trusting one head, the experts against random routers) and the ablation's validation
NDCG@20 at the same seed; the reference is the ablation's best row there (where a data set has no
ablation yet, a reproduction's JSON: Table 2's SASRec and FAME rows). The rule is
fame_core.facets.choose_on_validation: within 1 % of the reference, the setting passing most
checks, then the largest gate margin. Test metrics are not read. Writes
bench/results/facet-choice-<results name>.json beside a table on the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fame_core.facets import choose_on_validation

REPO = Path(__file__).resolve().parents[1]


def reference_rows(results: dict, seed: int) -> dict[str, float]:
    """Validation NDCG@20 at `seed` of every row of an ablation report (bench/ablation.py: "rows",
    each with "seeds" and "valid") or, where a data set has no ablation yet, of a reproduction
    (bench/reproduce.py: "runs", each a list of per-seed results; Table 2's rows only)."""
    if "rows" in results:
        return {name: r["valid"]["NDCG@20"]["values"][r["seeds"].index(seed)]
                for name, r in results["rows"].items() if seed in r["seeds"]}
    return {name: r["valid"]["NDCG@20"] for name, runs in results["runs"].items() for r in runs if r["seed"] == seed}


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, help="a bench/results/facet-real-<name>.json")
    p.add_argument("--ablation", required=True, help="a bench/results/ablation-<data>.json with the same seed (or, "
                   "where the data set has no ablation yet, a bench/results/reproduce-<data>-<row>.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=0.01, help="how far below the reference (relative) is allowed")
    p.add_argument("--out", default=None, help="where to write the choice (default: bench/results/facet-choice-<name>.json)")
    a = p.parse_args()
    try:
        rows = json.loads(Path(a.results).read_text())["rows"]
        ablation = json.loads(Path(a.ablation).read_text())
        at_seed = reference_rows(ablation, a.seed)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return fail(f"cannot read {a.results} or {a.ablation} ({e}); pass the JSON files that "
                    "bench/facet_real.py and bench/ablation.py report write")
    if not at_seed:
        return fail(f"no ablation row has seed {a.seed}; pass a --seed the ablation ran")
    reference_row = max(at_seed, key=at_seed.get)
    out = choose_on_validation(rows, at_seed[reference_row], tolerance=a.tolerance)
    out = {"results": a.results, "reference from": a.ablation, "seed": a.seed, "reference row": reference_row, **out}
    for t in out["table"]:
        print(f"{t['variant'][:62]:62s} valid NDCG@20 {t['NDCG@20']:.4f} ({t['relative']:+.1%})  gate "
              f"{t['gate margin']:+.3f}  expert z {t['expert z']:5.2f}  {'within' if t['within tolerance'] else 'below'}")
    if out["unread"]:
        print(f"not read (no validation reading; rerun bench/facet_real.py on them): {', '.join(out['unread'])}")
    if out["metadata"]:
        print(f"not chosen (a head supervised with item metadata): {', '.join(out['metadata'])}")
    print(f"chosen: {out['chosen']} ({out['rule']}; reference {reference_row} {out['reference']:.4f})")
    name = Path(a.results).stem.removeprefix("facet-real-")
    path = Path(a.out) if a.out else REPO / "bench" / "results" / f"facet-choice-{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
