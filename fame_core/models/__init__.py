"""SASRec and FAME, and the paper's way of building FAME from a trained SASRec."""

from __future__ import annotations

import torch

from .fame import FAME, FacetMoELayer
from .merge import MERGE_MODES, merge_weights
from .sasrec import SASRec, ModelConfig


def build_model(cfg: ModelConfig):
    return FAME(cfg) if cfg.model == "fame" else SASRec(cfg)


@torch.no_grad()
def fame_from_sasrec(sasrec: SASRec, cfg: ModelConfig, warm: bool = False, seed: int = 0) -> FAME:
    """Build FAME from a trained SASRec as the paper does (Sec. 4.4.2).

    Copied: item and positional embeddings, the first L-1 blocks, and the last block's W_K and
    W_V. New, randomly initialised: expert queries, router, FFN', gate, W_f.
    warm=True instead starts every expert query at the pretrained head's W_Q slice plus small
    noise, and W_f^(h) at the selector of the h-th d'-slice, so that FAME starts out computing
    what SASRec's last attention did, per head.
    """
    s = sasrec.config
    for key in ("n_items", "d", "n_layers", "n_heads", "max_len"):
        if getattr(s, key) != getattr(cfg, key):
            raise ValueError(f"--init-from checkpoint has {key}={getattr(s, key)} but FAME was asked for "
                             f"{key}={getattr(cfg, key)}; pass the same value")
    torch.manual_seed(seed)
    fame = FAME(cfg)
    fame.embed.load_state_dict(sasrec.embed.state_dict())
    for mine, theirs in zip(fame.blocks, sasrec.blocks[:-1]):
        mine.load_state_dict(theirs.state_dict())
    last = sasrec.blocks[-1]
    fame.moe.W_K.load_state_dict(last.W_K.state_dict())
    fame.moe.W_V.load_state_dict(last.W_V.state_dict())
    if warm:
        H, N, dh = cfg.n_heads, cfg.n_experts, cfg.d_head
        W, b = last.W_Q.weight.T, last.W_Q.bias          # x W_Q: (d, d), head h = columns of slice h
        for h in range(H):
            cols = slice(h * dh, (h + 1) * dh)
            fame.moe.W_Q[h] = W[:, cols][None] + 0.02 * torch.randn(N, cfg.d, dh)
            fame.moe.b_Q[h] = b[cols][None].expand(N, dh)
            fame.W_f[h].zero_()
            fame.W_f[h][cols] = torch.eye(dh)
    return fame


@torch.no_grad()
def sasrec_continued(sasrec: SASRec, cfg: ModelConfig) -> SASRec:
    """A copy of a trained SASRec to train on (with a fresh optimizer): the equal-budget control
    for FAME, which the paper builds from the same SASRec and trains for further epochs."""
    s = sasrec.config
    for key in ("n_items", "d", "n_layers", "n_heads", "max_len", "d_ff", "activation"):
        if hasattr(s, key) and getattr(s, key) != getattr(cfg, key):
            raise ValueError(f"--init-from checkpoint has {key}={getattr(s, key)} but SASRec was asked for "
                             f"{key}={getattr(cfg, key)}; pass the same value")
    model = SASRec(cfg)
    model.load_state_dict(sasrec.state_dict())
    return model


__all__ = ["FAME", "SASRec", "ModelConfig", "FacetMoELayer", "build_model", "fame_from_sasrec", "sasrec_continued", "merge_weights", "MERGE_MODES"]
