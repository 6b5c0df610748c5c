"""Paper-ready figures of the population views (cohort, compare, attribution), in the style of
`fame_core.export`: each builder returns `(figure, table)`; write them with `export.save_figure`
(PDF, SVG, PNG + CSV + sidecar JSON) or `export.figure_bytes`.

Every axis that carries a share or a weight is anchored at [0, 1] and the uniform level (1/H for
the gate, 1/N for the router) is drawn as a dashed line, so that no bar looks more decisive than
its number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from . import cohort
from .export import STYLE

UNIFORM = dict(color="0.35", ls="--", lw=0.8)


def gate_distribution_figure(table: pd.DataFrame, title: str = "") -> tuple[Figure, pd.DataFrame]:
    """Histogram of each head's gate over users and of the normalised gate entropy."""
    dist = cohort.gate_distribution(table)
    H = cohort.heads_of(table)
    with rc_context(STYLE):
        fig = Figure(figsize=(2.3 * (H + 1), 2.0))
        axes = fig.subplots(1, H + 1, squeeze=False)[0]
        for ax, series in zip(axes, [f"head {h}" for h in range(H)] + ["entropy"]):
            d = dist[dist["series"] == series]
            ax.bar(d["bin_lo"], d["share"], width=d["bin_hi"] - d["bin_lo"], align="edge", color="#4c72b0")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            if series != "entropy":
                ax.axvline(1.0 / H, **UNIFORM, label=f"uniform 1/H = {1 / H:.2f}")
                ax.set_xlabel(f"gate g({series[5:]})")
            else:
                ax.set_xlabel("gate entropy (0: one head, 1: equal)")
            ax.set_title(series)
        axes[0].set_ylabel("share of users")
        axes[0].legend(frameon=False, fontsize=6)
        if title:
            fig.suptitle(title, fontsize=9)
    return fig, dist


def expert_load_figure(table: pd.DataFrame, title: str = "") -> tuple[Figure, pd.DataFrame]:
    """Per head: share of positions and of users whose argmax router choice is each expert, with 1/N."""
    load = cohort.expert_load(table)
    H, N = cohort.heads_of(table), cohort.experts_of(table)
    with rc_context(STYLE):
        fig = Figure(figsize=(2.4 * H, 2.0))
        axes = fig.subplots(1, H, squeeze=False)[0]
        x = np.arange(N)
        for h, ax in enumerate(axes):
            d = load[load["head"] == h]
            ax.bar(x - 0.2, d["share_of_positions"], 0.4, label="positions", color="#4c72b0")
            ax.bar(x + 0.2, d["share_of_users"], 0.4, label="users (last position)", color="#dd8452")
            ax.axhline(1.0 / N, **UNIFORM, label=f"uniform 1/N = {1 / N:.2f}")
            ax.set_ylim(0, 1)
            ax.set_xticks(x, [f"e{n}" for n in x])
            ax.set_title(f"head {h}: mean top weight {d['mean_top_router_weight'].iloc[0]:.2f}")
        axes[0].set_ylabel("share routed to expert")
        axes[0].legend(frameon=False, fontsize=6)
        if title:
            fig.suptitle(title, fontsize=9)
    return fig, load


def merge_metrics_figure(metrics: pd.DataFrame, k: int, title: str = "") -> tuple[Figure, pd.DataFrame]:
    """HR@k and NDCG@k of each single head next to gated and concatenated merging."""
    with rc_context(STYLE):
        fig = Figure(figsize=(0.7 * len(metrics) + 1.6, 2.0))
        ax = fig.add_subplot()
        x = np.arange(len(metrics))
        ax.bar(x - 0.2, metrics[f"HR@{k}"], 0.4, label=f"HR@{k}", color="#4c72b0")
        ax.bar(x + 0.2, metrics[f"NDCG@{k}"], 0.4, label=f"NDCG@{k}", color="#55a868")
        ax.set_xticks(x, metrics["merge"])
        top = float(np.nanmax(metrics[[f"HR@{k}", f"NDCG@{k}"]].to_numpy(dtype=float)))
        ax.set_ylim(0, 1.15 * top if top > 0 else 1.0)      # as the app's chart: 0 to the largest value
        ax.set_ylabel("HR, NDCG (0 to the largest value)")
        ax.legend(frameon=False, fontsize=6)
        ax.set_title(title or "Heads against gated and concatenated merging")
    return fig, metrics


def rank_scatter_figure(table: pd.DataFrame, names=("a", "b"), title: str = "") -> tuple[Figure, pd.DataFrame]:
    """Per-user target rank under a (x) against b (y), both log scale, with the diagonal."""
    with rc_context(STYLE):
        fig = Figure(figsize=(3.0, 3.0))
        ax = fig.add_subplot()
        ax.scatter(table["rank_a"], table["rank_b"], s=2, alpha=0.3, color="#4c72b0", linewidths=0)
        hi = float(max(table["rank_a"].max(), table["rank_b"].max()))
        ax.plot([1, hi], [1, hi], **UNIFORM)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"target rank, {names[0]} (1 = top)")
        ax.set_ylabel(f"target rank, {names[1]}")
        ax.set_title(title or "below the diagonal: b ranks the target better")
    return fig, table


def attribution_figure(attr, label=None, title: str = "") -> tuple[Figure, pd.DataFrame]:
    """Integrated gradients (signed, centred at 0) beside the effective attention (0..1) per position."""
    table = attr.table(label)
    with rc_context(STYLE):
        fig = Figure(figsize=(max(3.5, 0.22 * len(table) + 1.5), 3.2))
        a1, a2 = fig.subplots(2, 1, sharex=True)
        x = np.arange(len(table))
        v = table["integrated_gradients"].to_numpy()
        a1.bar(x, v, color=np.where(v >= 0, "#4c72b0", "#c44e52"))
        m = max(1e-9, float(np.abs(v).max()))
        a1.set_ylim(-1.1 * m, 1.1 * m)
        a1.axhline(0, color="0.3", lw=0.6)
        a1.set_ylabel("integrated gradients")
        a2.bar(x, table["attention"], color="#55a868")
        a2.axhline(1.0 / len(table), **UNIFORM, label=f"uniform 1/L = {1 / len(table):.2f}")
        a2.set_ylim(0, 1)
        a2.set_ylabel("attention")
        a2.legend(frameon=False, fontsize=6)
        a2.set_xticks(x, [f"{p}: {str(t)[:18]}" for p, t in zip(table["position"], table["label"])], rotation=60, ha="right")
        a1.set_title(title or f"{attr.merge} score of item {attr.target}")
    return fig, table


def deletion_figure(curve: pd.DataFrame, aopc: pd.DataFrame, title: str = "") -> tuple[Figure, pd.DataFrame]:
    """Score of the target after removing k items in each method's order, AOPC in the legend."""
    area = aopc.set_index("method")["aopc_score"]
    with rc_context(STYLE):
        fig = Figure(figsize=(3.2, 2.2))
        ax = fig.add_subplot()
        for method, colour in zip(("integrated gradients", "attention", "random"), ("#4c72b0", "#55a868", "0.5")):
            c = curve[curve["method"] == method]
            ax.plot(c["removed"], c["score"], marker="o", ms=2, color=colour, label=f"{method} (AOPC {area[method]:.3f})")
        ax.set_xlabel("history items removed")
        ax.set_ylabel("target score")
        ax.legend(frameon=False, fontsize=6)
        ax.set_title(title or "Deletion curves (steeper = more faithful)")
    return fig, curve
