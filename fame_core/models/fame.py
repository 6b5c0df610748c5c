"""FAME: Facet-Aware Multi-Head Mixture-of-Experts (paper Eqs. 7-17; docs/design.md, "Equations").

SASRec with its last block replaced by `FacetMoELayer`. Read next to the equation table of
docs/design.md; each tensor is named after its symbol:

    q_i(n)^(h) = x_i W_Q(n)^(h)                                   (12)
    k_j^(h) = x_j W_K^(h),  v_j^(h) = x_j W_V^(h)                 (13)
    alpha_ij(n)^(h) = softmax_j(q_i(n)^(h) · k_j^(h) / sqrt(d'))  (14)
    f_i(n)^(h) = sum_j alpha_ij(n)^(h) v_j^(h)                     (15)
    beta_i^(h) = softmax([f_i(1)^(h) | ... | f_i(N)^(h)] W_exp^(h)) (16)
    f_i^(h) = sum_n beta_i(n)^(h) f_i(n)^(h)                       (17)
    F_i^(h) = LayerNorm(f_i^(h) + Dropout(FFN'(f_i^(h))))          (7)  FFN' shared by heads
    x_v^(h) = x_v W_f^(h)                                           (9)
    P^(h)(v) = x_v^(h) · F_t^(h)                                    (8)
    g = softmax([F_t^(1) | ... | F_t^(H)] W_g + b_g)                (10)
    P(v) = sum_h g^(h) P^(h)(v)                                     (11)

Because P(v) = x_v · sum_h W_f^(h) (g^(h) F_t^(h)), the model returns that d-vector u_t: full
ranking and the training softmax then cost one (B·T x d)·(d x n) product, as SASRec's do.
Per-head scores are computed only for analysis (`Recommender.head_scores`, `fame_core.inspect`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..options import option
from .base import ModelOutput, Recommender, tap
from .sasrec import Block, Embedder, FeedForward, SASRec, SASRecConfig, attention_mask, init_weights, masked_softmax


@dataclass
class FAMEConfig(SASRecConfig):
    """FAME's settings: SASRec's (its first L-1 blocks are SASRec blocks) plus the facet layer's."""

    name: ClassVar[str] = "fame"

    n_experts: int = option(4, "N, experts per head (1 = \"FAME w/o MoE\")", cli="--experts", min=1, max=256)
    residual: bool = option(False, "add the h-th d'-slice of x_i to f_i^(h) (docs/design.md, \"Options\")")
    head_cluster_bias: float = option(0.0, "L > 0: the catalogue is split into H k-means clusters (of the contexts "
                                      "that lead to each item under the SASRec it is built from) and head h's "
                                      "score of an item is raised by L(1 - 1/H) in "
                                      "cluster h and lowered by L/H elsewhere, so that the heads differ by which "
                                      "part of the catalogue they favour; 0 = off, as the paper", min=0.0, max=1e3)
    gate_temperature: float = option(1.0, "tau: the gate is softmax(W_g [F^(1)|...|F^(H)] / tau), Eq. 10 with a "
                                     "temperature: > 1 softens it towards equal weights, < 1 sharpens it; set on a "
                                     "trained model with 'compact --gate-temperature', chosen on validation users "
                                     "(experiments/gate_temperature.py); 1 = as the paper", cli=False, min=1e-3,
                                     max=1e3)


class FacetMoELayer(nn.Module):
    """The last block: per head, N expert queries over shared keys/values, a router, FFN'."""

    def __init__(self, cfg: FAMEConfig):
        super().__init__()
        d, H, N, dh = cfg.d, cfg.n_heads, cfg.n_experts, cfg.d_head
        self.H, self.N, self.d_head, self.residual = H, N, dh, cfg.residual
        self.W_Q = nn.Parameter(torch.empty(H, N, d, dh))     # expert queries (12)
        self.b_Q = nn.Parameter(torch.zeros(H, N, dh))
        self.W_K = nn.Linear(d, d)                            # (13), head h = columns h*d'..(h+1)*d'
        self.W_V = nn.Linear(d, d)
        self.W_exp = nn.Parameter(torch.empty(H, N * dh, N))  # router (16)
        self.ffn = FeedForward(dh, dh, cfg.dropout, cfg.activation)   # FFN', shared by all heads (7)
        self.ln = nn.LayerNorm(dh)
        self.attn_dropout = nn.Dropout(cfg.attn_dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def heads(self, y):  # (B, T, d) -> (B, H, T, d')
        B, T, _ = y.shape
        return y.view(B, T, self.H, self.d_head).transpose(1, 2)

    def forward(self, x, allowed, last_only: bool = False, hook=None):
        """last_only: queries (and so every output) at the last position only. hook: the points
        expert_query, attention, expert_out and router (base.py)."""
        xq = x[:, -1:] if last_only else x
        q = torch.einsum("btd,hnde->bhnte", xq, self.W_Q) + self.b_Q[:, :, None]    # (B,H,N,T,d')
        q = tap(hook, "expert_query", q)
        k, v = self.heads(self.W_K(x)), self.heads(self.W_V(x))                     # (B,H,T,d')
        logits = torch.einsum("bhnte,bhse->bhnts", q, k) / math.sqrt(self.d_head)
        alpha = tap(hook, "attention", masked_softmax(logits, allowed[:, :, None, -q.shape[3]:]))  # (B,H,N,T,T)
        f_n = torch.einsum("bhnts,bhse->bhnte", self.attn_dropout(alpha), v)         # (B,H,N,T,d')
        f_n = tap(hook, "expert_out", f_n)
        B, H, N, T, dh = f_n.shape
        f_cat = f_n.permute(0, 1, 3, 2, 4).reshape(B, H, T, N * dh)                  # [f(1)|...|f(N)]
        router_logits = torch.einsum("bhtk,hkn->bhtn", f_cat, self.W_exp)
        beta = tap(hook, "router", torch.softmax(router_logits, -1))                 # (B,H,T,N)
        f = torch.einsum("bhtn,bhnte->bhte", beta, f_n)                              # (B,H,T,d')
        if self.residual:
            f = f + self.heads(xq)
        F_heads = self.ln(f + self.dropout(self.ffn(f)))                              # (B,H,T,d')
        return F_heads.transpose(1, 2), alpha, beta, router_logits                    # F: (B,T,H,d')


class FAME(Recommender):
    config_class = FAMEConfig
    capabilities = frozenset({"heads", "gate", "router", "experts"})

    def __init__(self, cfg: FAMEConfig):
        super().__init__(cfg)
        H, d, dh = cfg.n_heads, cfg.d, cfg.d_head
        self.embed = Embedder(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers - 1))
        self.moe = FacetMoELayer(cfg)
        self.W_f = nn.Parameter(torch.empty(H, d, dh))   # item sub-embedding maps (9)
        self.W_g = nn.Linear(H * dh, H)                  # gate (10), bias b_g
        if cfg.head_cluster_bias:
            # c(v), the cluster of every item id (set by `assign_head_clusters`; padding id 0 gets no bias),
            # kept as floats because a checkpoint stores float weights only (whole numbers < H: exact)
            self.register_buffer("item_cluster", torch.zeros(cfg.n_items + 1))
        init_weights(self)
        nn.init.normal_(self.moe.W_Q, std=0.02)
        nn.init.normal_(self.moe.W_exp, std=0.02)
        # x_v^(h) must start at the scale of x_v's slices, or every score starts at ~0
        nn.init.normal_(self.W_f, std=1 / math.sqrt(d))

    def forward(self, seq: torch.Tensor, last_only: bool = False, hook=None) -> ModelOutput:
        """seq: (B, T) left-padded item ids. u (B, T, d) with P(v) = x_v · u_t under the gate,
        plus alpha, beta, the router logits, the per-head outputs F^(h) and the gates g at every
        position. last_only: the FAME layer computes the last position only (T = 1 in every
        output), all that ranking needs. hook: see base.py (every point; block.{L-1}.out is the
        facet layer's [F^(1)|...|F^(H)], then "heads" its per-head view)."""
        allowed = attention_mask(seq)
        x = tap(hook, "embed", self.embed(seq))
        for i, block in enumerate(self.blocks):
            x, _ = block(x, allowed)
            x = tap(hook, f"block.{i}.out", x)
        F_heads, alpha, beta, router_logits = self.moe(x, allowed, last_only, hook)   # F_heads: (B, T, H, d')
        if hook is not None:
            B, T, H, dh = F_heads.shape
            F_heads = hook(f"block.{len(self.blocks)}.out", F_heads.reshape(B, T, H * dh)).reshape(B, T, H, dh)
            F_heads = hook("heads", F_heads)
        # Eq. 10; a temperature (1 in the paper) changes how far the gate moves from equal weights,
        # never which head it favours: trained with it, W_g would absorb it, so it is set after training
        logits = tap(hook, "gate.logits", self.W_g(F_heads.flatten(-2)) / self.config.gate_temperature)
        g = tap(hook, "gate", torch.softmax(logits, dim=-1))   # (B, T, H)
        return ModelOutput(u=self.combine(F_heads, g), heads=F_heads, attention=alpha, gates=g, router=beta,
                           router_logits=router_logits)

    def item_sub_embeddings(self) -> torch.Tensor:
        """x_v^(h) = x_v W_f^(h) for every item. Shape (H, n+1, d')."""
        return torch.einsum("vd,hde->hve", self.embed.E.weight, self.W_f)

    @property
    def gate_temperature(self) -> float:
        return float(self.config.gate_temperature)

    def head_item_bias(self) -> torch.Tensor | None:
        """b^(h)_v = L([c(v) = h] - 1/H), added to P^(h)(v) under --head-cluster-bias (else None). (H, n+1)."""
        L = self.config.head_cluster_bias
        if not L:
            return None
        H = self.config.n_heads
        b = L * (nn.functional.one_hot(self.item_cluster.long(), H).T.to(self.W_f.dtype) - 1.0 / H)
        b[:, 0] = 0.0                                     # padding is never ranked
        return b

    def item_embeddings(self) -> torch.Tensor:
        """The vectors scores are dot products with: x_v, and under --head-cluster-bias the H columns
        b^(h)_v beside it, so that x_v · u plus the gate-weighted bias stays one product (see combine)."""
        b = self.head_item_bias()
        E = self.embed.E.weight
        return E if b is None else torch.cat([E, b.T], 1)

    def combine(self, heads: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """u = sum_h W_f^(h) (w_h F^(h)), so that x_v · u = sum_h w_h P^(h)(v). Under --head-cluster-bias
        the weights w are appended, so that the bias columns of item_embeddings add sum_h w_h b^(h)_v."""
        u = torch.einsum("bth,bthe,hde->btd", weights, heads, self.W_f)
        return u if self.head_item_bias() is None else torch.cat([u, weights.to(u.dtype)], -1)

    def head_scores(self, out: ModelOutput, position: int = -1) -> torch.Tensor:
        """(B, H, n+1) P^(h)(v) = x_v^(h) · F_t^(h) (+ b^(h)_v under --head-cluster-bias)."""
        scores = super().head_scores(out, position)
        b = self.head_item_bias()
        return scores if b is None else scores + b[None]


@torch.no_grad()
def assign_head_clusters(model: FAME, item_vectors, weights, seed: int = 0) -> torch.Tensor:
    """c(v) for --head-cluster-bias: H k-means clusters (scikit-learn, 3 restarts) of `item_vectors`
    (n+1, k; row 0 = padding, ignored), each item weighted by `weights` (n+1,). Training passes each
    item's context vector, the SASRec's mean user vector at the positions whose next item it is, and
    1 + its count as a training target (`fame_core.training.item_contexts`). Kept fixed through
    training: the heads' parts of the catalogue do not move. Returns (and stores) the labels, 0 at
    padding."""
    from sklearn.cluster import KMeans

    X = torch.as_tensor(item_vectors, dtype=torch.float32)[1:].numpy()
    w = torch.as_tensor(weights, dtype=torch.float64)[1:].numpy()
    labels = KMeans(model.config.n_heads, n_init=3, random_state=seed).fit(X, sample_weight=w).labels_
    model.item_cluster.copy_(torch.as_tensor([0, *labels], dtype=torch.float32))
    return model.item_cluster.long()


@torch.no_grad()
def fame_from_sasrec(sasrec: SASRec, cfg: FAMEConfig, warm: bool = False, seed: int = 0) -> FAME:
    """Build FAME from a trained SASRec as the paper does (Sec. 4.4.2).

    Copied: item and positional embeddings, the first L-1 blocks, and the last block's W_K and
    W_V. New, randomly initialised: expert queries, router, FFN', gate, W_f.
    warm=True instead starts every expert query at the pretrained head's W_Q slice plus small
    noise, and W_f^(h) at the selector of the h-th d'-slice, so that FAME starts out computing
    what SASRec's last attention did, per head.
    """
    s = sasrec.config
    for key in ("n_items", "d", "n_layers", "n_heads", "max_len", "ffn_dim", "activation"):
        if getattr(s, key) != getattr(cfg, key):
            raise ConfigError(f"--init-from checkpoint has {key}={getattr(s, key)} but FAME was asked for "
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
