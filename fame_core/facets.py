"""Do heads, gates and experts capture facets? Measured with numbers, against controls.

The paper claims each head captures a facet of items (genre, actor) and each expert a preference
inside it. Nothing in the training objective makes that so; this module measures it for a given
model, always next to controls that say what "no facet" looks like:

1. head <-> facet (`head_alignment`): how well each head's item sub-embeddings x_v^(h) separate a
   facet's values (k-nearest-neighbour label agreement; cross-validated linear probe), next to the
   full embedding, a random projection of it to the head's size, and shuffled labels.
2. gate <-> dominant facet (`gate_vs_facet`, planted worlds only): does the head with the largest
   gate predict the user's planted dominant facet? Accuracy and confusion against the majority rate,
   and the AUC of head 0's gate.
3. expert <-> preference (`experts_vs_preference`, planted worlds only): mutual information between
   each head's argmax expert and the user's active preferred value, against random splits with the
   same expert loads; and the experts' load (is any expert dead?).
4. attention faithfulness (`faithfulness`): remove the history item an expert attends to most and
   measure the change of the target's rank and of the gate, against removing a random item.

Multi-valued facets (MovieLens genres, Amazon attributes) are reduced to one label per item: its
most frequent value among the facet's `max_values` most frequent ones, ignoring values carried by
more than half of all items (such as Amazon's top category); items without one are left out.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .data import SequenceDataset
from .errors import ConfigError, DataError
from .evaluate import rank_sequences, rank_users
from .labels import facet_labels
from .models import merge_modes
from .stats import ndcg_at

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender


# ---- labels and the generic measures -------------------------------------------------------------

def knn_agreement(X: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours (cosine) that carry its label."""
    k = min(k, len(X) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(X)
    idx = nn.kneighbors(X, return_distance=False)[:, 1:]
    return float((y[idx] == y[:, None]).mean())


def probe_accuracy(X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """5-fold cross-validated accuracy of a standardised multinomial logistic regression."""
    classes, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, classes[counts >= folds])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, X[keep], y[keep], cv=cv).mean())


@torch.no_grad()
def item_representations(model: Recommender, seed: int = 0) -> dict[str, np.ndarray]:
    """x_v^(h) of every head, the full embedding x_v, and a random projection of x_v to d'."""
    E = model.embed.E.weight.detach().cpu()         # x_v (without --head-cluster-bias's bias columns)
    subs = model.item_sub_embeddings().detach().cpu()
    reps = {f"head {h}": subs[h].numpy() for h in range(subs.shape[0])}
    reps["full embedding"] = E.numpy()
    g = torch.Generator().manual_seed(seed)
    reps["random projection"] = (E @ torch.randn(E.shape[1], subs.shape[2], generator=g)).numpy()
    return reps


def head_alignment(model: Recommender, dataset: SequenceDataset, facets=None, k: int = 10, max_items: int = 5000,
                   seed: int = 0) -> pd.DataFrame:
    """One row per (facet, representation): kNN agreement, linear-probe accuracy, and the chance
    levels (kNN: sum of squared label shares; probe: the majority share and shuffled labels)."""
    rng = np.random.default_rng(seed)
    reps = item_representations(model, seed)
    rows = []
    for facet in facets or list(dataset.facets):
        labels, _ = facet_labels(dataset, facet)
        items = np.flatnonzero(labels >= 0)
        if len(items) > max_items:
            items = np.sort(rng.choice(items, max_items, replace=False))
        y = labels[items]
        share = np.bincount(y) / len(y)
        shuffled = rng.permutation(y)
        for name, X in reps.items():
            rows.append({"facet": facet, "representation": name, "dims": X.shape[1], "items": len(items),
                         "knn_agreement": knn_agreement(X[items], y, k), "knn_chance": float((share ** 2).sum()),
                         "probe_accuracy": probe_accuracy(X[items], y, seed=seed),
                         "probe_shuffled_labels": probe_accuracy(X[items], shuffled, seed=seed),
                         "majority_rate": float(share.max())})
    return pd.DataFrame(rows)


def specialisation(alignment: pd.DataFrame, margin: float = 0.05) -> dict:
    """For each head, the facet it separates best relative to the other heads, if the gap to the
    best other head is at least `margin` and it beats the random projection; else None."""
    heads = sorted(r for r in alignment["representation"].unique() if r.startswith("head "))
    out = {}
    for head in heads:
        best, best_gap = None, -np.inf
        for facet, rows in alignment.groupby("facet"):
            acc = rows.set_index("representation")["probe_accuracy"]
            others = [acc[h] for h in heads if h != head]
            gap = acc[head] - (max(others) if others else acc["random projection"])
            if gap > best_gap:
                best, best_gap = facet, gap
        rows = alignment[(alignment["facet"] == best) & (alignment["representation"].isin([head, "random projection"]))]
        acc = rows.set_index("representation")["probe_accuracy"]
        ok = best_gap >= margin and acc[head] > acc["random projection"]
        out[head] = {"facet": best if ok else None, "gap": round(float(best_gap), 4)}
    return out


# ---- users: gates and routers against the planted truth ----------------------------------------------

def _require_truth(dataset: SequenceDataset) -> dict:
    if dataset.truth is None:
        raise DataError(f"data set {dataset.name!r} has no planted ground truth (only the synthetic world has)")
    return dataset.truth


def gate_vs_facet(model: Recommender, dataset: SequenceDataset, split: str = "test") -> dict:
    """Does the head with the largest gate predict each user's planted dominant facet?"""
    truth = _require_truth(dataset)
    ranked = rank_users(model, dataset, split)
    gates, rows = ranked["gates"], ranked["rows"]
    facet = np.array([truth["dominant_facet"][r] for r in rows])
    top = gates.argmax(1)
    confusion = pd.crosstab(pd.Series(top, name="argmax gate head"), pd.Series(facet, name="planted facet"))
    # each head stands for the facet most of its users have; accuracy of that reading
    mapping = {int(h): confusion.loc[h].idxmax() for h in confusion.index}
    accuracy = float(np.mean([mapping[int(h)] == f for h, f in zip(top, facet)]))
    names = list(truth["facets"])
    auc = float(roc_auc_score(facet == names[0], gates[:, 0])) if len(set(facet)) > 1 and gates.shape[1] > 1 else None
    return {"accuracy": accuracy, "majority_rate": float(pd.Series(facet).value_counts(normalize=True).max()),
            "head_to_facet": mapping, f"auc_head0_gate_for_{names[0]}": auc,
            "confusion": confusion, "users": int(len(rows))}


def _check_draws(n_random: int) -> None:
    """The controls' standard deviation is a sample one (ddof=1): it needs two draws at least."""
    if int(n_random) < 2:
        raise ValueError(f"n_random must be at least 2 (the controls' sample standard deviation), not {n_random}")


def experts_vs_preference(model: Recommender, dataset: SequenceDataset, split: str = "test", n_random: int = 20,
                          seed: int = 0) -> pd.DataFrame:
    """Per head and planted facet: MI(argmax expert at the last position; the user's active value at
    the target step), against two controls: random splits of the users with the same expert loads
    (chance), and "random routers", the argmax of N random projections of the head's output F_t^(h)
    (what any split of the representation carries); plus each expert's load."""
    _check_draws(n_random)
    truth = _require_truth(dataset)
    rows_idx = dataset.splittable_rows()
    examples = [dataset.example(r, split) for r in rows_idx]
    out = rank_sequences(model, [x for x, _ in examples], [t for _, t in examples])
    router = out["router"]                                               # (U, H, N)
    step = -1 if split == "test" else -2
    facet = np.array([truth["dominant_facet"][r] for r in rows_idx])
    active = np.array([truth["active_value"][r][step] for r in rows_idx])
    rng = np.random.default_rng(seed)
    rows = []
    H, N = router.shape[1], router.shape[2]
    for h in range(H):
        argmax = router[:, h].argmax(1)
        load = np.bincount(argmax, minlength=N) / len(argmax)
        for f in truth["facets"]:
            users = facet == f
            mi = mutual_info_score(active[users], argmax[users])
            control = [mutual_info_score(active[users], rng.permutation(argmax[users])) for _ in range(n_random)]
            F = out["heads"][users, h]
            random_router = [mutual_info_score(active[users], (F @ rng.standard_normal((F.shape[1], N))).argmax(1))
                             for _ in range(n_random)] if N > 1 else [0.0]
            rows.append({"head": h, "facet": f, "users": int(users.sum()), "mutual_information": float(mi),
                         "random_split_mi_mean": float(np.mean(control)), "random_split_mi_std": float(np.std(control, ddof=1)),
                         "random_router_mi_mean": float(np.mean(random_router)),
                         "random_router_mi_std": float(np.std(random_router, ddof=1)) if N > 1 else 0.0,
                         "argmax_load": np.round(load, 3).tolist(),
                         "mean_router_weight": np.round(router[:, h].mean(0), 3).tolist(),
                         "mean_top_weight": float(router[:, h].max(1).mean()),
                         "dead_experts": int((load < 1 / (4 * N)).sum())})
    return pd.DataFrame(rows)


# ---- users on real data: no planted truth, so the yardsticks are the target and the history -----------

def _better_head(model: Recommender, dataset: SequenceDataset,
                 split: str, within: int | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the ranking, each user's best head, which users count): users with a unique best head,
    and with `within`, only those whose best head ranks the target in its top `within`."""
    H = model.config.n_heads
    ranked = rank_users(model, dataset, split, merges=tuple(f"head:{h}" for h in range(H)))
    ranks = np.stack([ranked["ranks"][f"head:{h}"] for h in range(H)], 1)        # (U, H)
    keep = ranks.min(1) < np.sort(ranks, 1)[:, min(1, H - 1)]                    # a unique best head
    if within is not None:
        keep &= ranks.min(1) < within
    return ranked, ranks.argmin(1), keep


def gate_vs_heads(model: Recommender, dataset: SequenceDataset, split: str = "test", within: int | None = None) -> dict:
    """Does the head with the largest gate rank the user's target better than the other heads?

    Needs no planted truth, so it applies to any data set: over users whose heads rank the target
    differently, the share where the gate's argmax head is the better one, against the share of the
    head that is most often better (what always picking one head achieves). within: only users whose
    better head ranks the target in its top `within` (0-based rank < within), where the choice of
    head changes a top-k list; over all users most comparisons are between two deep ranks (say
    3,000 against 3,100) that no list shows."""
    ranked, best, differ = _better_head(model, dataset, split, within)
    H = model.config.n_heads
    top = ranked["gates"].argmax(1)
    share = np.bincount(best[differ], minlength=H) / max(int(differ.sum()), 1)
    return {"accuracy": float((top[differ] == best[differ]).mean()) if differ.any() else None,
            "majority_rate": float(share.max()), "users": int(differ.sum()), "within": within,
            "mean_top_gate": float(ranked["gates"].max(1).mean())}


PROBES = ("linear", "boosted")


def better_head_predictability(model: Recommender, dataset: SequenceDataset, fit_split: str = "valid", split: str = "test",
                               within: int | None = None, seed: int = 0, probe: str = "linear") -> dict:
    """How well *any* gate could do: a classifier from the gate's own input [F^(1) | ... | F^(H)]
    to the head that ranks the target best, fitted on `fit_split` and scored on `split` (users with
    a unique best head; `within` as in gate_vs_heads). probe="linear" is a logistic regression (the
    ceiling of a linear gate like Eq. 12's); probe="boosted" is scikit-learn's gradient-boosted
    trees (HistGradientBoostingClassifier, early stopping on a held-out tenth of `fit_split`), a
    ceiling for gates that are not linear. When these ceilings are themselves near the majority
    rate, the heads, not the gate, are what makes the gate uninformative."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, not {probe!r}")

    def users(s):
        ranked, best, keep = _better_head(model, dataset, s, within)
        return ranked["heads"].reshape(len(best), -1)[keep], best[keep], ranked["gates"].argmax(1)[keep]

    X_fit, y_fit, _ = users(fit_split)
    X, y, gate = users(split)
    classes, counts = np.unique(y_fit, return_counts=True)
    if len(classes) < 2 or len(y) == 0:
        return {"probe_accuracy": None, "gate_accuracy": None, "majority_rate": None, "users": int(len(y)),
                "within": within, "probe": probe, "fit_split": fit_split, "split": split}
    if probe == "linear":
        clf = LogisticRegression(max_iter=2000, random_state=seed)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier
        # early stopping holds out a stratified tenth: only where every class can spare members for it
        clf = HistGradientBoostingClassifier(early_stopping=bool(counts.min() >= 20), validation_fraction=0.1,
                                             random_state=seed)
    clf.fit(X_fit, y_fit)
    return {"probe_accuracy": float(clf.score(X, y)), "gate_accuracy": float((gate == y).mean()),
            "majority_rate": float(np.bincount(y).max() / len(y)), "users": int(len(y)), "within": within,
            "probe": probe, "fit_split": fit_split, "split": split}


def merge_ndcg(model: Recommender, dataset: SequenceDataset, split: str = "test", k: int = 20) -> dict[str, np.ndarray]:
    """Per-user NDCG@k (rows in `dataset.splittable_rows()` order) of the gated merge, the
    equal-weight merge ('concat', every head weighted 1/H) and each single head ('head:h')."""
    merges = tuple(merge_modes(model.config.n_heads))
    ranks = rank_users(model, dataset, split, merges=merges)["ranks"]
    return {m: ndcg_at(ranks[m], k) for m in merges}


def paired_comparison(a: np.ndarray, b: np.ndarray) -> dict:
    """a against b, per user: mean difference, two-sided Wilcoxon signed-rank p (zero differences
    dropped; 1.0 where every difference is zero), users better and worse."""
    from .stats import wilcoxon_by_user

    d = a - b
    p = wilcoxon_by_user(a, b)[1]
    return {"difference": float(d.mean()), "p": p, "users_better": int((d > 0).sum()), "users_worse": int((d < 0).sum())}


def best_single_head(ndcg: dict[str, np.ndarray]) -> str:
    return max((m for m in ndcg if m.startswith("head:")), key=lambda m: ndcg[m].mean())


def gate_merge_value(model: Recommender, dataset: SequenceDataset, split: str = "test", k: int = 20) -> dict:
    """Does the gate earn its place in the score? Per-user NDCG@k of the gated merge against the
    equal-weight merge ('concat', every head weighted 1/H) and against each single head, with a
    two-sided Wilcoxon signed-rank test over users (zero differences dropped; scipy.stats.wilcoxon)."""
    return merge_reading(merge_ndcg(model, dataset, split, k), k)


def merge_reading(ndcg: dict[str, np.ndarray], k: int = 20) -> dict:
    """gate_merge_value's reading from per-user NDCG@k arrays (`merge_ndcg`)."""
    best_head = best_single_head(ndcg)
    return {"users": int(len(ndcg["gated"])), "k": k, "test": "Wilcoxon signed-rank over users, two-sided",
            f"NDCG@{k}": {m: float(v.mean()) for m, v in ndcg.items()}, "best_head": best_head,
            "gated_vs_equal": paired_comparison(ndcg["gated"], ndcg["concat"]),
            "gated_vs_best_head": paired_comparison(ndcg["gated"], ndcg[best_head])}


def load_gated_fames(paths, data=None, out=None, default_out=None, overwrite: bool = False):
    """For a script reading gates: the FAME models (two or more heads) of checkpoints `paths`, all
    of one data set (`data`, or the one the first checkpoint records), and its output file (`out`,
    else `default_out` with "{data}" replaced by the data set's name; refused when it exists unless
    overwrite). Returns (models, dataset, output path); a FameError naming what to pass instead
    otherwise, before anything is computed."""
    from .checkpoint import load
    from .errors import FameError
    from .safe_io import check_new_file

    model, data = load(paths[0], data=data)
    if data is None:
        raise FameError("the reading needs the data set; pass --data PATH")
    models = [model] + [load(c, data=data)[0] for c in paths[1:]]
    for c, m in zip(paths, models):
        if m.config.name != "fame" or m.config.n_heads < 2:
            raise FameError(f"{c} is not a FAME model with two or more heads; pass FAME checkpoints only")
    target = out if out else str(default_out).replace("{data}", data.name)
    return models, data, check_new_file(target, "--out", overwrite)


@contextmanager
def gate_temperature(model: Recommender, tau: float):
    """Inside the block, the model's gate is read at temperature tau (FAMEConfig.gate_temperature:
    gate = softmax(logits / tau)), whatever the checkpoint holds: tau > 1 softens the gate towards
    equal weights, tau < 1 sharpens it towards one head, 1 is the paper's gate. For reading what a
    bolder or a more cautious gate would do to a trained model; the model is restored on exit."""
    if not tau > 0:
        raise ValueError(f"the gate temperature must be positive, not {tau}")
    if "gate" not in model.capabilities:
        raise ConfigError(f"a gate temperature applies to FAME models; this is a {model.config.name} model")
    own = model.config
    model.config = dataclasses.replace(own, gate_temperature=float(tau))
    try:
        yield model
    finally:
        model.config = own


def choose_gate_temperature(gated_ndcg: dict[float, float]) -> float:
    """The temperature whose gated NDCG@20 (on validation users; for seeds of one setting, the mean
    over them) is largest, 1 (the gate as trained) on ties."""
    return max(gated_ndcg, key=lambda t: (round(gated_ndcg[t], 12), t == 1.0))


def gate_merge_over_seeds(per_seed: list[dict[str, np.ndarray]], k: int = 20) -> dict:
    """gate_merge_value over several seeds' models of one setting, from each seed's `merge_ndcg`
    (the same users in the same order): each user's NDCG@k averaged over the seeds, the gated merge
    against the equal-weight merge and against each seed's best single head, by the two-sided
    Wilcoxon signed-rank test over users. A user stays one paired unit however many seeds there
    are, so the test pools the seeds' evidence without counting a user twice; a seed where the
    two merges tie adds its noise, not its count."""
    if len(per_seed) < 2 or len({len(s["gated"]) for s in per_seed}) != 1:
        raise ValueError("gate_merge_over_seeds needs two or more seeds' per-user NDCG over the same users")
    mean = lambda m: np.mean([s[m] for s in per_seed], axis=0)
    gated, equal = mean("gated"), mean("concat")
    best = np.mean([s[best_single_head(s)] for s in per_seed], axis=0)
    return {"seeds": len(per_seed), "users": int(len(gated)), "k": k,
            "test": "Wilcoxon signed-rank over users of the per-user mean over seeds, two-sided",
            f"NDCG@{k}": {"gated": float(gated.mean()), "concat": float(equal.mean()), "best_head": float(best.mean())},
            "gated_vs_equal": paired_comparison(gated, equal), "gated_vs_best_head": paired_comparison(gated, best)}


def expert_query_similarity(model: Recommender) -> list[float]:
    """Per head, the mean cosine similarity between its experts' query maps W_Q^(h,n) (flattened,
    over pairs of experts): near 1 means a head's experts are near-copies."""
    if "experts" not in model.capabilities or model.moe.N < 2:
        return []
    q = torch.nn.functional.normalize(model.moe.W_Q.detach().flatten(2), dim=-1)
    cos = torch.einsum("hnk,hmk->hnm", q, q)
    N = q.shape[1]
    off = ~torch.eye(N, dtype=torch.bool)
    return [float(c[off].mean()) for c in cos]


def gate_vs_history_facet(model: Recommender, dataset: SequenceDataset,
                          facet: str, split: str = "test", min_items: int = 3) -> dict:
    """Spearman correlation of each head's gate with how concentrated the user's history is on one
    value of `facet` (share of the modal value among the history items that have one): a head tied
    to the facet should weigh more for users who stay inside one value. Reported with z = rho *
    sqrt(n - 1), the correlation in units of its standard deviation under no association."""
    from scipy.stats import spearmanr

    labels, _ = facet_labels(dataset, facet)
    ranked = rank_users(model, dataset, split)
    conc, keep = [], []
    for i, r in enumerate(ranked["rows"]):
        y = labels[dataset.example(r, split)[0][-model.config.max_len:]]
        y = y[y >= 0]
        if len(y) >= min_items:
            conc.append(np.bincount(y).max() / len(y))
            keep.append(i)
    conc, gates = np.array(conc), ranked["gates"][keep]
    rho = [float(spearmanr(gates[:, h], conc).statistic) if gates[:, h].std() > 0 else 0.0
           for h in range(gates.shape[1])]
    return {"facet": facet, "users": len(keep), "spearman": rho, "z": [r * np.sqrt(len(keep) - 1) for r in rho],
            "mean_concentration": float(conc.mean())}


def experts_vs_target_facet(model: Recommender, dataset: SequenceDataset, facet: str, split: str = "test", n_random: int = 20,
                            seed: int = 0) -> pd.DataFrame:
    """Per head: MI(argmax expert at the last position; the facet value of the item the user takes
    next), over users whose target has a value, against random routers (the argmax of N random
    projections of the head's output F_t^(h)); plus each expert's load. The real-data stand-in for
    `experts_vs_preference`: an expert that stands for a preference should say which value comes."""
    _check_draws(n_random)
    labels, _ = facet_labels(dataset, facet)
    ranked = rank_users(model, dataset, split)
    target = np.array([labels[dataset.example(r, split)[1]] for r in ranked["rows"]])
    users = target >= 0
    router, heads = ranked["router"][users], ranked["heads"][users]
    target = target[users]
    rng = np.random.default_rng(seed)
    H, N = router.shape[1], router.shape[2]
    rows = []
    for h in range(H):
        argmax = router[:, h].argmax(1)
        load = np.bincount(argmax, minlength=N) / len(argmax)
        random_router = [mutual_info_score(target, (heads[:, h] @ rng.standard_normal((heads.shape[2], N))).argmax(1))
                         for _ in range(n_random)] if N > 1 else [0.0]
        rows.append({"head": h, "facet": facet, "users": int(users.sum()),
                     "mutual_information": float(mutual_info_score(target, argmax)),
                     "random_router_mi_mean": float(np.mean(random_router)),
                     "random_router_mi_std": float(np.std(random_router, ddof=1)) if N > 1 else 0.0,
                     "argmax_load": np.round(load, 3).tolist(), "mean_top_weight": float(router[:, h].max(1).mean()),
                     "dead_experts": int((load < 1 / (4 * N)).sum())})
    return pd.DataFrame(rows)


def faithfulness(model: Recommender, dataset: SequenceDataset,
                 n_users: int = 200, split: str = "test", seed: int = 0) -> pd.DataFrame:
    """Remove the history item each expert attends to most (last position) and measure the change
    of the target's rank (gated) and of the gate (L1), against removing a random history item."""
    from .inspection import inspect

    rng = np.random.default_rng(seed)
    rows = dataset.splittable_rows()
    rows = rows[[len(dataset.example(r, split)[0]) >= 2 for r in rows]]
    sample = rng.choice(rows, min(n_users, len(rows)), replace=False)
    inputs, targets, keys = [], [], []
    for r in sample:
        seq, target = dataset.example(r, split)
        seq = seq[-model.config.max_len:]
        insp = inspect(model, seq, top_k=1)
        inputs.append(seq)
        targets.append(target)
        keys.append((r, "original", -1, -1))
        for h in range(insp.n_heads):
            for n in range(insp.n_experts):
                j = int(insp.attention[h, n, -1].argmax())
                inputs.append(np.delete(seq, j))
                targets.append(target)
                keys.append((r, "top-attended", h, n))
        j = int(rng.integers(len(seq)))
        inputs.append(np.delete(seq, j))
        targets.append(target)
        keys.append((r, "random", -1, -1))
    out = rank_sequences(model, inputs, targets)
    table = pd.DataFrame(keys, columns=["user_row", "removed", "head", "expert"])
    table["rank"] = out["ranks"]["gated"] + 1
    gates = out["gates"]
    base = table[table["removed"] == "original"].set_index("user_row")
    table["delta_rank"] = table["rank"] - base.loc[table["user_row"], "rank"].to_numpy()
    base_gates = gates[table.index[table["removed"] == "original"]]
    order = {r: i for i, r in enumerate(base.index)}
    table["delta_gate"] = np.abs(gates - base_gates[[order[r] for r in table["user_row"]]]).sum(1)
    changed = table[table["removed"] != "original"]
    summary = changed.groupby(["removed", "head", "expert"]).agg(
        users=("rank", "size"), mean_delta_rank=("delta_rank", "mean"), median_delta_rank=("delta_rank", "median"),
        mean_abs_delta_rank=("delta_rank", lambda x: float(np.abs(x).mean())), mean_delta_gate=("delta_gate", "mean"))
    return summary.reset_index()


def router_reading(experts: pd.DataFrame) -> tuple[float, float, float]:
    """The experts check's three numbers, averaged over heads: expert MI, random routers' mean MI
    and their sample standard deviation (an experts_vs_* table)."""
    return tuple(float(experts[c].mean()) for c in ("mutual_information", "random_router_mi_mean",
                                                      "random_router_mi_std"))


def expert_z(experts: pd.DataFrame) -> float:
    """The experts check in one number: expert MI above random routers, in their standard deviations."""
    mi, rr, sd = router_reading(experts)
    return (mi - rr) / sd if sd > 0 else float("nan")


def _verdicts(model: Recommender, gate_accuracy: float, majority_rate: float, margin: float, experts: pd.DataFrame) -> dict:
    """Pass/fail of gate (accuracy at least `margin` above the majority rate) and experts (mean MI
    more than 3 standard deviations above random routers), with the numbers behind them."""
    mi, rr, sd = router_reading(experts)
    return {"gate_accuracy": gate_accuracy, "majority_rate": majority_rate,
            "gate_passes": gate_accuracy >= majority_rate + margin,
            "expert_mi": mi, "random_router_mi": rr, "random_router_std": sd,
            "experts": int(model.config.n_experts), "experts_pass": mi - rr > 3 * sd}


def planted_checks(model: Recommender, dataset: SequenceDataset) -> dict | None:
    """The verdicts the app's badges show, for worlds with planted truth (None otherwise): the gate
    passes if its argmax names the dominant facet 0.2 above the majority rate; the experts pass if
    their MI with the preferred value beats random routers by 3 standard deviations."""
    if dataset.truth is None:
        return None
    gate = gate_vs_facet(model, dataset)
    return _verdicts(model, gate["accuracy"], gate["majority_rate"], 0.2, experts_vs_preference(model, dataset))


GATE_TOP = 20   # the real-data gate reading among users whose better head shows the target in its top 20


def real_checks(model: Recommender, dataset: SequenceDataset, facet: str) -> dict:
    """The badges' verdicts on data without planted truth: the gate passes if its largest head is the
    one that ranks the target better at least 0.05 more often than always trusting the most often
    better head; the experts pass if their MI with the next item's `facet` value beats random
    routers by 3 standard deviations. Beside the verdict: the same gate reading over the users whose
    better head has the target in its top GATE_TOP (`gate_accuracy_top`, `majority_rate_top`)."""
    gate = gate_vs_heads(model, dataset)
    top = gate_vs_heads(model, dataset, within=GATE_TOP)      # shown beside the verdict, not part of it
    accuracy = gate["accuracy"] if gate["accuracy"] is not None else 0.0
    return dict(_verdicts(model, accuracy, gate["majority_rate"], 0.05, experts_vs_target_facet(model, dataset, facet)),
                facet=facet, gate_top=GATE_TOP, gate_accuracy_top=top.get("accuracy"),
                majority_rate_top=top.get("majority_rate"), users_top=top.get("users"))


def _validation_entry(r: dict, reference: float, margin: float, z: float) -> dict:
    """One row's validation reading as a line of the choice table (relative to `reference`)."""
    v = r["valid"]
    gate = (v["gate picks better head"] or 0.0) - v["better-head majority"]
    return {"variant": r["variant"], "NDCG@20": v["NDCG@20"], "relative": v["NDCG@20"] / reference - 1,
            "gate margin": gate, "gate passes": gate >= margin, "experts pass": bool(v["expert z"] >= z),
            "expert z": v["expert z"]}


def _split_rows(rows: list[dict]) -> tuple[list[dict], list[str], list[str]]:
    """(rows with a validation reading, variants without one, variants supervised with item metadata)."""
    read, unread, metadata = [], [], []
    for r in rows:
        if (r.get("options") or {}).get("facet_heads"):
            metadata.append(r["variant"])
        elif not r.get("valid") or r["valid"].get("NDCG@20") is None:
            unread.append(r["variant"])
        else:
            read.append(r)
    return read, unread, metadata


def _pick(table: list[dict], tolerance: float) -> tuple[dict | None, str]:
    """Within `tolerance` of the reference: most checks passed, then gate margin, then NDCG@20;
    where none is within it, the best NDCG@20 (accuracy first, as the ablation chooses)."""
    for t in table:
        t["within tolerance"] = t["relative"] >= -tolerance
    close = [t for t in table if t["within tolerance"]]
    if close:
        return (max(close, key=lambda t: (t["gate passes"] + t["experts pass"], t["gate margin"], t["NDCG@20"])),
                f"within {tolerance:.0%} of the reference on validation NDCG@20; most checks passed, then gate margin")
    if table:
        return (max(table, key=lambda t: t["relative"]),
                f"none within {tolerance:.0%} of the reference: the best validation NDCG@20")
    return None, "no row has a validation reading"


def choose_on_validation(rows: list[dict], reference: float, tolerance: float = 0.01, margin: float = 0.05,
                         z: float = 3.0) -> dict:
    """Issue 16's choice of a gate/router setting, reading validation users only (never test).

    rows: one dict per setting with a "variant" name and a "valid" dict holding "NDCG@20",
    "gate picks better head", "better-head majority" and "expert z" (what experiments/facet_real.py
    writes). reference: the validation NDCG@20 to stay within `tolerance` of (the ablation's best
    row at the same seed). Among the settings within it, the one passing most of the two checks on
    validation (gate at least `margin` above always trusting one head; experts `z` sd above random
    routers), then the largest gate margin, then the best NDCG@20; where none is within tolerance,
    the best validation NDCG@20 (accuracy first, as the ablation chooses). Rows without a "valid"
    reading are listed under "unread", and rows whose "options" supervise a head with item metadata
    (facet_heads) under "metadata": issue 16 asks for gates and routers without that supervision,
    so neither is chosen."""
    if not reference > 0:
        raise ValueError(f"reference must be a validation NDCG@20 above 0, not {reference!r}")
    read, unread, metadata = _split_rows(rows)
    table = [_validation_entry(r, reference, margin, z) for r in read]
    best, rule = _pick(table, tolerance)
    return {"chosen": best["variant"] if best else None, "rule": rule, "reference": reference,
            "tolerance": tolerance, "margin": margin, "z": z, "table": table, "unread": unread,
            "metadata": metadata}


def choose_over_seeds(rows_by_seed: dict[int, list[dict]], reference_by_seed: dict[int, float],
                      tolerance: float = 0.01, margin: float = 0.05, z: float = 3.0) -> dict:
    """choose_on_validation over several seeds: each setting's validation readings averaged over
    the seeds (NDCG@20 relative to that seed's reference, the gate margin, the experts' z), the
    checks and the tolerance applied to those means. One seed's 1 % window is 1.25-1.4 standard
    errors of a paired NDCG@20 difference on Beauty (experiments/split_noise.py); the mean over seeds
    narrows it. Only settings read at every seed compete; the others are listed as "incomplete"
    with the seeds they were read at."""
    seeds = sorted(rows_by_seed)
    if not seeds or set(seeds) != set(reference_by_seed):
        raise ValueError(f"need a reference for every seed: rows at {seeds}, references at {sorted(reference_by_seed)}")
    for s in seeds:
        if not reference_by_seed[s] > 0:
            raise ValueError(f"reference at seed {s} must be a validation NDCG@20 above 0, not {reference_by_seed[s]!r}")
    per_seed: dict[str, dict[int, dict]] = {}
    unread, metadata = set(), set()
    for s in seeds:
        read, u, m = _split_rows(rows_by_seed[s])
        unread |= set(u)
        metadata |= set(m)
        for r in read:
            per_seed.setdefault(r["variant"], {})[s] = _validation_entry(r, reference_by_seed[s], margin, z)
    table, incomplete = [], {}
    for variant, by_seed in per_seed.items():
        if set(by_seed) != set(seeds):
            incomplete[variant] = sorted(by_seed)
            continue
        mean = {k: float(np.mean([by_seed[s][k] for s in seeds])) for k in ("NDCG@20", "relative", "gate margin", "expert z")}
        table.append({"variant": variant, **mean, "gate passes": mean["gate margin"] >= margin,
                      "experts pass": bool(mean["expert z"] >= z), "seeds": seeds,
                      "by seed": {str(s): {k: by_seed[s][k] for k in ("NDCG@20", "relative", "gate margin", "expert z")}
                                  for s in seeds}})
    best, rule = _pick(table, tolerance)
    return {"chosen": best["variant"] if best else None, "rule": f"means over seeds {seeds}: {rule}",
            "references": {str(s): reference_by_seed[s] for s in seeds}, "tolerance": tolerance, "margin": margin,
            "z": z, "table": table, "incomplete": incomplete,
            "unread": sorted(unread - set(per_seed)), "metadata": sorted(metadata)}


def facet_report(model: Recommender, dataset: SequenceDataset, n_users: int = 200, seed: int = 0, stage=None) -> dict:
    """All four measures as plain data (JSON-ready); gate and expert measures on planted worlds only.
    `stage(text)`, when given, is called as each measure starts (the CLI's progress lines)."""
    stage = stage or (lambda text: None)
    if dataset.facets:
        stage("head <-> facet alignment: probes and kNN of every head's item sub-embeddings")
    alignment = head_alignment(model, dataset, seed=seed) if dataset.facets else pd.DataFrame()
    report = {"model": model.config.model, "heads": model.config.n_heads, "experts": model.config.n_experts,
              "dataset": dataset.name,
              "alignment": alignment.round(4).to_dict("records"),
              "specialisation": specialisation(alignment) if len(alignment) else {}}
    stage(f"attention faithfulness over {n_users} sampled users")
    report["faithfulness"] = faithfulness(model, dataset, n_users=n_users, seed=seed).round(4).to_dict("records")
    if dataset.truth is not None:
        stage("gate <-> planted dominant facet")
        gate = gate_vs_facet(model, dataset)
        gate["confusion"] = {str(k): v for k, v in gate["confusion"].to_dict().items()}
        report["gate_vs_facet"] = gate
        stage("experts <-> preferred values, against random splits and routers")
        report["experts_vs_preference"] = experts_vs_preference(model, dataset, seed=seed).round(4).to_dict("records")
    return report


# ---- maps and neighbours for the Facet explorer ---------------------------------------------------

def project(X: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """2-d coordinates of the rows of X: UMAP (umap-learn, cosine) or PCA."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(X)
    if method != "umap":
        raise ValueError(f"unknown projection {method!r}; use 'umap' or 'pca'")
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns that a fixed random_state disables parallelism
        # 200 optimisation epochs (umap's own choice above 10k points) also below 10k: maps of a few
        # thousand items in about half the time, visually the same
        return umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", n_epochs=200,
                         random_state=seed).fit_transform(X)


def nearest_items(model: Recommender, item: int, k: int = 10) -> dict[str, list[int]]:
    """The k items closest (cosine) to `item` in each head's sub-embedding space and in the full
    embedding (padding and the item itself left out)."""
    out = {}
    for name, X in item_representations(model).items():
        if name == "random projection":
            continue
        Xn = X / np.clip(np.linalg.norm(X, axis=1, keepdims=True), 1e-12, None)
        sim = Xn @ Xn[item]
        sim[[0, item]] = -np.inf
        out[name] = np.argsort(-sim, kind="stable")[:k].tolist()
    return out


def split_rows(rows: list[dict]) -> tuple[list[dict], list[str], list[str]]:
    """The rows of a facet-real results file (experiments/facet_real.py) as the choice on
    validation reads them: (rows with a validation reading, variants without one, variants whose
    heads are supervised with item metadata, which the choice leaves out)."""
    return _split_rows(rows)


def validation_entry(row: dict, reference: float, margin: float = 0.05, z: float = 3.0) -> dict:
    """One row's validation reading as a line of the choice table (choose_on_validation): its
    NDCG@20 and that relative to `reference`, the gate margin over the better-head majority and
    whether it reaches `margin`, the expert z and whether it reaches `z`."""
    return _validation_entry(row, reference, margin, z)
