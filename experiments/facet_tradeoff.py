"""Issue 16's trade-off in one figure: for every gate/router setting and seed, its validation
NDCG@20 against the seed's best ablation row (x) and how much more often its larger-gate head is
the better one than always trusting one head (y), with the region that passes both of the issue's
criteria shaded.

    python -m experiments.facet_tradeoff \
        --panel experiments/results/ablation-Beauty.json experiments/results/facet-real-beauty.json \
                experiments/results/facet-real-beauty-s1.json experiments/results/facet-real-beauty-s2.json \
        --panel experiments/results/ablation-Sports_and_Outdoors.json experiments/results/facet-real-sports.json \
                experiments/results/facet-real-sports-s1.json experiments/results/facet-real-sports-s2.json

Each --panel is one data set: the ablation report whose best validation row at each seed is the
reference (as experiments/facet_choose.py reads it), then experiments/facet_real.py's results files, one per
seed. A point is one (setting, seed) with a validation reading (rows without one, and rows whose
heads are supervised with item metadata, are left out and listed in the sidecar); a setting read
at several seeds also gets its mean (a larger open marker). Validation readings only, the ones the
choice reads; the test readings are in experiments/LABLOG.md. Writes docs/facet-tradeoff.{pdf,svg,png,csv,json}
(or --out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


LABELS = {"no facet option": "no facet option (the ablation's warm + residual FAME, or Table 2's)"}


class ChoiceError(Exception):
    pass


def read_panel(paths: list[str]) -> tuple[str, str, list[dict], list[str]]:
    """(data name, reference file, one dict per (setting, seed), settings left out) from an ablation
    report and facet_real.py's results files."""
    from experiments.facet_choose import reference_rows
    from fame_core.facets import split_rows, validation_entry

    if len(paths) < 2:
        raise ChoiceError(f"--panel {' '.join(paths)}: pass an ablation report, then one or more facet-real results files")
    points, left_out, data = {}, set(), None
    try:
        ablation = json.loads(Path(paths[0]).read_text())
        for path in paths[1:]:
            results = json.loads(Path(path).read_text())
            seed = (results.get("settings") or {}).get("seed")
            if not isinstance(seed, int):
                raise ChoiceError(f"{path} records no seed in its settings; pass the files experiments/facet_real.py writes")
            at_seed = reference_rows(ablation, seed)
            if not at_seed:
                raise ChoiceError(f"{paths[0]} has no row at seed {seed} ({path}); pass results of seeds it ran")
            best = max(at_seed, key=at_seed.get)
            if not at_seed[best] > 0:
                raise ChoiceError(f"{paths[0]}: the best validation NDCG@20 at seed {seed} is {at_seed[best]}; pass an "
                                  "ablation report of trained rows")
            read, unread, metadata = split_rows(results["rows"])
            left_out |= {f"{v} (seed {seed}: {why})" for vs, why in ((unread, "no validation reading"),
                                                                     (metadata, "metadata-supervised heads"))
                         for v in vs}
            for r in read:
                e = validation_entry(r, at_seed[best], 0.05, 3.0)
                if (r["variant"], seed) in points:
                    raise ChoiceError(f"{path}: {r['variant']} at seed {seed} is in two files; pass one file per seed")
                points[r["variant"], seed] = {"setting": r["variant"], "seed": seed, "valid NDCG@20": e["NDCG@20"],
                                              "reference row": best, "relative": e["relative"],
                                              "gate margin": e["gate margin"], "expert z": e["expert z"]}
            data = data or results.get("data")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ChoiceError(f"--panel {' '.join(paths)}: not an ablation report followed by facet-real results "
                          f"({e.__class__.__name__}: {e}); pass the JSON files experiments/ablation.py report and "
                          "experiments/facet_real.py write") from None
    return data or Path(paths[1]).stem, paths[0], list(points.values()), sorted(left_out)


def tradeoff_figure(panels: list[tuple[str, str, list[dict], list[str]]], tolerance: float = 0.01, margin: float = 0.05):
    """One panel per read_panel() result; returns (figure, table of the plotted points)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib import rc_context

    from fame_core.export import STYLE, WIDTHS

    settings = sorted({p["setting"] for _, _, pts, _ in panels for p in pts})
    colours = dict(zip(settings, itertools.cycle(plt.get_cmap("tab10").colors)))   # beyond ten: the marker tells
    markers = dict(zip(settings, itertools.cycle("osD^vP*Xh<>")))
    rows = []
    with rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTHS["double"], 3.3), squeeze=False,
                                 constrained_layout=True)
        for ax, (data, reference, pts, _) in zip(axes[0], panels):
            xs = [100 * p["relative"] for p in pts]
            ys = [100 * p["gate margin"] for p in pts]
            lo_x, hi_x = min(xs + [-100 * tolerance]) - 0.5, max(xs + [0.0]) + 0.5
            lo_y, hi_y = min(ys + [0.0]) - 1.0, max(ys + [100 * margin]) + 1.0
            # the region passing both criteria, its edges, and the no-information level of the gate
            ax.fill_between([-100 * tolerance, hi_x], 100 * margin, hi_y, color="0.9", lw=0, zorder=0)
            ax.axvline(-100 * tolerance, color="0.4", ls="--", lw=0.7)
            ax.axhline(100 * margin, color="0.4", ls="--", lw=0.7)
            ax.axhline(0, color="0.4", ls=":", lw=0.7)
            # at the bottom of the region, where a point in the corner is least likely to sit
            ax.text(hi_x, 100 * margin, "passes both ", ha="right", va="bottom", fontsize=6.5, color="0.3")
            ax.text(lo_x, 0, " gate = always one head", ha="left", va="bottom", fontsize=6, color="0.3")
            for s in settings:
                mine = [p for p in pts if p["setting"] == s]
                if not mine:
                    continue
                x = np.array([100 * p["relative"] for p in mine])
                y = np.array([100 * p["gate margin"] for p in mine])
                ax.scatter(x, y, s=14, color=colours[s], marker=markers[s], alpha=0.6, lw=0, zorder=2)
                if len(mine) > 1:
                    ax.scatter(x.mean(), y.mean(), s=46, facecolors="none", edgecolors=colours[s], marker=markers[s],
                               lw=1.1, zorder=3)
                rows += [{"data": data, "reference": Path(reference).name, **p} for p in mine]
            ax.set_xlim(lo_x, hi_x)
            ax.set_ylim(lo_y, hi_y)
            seeds = sorted({p["seed"] for p in pts})
            ax.set_title(f"{data}, seeds {', '.join(map(str, seeds))}", fontsize=8, loc="left")
            ax.set_xlabel("valid NDCG@20 against the seed's best ablation row (%)")
            ax.set_ylabel("valid gate margin (points)")
        handles = [plt.Line2D([], [], color=colours[s], marker=markers[s], ls="", ms=4, label=LABELS.get(s, s))
                   for s in settings]
        handles.append(plt.Line2D([], [], color="0.3", marker="o", mfc="none", ls="", ms=6,
                                  label="open marker: mean over the seeds"))
        fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=6.5, frameon=False,
                   title=f"gate margin: share of users whose larger-gate head ranks the target better, minus always "
                         f"trusting one head.\nDashed: the issue's +{100 * margin:.0f} points and {tolerance:.0%} window; "
                         "dotted: a gate that carries no information. One point per setting and seed\n(validation "
                         "users); one seed's x is noisy by about 0.7-0.8 % (one standard error of a paired difference, "
                         "Beauty).",
                   title_fontsize=6.5)
    return fig, pd.DataFrame(rows)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.facet_tradeoff", description=__doc__.split("\n\n")[0])
    p.add_argument("--panel", nargs="+", action="append", required=True,
                   help="an ablation report, then the facet-real results of one data set, one per seed (repeat the "
                        "option for another data set)")
    p.add_argument("--out", default=str(REPO / "docs" / "facet-tradeoff"), help="the files' stem")
    a = p.parse_args()
    try:
        panels = [read_panel(group) for group in a.panel]
    except ChoiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from fame_core.export import save_figure

    fig, table = tradeoff_figure(panels)
    written = save_figure(fig, table.set_index(["data", "setting", "seed"]), a.out, {
        "figure": "issue 16: gate margin against validation accuracy, every setting and seed",
        "sources": [f for group in a.panel for f in group],
        "left out": {data: out for data, _, _, out in panels},
        "x": "validation NDCG@20 relative to the best ablation row of the same seed",
        "y": "validation: share of users whose larger-gate head ranks the target better, minus always trusting one head",
        "criteria": "x >= -1 % and y >= +5 points (shaded)"})
    print("written " + ", ".join(str(w) for w in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
