"""Gradient attribution beside attention, and whether either is faithful (issue 14; issue 41).

`attribute(model, sequence, target, merge)` computes integrated gradients (Captum's
`IntegratedGradients`, Gauss-Legendre steps) of the target's score under `merge` ("gated" for the
model's own score, "head:h" for head h's score P^(h)(target)) with respect to each history
position's input item embedding E[s_i]; the baseline is the zero embedding at every position
(positions, masks and everything else unchanged). A position's attribution is the sum over the
embedding's d coordinates. Completeness (sum of attributions = score(x) - score(baseline)) is
checked on every call with Captum's convergence delta: the steps start at `n_steps` (32) and are
doubled (64, 128, 256, 512) until |delta| <= COMPLETENESS (1 %) of |score(x) - score(baseline)|
or the cap STEP_CAP (512) is reached; the result reports the steps used, `delta` and
`relative_gap` = |delta| / |score(x) - score(baseline)|, and `converged`. Beside it, the attention it
is compared with: for head h, the head's effective attention from the last position,
sum_n beta_n alpha_n (router-weighted experts: exactly the weights the head's output
f^(h) = sum_j (...) v_j puts on each position); for the gated score, the gate-weighted average of
the heads' (gates normalised to sum 1; SASRec: equal weights).

`deletion_curves` measures faithfulness rather than assuming it. mode="delete" (the default) removes
history items: the sequence gets shorter, so every item older than a removed one moves one position
closer to the end (positions are counted from the right) and its positional embedding changes;
deleting is therefore NOT the same as masking. mode="mask" replaces the item in place by the padding
id 0, which no position attends to, so every other item keeps its position: what the attention
weights speak about. The score is read at the newest item, so masked items at the very end are cut
(masking the newest item is deleting it, and the query moves to the next newest). Items go in order
of attribution (largest first), of attention (largest first), most recent first (with recent=True)
and at random (the mean of `n_random` orders); after each removal the target's score under the same
merge and its rank under the same merge (the original history stays excluded from the ranking) are
recorded, for k = 0..K removals with K = min(len - 1, max_steps). AOPC, the area over the
perturbation curve (Samek et al. 2017), is mean_{k=0..K} (score_0 - score_k): larger means the order
found the items the score rests on.
`faithfulness_sample` averages that over a sample of users (the `attribution` CLI command), with
the paired bootstrap interval of each per-user difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data import SequenceDataset
from .errors import DataError
from .evaluate import left_pad, mask_items, target_ranks

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

METHODS = ("integrated gradients", "attention", "most recent first", "random")
COMPLETENESS = 0.01   # |delta| within 1 % of |f(x) - f(baseline)|
STEP_CAP = 512        # the most integrated-gradient steps tried


@dataclass
class Attribution:
    """One user's (or sequence's) attribution and attention, position by position (oldest first)."""

    sequence: np.ndarray
    target: int
    merge: str
    attribution: np.ndarray     # (L,) integrated gradients summed over the embedding
    attention: np.ndarray       # (L,) effective attention from the last position (sums to 1)
    score: float                # the target's score under `merge`
    baseline_score: float       # the same with every input embedding zero
    delta: float                # completeness error: sum(attribution) - (score - baseline_score)
    steps: int = 0              # integrated-gradient steps used
    relative_gap: float = 0.0   # |delta| / |score - baseline_score| (0 where both are 0)
    converged: bool = True      # relative_gap <= COMPLETENESS (else the cap was reached)

    def table(self, label=None) -> pd.DataFrame:
        label = label or (lambda v: f"item {v}")
        return pd.DataFrame({"position": np.arange(1, len(self.sequence) + 1), "item": self.sequence,
                             "label": [label(int(v)) for v in self.sequence],
                             "integrated_gradients": self.attribution, "attention": self.attention})


def _check_merge(model: Recommender, merge: str) -> None:
    H = model.config.n_heads
    ok = merge == "gated" or (merge.startswith("head:") and merge[5:].isdigit() and int(merge[5:]) < H)
    if not ok:
        raise DataError(f"unknown score {merge!r} to attribute; use 'gated' or 'head:0'..'head:{H - 1}'")


def _check_sequence(model: Recommender, sequence, target) -> np.ndarray:
    cfg = model.config
    seq = np.asarray(sequence, dtype=np.int64).reshape(-1)[-cfg.max_len:]
    if seq.size == 0:
        raise DataError("the input sequence is empty; give at least one item id")
    bad = seq[(seq < 1) | (seq > cfg.n_items)]
    if bad.size:
        raise DataError(f"item id {int(bad[0])} is not an item of this model (ids 1..{cfg.n_items})")
    if target is None or not 1 <= int(target) <= cfg.n_items:
        raise DataError(f"target {target} is not an item of this model (ids 1..{cfg.n_items}); attribution needs one")
    return seq


def _score_fn(model: Recommender, merge: str):
    """f(embeddings (B, T, d), seq (B, T), target (B,)) -> the target's score (B,): the model's own
    forward pass with its item-embedding lookup replaced by the given embeddings (a forward hook)."""
    E = model.embed.E

    def f(emb, seq, target):
        handle = E.register_forward_hook(lambda module, inputs, output: emb)
        try:
            u = model.represent(model(seq, last_only=True), merge)[:, -1]  # (B, d)
        finally:
            handle.remove()
        return (u * model.item_embeddings()[target]).sum(-1)   # the scoring vectors (bias columns included)
    return f


@torch.no_grad()
def effective_attention(model: Recommender, sequence, merge: str = "gated") -> np.ndarray:
    """(L,) attention from the last position: sum_n beta_n alpha_n for head h, gate-weighted over heads for 'gated'."""
    from .inspection import inspect

    insp = inspect(model, sequence, top_k=1)
    per_head = np.einsum("hn,hnj->hj", insp.router[:, -1, :], insp.attention[:, :, -1, :])   # (H, L)
    if merge == "gated":
        w = insp.gates / insp.gates.sum()
        return w @ per_head
    return per_head[int(merge[5:])]


def attribute(model: Recommender, sequence, target: int, merge: str = "gated", n_steps: int = 32,
              tolerance: float = COMPLETENESS, step_cap: int = STEP_CAP) -> Attribution:
    """Integrated gradients of the target's score under `merge` per history position, the steps
    doubled from n_steps until completeness holds within `tolerance` or step_cap (module docstring)."""
    from captum.attr import IntegratedGradients

    _check_merge(model, merge)
    seq = _check_sequence(model, sequence, target)
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(seq, device=device)[None]
    t = torch.tensor([int(target)], device=device)
    f = _score_fn(model, merge)
    with torch.no_grad():
        emb = model.embed.E(x)
    baseline = torch.zeros_like(emb)
    with torch.no_grad():
        score, base = float(f(emb, x, t)[0]), float(f(baseline, x, t)[0])
    ig = IntegratedGradients(f)
    span = abs(score - base)
    steps, cap = int(n_steps), max(int(n_steps), int(step_cap))
    while True:
        attr, delta = ig.attribute(emb, baselines=baseline, additional_forward_args=(x, t), n_steps=steps,
                                   return_convergence_delta=True)
        gap = abs(float(delta[0]))
        relative = gap / span if span > 0 else (0.0 if gap == 0 else float("inf"))
        if relative <= tolerance or steps >= cap:
            break
        steps = min(steps * 2, cap)
    return Attribution(sequence=seq, target=int(target), merge=merge, attribution=attr[0].sum(-1).detach().cpu().numpy(),
                       attention=effective_attention(model, seq, merge), score=score, baseline_score=base,
                       delta=float(delta[0]), steps=steps, relative_gap=float(relative),
                       converged=bool(relative <= tolerance))


@torch.no_grad()
def _scores_and_ranks(model: Recommender, sequences, target: int, merge: str, exclude, ranks: bool = True):
    """The target's score under `merge` and its 0-based rank under the same merge (items of
    `exclude` not ranked; None without `ranks`) after each sequence, in one batched forward pass."""
    device = next(model.parameters()).device
    seq = left_pad(sequences, model.config.max_len, device)
    E = model.item_embeddings()
    out = model(seq, last_only=True)
    u = model.represent(out, merge)[:, -1]
    score = (u @ E[int(target)]).cpu().numpy()
    if not ranks:
        return score, None
    full = u @ E.T
    mask_items(full, [np.asarray(exclude)] * len(sequences))
    return score, target_ranks(full, torch.full((len(sequences),), int(target), device=device)).cpu().numpy()


def deletion_curves(model: Recommender, result: Attribution, max_steps: int = 10, n_random: int = 5, seed: int = 0,
                    mode: str = "delete", recent: bool = False, ranks: bool = True) -> pd.DataFrame:
    """Score and rank after removing 0..K items in each method's order; one row per (method, k).
    mode: "delete" (the sequence gets shorter, older items shift) or "mask" (items replaced in place
    by padding, masked items at the end cut); recent: also the most-recent-first order; ranks: False leaves the rank column NaN
    (scores only, faster)."""
    if mode not in ("delete", "mask"):
        raise ValueError(f"mode must be 'delete' or 'mask', not {mode!r}")
    seq, L = result.sequence, len(result.sequence)
    K = min(L - 1, max_steps)
    rng = np.random.default_rng(seed)
    orders = {"integrated gradients": [np.argsort(-result.attribution, kind="stable")],
              "attention": [np.argsort(-result.attention, kind="stable")]}
    if recent:
        orders["most recent first"] = [np.arange(L)[::-1]]
    orders["random"] = [rng.permutation(L) for _ in range(n_random)]
    sequences, keys = [], []
    for method, perms in orders.items():
        for r, perm in enumerate(perms):
            for k in range(K + 1):
                if mode == "delete":
                    sequences.append(np.delete(seq, perm[:k]))
                else:   # in place; masked items at the end are cut: the score is read at the newest item
                    masked = seq.copy()
                    masked[perm[:k]] = 0
                    sequences.append(masked[:np.flatnonzero(masked)[-1] + 1])
                keys.append((method, r, k))
    score, rank = _scores_and_ranks(model, sequences, result.target, result.merge, seq, ranks=ranks)
    table = pd.DataFrame(keys, columns=["method", "order", "removed"])
    table["score"] = score
    table["rank"] = rank + 1 if rank is not None else np.nan
    curve = table.groupby(["method", "removed"], sort=False).agg(score=("score", "mean"), rank=("rank", "mean")).reset_index()
    return curve


def aopc(curve: pd.DataFrame) -> pd.DataFrame:
    """Per method: AOPC of the score, mean_k (score_0 - score_k), and of the rank, mean_k (rank_k - rank_0)."""
    rows = []
    for method in [m for m in METHODS if m in set(curve["method"])]:
        c = curve[curve["method"] == method].sort_values("removed")
        s, r = c["score"].to_numpy(), c["rank"].to_numpy()
        rows.append({"method": method, "aopc_score": float((s[0] - s).mean()), "aopc_rank": float((r - r[0]).mean()),
                     "steps": int(len(c) - 1)})
    return pd.DataFrame(rows)


def faithfulness_sample(model: Recommender, dataset: SequenceDataset, n_users: int = 100, split: str = "test", seed: int = 0,
                        merges=None, n_steps: int = 32, max_steps: int = 10, n_random: int = 20,
                        mode: str = "delete", progress: bool = False) -> dict:
    """AOPC of integrated gradients, attention, most-recent-first and random removal (the mean of
    `n_random` orders per user) averaged over a sample of users with at least 2 input items, for
    the gated score and each head's score, with the Wilcoxon signed-rank test (scipy) of integrated
    gradients against attention over users and the 95 % paired bootstrap interval of each per-user
    difference. Ranks are each score's own (head:h ranks by head h alone: `rank_under`); each
    score's entry also holds each user's rank under it before any removal. `progress`: a tqdm bar
    over users (stderr)."""
    from tqdm.auto import tqdm

    from .stats import bootstrap_ci, wilcoxon_by_user

    H = model.config.n_heads
    merges = list(merges or ["gated"] + [f"head:{h}" for h in range(H)])
    for m in merges:
        _check_merge(model, m)
    rng = np.random.default_rng(seed)
    rows = dataset.splittable_rows()
    rows = rows[[len(dataset.example(r, split)[0]) >= 2 for r in rows]]
    sample = np.sort(rng.choice(rows, min(n_users, len(rows)), replace=False))
    records, first_ranks = [], {m: {} for m in merges}
    for r in (tqdm(sample, desc="attribution", unit="user", leave=False) if progress else sample):
        seq, target = dataset.example(r, split)
        for m in merges:
            res = attribute(model, seq, target, m, n_steps=n_steps)
            curve = deletion_curves(model, res, max_steps=max_steps, n_random=n_random, seed=int(r), mode=mode,
                                    recent=True)
            first_ranks[m][dataset.user_ids[r]] = int(curve.loc[curve["removed"] == 0, "rank"].iloc[0])
            for row in aopc(curve).to_dict("records"):
                records.append(dict(row, user=dataset.user_ids[r], merge=m, delta=res.delta, steps=res.steps,
                                    relative_gap=res.relative_gap, converged=res.converged))
    table = pd.DataFrame(records)
    out = {"users": int(len(sample)), "split": split, "seed": seed, "ig_steps": n_steps, "ig_step_cap": STEP_CAP,
           "ig_tolerance": COMPLETENESS, "max_deletions": max_steps, "random_orders": n_random, "mode": mode,
           "rank_under": "each score's own ranking: gated for 'gated', head h alone for 'head:h'",
           "test": "Wilcoxon signed-rank test (two-sided) of per-user score AOPC, integrated gradients vs attention",
           "scores": {}}
    for m in merges:
        t = table[table["merge"] == m]
        by = {meth: t[t["method"] == meth].set_index("user") for meth in METHODS}
        users = by["attention"].index
        att = by["attention"]["aopc_score"]
        ig = by["integrated gradients"]["aopc_score"].loc[users]
        diff = (ig - att).to_numpy()
        p = wilcoxon_by_user(ig, att)[1]
        ci = {f"ci95_{meth.replace(' ', '_')}_minus_attention": list(bootstrap_ci(
            (by[meth]["aopc_score"].loc[users] - att).to_numpy(), seed=seed)) for meth in METHODS if meth != "attention"}
        out["scores"][m] = {
            **{f"aopc_score_{meth.replace(' ', '_')}": float(by[meth]["aopc_score"].mean()) for meth in METHODS},
            **{f"aopc_rank_{meth.replace(' ', '_')}": float(by[meth]["aopc_rank"].mean()) for meth in METHODS},
            **ci, "ig_beats_attention_share": float((diff > 0).mean()), "p_value": p,
            "mean_abs_completeness_delta": float(t["delta"].abs().mean()),
            "max_relative_completeness_gap": float(t["relative_gap"].max()),
            "max_ig_steps": int(t["steps"].max()), "ig_not_converged": int((~t["converged"]).sum() // len(METHODS)),
            "target_rank_by_user": first_ranks[m]}   # 1-based, under this score, before any removal
    return out
