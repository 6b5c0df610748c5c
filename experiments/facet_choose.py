"""Issue 16's choice of a gate/router setting, on validation users only.

    python -m experiments.facet_choose --results experiments/results/facet-real-beauty.json \\
        --ablation experiments/results/ablation-Beauty.json --seed 0
    python -m experiments.facet_choose --ablation experiments/results/ablation-Beauty.json \\
        --results experiments/results/facet-real-beauty.json experiments/results/facet-real-beauty-s1.json \\
        experiments/results/facet-real-beauty-s2.json

Reads the rows experiments/facet_real.py wrote (their "valid" readings: NDCG@20, the gate against
always trusting one head, the experts against random routers) and the ablation's validation
NDCG@20 at the same seed; the reference is the ablation's best row there (where a data set has no
ablation yet, a reproduction's JSON: Table 2's SASRec and FAME rows). The rule is
fame_core.facets.choose_on_validation: within 1 % of the reference, the setting passing most
checks, then the largest gate margin. With several results files (one per seed, the seed read
from each file's settings) the rule is fame_core.facets.choose_over_seeds: the same, on each
setting's means over the seeds. Test metrics are not read. Writes
experiments/results/facet-choice-<results name>.json (several: -<name>-seeds-<s>-<s>....json) beside a
table on the terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from fame_core.facets import choose_on_validation, choose_over_seeds

REPO = Path(__file__).resolve().parents[1]


def reference_rows(results: dict, seed: int) -> dict[str, float]:
    """Validation NDCG@20 at `seed` of every row of an ablation report (experiments/ablation.py: "rows",
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
        print(f"not read (no validation reading; rerun experiments/facet_real.py on them): {', '.join(out['unread'])}")
    if out["metadata"]:
        print(f"not chosen (a head supervised with item metadata): {', '.join(out['metadata'])}")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.facet_choose", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, nargs="+", help="experiments/results/facet-real-<name>.json, one per seed")
    p.add_argument("--ablation", required=True, help="an experiments/results/ablation-<data>.json with the same seeds (or, "
                   "where the data set has no ablation yet, a bench/results/reproduce-<data>-<row>.json)")
    p.add_argument("--seed", type=int, default=None, help="with one results file: its seed (default: the seed its "
                   "settings record, else 0); with several, each file's recorded seed is used")
    p.add_argument("--tolerance", type=float, default=0.01, help="how far below the reference (relative) is allowed")
    p.add_argument("--out", default=None,
                   help="where to write the choice (default: experiments/results/facet-choice-<name>.json)")
    a = p.parse_args()
    if len(a.results) > 1 and a.seed is not None:
        return fail("--seed is for one results file; with several, each file's settings name its seed")
    if len({Path(r).resolve() for r in a.results}) != len(a.results):
        return fail("the same results file was passed twice; pass one file per seed")
    try:
        files = {path: json.loads(Path(path).read_text()) for path in a.results}
        ablation = json.loads(Path(a.ablation).read_text())
    except (OSError, ValueError) as e:
        return fail(f"cannot read {' '.join(a.results)} or {a.ablation} ({e}); pass the JSON files that "
                    "experiments/facet_real.py and experiments/ablation.py report write")
    seeds = {}
    for path, results in files.items():
        recorded = (results.get("settings") or {}).get("seed") if isinstance(results, dict) else None
        if recorded is not None and not isinstance(recorded, int):
            return fail(f"{path} records seed {recorded!r}, not a whole number; pass a file experiments/facet_real.py wrote")
        if len(files) > 1 and recorded is None:
            return fail(f"{path} records no seed in its settings; pass the files experiments/facet_real.py writes")
        if a.seed is not None and recorded is not None and a.seed != recorded:
            return fail(f"{path} records seed {recorded}, not --seed {a.seed}; drop --seed or pass that file's seed")
        seeds[path] = a.seed if a.seed is not None else (recorded if recorded is not None else 0)
    if len(set(seeds.values())) != len(seeds):
        return fail(f"two results files record the same seed ({', '.join(f'{p}: {s}' for p, s in seeds.items())}); "
                    "pass one file per seed")
    try:
        references = {}
        for path, seed in seeds.items():
            at_seed = reference_rows(ablation, seed)
            if not at_seed:
                where = "pass a --seed the ablation ran" if len(files) == 1 else "pass results of seeds the ablation ran"
                return fail(f"no row of {a.ablation} has seed {seed} ({path}); {where}")
            best = max(at_seed, key=at_seed.get)
            references[seed] = best, at_seed[best]
        rows = {seeds[path]: results["rows"] for path, results in files.items()}
        name = Path(a.results[0]).stem.removeprefix("facet-real-")
        if len(rows) == 1:
            (seed, seed_rows), = rows.items()
            reference_row, reference = references[seed]
            out = choose_on_validation(seed_rows, reference, tolerance=a.tolerance)
            out = {"results": a.results[0], "reference from": a.ablation, "seed": seed, "reference row": reference_row,
                   **out}
            summary = f"chosen: {out['chosen']} ({out['rule']}; reference {reference_row} {out['reference']:.4f})"
        else:
            out = choose_over_seeds(rows, {s: r for s, (_, r) in references.items()}, tolerance=a.tolerance)
            out = {"results": a.results, "reference from": a.ablation,
                   "reference rows": {str(s): row for s, (row, _) in references.items()}, **out}
            summary = f"chosen: {out['chosen']} ({out['rule']})"
            name = f"{re.sub(r'-s[0-9]+$', '', name)}-seeds-{'-'.join(map(str, sorted(rows)))}"
    except (ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError) as e:
        return fail(f"{' '.join(a.results)} or {a.ablation} lacks what the choice reads ({e.__class__.__name__}: {e}); "
                    "pass the JSON files that experiments/facet_real.py and experiments/ablation.py report write")
    print_table(out)
    print(summary)
    path = Path(a.out) if a.out else REPO / "experiments" / "results" / f"facet-choice-{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)   # a kill mid-write leaves the previous choice
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
