"""Sampled softmax for large catalogues (issue 18): `--loss sampled --negatives K`.

The full softmax costs (positions x items) logits per batch; this objective costs
(positions x candidates), with candidates independent of the catalogue size.

Candidates S of a batch: the distinct target items of the whole (global) batch, the in-batch
negatives of Yi et al. (RecSys 2019, "Sampling-bias-corrected neural modeling for large corpus
item recommendations"), plus K items drawn uniformly with replacement, the mixed negative
sampling of Yang et al. (WWW 2020 Companion, "Mixed negative sampling for learning two-tower
neural networks in recommendations"). In-batch items are popular items, so their logits are
corrected by the log of their probability of being in S (the logQ correction of Yi et al.):

    pi_j = P(j in S) = 1 - (1 - p_j)^M (1 - 1/n)^K       p_j: j's share of all training targets,
                                                          M: targets in the batch, n: items
    loss = mean over positions of  -log softmax_{j in S}(x_j . u_t - log pi_j)[target]

Counted exactly from the training targets (Yi et al. estimate p_j from a stream). The target
is always in S (it is a batch target); every row's other candidates are its negatives. With
K >= n the uniform part covers nearly every item and the loss approaches the full softmax.
S is drawn from a generator seeded by (seed, epoch, batch) and the global batch, so every
process of a multi-process run, and a one-process run, use the same candidates.

`--loss bce` is the original SASRec objective (Kang & McAuley, ICDM 2018, and its reference
code; pmixer/SASRec.pytorch likewise): at each position with a target, one negative item drawn
uniformly from the items the training window does not hold (inputs and targets of the row: the
user's whole training history unless it is longer than max_len + 1), and the binary cross-entropy
-log sigmoid(x_target . u_t) - log sigmoid(-x_negative . u_t), each term averaged over positions.
It is here to test one explanation of the paper's Table 2 (issue 15): that its SASRec row was
trained this way, not with the full softmax.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("full", "sampled", "bce")


class InBatchUniformSampler:
    """Candidates and their log inclusion probabilities for one batch (see the module docstring)."""

    def __init__(self, target_counts: np.ndarray, negatives: int):
        """target_counts: (n+1,) how often each item id is a training target (index 0 unused)."""
        counts = np.asarray(target_counts, dtype=np.float64)
        self.n_items = len(counts) - 1
        self.p = torch.as_tensor(counts / counts.sum(), dtype=torch.float64)
        self.negatives = int(negatives)

    @classmethod
    def from_pairs(cls, pairs, n_items: int, negatives: int) -> "InBatchUniformSampler":
        counts = np.zeros(n_items + 1, dtype=np.int64)
        for _, targets in pairs:
            np.add.at(counts, targets, 1)
        return cls(counts, negatives)

    def candidates(self, batch_targets, seed) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, log pi_S): sorted distinct item ids of the batch targets and the uniform draws.

        batch_targets: every target of the global batch (any shape, 0 = padding, ignored);
        seed: an int or a list of ints fixing the uniform draws."""
        t = torch.as_tensor(np.asarray(batch_targets)).reshape(-1)
        t = t[t > 0]
        g = torch.Generator().manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        drawn = torch.randint(1, self.n_items + 1, (self.negatives,), generator=g)
        S = torch.unique(torch.cat([t, drawn]))
        log_miss = len(t) * torch.log1p(-self.p[S]) + self.negatives * np.log1p(-1.0 / self.n_items)
        log_pi = torch.log(-torch.expm1(log_miss))
        return S, log_pi.float()


def sampled_softmax_loss(u: torch.Tensor, E: torch.Tensor, targets: torch.Tensor, S: torch.Tensor,
                         log_pi: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each row's target among the candidates S, logits x_j . u - log pi_j.

    u: (M, d) representations at positions with a target; E: (n+1, d) item table; targets: (M,)
    item ids, each of them in S; S: (C,) sorted distinct item ids; log_pi: (C,)."""
    S, log_pi = S.to(u.device), log_pi.to(u.device)
    logits = u @ E[S].T - log_pi                      # (M, C)
    column = torch.searchsorted(S, targets)
    if not torch.equal(S[column.clamp(max=len(S) - 1)], targets):
        raise ValueError("every target must be a candidate (S holds the batch's targets)")
    return F.cross_entropy(logits, column, reduction=reduction)


def one_negative(inputs: torch.Tensor, targets: torch.Tensor, n_items: int, generator=None) -> torch.Tensor:
    """(B, T) item ids drawn uniformly from 1..n_items, none of them in its row's inputs or targets
    (redrawn until so; a row holding nearly every item keeps its last draw after 100 tries)."""
    held = torch.cat([inputs, targets], 1)                                  # (B, 2T), 0 = padding
    neg = torch.randint(1, n_items + 1, targets.shape, device=targets.device, generator=generator)
    for _ in range(100):
        clash = (neg[:, :, None] == held[:, None, :]).any(-1)
        if not clash.any():
            break
        neg = torch.where(clash, torch.randint(1, n_items + 1, targets.shape, device=targets.device,
                                               generator=generator), neg)
    return neg


def bce_loss(u: torch.Tensor, E: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """The original SASRec loss: mean of -log sigmoid(x_target . u) plus mean of -log sigmoid(-x_neg . u).

    u: (M, d) at positions with a target; E: (n+1, d); targets, negatives: (M,) item ids."""
    pos = (u * E[targets]).sum(-1)
    neg = (u * E[negatives]).sum(-1)
    return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
        F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))


__all__ = ["LOSSES", "InBatchUniformSampler", "bce_loss", "one_negative", "sampled_softmax_loss"]
