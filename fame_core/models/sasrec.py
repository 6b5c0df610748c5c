"""SASRec (Kang & McAuley, 2018): the backbone FAME extends (SPEC §3).

Item embedding E (row 0 = padding) + learned positional embedding -> LayerNorm -> dropout ->
L post-LN Transformer blocks with causal, padding-masked multi-head self-attention. The score of
item v after position t is x_v · F_t with the same table E (paper Eq. 6).

Inputs are left-padded with 0. Positions count from the right end (the newest item always sits
at position max_len-1), so a batch may be trimmed to its longest sequence and any amount of left
padding gives the same outputs: padding invariance holds by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .merge import merge_weights


@dataclass
class ModelConfig:
    """Hyper-parameters of SASRec and FAME; one field per symbol of SPEC §3."""

    model: str = "fame"          # "sasrec" or "fame"
    n_items: int = 0             # n; item ids 1..n, 0 is padding
    d: int = 64                  # hidden size
    n_layers: int = 2            # L (FAME replaces the last of them)
    n_heads: int = 2             # H
    n_experts: int = 4           # N, experts per head (FAME only; 1 = "FAME w/o MoE")
    max_len: int = 50            # input length: most recent max_len items
    dropout: float = 0.5         # hidden dropout (embeddings, residual branches)
    attn_dropout: float = 0.5    # dropout on attention probabilities
    ffn_dim: int = 0             # SASRec FFN inner size; 0 = d (the paper's W1, W2 in R^{d x d})
    residual: bool = False       # FAME: add the h-th d'-slice of x_i to f_i^(h) (SPEC §3 option)

    def __post_init__(self):
        if self.model not in ("sasrec", "fame"):
            raise ValueError(f"model must be 'sasrec' or 'fame', not {self.model!r}")
        if self.d % self.n_heads:
            raise ValueError(f"d={self.d} must be divisible by the number of heads H={self.n_heads}")
        if self.n_experts < 1 or self.n_heads < 1 or self.n_layers < 1:
            raise ValueError("heads, experts and layers must be at least 1")

    @property
    def d_head(self) -> int:  # d' = d / H
        return self.d // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


def attention_mask(seq: torch.Tensor) -> torch.Tensor:
    """allowed[b, 0, i, j] = j <= i and item j is not padding. Shape (B, 1, T, T)."""
    T = seq.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()
    return (causal[None] & (seq != 0)[:, None, :])[:, None]


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    # A finite fill keeps rows of padding queries (nothing allowed) finite; they are never read.
    return torch.softmax(logits.masked_fill(~allowed, torch.finfo(logits.dtype).min), dim=-1)


class FeedForward(nn.Module):
    """Point-wise FFN(x) = ReLU(x W1 + b1) W2 + b2 (paper Eq. 5 / Eq. 7)."""

    def __init__(self, d_in: int, d_inner: int, dropout: float):
        super().__init__()
        self.W1 = nn.Linear(d_in, d_inner)
        self.W2 = nn.Linear(d_inner, d_in)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.W2(self.dropout(F.relu(self.W1(x))))


class Block(nn.Module):
    """A post-LN Transformer block: h = LN(x + Drop(MHA(x) W_O)); F = LN(h + Drop(FFN(h)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d
        self.H, self.d_head = cfg.n_heads, cfg.d_head
        self.W_Q, self.W_K, self.W_V, self.W_O = (nn.Linear(d, d) for _ in range(4))
        self.attn_dropout = nn.Dropout(cfg.attn_dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ln_attn = nn.LayerNorm(d)
        self.ffn = FeedForward(d, cfg.ffn_dim or d, cfg.dropout)
        self.ln_ffn = nn.LayerNorm(d)

    def heads(self, y: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, H, T, d')
        B, T, _ = y.shape
        return y.view(B, T, self.H, self.d_head).transpose(1, 2)

    def forward(self, x, allowed, last_only: bool = False):
        """last_only: outputs for the last position only (all a ranking needs), T times cheaper."""
        xq = x[:, -1:] if last_only else x
        q, k, v = self.heads(self.W_Q(xq)), self.heads(self.W_K(x)), self.heads(self.W_V(x))
        allowed = allowed[:, :, -q.shape[2]:]
        alpha = masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d_head), allowed)  # (B,H,T,T)
        a = (self.attn_dropout(alpha) @ v).transpose(1, 2).reshape(xq.shape)
        h = self.ln_attn(xq + self.dropout(self.W_O(a)))
        return self.ln_ffn(h + self.dropout(self.ffn(h))), alpha


class Embedder(nn.Module):
    """x_i = Dropout(LayerNorm(E[s_i] + P[position_i])), positions counted from the right."""

    def __init__(self, cfg: ModelConfig):
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


class SASRec(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = Embedder(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        init_weights(self)

    def forward(self, seq: torch.Tensor, return_details: bool = False, merge: str = "gated", last_only: bool = False):
        """seq: (B, T) left-padded item ids. Returns the user representation u (B, T, d) whose
        dot product with E scores the next item; with return_details, also the last block's
        per-head attention and per-head outputs for inspection.

        SASRec has no gate: its score is the sum over heads of x_v^(h) · F_t^(h) with x_v^(h)
        the h-th d'-slice of x_v, i.e. gates of 1. merge='concat' scales that by 1/H (same
        ranking); merge='head:h' keeps one slice. last_only: the last block computes the last
        position only (T = 1 in every output), which is all that ranking needs."""
        allowed = attention_mask(seq)
        x = self.embed(seq)
        for i, block in enumerate(self.blocks):
            x, alpha = block(x, allowed, last_only=last_only and i == len(self.blocks) - 1)
        if not return_details and merge == "gated":
            return x
        B, T, d = x.shape
        H = self.config.n_heads  # T is 1 with last_only
        details = {
            # SASRec's last layer seen through FAME's lens: H heads, N = 1 expert, no gate
            "alpha": alpha[:, :, None],                       # (B, H, 1, T, T)
            "beta": x.new_ones(B, H, T, 1),                   # (B, H, T, 1)
            "F_heads": x.view(B, T, H, d // H),               # (B, T, H, d')  slices of F_t
            "gates": x.new_ones(B, T, H),                     # score = sum of slice scores
        }
        u = x if merge == "gated" else self.merge(details, merge_weights(merge, details["gates"]))
        return (u, details) if return_details else u

    def item_sub_embeddings(self) -> torch.Tensor:
        """x_v^(h) for SASRec: the h-th d'-slice of x_v. Shape (H, n+1, d')."""
        E = self.embed.E.weight
        return E.view(E.shape[0], self.config.n_heads, -1).transpose(0, 1)

    def merge(self, details: dict, weights: torch.Tensor) -> torch.Tensor:
        """Representation whose dot product with x_v is sum_h w_h x_v^(h) · F^(h)."""
        return (weights[..., None] * details["F_heads"]).flatten(-2)
