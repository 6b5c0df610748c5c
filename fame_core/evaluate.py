"""Full-ranking evaluation (docs/design.md, "Evaluation protocol"): every item is ranked, no negative sampling.

rank = number of items scored strictly higher than the target plus the other items scored
equal to it (ties go against the target). HR@k = [rank < k], NDCG@k = [rank < k] / log2(rank + 2),
MRR = 1 / (rank + 1), averaged over users. By default the items of the user's history (all
items before the target) are excluded from the ranking, as ICLRec and RecBole do; the padding id
0 is never ranked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import SequenceDataset
from .errors import FameError
from .models import check_merge
from .options import DEVICE_PATTERN, check, option
from .stats import hit_at, ndcg_at

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

KS = (5, 10, 20)


@dataclass
class EvalOptions:
    """The settings of `evaluate` (and of the CLI's evaluate command, generated from these fields)."""

    split: str = option("test", "which held-out item to rank: the validation or the test one", choices=("valid", "test"))
    merge: str = option("gated", "how heads combine: gated, concat or head:h", expect="gated, concat or head:h")
    mask_history: bool = option(True, "leave the user's history items out of the ranking",
                                hidden_aliases=("--include-history",))
    batch_size: int = option(1024, "users per batch", min=1, max=10**6)
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N", pattern=DEVICE_PATTERN,
                         expect="auto, cpu, cuda or cuda:N")

    def __post_init__(self):
        check(self)


def left_pad(sequences, max_len: int, device=None) -> torch.Tensor:
    """Newest max_len items of each sequence, left-padded with 0 to the longest one."""
    cut = [s[-max_len:] for s in sequences]
    width = max(1, max(len(s) for s in cut))
    out = np.zeros((len(cut), width), dtype=np.int64)
    for i, s in enumerate(cut):
        if len(s):
            out[i, width - len(s):] = s
    return torch.from_numpy(out).to(device)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among all columns, ties counted against the target."""
    top = scores.amax(1)  # NaN propagates through amax: one cheap pass instead of two over all scores
    if torch.isnan(top).any() or torch.isposinf(top).any():
        raise FameError("the model produced NaN or infinite scores; its weights are unusable (retrain it, "
                        "or use an earlier checkpoint)")
    t = scores.gather(1, targets[:, None])
    # higher + tied (the target itself included) - 1; one comparison, int32 sum: 3x faster
    return (scores >= t).sum(1, dtype=torch.int32).long() - 1


def metrics_from_ranks(ranks, ks=KS) -> dict:
    """HR@k, NDCG@k for each k and MRR, averaged over the given 0-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) and not (ranks.min() >= 0 and np.isfinite(ranks).all()):
        raise FameError("metrics out of range (a negative or non-finite rank); this is a bug, please report it")
    out = {}
    for k in ks:
        out[f"HR@{k}"] = float(hit_at(ranks, k).mean()) if len(ranks) else 0.0
        out[f"NDCG@{k}"] = float(ndcg_at(ranks, k).mean()) if len(ranks) else 0.0
    out["MRR"] = float((1.0 / (ranks + 1)).mean()) if len(ranks) else 0.0
    bad = {k: v for k, v in out.items() if not 0.0 <= v <= 1.0}  # never print an impossible metric
    if bad:
        raise FameError(f"metrics out of range ({bad}); this is a bug, please report it")
    return out


def mask_items(scores: torch.Tensor, histories) -> None:
    """Set the score of every history item (and of padding) to -inf, in place."""
    rows = np.concatenate([np.full(len(h), i) for i, h in enumerate(histories)]) if histories else []
    cols = np.concatenate(histories) if histories else []
    if len(cols):
        scores[torch.as_tensor(rows, device=scores.device), torch.as_tensor(cols, device=scores.device)] = -torch.inf
    scores[:, 0] = -torch.inf


@torch.no_grad()
def score_last(model: Recommender, sequences, device=None, merge: str = "gated") -> torch.Tensor:
    """Scores over all item ids (B, n+1) after the last item of each input sequence."""
    seq = left_pad(sequences, model.config.max_len, device)
    return model.scores(model(seq, last_only=True), merge)


@torch.no_grad()
def rank_sequences(model: Recommender, inputs, targets, merges=("gated",), mask_history: bool = True, batch_size: int = 1024,
                   progress: bool = False, desc: str = "rank") -> dict:
    """The target's 0-based rank after each input sequence, under each merge mode, with one
    forward pass per batch (similar lengths batched together).

    Returns {"ranks": {merge: (U,)}, and at the last position "gates": (U, H) the head weights of
    the model's own ranking (g; ones for a model without a gate, whose score sums the heads),
    "router": (U, H, N) (N = 1, weight 1, for a model without experts), "heads": (U, H, d') the
    per-head outputs F_t^(h), and "has_gate", "has_router": whether the model has them}."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    cfg = model.config
    for m in merges:
        check_merge(m, cfg.n_heads)
    order = np.argsort([min(len(x), cfg.max_len) for x in inputs], kind="stable")
    ranks = {m: np.empty(len(inputs), dtype=np.int64) for m in merges}
    gates = np.empty((len(inputs), cfg.n_heads), dtype=np.float32)
    router = np.empty((len(inputs), cfg.n_heads, cfg.n_experts), dtype=np.float32)
    heads = np.empty((len(inputs), cfg.n_heads, cfg.d_head), dtype=np.float32)
    has_gate = has_router = False
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=None if progress else True, leave=False):
        idx = order[start:start + batch_size]
        batch = [inputs[i] for i in idx]
        target = torch.tensor([int(targets[i]) for i in idx], device=device)
        out = model(left_pad(batch, cfg.max_len, device), last_only=True)
        has_gate, has_router = out.gates is not None, out.router is not None
        gates[idx] = out.head_weights("gated")[:, -1].cpu().numpy()
        router[idx] = out.router[:, :, -1].cpu().numpy() if has_router else 1.0
        heads[idx] = out.heads[:, -1].cpu().numpy()
        for m in merges:
            u = model.represent(out, m)[:, -1]
            ranks[m][idx] = rank_targets(u, model.item_embeddings(), target, batch if mask_history else []).cpu().numpy()
    model.train(was_training)
    return {"ranks": ranks, "gates": gates, "router": router, "heads": heads, "has_gate": has_gate,
            "has_router": has_router}


def rank_users(model: Recommender, dataset: SequenceDataset, split: str = "test", merges=("gated",), mask_history: bool = True,
               batch_size: int = 1024, progress: bool = False) -> dict:
    """`rank_sequences` for every user with at least 3 items, plus "rows" and input "lengths"."""
    rows = dataset.splittable_rows()
    examples = [dataset.example(r, split) for r in rows]
    inputs, targets = [x for x, _ in examples], [t for _, t in examples]
    out = rank_sequences(model, inputs, targets, merges, mask_history, batch_size, progress, desc=f"rank {split}")
    return dict(out, rows=rows, lengths=np.array([len(x) for x in inputs], dtype=np.int64))


def evaluate(model: Recommender, dataset: SequenceDataset, split: str = "test", mask_history: bool = True,
             batch_size: int = 1024, merge: str = "gated", progress: bool = False,
             return_ranks: bool = False) -> dict:
    """Full-ranking leave-one-out evaluation of every user with at least 3 items.

    Returns {"split", "users", "mask_history", "merge", "metrics": {"HR@5", ..., "MRR"}}
    (and "ranks", one per user in row order, when return_ranks)."""
    ranked = rank_users(model, dataset, split, (merge,), mask_history, batch_size, progress)
    ranks = ranked["ranks"][merge]
    result = {"split": split, "users": int(len(ranks)), "mask_history": mask_history, "merge": merge,
              "metrics": metrics_from_ranks(ranks)}
    if return_ranks:
        result["ranks"] = ranks
    return result


# --- large catalogues (issue 18): items ranked in chunks once the catalogue outgrows one chunk ---

ROW_BLOCK = 128  # rows of users scored at once on a CPU (see rank_targets)


def rank_targets(u: torch.Tensor, E: torch.Tensor, targets: torch.Tensor, histories, item_chunk: int | None = None):
    """0-based target ranks of rows u (B, d) over item ids 0..n (E: (n+1, d)), history items and
    padding masked. A catalogue of at most `item_chunk` ids (default `ranking.ITEM_CHUNK`) is
    scored in one product per block of users (`ROW_BLOCK` rows on a CPU, the batch on a GPU); a
    larger one chunk by chunk (`ranking.streaming_rank`), with the same ranks and memory bounded
    by B x item_chunk."""
    from . import ranking

    chunk = ranking.ITEM_CHUNK if item_chunk is None else item_chunk
    if E.shape[0] <= chunk:
        # On a CPU, ROW_BLOCK rows at a time: their scores stay in cache between the product, the
        # mask and the comparison (3x faster than 1024 rows on Sports); a GPU takes the batch whole.
        step = ROW_BLOCK if u.device.type == "cpu" else max(1, len(u))
        ranks = torch.empty(len(u), dtype=torch.long, device=u.device)
        for i in range(0, len(u), step):
            scores = u[i:i + step] @ E.T
            mask_items(scores, histories[i:i + step])
            ranks[i:i + step] = target_ranks(scores, targets[i:i + step])
        return ranks
    excluded = [np.concatenate([[0], np.asarray(h, dtype=np.int64)]) for h in histories] if len(histories) \
        else [np.zeros(1, dtype=np.int64)] * len(targets)
    ranks, _, _ = ranking.streaming_rank(ranking.embedding_scorer(u, E), E.shape[0], targets, excluded=excluded,
                                         chunk=chunk)
    return ranks
