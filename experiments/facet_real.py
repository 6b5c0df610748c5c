"""The facet objectives on real data: MovieLens genres and Amazon attributes (no planted truth).

    python -m experiments.facet_real --data ../shared/data/ml-latest-small --facets genre,decade --name movielens --dropout 0.2
    python -m experiments.facet_real --data ../shared/data/amazon/Beauty.txt --facets attribute --name beauty \\
        --sasrec runs/reproduce/Beauty/sasrec-s0 --baseline runs/reproduce/Beauty/fame-h2-n4-warm-res-s0

Every variant is FAME (H=2, N=4, warm start + residual: the Table-2 configuration) fine-tuned from
the same SASRec, with one set of options of fame_core.objectives; head 0 is tied to the first
facet, head 1 to the second where there is one (MovieLens: genre and release decade). --sasrec and
--baseline reuse finished checkpoints (the Table-2 runs of the same seed) instead of training them
again. Real data have no planted users, so the yardsticks are: per-head probe accuracy for each
facet (and the gap between the head meant for it and the other), the gate against the heads' own
ranking of the target (`gate_vs_heads`) and against the history's concentration on one value of
the first facet (`gate_vs_history_facet`), and the experts' MI with the first facet's value of the
next item against random routers (`experts_vs_target_facet`). Writes
experiments/results/facet-real-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from experiments.presets import PRESETS, split_preset

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]


TOP = 20   # the gate reading restricted to users whose better head shows the target in its top 20
METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]



def variants(facets: list[str]) -> dict:
    """Options to compare; head h is tied to facets[h] where a variant ties heads."""
    probe = {"facet_heads": facets[0], "facet_weight": 1.0}
    table = {          # variants with options retired in issue 40: experiments/retired-options.md
        "no facet option": {},
        "facet probe (head 0)": probe,
        **PRESETS,
    }
    if len(facets) > 1:  # two facets: one per head, as on the planted worlds
        both = {"facet_heads": ",".join(facets[:2]), "facet_weight": 1.0}
        table["facet probes (both heads)"] = both
        table["facet probes + exclusive"] = {**both, "facet_exclusive": 1.0}
        table["facet probes + exclusive + decisive router"] = {**both, "facet_exclusive": 1.0, "router_decisive": 0.1}
    return table


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.facet_real", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--facets", required=True, help="item facets, comma-separated: the first is head 0's (and the "
                   "one the gate and experts are checked on), the second head 1's")
    p.add_argument("--name", required=True)
    p.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    p.add_argument("--sasrec", default=None, help="a finished SASRec checkpoint to build from")
    p.add_argument("--baseline", default=None, help="a finished FAME checkpoint for 'no facet option'")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--valid-only", action="store_true", help="only add the validation readings that "
                   "experiments/facet_choose.py reads to rows already written (finished runs; no training, no test checks)")
    p.add_argument("--checkpoint", default=None, help="with --valid-only and one --variants name: read that row "
                   "from this checkpoint (e.g. its bundled float16 copy) instead of the run recorded in the row")
    a = p.parse_args()

    from fame_core.data import load_dataset
    from fame_core.evaluate import evaluate
    from fame_core.facets import (better_head_predictability, expert_query_similarity, expert_z, experts_vs_target_facet,
                                  gate_merge_value, gate_vs_heads, gate_vs_history_facet, head_alignment,
                                  specialisation)
    from fame_core.checkpoint import load
    from fame_core.models import SASRecConfig, FAMEConfig
    from fame_core.objectives import FacetObjectives
    from fame_core.training import TrainConfig, train_or_resume

    data = load_dataset(a.data)
    facets = a.facets.split(",")
    table = variants(facets)
    names = a.variants.split(",") if a.variants else list(table)
    runs = REPO / "runs" / "facet-real" / a.name
    common = dict(n_items=data.n_items, n_heads=2, dropout=a.dropout, attn_dropout=a.dropout)
    sas = Path(a.sasrec) if a.sasrec else runs / "sasrec"
    path = REPO / "experiments" / "results" / f"facet-real-{a.name}.json"
    written = {r["variant"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    if a.valid_only:
        missing = [n for n in names if n not in written]
        if missing:
            print(f"error: no row for {', '.join(missing)} in {path.relative_to(REPO)}; run them without "
                  "--valid-only first", file=sys.stderr)
            return 2
        if a.checkpoint and len(names) != 1:
            print("error: --checkpoint reads one row; pass exactly one name with --variants", file=sys.stderr)
            return 2
        if a.checkpoint and not (Path(a.checkpoint) / "config.json").exists():
            print(f"error: {a.checkpoint} is not a checkpoint (no config.json); pass a checkpoint folder", file=sys.stderr)
            return 2
    else:
        train_or_resume(data, SASRecConfig(**common), TrainConfig(seed=a.seed, patience=a.patience, device=a.device), sas)

    def valid_reading(model, d) -> dict:
        """What selection may read (never test): validation NDCG@20, the gate and the experts checks."""
        gate = gate_vs_heads(model, d, split="valid")
        return {"NDCG@20": evaluate(model, d, "valid")["metrics"]["NDCG@20"], "gate picks better head": gate["accuracy"],
                "better-head majority": gate["majority_rate"],
                "expert z": round(expert_z(experts_vs_target_facet(model, d, facets[0], split="valid")), 3)}

    rows = []
    for name in names:
        out = Path(a.baseline) if (a.baseline and name == "no facet option") else \
            runs / name.replace(" ", "-").replace("+", "and").replace("(", "").replace(")", "")
        if a.valid_only:
            source = Path(a.checkpoint or written[name]["checkpoint"])
            if not (source / "config.json").exists():   # a run folder deleted since: keep the row as it is
                print(f"warning: {name}: its checkpoint {source} is gone; row left without a validation reading "
                      "(pass --checkpoint with a copy of it)", file=sys.stderr)
                continue
            model, d = load(source, data=data)
            rows.append({**written[name], "valid": {**valid_reading(model, d), "read from": str(source)}})
            print(json.dumps({"variant": name, "valid": rows[-1]["valid"]}), flush=True)
            continue
        model_opts, objectives = split_preset(table[name])
        train_or_resume(data, FAMEConfig(n_experts=4, residual=True, **common, **model_opts),
                        TrainConfig(seed=a.seed, patience=a.patience, init_from=str(sas), warm=True, device=a.device,
                                    objectives=FacetObjectives(**objectives)), out)
        model, d = load(out, data=data)
        test = evaluate(model, d, "test")["metrics"]
        align = head_alignment(model, d, facets=facets)
        acc = align.set_index(["facet", "representation"])["probe_accuracy"]
        gate = gate_vs_heads(model, d)
        top = gate_vs_heads(model, d, within=TOP)
        ceiling = better_head_predictability(model, d)                   # fitted on validation users
        ceiling_top = better_head_predictability(model, d, within=TOP)
        boosted = better_head_predictability(model, d, probe="boosted")    # a ceiling for non-linear gates
        boosted_top = better_head_predictability(model, d, within=TOP, probe="boosted")
        hist = gate_vs_history_facet(model, d, facets[0])
        experts = experts_vs_target_facet(model, d, facets[0])
        draws = [experts_vs_target_facet(model, d, facets[0], seed=s) for s in range(1, 5)]   # the verdict's spread
        row = {"variant": name, "options": table[name], "checkpoint": str(out), **{m: test[m] for m in METRICS},
               "specialisation": specialisation(align),
               "valid": valid_reading(model, d),
               "gate picks better head": gate["accuracy"], "better-head majority": gate["majority_rate"],
               "mean top gate": gate["mean_top_gate"],
               **{f"{key} (better head in top {TOP})": value for key, value in
                  (("gate picks better head", top["accuracy"]), ("better-head majority", top["majority_rate"]),
                   ("users", top["users"]))},
               "linear gate ceiling": ceiling["probe_accuracy"],
               f"linear gate ceiling (better head in top {TOP})": ceiling_top["probe_accuracy"],
               "boosted gate ceiling": boosted["probe_accuracy"],
               f"boosted gate ceiling (better head in top {TOP})": boosted_top["probe_accuracy"],
               "gate 0 vs history concentration (rho)": hist["spearman"][0], "(z)": hist["z"][0],
               "expert MI (mean)": float(experts["mutual_information"].mean()),
               "random router MI (mean)": float(experts["random_router_mi_mean"].mean()),
               "random router MI std (mean)": float(experts["random_router_mi_std"].mean()),
               "control std": "sample (ddof=1)",   # rows without this key were written with ddof=0
               "expert z, router draws 0-4": [round(expert_z(e), 3) for e in (experts, *draws)],
               "mean top router weight": float(experts["mean_top_weight"].mean()),
               "dead experts": int(experts["dead_experts"].sum()),
               "expert query cosine": expert_query_similarity(model), "gate merge value": gate_merge_value(model, d)}
        for h, f in enumerate(facets[:2]):   # per facet: both heads, the controls, and the gap of the head meant for it
            for rep in ("head 0", "head 1", "random projection", "full embedding"):
                row[f"probe {f} {rep}"] = float(acc[f, rep])
            row[f"probe {f} majority"] = float(align.set_index("facet").loc[f, "majority_rate"].iloc[0])
            row[f"head gap {f}"] = float(acc[f, f"head {h}"] - acc[f, f"head {1 - h}"])
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():   # read again: another run may have written rows since this one started
        written = {r["variant"]: r for r in json.loads(path.read_text())["rows"]}
    rows = list({**written, **{r["variant"]: r for r in rows}}.values())   # rows not run this time kept, order kept
    settings = vars(a) if not a.valid_only or not path.exists() else json.loads(path.read_text())["settings"]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"data": data.name, "facets": facets, "settings": settings, "rows": rows}, indent=2) + "\n")
    tmp.replace(path)   # a kill mid-write leaves the previous results
    print(f"written to {path.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
