"""SASRec (Kang & McAuley, 2018): the backbone FAME extends (docs/design.md, "Equations").

Item embedding E (row 0 = padding) + learned positional embedding -> LayerNorm -> dropout ->
L post-LN Transformer blocks with causal, padding-masked multi-head self-attention. The score of
item v after position t is x_v · F_t with the same table E (paper Eq. 6).

Inputs are left-padded with 0. Positions count from the right end (the newest item always sits
at position max_len-1), so a batch may be trimmed to its longest sequence and any amount of left
padding gives the same outputs: padding invariance holds by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..options import option
from .base import ModelConfig, ModelOutput, Recommender, tap


@dataclass
class SASRecConfig(ModelConfig):
    """SASRec's settings: the shared ones (`ModelConfig`) plus the FFN's inner size."""

    name: ClassVar[str] = "sasrec"

    ffn_dim: int = option(0, "FFN inner size; 0 = d (the paper's W1, W2 in R^{d x d})", min=0, max=65_536)
    activation: str = option("relu", "FFN activation: relu (the paper's Eq. 5) or gelu (ICLRec's code, with "
                             "--ffn-dim 256 its 4x wider FFN)", choices=("relu", "gelu"))


def attention_mask(seq: torch.Tensor) -> torch.Tensor:
    """allowed[b, 0, i, j] = j <= i and item j is not padding. Shape (B, 1, T, T)."""
    T = seq.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()
    return (causal[None] & (seq != 0)[:, None, :])[:, None]


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    # A finite fill keeps rows of padding queries (nothing allowed) finite; they are never read.
    return torch.softmax(logits.masked_fill(~allowed, torch.finfo(logits.dtype).min), dim=-1)


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Point-wise FFN(x) = ReLU(x W1 + b1) W2 + b2 (paper Eq. 5 / Eq. 7); GELU in place of ReLU
    with activation="gelu" (ICLRec's code)."""

    def __init__(self, d_in: int, d_inner: int, dropout: float, activation: str = "relu"):
        super().__init__()
        self.W1 = nn.Linear(d_in, d_inner)
        self.W2 = nn.Linear(d_inner, d_in)
        self.dropout = nn.Dropout(dropout)
        self.act = ACTIVATIONS[activation]

    def forward(self, x):
        return self.W2(self.dropout(self.act(self.W1(x))))


class Block(nn.Module):
    """A post-LN Transformer block: h = LN(x + Drop(MHA(x) W_O)); F = LN(h + Drop(FFN(h)))."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        d = cfg.d
        self.H, self.d_head = cfg.n_heads, cfg.d_head
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(d, d) for _ in range(4))
        self.attn_dropout = nn.Dropout(cfg.attn_dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ln_attn = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim or d, cfg.dropout, cfg.activation)
        self.ln_ffn = nn.LayerNorm(d)

    def heads(self, y: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, H, T, d')
        B, T, _ = y.shape
        return y.view(B, T, self.H, self.d_head).transpose(1, 2)

    def forward(self, x, allowed, last_only: bool = False, hook=None):
        """last_only: outputs for the last position only (all a ranking needs), T times cheaper.
        hook: the "attention" hook point (B, H, 1, T, S), one "expert" per head (base.py)."""
        xq = x[:, -1:] if last_only else x
        q, k, v = self.heads(self.W_Q(xq)), self.heads(self.W_K(x)), self.heads(self.W_V(x))
        allowed = allowed[:, :, -q.shape[2]:]
        alpha = masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d_head), allowed)  # (B,H,T,T)
        if hook is not None:
            alpha = hook("attention", alpha[:, :, None])[:, :, 0]
        a = (self.attn_dropout(alpha) @ v).transpose(1, 2).reshape(xq.shape)
        h = self.ln_attn(xq + self.dropout(self.W_O(a)))
        return self.ln_ffn(h + self.dropout(self.ffn(h))), alpha


class Embedder(nn.Module):
    """x_i = Dropout(LayerNorm(E[s_i] + P[position_i])), positions counted from the right."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.max_len = cfg.max_len
        self.E = nn.Embedding(cfg.n_items + 1, cfg.d, padding_idx=0)
        self.P = nn.Embedding(cfg.max_len, cfg.d)
        self.ln = nn.LayerNorm(cfg.d)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, seq):
        T = seq.shape[1]
        if T > self.max_len:
            raise ValueError(f"input of length {T} is longer than max_len={self.max_len}; keep the newest items")
        positions = torch.arange(self.max_len - T, self.max_len, device=seq.device)
        return self.dropout(self.ln(self.E(seq) + self.P(positions)[None]))


def init_weights(module: nn.Module) -> None:
    """Normal(0, 0.02) for linear and embedding weights, zero biases (as RecBole and ICLRec)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SASRec(Recommender):
    config_class = SASRecConfig
    capabilities = frozenset({"heads"})

    def __init__(self, cfg: SASRecConfig):
        super().__init__(cfg)
        self.embed = Embedder(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        init_weights(self)

    def forward(self, seq: torch.Tensor, last_only: bool = False, hook=None) -> ModelOutput:
        """seq: (B, T) left-padded item ids. u = F_t, the last block's output, whose dot product
        with E scores the next item; heads = its H d'-slices, attention = the last block's per-head
        attention (one "expert" per head). SASRec has no gate and no router (None): its score is
        the plain sum over heads of x_v^(h) · F_t^(h) with x_v^(h) the h-th d'-slice of x_v.
        last_only: the last block computes the last position only (T = 1 in every output), which
        is all that ranking needs. hook: see base.py (points embed, block.{l}.out, attention of
        the last block, heads)."""
        allowed = attention_mask(seq)
        x = tap(hook, "embed", self.embed(seq))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, alpha = block(x, allowed, last_only=last_only and i == last, hook=hook if i == last else None)
            x = tap(hook, f"block.{i}.out", x)
        B, T, d = x.shape  # T is 1 with last_only
        H = self.config.n_heads
        heads = tap(hook, "heads", x.view(B, T, H, d // H))
        return ModelOutput(u=x if hook is None else heads.reshape(B, T, d), heads=heads, attention=alpha[:, :, None])

    def item_sub_embeddings(self) -> torch.Tensor:
        """x_v^(h) for SASRec: the h-th d'-slice of x_v. Shape (H, n+1, d')."""
        E = self.embed.E.weight
        return E.view(E.shape[0], self.config.n_heads, -1).transpose(0, 1)

    def combine(self, heads: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Representation whose dot product with x_v is sum_h w_h x_v^(h) · F^(h)."""
        return (weights[..., None] * heads).flatten(-2)
