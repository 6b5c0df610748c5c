"""Which pair of heads could a gate tell apart, without costing accuracy? (issue 16)

    python -m experiments.head_pair_check checkpoints/beauty-sasrec

The gate check of issue 16 asks that the head with the larger gate rank the target better, for
5 points more users than always trusting one head. Whether any gate can do that is set by the
heads, not the gate (`fame_core.facets.better_head_predictability`). This script asks it before
any FAME is trained, for three ways two heads could differ without item metadata, each built from
one trained model's own ranking s(v) (any checkpoint: SASRec, or FAME's gated merge):

- `short K`:     s on the whole history against s on its last K items only (a long-term and a
                 short-term head; what `--recent-window` aims at, and what a head that reads the
                 item embeddings below the blocks could at best be);
- `popularity L`: s - L*p(v) against s + L*p(v), p the centred log count of v as a training target
                 (a niche and a mainstream head);
- `cluster L`:   s - L*(c(v) - 1/2) against s + L*(c(v) - 1/2), c(v) in {0, 1} the item's k-means
                 cluster (two clusters of the items in the heads' scoring space, weighted by 1 + each
                 item's count as a training target, as `--head-clusters` makes them): two heads that
                 share one ranker and differ only by a bias towards one part of the catalogue;
- `context cluster L`: the same with the clusters `--head-cluster-bias` uses: k-means of each
                 item's context, the model's mean user vector at the training positions whose next
                 item it is.

For each pair, over users whose two sides rank the target differently: how often the second side is
better, the majority rate (always trusting the better side), and the ceiling of a gate: a logistic
regression fitted on the validation users (features: the model's user vector at the last position,
that of the short history for `short`, the history's mean p or c for the offsets, log history
length) and scored on the test users. And what it would cost: NDCG@20 of each side and of the
merge such a gate would make (the side the classifier picks), on validation and test users, against
the model's own ranking. The margin is also read on the validation users alone (5-fold
cross-validation), so that a pair or strength can be chosen without the test users.
Writes experiments/results/head-pair-check-<data>-<checkpoint folder>.json (--out to change).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402


def target_counts(model, dataset) -> np.ndarray:
    """How often each item is a training target, as training counts them (index 0 = padding)."""
    from fame_core.training import training_pairs

    targets = [t for _, t in training_pairs(dataset, model.config.max_len)] or [np.zeros(0, np.int64)]
    return np.bincount(np.concatenate(targets), minlength=dataset.n_items + 1).astype(float)


def item_clusters(model, counts: np.ndarray, seed: int = 0) -> np.ndarray:
    """0/1 k-means cluster of every item, frequency-weighted (index 0 = padding: 0), in the heads'
    scoring space [x_v^(1) | ... | x_v^(H)] as `--head-clusters` and head_cluster_check.py cluster
    (for SASRec that is x_v itself)."""
    from sklearn.cluster import KMeans

    subs = model.item_sub_embeddings()[:, 1:].detach().float().cpu()
    E = subs.permute(1, 0, 2).reshape(subs.shape[1], -1).numpy()
    labels = KMeans(2, n_init=3, random_state=seed).fit(E, sample_weight=counts[1:] + 1).labels_
    return np.concatenate([[0], labels]).astype(np.float32)


@torch.no_grad()
def pair_ranks(model, dataset, split: str, shorts, offsets: dict[str, np.ndarray], strengths,
               batch: int = 512) -> tuple[dict, dict]:
    """0-based target ranks (history masked, full ranking) of the model and of each pair's two
    sides, and per-pair features. Pair keys: ("short", K) and (offset name, L); each maps to
    (ranks of side a, ranks of side b)."""
    from fame_core.evaluate import left_pad, mask_items, target_ranks

    T = model.config.max_len
    off = {name: torch.as_tensor(v, dtype=torch.float32) for name, v in offsets.items()}
    rows = dataset.splittable_rows()
    ranks: dict = {"model": []}
    feats: dict = {}

    def rank(scores, histories, targets):
        scores = scores.clone()
        mask_items(scores, histories)
        return target_ranks(scores, targets).numpy()

    for s in range(0, len(rows), batch):
        ex = [dataset.example(r, split) for r in rows[s:s + batch]]
        histories = [np.asarray(x, dtype=np.int64) for x, _ in ex]
        targets = torch.as_tensor([t for _, t in ex])
        out = model(left_pad(histories, T), last_only=True)
        full = model.scores(out)
        u = out.u[:, -1].float()
        ranks["model"].append(rank(full, histories, targets))
        log_len = torch.log(torch.as_tensor([len(h) for h in histories], dtype=torch.float32))[:, None]
        for K in shorts:
            o = model(left_pad([h[-K:] for h in histories], T), last_only=True)
            ranks.setdefault(("short", K), ([], []))
            ranks[("short", K)][0].append(ranks["model"][-1])
            ranks[("short", K)][1].append(rank(model.scores(o), histories, targets))
            feats.setdefault(("short", K), []).append(torch.cat([u, o.u[:, -1].float(), log_len], 1).numpy())
        for name, v in off.items():
            # centred so that the two sides are the model's ranking pushed equally apart
            shift = v - (v[1:].mean() if name == "popularity" else 0.5)
            shift[0] = 0.0
            hist_mean = torch.as_tensor([float(v[h].mean()) for h in histories])[:, None]
            for L in strengths[name]:
                ranks.setdefault((name, L), ([], []))
                ranks[(name, L)][0].append(rank(full - L * shift, histories, targets))
                ranks[(name, L)][1].append(rank(full + L * shift, histories, targets))
                feats.setdefault((name, L), []).append(torch.cat([u, hist_mean, log_len], 1).numpy())
    done = {"model": np.concatenate(ranks["model"])}
    for key, (a, b) in ((k, v) for k, v in ranks.items() if k != "model"):
        done[key] = (np.concatenate(a), np.concatenate(b))
    return done, {k: np.concatenate(v) for k, v in feats.items()}


def ndcg(ranks: np.ndarray, k: int = 20) -> np.ndarray:
    from fame_core.compare import ndcg_at

    return ndcg_at(ranks, k)


def pair_reading(fit: tuple, fit_X: np.ndarray, test: tuple, test_X: np.ndarray, seed: int = 0) -> dict:
    """The gate ceiling and the merge's accuracy for one pair: `fit` / `test` are (ranks of side a,
    ranks of side b) on the users the classifier is fitted on and scored on."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (fa, fb), (ta, tb) = fit, test
    keep_fit, keep = fa != fb, ta != tb
    y_fit, y = (fb < fa).astype(int), (tb < ta).astype(int)
    reading = {"users": int(keep.sum()), "second better": None, "majority": None, "linear ceiling": None,
               "margin (points)": None}
    if keep.sum() and len(np.unique(y_fit[keep_fit])) == 2:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=seed))
        # the same reading on the fitting users alone (5-fold cross-validation): what a choice of
        # pair or strength may look at without reading the test users
        fit_second = float(y_fit[keep_fit].mean())
        reading["fit margin (points, 5-fold)"] = None
        if np.bincount(y_fit[keep_fit]).min() >= 5:             # stratified folds need five of each
            fit_ceiling = float(cross_val_score(clf, fit_X[keep_fit], y_fit[keep_fit], cv=5).mean())
            reading["fit margin (points, 5-fold)"] = round(100 * (fit_ceiling - max(fit_second, 1 - fit_second)), 2)
        clf.fit(fit_X[keep_fit], y_fit[keep_fit])
        second = float(y[keep].mean())
        majority = max(second, 1 - second)
        ceiling = float(clf.score(test_X[keep], y[keep]))
        picks_fit, picks = clf.predict(fit_X) == 1, clf.predict(test_X) == 1
        reading.update({"second better": second, "majority": majority, "linear ceiling": ceiling,
                        "margin (points)": round(100 * (ceiling - majority), 2),
                        "fit NDCG@20 switch": float(ndcg(np.where(picks_fit, fb, fa)).mean()),
                        "NDCG@20 switch": float(ndcg(np.where(picks, tb, ta)).mean())})
    reading.update({"NDCG@20 first": float(ndcg(ta).mean()), "NDCG@20 second": float(ndcg(tb).mean()),
                    "fit NDCG@20 first": float(ndcg(fa).mean()), "fit NDCG@20 second": float(ndcg(fb).mean())})
    return reading


def context_clusters(model, dataset, seed: int = 0) -> np.ndarray:
    """0/1 k-means cluster of every item's context vector, as --head-cluster-bias clusters them
    (`fame_core.training.item_contexts`, weighted by 1 + each item's count as a training target)."""
    from sklearn.cluster import KMeans

    from fame_core.training import item_contexts, training_pairs

    contexts, counts = item_contexts(model, training_pairs(dataset, model.config.max_len))
    labels = KMeans(2, n_init=3, random_state=seed).fit(contexts[1:], sample_weight=counts[1:] + 1).labels_
    return np.concatenate([[0], labels]).astype(np.float32)


def check(model, dataset, shorts=(1, 2, 3), popularity=(0.5, 1.0, 2.0), cluster=(1.0, 2.0, 4.0),
          context=(), seed: int = 0) -> dict:
    """Every pair's reading: fitted on validation users, scored on test users."""
    counts = target_counts(model, dataset)
    offsets, strengths = {}, {}
    if popularity:
        offsets["popularity"], strengths["popularity"] = np.log1p(counts), list(popularity)
    if cluster:
        offsets["cluster"], strengths["cluster"] = item_clusters(model, counts, seed), list(cluster)
    if context:
        offsets["context cluster"], strengths["context cluster"] = context_clusters(model, dataset, seed), list(context)
    rv, Xv = pair_ranks(model, dataset, "valid", list(shorts), offsets, strengths)
    rt, Xt = pair_ranks(model, dataset, "test", list(shorts), offsets, strengths)
    shares = {f"{name} 1 share of training targets": float(np.average(offsets[name][1:], weights=counts[1:] + 1e-12))
              for name in ("cluster", "context cluster") if name in offsets}
    rows = []
    for key in (k for k in rt if k != "model"):
        row = {"pair": f"{key[0]} {key[1]:g}", **pair_reading(rv[key], Xv[key], rt[key], Xt[key], seed)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"users": int(len(rt["model"])), "valid NDCG@20 model": float(ndcg(rv["model"]).mean()),
            "test NDCG@20 model": float(ndcg(rt["model"]).mean()),
            "score scale (mean per-user sd of s)": float(_score_sd(model, dataset)),
            **shares, "seed": seed, "rows": rows}


@torch.no_grad()
def _score_sd(model, dataset, users: int = 512) -> float:
    """The offsets' strengths L are in the model's score units: this is how large those are."""
    from fame_core.evaluate import left_pad

    rows = dataset.splittable_rows()[:users]
    histories = [np.asarray(dataset.example(r, "test")[0], dtype=np.int64) for r in rows]
    scores = model.scores(model(left_pad(histories, model.config.max_len), last_only=True))[:, 1:]
    return float(scores.std(1).mean())


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.head_pair_check", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--short", type=int, nargs="*", default=[1, 2, 3], help="history lengths K of the short side")
    p.add_argument("--popularity", type=float, nargs="*", default=[0.5, 1.0, 2.0], help="strengths L")
    p.add_argument("--cluster", type=float, nargs="*", default=[1.0, 2.0, 4.0], help="strengths L")
    p.add_argument("--context", type=float, nargs="*", default=[1.0, 2.0, 4.0],
                   help="strengths L of the context-cluster pair (--head-cluster-bias's clusters)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if any(k < 1 for k in a.short) or any(x <= 0 for x in a.popularity + a.cluster + a.context):
        print("error: --short needs whole numbers of 1 or more and --popularity / --cluster / --context positive "
              "strengths, e.g. --short 1 2 --cluster 2 4", file=sys.stderr)
        return 2
    from fame_core.checkpoint import load
    from fame_core.errors import FameError

    try:
        model, data = load(a.checkpoint)
    except FameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if data is None:
        print(f"error: the data set {a.checkpoint} was trained on was not found; put it where its config.json "
              "records it, or in the data home (docs/design.md)", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    result = {"checkpoint": str(a.checkpoint), "data": data.name,
              **check(model, data, a.short, a.popularity, a.cluster, a.context, a.seed)}
    out = a.out or REPO / "experiments" / "results" / f"head-pair-check-{data.name}-{Path(a.checkpoint).resolve().name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
