"""Issue 16's choice of a gate/router setting, on validation users only.

    python bench/facet_choose.py --results bench/results/facet-real-beauty.json \\
        --ablation bench/results/ablation-Beauty.json --seed 0
    python bench/facet_choose.py --ablation bench/results/ablation-Beauty.json \\
        --results bench/results/facet-real-beauty.json bench/results/facet-real-beauty-s1.json \\
        bench/results/facet-real-beauty-s2.json

Reads the rows bench/facet_real.py wrote (their "valid" readings: NDCG@20, the gate against
always trusting one head, the experts against random routers) and the ablation's validation
NDCG@20 at the same seed; the reference is the ablation's best row there (where a data set has no
ablation yet, a reproduction's JSON: Table 2's SASRec and FAME rows). The rule is
fame_core.facets.choose_on_validation: within 1 % of the reference, the setting passing most
checks, then the largest gate margin. With several results files (one per seed, the seed read
from each file's settings) the rule is fame_core.facets.choose_over_seeds: the same, on each
setting's means over the seeds. Test metrics are not read. Writes
bench/results/facet-choice-<results name>.json (several: -<name>-seeds-<s>-<s>....json) beside a
table on the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fame_core.facets import choose_on_validation, choose_over_seeds

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


def print_table(out: dict) -> None:
    for t in out["table"]:
        print(f"{t['variant'][:62]:62s} valid NDCG@20 {t['NDCG@20']:.4f} ({t['relative']:+.1%})  gate "
              f"{t['gate margin']:+.3f}  expert z {t['expert z']:5.2f}  {'within' if t['within tolerance'] else 'below'}")
    if out.get("incomplete"):
        print("not read at every seed (not chosen): " +
              ", ".join(f"{v} (seeds {', '.join(map(str, s))})" for v, s in out["incomplete"].items()))
    if out["unread"]:
        print(f"not read (no validation reading; rerun bench/facet_real.py on them): {', '.join(out['unread'])}")
    if out["metadata"]:
        print(f"not chosen (a head supervised with item metadata): {', '.join(out['metadata'])}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, nargs="+", help="bench/results/facet-real-<name>.json, one per seed")
    p.add_argument("--ablation", required=True, help="a bench/results/ablation-<data>.json with the same seeds (or, "
                   "where the data set has no ablation yet, a bench/results/reproduce-<data>-<row>.json)")
    p.add_argument("--seed", type=int, default=None, help="with one results file: its seed (default: the seed its "
                   "settings record, else 0); with several, each file's recorded seed is used")
    p.add_argument("--tolerance", type=float, default=0.01, help="how far below the reference (relative) is allowed")
    p.add_argument("--out", default=None, help="where to write the choice (default: bench/results/facet-choice-<name>.json)")
    a = p.parse_args()
    if len(a.results) > 1 and a.seed is not None:
        return fail("--seed is for one results file; with several, each file's settings name its seed")
    try:
        files = {path: json.loads(Path(path).read_text()) for path in a.results}
        ablation = json.loads(Path(a.ablation).read_text())
        seeds = {}
        for path, results in files.items():
            recorded = (results.get("settings") or {}).get("seed")
            if len(files) > 1 and recorded is None:
                return fail(f"{path} records no seed in its settings; pass the files bench/facet_real.py writes")
            seeds[path] = a.seed if a.seed is not None else (recorded if recorded is not None else 0)
        if len(set(seeds.values())) != len(seeds):
            return fail(f"two results files have the same seed ({seeds}); pass one file per seed")
        references = {}
        for path, seed in seeds.items():
            at_seed = reference_rows(ablation, seed)
            if not at_seed:
                return fail(f"no ablation row has seed {seed}; pass a --seed the ablation ran")
            references[seed] = max(at_seed, key=at_seed.get), at_seed[max(at_seed, key=at_seed.get)]
        rows = {seeds[path]: results["rows"] for path, results in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return fail(f"cannot read {' '.join(a.results)} or {a.ablation} ({e}); pass the JSON files that "
                    "bench/facet_real.py and bench/ablation.py report write")
    name = Path(a.results[0]).stem.removeprefix("facet-real-")
    if len(rows) == 1:
        (seed, seed_rows), = rows.items()
        reference_row, reference = references[seed]
        out = choose_on_validation(seed_rows, reference, tolerance=a.tolerance)
        out = {"results": a.results[0], "reference from": a.ablation, "seed": seed, "reference row": reference_row, **out}
        print_table(out)
        print(f"chosen: {out['chosen']} ({out['rule']}; reference {reference_row} {out['reference']:.4f})")
    else:
        out = choose_over_seeds(rows, {s: r for s, (_, r) in references.items()}, tolerance=a.tolerance)
        out = {"results": a.results, "reference from": a.ablation,
               "reference rows": {str(s): row for s, (row, _) in references.items()}, **out}
        print_table(out)
        print(f"chosen: {out['chosen']} ({out['rule']})")
        name = f"{name.split('-s')[0]}-seeds-{'-'.join(map(str, sorted(rows)))}"
    path = Path(a.out) if a.out else REPO / "bench" / "results" / f"facet-choice-{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
