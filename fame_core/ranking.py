"""Ranking over a catalogue in chunks of items: memory bounded independently of its size.

`streaming_rank` walks the columns (items) in chunks of `chunk`, keeping per row only the count
of items scored at least as high as the target and a running top-k. Its results equal those of
the full score matrix exactly (same ranks, same top-k lists, same tie rules):

    rank  = #{j != target : s_j >= s_target}    (0-based, ties counted against the target;
                                                 = `evaluate.target_ranks` on the full matrix)
    top-k = the k best columns, higher score first, equal scores by lower id first
            (= np.argsort(-s, kind="stable")[:k], as `inspection.inspect` lists them)

Excluded columns (a user's history, the padding id) score -inf, as `evaluate.mask_items` sets.
Peak memory is O(rows x (chunk + k)), never O(rows x items).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .errors import FameError

ITEM_CHUNK = 65_536  # items scored at once: 1024 users x 65536 items x 4 bytes = 256 MiB
COUNT_ROWS = 128     # rows counted at once (_count_at_least): their int64 copy is 128 x 65536 x 8 B = 64 MiB


def _check_finite(scores: torch.Tensor) -> None:
    if scores.numel() == 0:
        return
    top = scores.amax(-1)  # NaN propagates through amax: one pass instead of two
    if torch.isnan(top).any() or torch.isposinf(top).any():
        raise FameError("the model produced NaN or infinite scores; its weights are unusable (retrain it, "
                        "or use an earlier checkpoint)")


class _Excluded:
    """(row, column) pairs set to -inf, sorted by column so that each chunk takes a slice."""

    def __init__(self, excluded, n_rows: int, device):
        if excluded:
            rows = np.concatenate([np.full(len(e), i, dtype=np.int64) for i, e in enumerate(excluded)])
            cols = np.concatenate([np.asarray(e, dtype=np.int64).reshape(-1) for e in excluded])
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
        order = np.argsort(cols, kind="stable")
        self.rows, self.cols, self.device = rows[order], cols[order], device
        self.per_row = [set(np.asarray(e).reshape(-1).tolist()) for e in excluded] if excluded else [set()] * n_rows

    def apply(self, scores: torch.Tensor, lo: int, hi: int) -> None:
        a, b = np.searchsorted(self.cols, [lo, hi])
        if b > a:
            scores[torch.as_tensor(self.rows[a:b], device=self.device),
                   torch.as_tensor(self.cols[a:b] - lo, device=self.device)] = -torch.inf


@torch.no_grad()
def streaming_rank(score_cols: Callable[[torch.Tensor], torch.Tensor], n_cols: int, targets=None, k: int = 0,
                   excluded=None, chunk: int = ITEM_CHUNK, n_rows: int | None = None):
    """Target ranks and top-k over n_cols columns, scored `chunk` columns at a time.

    score_cols(cols) -> (rows, len(cols)) scores of the given column ids (a 1-D LongTensor);
    targets: (rows,) column ids or None; excluded: per row, column ids scored -inf (or None).
    Returns (ranks (rows,) int64 or None, top_ids (rows, k) int64, top_scores (rows, k)).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    device = None
    t_score = None
    if targets is not None:
        targets = torch.as_tensor(targets, dtype=torch.int64)
        uniq, inverse = torch.unique(targets, return_inverse=True)
        s = score_cols(uniq.to(_device_of(score_cols, uniq)))
        device = s.device
        targets, inverse = targets.to(device), inverse.to(device)
        t_score = s.gather(1, inverse[:, None])[:, 0].clone()
        n_rows = len(targets)
        excl = _Excluded(excluded, n_rows, device)
        for r, (t, ex) in enumerate(zip(targets.tolist(), excl.per_row)):
            if t in ex:
                t_score[r] = -torch.inf
        _check_finite(t_score)
    counts = None
    top_ids = top_vals = None
    for lo in range(0, n_cols, chunk):
        hi = min(n_cols, lo + chunk)
        cols = torch.arange(lo, hi)
        scores = score_cols(cols if device is None else cols.to(device))
        if device is None:
            device = scores.device
            n_rows = scores.shape[0]
            excl = _Excluded(excluded, n_rows, device)
        cols = cols.to(device)
        excl.apply(scores, lo, hi)
        _check_finite(scores)
        if t_score is not None:
            c = _count_at_least(scores, t_score, targets - lo)   # the target itself is not counted
            counts = c if counts is None else counts + c
        if k:
            ids = cols[None, :].expand(scores.shape[0], -1)
            if top_vals is not None:  # running best (lower ids) first: a stable sort keeps id order in ties
                scores, ids = torch.cat([top_vals, scores], 1), torch.cat([top_ids, ids], 1)
            vals, order = torch.sort(scores, dim=1, descending=True, stable=True)
            top_vals, top_ids = vals[:, :k], ids.gather(1, order[:, :k])
        scores = ids = vals = order = None   # freed before the next chunk is scored: one chunk held, not two
    if top_ids is None:
        rows = n_rows or 0
        top_ids = torch.zeros((rows, 0), dtype=torch.int64)
        top_vals = torch.zeros((rows, 0))
    return counts, top_ids, top_vals


def _count_at_least(scores: torch.Tensor, t_score: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Per row r, #{j != own[r] : scores[r, j] >= t_score[r]} as int64 (own[r]: the target's column
    in this chunk, or outside 0..width-1), COUNT_ROWS rows at a time: torch sums a bool tensor by
    first copying it whole to int64 (8 bytes an entry: 512 MiB for 1024 x 65,536, twice the scores
    it counts), and the comparison and target masks are as many bools again; per block of rows
    they take COUNT_ROWS x chunk x (8 + 1) bytes (72 MiB at most)."""
    rows, width = scores.shape
    out = torch.empty(rows, dtype=torch.int64, device=scores.device)
    for s in range(0, rows, COUNT_ROWS):
        ge = scores[s:s + COUNT_ROWS] >= t_score[s:s + COUNT_ROWS, None]
        o = own[s:s + COUNT_ROWS]
        inside = ((o >= 0) & (o < width)).nonzero()[:, 0]
        ge[inside, o[inside]] = False
        torch.sum(ge, 1, dtype=torch.int64, out=out[s:s + COUNT_ROWS])
    return out


def _device_of(score_cols, fallback: torch.Tensor):
    return getattr(score_cols, "device", fallback.device)


def embedding_scorer(u: torch.Tensor, E: torch.Tensor):
    """score_cols for dot-product models: scores of rows u (B, d) against rows cols of E."""
    def score_cols(cols: torch.Tensor) -> torch.Tensor:
        return u @ E[cols].T
    score_cols.device = E.device
    return score_cols


__all__ = ["ITEM_CHUNK", "streaming_rank", "embedding_scorer"]
