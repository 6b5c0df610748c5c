"""Which training options make FAME's heads, gate and experts capture the planted facets?

    python -m experiments.facet_objectives                         # world seed 0 (10 genres x 30 actors)
    python -m experiments.facet_objectives --world "synthetic:seed=1,genre=8,actor=20" --name world1

Pre-trains SASRec once per world, then fine-tunes FAME (H=2, N=4) from it with the paper recipe and
with each option of fame_core.objectives; every run is a checkpoint under runs/facet-objectives/
(finished runs are reused, so the command can be repeated). For each: test HR/NDCG@10 with history
masked and not, per-head probe accuracy per facet and the gap between heads, gate <-> dominant facet
accuracy and AUC, expert <-> preferred-value MI against random routers, and expert load. Writes
experiments/results/facet-objectives-<name>.json and prints a table.
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



# variants with the options retired in issue 40 are listed in experiments/retired-options.md
VARIANTS = {
    "paper recipe": {},
    "facet probes": {"facet_heads": "genre,actor", "facet_weight": 1.0},
    "facet probes + exclusive": {"facet_heads": "genre,actor", "facet_weight": 1.0, "facet_exclusive": 1.0},
    "facet probes + exclusive + decisive router": {"facet_heads": "genre,actor", "facet_weight": 1.0,
                                                   "facet_exclusive": 1.0, "router_decisive": 0.1},
    **PRESETS,
}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.facet_objectives", description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default="synthetic")
    p.add_argument("--name", default="world0")
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args()

    from fame_core.data import load_dataset
    from fame_core.evaluate import evaluate
    from fame_core.facets import (expert_query_similarity, experts_vs_preference, gate_merge_value, gate_vs_facet,
                                  gate_vs_heads, head_alignment, specialisation)
    from fame_core.checkpoint import load
    from fame_core.models import SASRecConfig, FAMEConfig
    from fame_core.objectives import FacetObjectives
    from fame_core.training import TrainConfig, train

    data = load_dataset(a.world)
    runs = REPO / "runs" / "facet-objectives" / a.name
    common = dict(n_items=data.n_items, n_heads=2, dropout=0.2, attn_dropout=0.2)
    sas = runs / "sasrec"
    if not (sas / "config.json").exists() or (sas / "train_state.pt").exists():
        train(data, SASRecConfig(**common), TrainConfig(epochs=150, patience=15),
              sas, resume=(sas / "train_state.pt").exists(), progress=False)
    rows = []
    for name in a.variants.split(","):
        out = runs / name.replace(" ", "-").replace("+", "and")
        if not (out / "config.json").exists() or (out / "train_state.pt").exists():
            print(f"training {name}", file=sys.stderr)
            model_opts, objectives = split_preset(VARIANTS[name])
            train(data, FAMEConfig(n_experts=4, **common, **model_opts),
                  TrainConfig(epochs=150, patience=15, init_from=str(sas), objectives=FacetObjectives(**objectives)),
                  out, resume=(out / "train_state.pt").exists(), progress=False)
        model, d = load(out, data=data)
        masked = evaluate(model, d, "test")["metrics"]
        plain = evaluate(model, d, "test", mask_history=False)["metrics"]
        align = head_alignment(model, d)
        acc = align.set_index(["facet", "representation"])["probe_accuracy"]
        gate = gate_vs_facet(model, d)
        experts = experts_vs_preference(model, d)
        row = {"variant": name, "options": VARIANTS[name],
               "HR@10": masked["HR@10"], "NDCG@10": masked["NDCG@10"],
               "HR@10 unmasked": plain["HR@10"], "NDCG@10 unmasked": plain["NDCG@10"]}
        for facet in ("genre", "actor"):
            for h in (0, 1):
                row[f"probe {facet} head {h}"] = float(acc[facet, f"head {h}"])
            row[f"probe {facet} random proj."] = float(acc[facet, "random projection"])
        row["specialisation"] = specialisation(align)
        row["head gap genre"] = row["probe genre head 0"] - row["probe genre head 1"]
        row["head gap actor"] = row["probe actor head 1"] - row["probe actor head 0"]
        row["gate accuracy"] = gate["accuracy"]
        row["gate majority"] = gate["majority_rate"]
        row["gate AUC (head 0 for genre)"] = gate["auc_head0_gate_for_genre"]
        row["expert MI (mean)"] = float(experts["mutual_information"].mean())
        row["random router MI (mean)"] = float(experts["random_router_mi_mean"].mean())
        row["random router MI std (mean)"] = float(experts["random_router_mi_std"].mean())
        row["control std"] = "sample (ddof=1)"   # rows without this key were written with ddof=0
        row["random split MI (mean)"] = float(experts["random_split_mi_mean"].mean())
        row["random split MI std (mean)"] = float(experts["random_split_mi_std"].mean())
        # each head's experts on the users driven by the facet the head is meant for (head 0 genre, head 1 actor)
        own = experts[((experts["head"] == 0) & (experts["facet"] == "genre"))
                      | ((experts["head"] == 1) & (experts["facet"] == "actor"))]
        row["expert MI, own facet"] = float(own["mutual_information"].mean())
        row["random router MI, own facet"] = float(own["random_router_mi_mean"].mean())
        row["random router MI std, own facet"] = float(own["random_router_mi_std"].mean())
        row["mean top router weight"] = float(experts["mean_top_weight"].mean())
        row["dead experts"] = int(experts.drop_duplicates("head")["dead_experts"].sum())
        heads = gate_vs_heads(model, d)
        row["gate picks better head"], row["better-head majority"] = heads["accuracy"], heads["majority_rate"]
        row["expert query cosine"] = expert_query_similarity(model)
        row["gate merge value"] = gate_merge_value(model, d, k=10)
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    out = REPO / "experiments" / "results" / f"facet-objectives-{a.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the rows of variants not run this time
        done = {r["variant"] for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"] if r["variant"] not in done] + rows
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"world": a.world, "data": data.name, "rows": rows}, indent=2) + "\n")
    tmp.replace(out)   # a kill mid-write leaves the previous results
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
