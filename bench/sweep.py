"""The paper's Figures 5 and 6: number of heads H, then number of experts N, on a reduced budget.

    python bench/sweep.py --data ../shared/data/amazon/Beauty.txt
    python bench/sweep.py --data ../shared/data/amazon/Beauty.txt --plot-only   # redraw from the JSON

Figure 5: for each H in --heads, SASRec with H heads (trained --sasrec-epochs epochs), and FAME
without MoE (N = 1) built from it (fine-tuned --fame-epochs epochs). Figure 6: at the H whose
FAME w/o MoE is best on *validation* NDCG@20, FAME with each N in --experts built from the same
SASRec. Every run keeps its best epoch on validation; test NDCG@20 and HR@20 are what is plotted.
Every point has the same budget, so the figures compare settings, not converged models (Table 2
does that: bench/reproduce.py). Finished runs under runs/sweep/<data>/ are reused and interrupted
ones resumed, so the command can be repeated. Writes bench/results/sweep-<data>.json and
docs/sweep-heads-<data>.{png,svg}, docs/sweep-experts-<data>.{png,svg}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

SHOWN = ["NDCG@20", "HR@20"]


def row(kind: str, heads: int, experts: int, conf: dict) -> dict:
    return {"model": kind, "H": heads, "N": experts, "best_epoch": conf["best_epoch"], "epochs": conf["epochs"],
            "seconds_per_epoch": conf.get("seconds_per_epoch"), "valid NDCG@20": conf["valid"]["NDCG@20"],
            **{m: conf["test"][m] for m in conf["test"]}}


def plot(report: dict, stem: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import rc_context

    from fame_core.export import STYLE

    rows = report["rows"]
    heads = [r for r in rows if r["model"] in ("SASRec", "FAME w/o MoE")]
    experts = sorted((r for r in rows if r["model"] == "FAME" or (r["model"] == "FAME w/o MoE" and r["H"] == report["best_H"])),
                     key=lambda r: r["N"])
    no_moe = next(r for r in rows if r["model"] == "FAME w/o MoE" and r["H"] == report["best_H"])
    def figure(kind: str, what: str, draw) -> list[Path]:
        """One figure, NDCG@20 and HR@20 side by side, as PNG and SVG in docs/."""
        fig, axes = plt.subplots(1, 2, figsize=(7, 2.8), constrained_layout=True)
        for ax, metric in zip(axes, SHOWN):
            draw(ax, metric)
            ax.set_ylabel(f"test {metric}")
        axes[0].legend(frameon=False)
        fig.suptitle(f"{report['data']}: number of {what} ({report['budget']})")
        paths = [REPO / "docs" / f"sweep-{kind}-{stem}.{fmt}" for fmt in ("png", "svg")]
        for path in paths:
            fig.savefig(path, dpi=200)
        plt.close(fig)
        return paths

    def by_heads(ax, metric):
        for model, marker in (("SASRec", "s"), ("FAME w/o MoE", "o")):
            pts = sorted((r["H"], r[metric]) for r in heads if r["model"] == model)
            ax.plot([str(h) for h, _ in pts], [v for _, v in pts], marker=marker, label=model)
        ax.set_xlabel("heads H")

    def by_experts(ax, metric):
        ax.plot([str(r["N"]) for r in experts], [r[metric] for r in experts], marker="o", label=f"FAME, H={report['best_H']}")
        ax.axhline(no_moe[metric], color="tab:red", lw=1, label="FAME w/o MoE (N=1)")
        ax.set_xlabel("experts per head N")

    with rc_context(STYLE):
        return figure("heads", "heads", by_heads) + figure("experts", "experts", by_experts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--heads", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--experts", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--sasrec-epochs", type=int, default=15)
    p.add_argument("--fame-epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--paper-recipe", action="store_true",
                   help="build FAME as the paper does (new experts and W_f, no residual) instead of warm + residual")
    p.add_argument("--device", default="auto")
    p.add_argument("--plot-only", action="store_true")
    a = p.parse_args()

    stem = Path(a.data).stem.split("_")[0]
    out = REPO / "bench" / "results" / f"sweep-{stem}.json"
    if a.plot_only:
        for path in plot(json.loads(out.read_text()), stem):
            print(f"written {path.relative_to(REPO)}", file=sys.stderr)
        return 0

    from fame_core.data import load_dataset
    from fame_core.models import SASRecConfig, FAMEConfig
    from fame_core.training import TrainConfig, train_or_resume

    data = load_dataset(a.data)
    runs = REPO / "runs" / "sweep" / data.name
    warm = not a.paper_recipe
    common = dict(n_items=data.n_items, dropout=a.dropout, attn_dropout=a.dropout)
    # patience = budget: every run uses its whole budget and keeps its best epoch on validation
    sas_cfg = TrainConfig(seed=a.seed, epochs=a.sasrec_epochs, patience=a.sasrec_epochs, device=a.device)

    def fame(heads: int, experts: int) -> dict:
        return train_or_resume(data, FAMEConfig(n_heads=heads, n_experts=experts, residual=warm, **common),
                               TrainConfig(seed=a.seed, epochs=a.fame_epochs, patience=a.fame_epochs, device=a.device,
                                           init_from=str(runs / f"sasrec-h{heads}"), warm=warm),
                               runs / f"fame-h{heads}-n{experts}")

    rows = []
    for heads in a.heads:
        sas = train_or_resume(data, SASRecConfig(n_heads=heads, **common), sas_cfg, runs / f"sasrec-h{heads}")
        rows.append(row("SASRec", heads, 1, sas))
        rows.append(row("FAME w/o MoE", heads, 1, fame(heads, 1)))
        print(json.dumps(rows[-2:]), file=sys.stderr)
    best_h = max((r for r in rows if r["model"] == "FAME w/o MoE"), key=lambda r: r["valid NDCG@20"])["H"]
    for experts in a.experts:
        if experts > 1:
            rows.append(row("FAME", best_h, experts, fame(best_h, experts)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    report = {"data": data.name, "seed": a.seed, "best_H": best_h, "selected_on": "validation NDCG@20 of FAME w/o MoE",
              "budget": f"SASRec {a.sasrec_epochs} epochs, FAME +{a.fame_epochs}",
              "fame_build": "warm start + residual" if warm else "paper recipe", "settings": vars(a), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'model':>14} {'H':>3} {'N':>3} {'valid N@20':>10} {'NDCG@20':>8} {'HR@20':>8}")
    for r in rows:
        print(f"{r['model']:>14} {r['H']:>3} {r['N']:>3} {r['valid NDCG@20']:>10.4f} {r['NDCG@20']:>8.4f} {r['HR@20']:>8.4f}")
    for path in plot(report, stem):
        print(f"written {path.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
