"""One inspection call: everything the app, notebooks, exports and tests show of a model.

`inspect(model, sequence, target)` runs the model's own forward pass once and lays out what it
computed (`ModelOutput`): final scores under every merge mode, per-head scores, gates, every
expert's attention, router weights, top-k lists and the target's rank. The analysed numbers are
the trained model's, not a re-implementation beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .checkpoint import load, recorded_data_path  # noqa: F401  (fame_core.inspection.load, before it moved)
from .data import SequenceDataset
from .errors import DataError, FameError
from . import ranking
from .evaluate import left_pad
from .models import merge_modes

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender


@dataclass
class Inspection:
    """What the model computes for one input sequence (all numpy; items indexed by id).

    sequence:    the input items the model saw (newest max_len of what was given), oldest first
    target:      the item to find, or None
    merge_modes: "gated", "concat", then "head:0".."head:H-1"
    scores:      merge mode -> (n_items+1,) final scores; index 0 (padding) is -inf. None for a
                 catalogue of more than `ranking.ITEM_CHUNK` ids: its top lists and target ranks
                 are then found chunk by chunk (memory bounded by the chunk, not the catalogue)
    head_scores: (H, n_items+1) per-head scores P^(h)(v) = x_v^(h) · F_t^(h) (None likewise)
    gates:       (H,) per-head weights of the model's own ("gated") ranking at the last position:
                 the gate g, or ones for a model without a gate (has_gate False; SASRec sums heads)
    attention:   (H, N, L, L) alpha[h, n, i, j]: expert n of head h, position i attending to j
    router:      (H, L, N) beta[h, i, n]: weight of expert n of head h at position i (a model
                 without experts, has_router False: N = 1 with weight 1)
    top:         merge mode -> item ids, best first (history masked when mask_history)
    target_rank: merge mode -> 1-based rank of the target (1 = top), or None without a target
    """

    model_kind: str
    sequence: np.ndarray
    target: int | None
    merge_modes: list[str]
    scores: dict[str, np.ndarray] | None
    head_scores: np.ndarray | None
    gates: np.ndarray
    attention: np.ndarray
    router: np.ndarray
    top: dict[str, np.ndarray]
    target_rank: dict[str, int] | None
    mask_history: bool = True
    has_gate: bool = True
    has_router: bool = True
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dropped: int = 0  # items older than max_len that the model did not see

    @property
    def n_heads(self) -> int:
        return self.gates.shape[0]

    @property
    def n_experts(self) -> int:
        return self.attention.shape[1]

    def to_dict(self, top_k: int | None = None) -> dict:
        """Plain JSON-ready data (scores and full attention maps left out: they are large)."""
        k = top_k or max(len(v) for v in self.top.values())
        return {
            "model": self.model_kind,
            "sequence": self.sequence.tolist(),
            "target": self.target,
            "gates": self.gates.tolist(),
            "top": {m: v[:k].tolist() for m, v in self.top.items()},
            "target_rank": self.target_rank,
            "attention_last": self.attention[:, :, -1, :].tolist(),
            "router_last": self.router[:, -1, :].tolist(),
            "mask_history": self.mask_history,
            "has_gate": self.has_gate,
            "has_router": self.has_router,
            "dropped": self.dropped,
        }


def _ranked(scores: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    s = scores.copy()
    s[excluded] = -np.inf
    s[0] = -np.inf
    return s


@torch.no_grad()
def inspect(model: Recommender, sequence, target: int | None = None, top_k: int = 20, mask_history: bool = True) -> Inspection:
    """Inspect one input sequence (a user's history, or any edited list of item ids): one forward
    pass, every merge mode read from it."""
    cfg = model.config
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise DataError(f"top_k must be a whole number of at least 1, not {top_k!r}")
    seq = np.asarray(sequence, dtype=np.int64).reshape(-1)
    if seq.size == 0:
        raise DataError("the input sequence is empty; give at least one item id")
    bad = seq[(seq < 1) | (seq > cfg.n_items)]
    if bad.size:
        raise DataError(f"item id {int(bad[0])} is not an item of this model (ids 1..{cfg.n_items})")
    if target is not None and not 1 <= int(target) <= cfg.n_items:
        raise DataError(f"target {target} is not an item of this model (ids 1..{cfg.n_items})")
    model.eval()
    device = next(model.parameters()).device
    used = seq[-cfg.max_len:]
    out = model(left_pad([used], cfg.max_len, device))
    E = model.item_embeddings()
    modes = merge_modes(cfg.n_heads)
    excluded = np.unique(seq) if mask_history else np.zeros(0, dtype=np.int64)
    top, ranks = {}, ({} if target is not None else None)
    if E.shape[0] > ranking.ITEM_CHUNK:       # a large catalogue: no full score vector is kept
        scores = head_scores = None
        for mode in modes:
            r, ids, _ = ranking.streaming_rank(ranking.embedding_scorer(model.represent(out, mode)[:, -1], E), E.shape[0],
                                               targets=None if target is None else [int(target)], k=top_k,
                                               excluded=[np.concatenate([[0], excluded])],
                                               chunk=ranking.ITEM_CHUNK)
            top[mode] = ids[0].cpu().numpy()
            if target is not None:
                ranks[mode] = int(r[0]) + 1                  # 1-based, ties against the target
    else:
        scores = {}
        for mode in modes:
            s = (model.represent(out, mode)[0, -1] @ E.T).float().cpu().numpy()
            if not np.isfinite(s[1:]).all():   # as the chunked path and evaluate refuse them
                raise FameError("the model produced NaN or infinite scores; its weights are unusable (retrain "
                                "it, or use an earlier checkpoint)")
            s[0] = -np.inf
            scores[mode] = s
        head_scores = model.head_scores(out)[0].cpu().numpy()
        head_scores[:, 0] = -np.inf
        for mode in modes:
            ranked = _ranked(scores[mode], excluded)
            top[mode] = np.argsort(-ranked, kind="stable")[:top_k]
            if target is not None:
                t = ranked[int(target)]
                ranks[mode] = int((ranked > t).sum() + (ranked == t).sum())  # ties against the target
    router = (out.router[0].cpu().numpy() if out.router is not None
              else np.ones((cfg.n_heads, out.heads.shape[1], 1), dtype=np.float32))
    return Inspection(
        model_kind=cfg.model, sequence=used, target=None if target is None else int(target), merge_modes=modes,
        scores=scores, head_scores=head_scores, gates=out.head_weights("gated")[0, -1].cpu().numpy(),
        attention=out.attention[0].cpu().numpy(), router=router,
        top=top, target_rank=ranks, mask_history=mask_history, has_gate=out.gates is not None,
        has_router=out.router is not None, excluded=excluded, dropped=int(len(seq) - len(used)))


def user_example(dataset: SequenceDataset, user, split: str = "test") -> tuple[np.ndarray, int | None]:
    """A user's input sequence and target under leave-one-out (user = the source's user id)."""
    return dataset.example(dataset.user_row(user), split)


__all__ = ["Inspection", "inspect", "load", "user_example"]
