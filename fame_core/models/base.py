"""The contract every model of fame_core answers: a config, one typed output, one way to rank.

    cfg = FAMEConfig(n_items=600)            # a config dataclass per model, checked on creation
    model = build_model(cfg)                 # the registry (fame_core.models.MODELS) picks the class
    out = model(seq)                         # ModelOutput: u, per-head outputs, attention, gate, router
    model.scores(out, "gated")               # (B, n+1) scores after the last position
    model.scores(out, "head:1")              # every merge mode from the same single pass
    model.head_scores(out)                   # (B, H, n+1) P^(h)(v) at the last position
    model(seq, hook=fn)                      # fn(point, tensor) -> tensor at each named point (below)

Merge modes: "gated" is the model's own ranking (the gate g for FAME; the plain sum over heads for
a model without a gate, such as SASRec), "concat" weights the heads equally (1/H each), "head:h"
keeps head h alone. A model without a gate or router reports `None` there, never made-up ones.

Hook points: `forward(seq, last_only, hook)` passes each named intermediate through
`hook(point, tensor)` and computes on with what it returns; with hook=None (the default) nothing
is called and the outputs are bit-identical. Points (in forward order; a model has those its
capabilities give): "embed" (B, T, d), "block.{l}.out" (B, T, d), "expert_query" (B, H, N, T, d'),
"attention" (B, H, N, T, S; the last block's), "expert_out" (B, H, N, T, d'), "router" (B, H, T, N),
"heads" (B, T, H, d'), "gate.logits" and "gate" (B, T, H). `fame_core.hooks` names their slices
("head.1", "attention.0.2", ...) for caching and patching.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..options import check, from_dict, option

MERGE_MODES = ("gated", "concat")  # plus "head:h" for each head h


@dataclass
class ModelConfig:
    """The settings every model shares. Subclasses add their own fields and set `name`."""

    name: ClassVar[str] = ""

    n_items: int = option(0, "n; item ids 1..n, 0 is padding (0 = take it from the data set)", cli=False, min=0,
                         max=10**9)
    d: int = option(64, "hidden size d", cli="--hidden", min=1, max=4096)
    n_layers: int = option(2, "L, number of blocks", cli="--layers", min=1, max=64)
    n_heads: int = option(2, "H, attention heads of each block", cli="--heads", min=1, max=256)
    max_len: int = option(50, "input length: the most recent max_len items", min=1, max=10_000)
    dropout: float = option(0.5, "hidden dropout (embeddings, residual branches)", min=0, max=1, max_exclusive=True)
    attn_dropout: float | None = option(None, "dropout on attention probabilities (default: --dropout)",
                                        min=0, max=1, max_exclusive=True)

    def __post_init__(self):
        check(self)
        if self.attn_dropout is None:
            self.attn_dropout = self.dropout
        if self.d % self.n_heads:
            raise ConfigError(f"d (--hidden) = {self.d} must be divisible by the number of heads "
                              f"n_heads (--heads) = {self.n_heads}; pass --heads dividing {self.d} or --hidden a "
                              f"multiple of {self.n_heads}")

    @property
    def model(self) -> str:
        """The registry name of the model this config builds ("sasrec", "fame", ...)."""
        return self.name

    @property
    def d_head(self) -> int:  # d' = d / H
        return self.d // self.n_heads

    @property
    def n_experts(self) -> int:
        """Experts per head; 1 for a model without experts (FAMEConfig has it as a field)."""
        return 1

    def to_dict(self) -> dict:
        """The JSON record written to a checkpoint's config.json ("model" names the registry entry)."""
        return {"model": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, record: dict, where: str = "model configuration"):
        return from_dict(cls, record, where)


@dataclass
class ModelOutput:
    """What one forward pass computes (T positions; T = 1 with last_only).

    u:             (B, T, d) user representation of the model's own ranking: score(v) = x_v · u_t
    heads:         (B, T, H, d') per-head outputs F_t^(h)
    attention:     (B, H, N, T, S) last layer's attention of each head (and expert; N = 1 without)
    gates:         (B, T, H) gate g, or None for a model without a gate (its score sums the heads)
    router:        (B, H, T, N) router weights beta, or None for a model without experts
    router_logits: (B, H, T, N) the router's logits, or None
    """

    u: torch.Tensor
    heads: torch.Tensor
    attention: torch.Tensor
    gates: torch.Tensor | None = None
    router: torch.Tensor | None = None
    router_logits: torch.Tensor | None = None

    @property
    def n_heads(self) -> int:
        return self.heads.shape[2]

    def head_weights(self, merge: str = "gated") -> torch.Tensor:
        """(B, T, H) per-head weights of a merge mode: gated = g (ones without a gate), concat = 1/H,
        head:h = one-hot."""
        H = self.n_heads
        like = self.heads[..., 0]
        if merge == "gated":
            return self.gates if self.gates is not None else torch.ones_like(like)
        if merge == "concat":
            return torch.full_like(like, 1.0 / H)
        if merge.startswith("head:") and merge[5:].isdigit() and int(merge[5:]) < H:
            w = torch.zeros_like(like)
            w[..., int(merge[5:])] = 1.0
            return w
        raise ConfigError(f"unknown merge mode {merge!r}; use 'gated', 'concat' or 'head:0'..'head:{H - 1}'")


def tap(hook, point: str, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor at a named point of a forward pass, passed through `hook` where one is given."""
    return tensor if hook is None else hook(point, tensor)


def merge_modes(n_heads: int) -> list[str]:
    """Every merge mode of a model with n_heads heads, in the order they are shown."""
    return list(MERGE_MODES) + [f"head:{h}" for h in range(n_heads)]


def check_merge(merge: str, n_heads: int) -> str:
    if merge not in merge_modes(n_heads):
        raise ConfigError(f"unknown merge mode {merge!r}; use 'gated', 'concat' or 'head:0'..'head:{n_heads - 1}'")
    return merge


@dataclass(frozen=True)
class Provenance:
    """Where a model loaded by `fame_core.load` came from (a model built in code has none).

    directory: the checkpoint folder; dataset: its dataset.json (name, reader, spec, sha256s,
    fingerprint, n_items, ...); training: its config.json (settings, status, best epoch, test)."""

    directory: str
    dataset: dict
    training: dict


class Recommender(nn.Module):
    """Base class of every model: subclasses set `config_class`, build their layers from it and
    implement `forward(seq, last_only, hook) -> ModelOutput`, `item_sub_embeddings()` and `combine`."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # what the model has, for code that acts on a part (training terms, interventions, the app):
    # "heads" (per-head outputs and scores), "gate" (a learned gate over heads), "router" and
    # "experts" (a mixture of experts per head). Nothing outside the registry tests a model's name.
    capabilities: ClassVar[frozenset] = frozenset()
    provenance: Provenance | None = None   # set by checkpoint.load_checkpoint

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(cfg).__name__}")
        self.config = cfg

    def forward(self, seq: torch.Tensor, last_only: bool = False, hook=None) -> ModelOutput:  # pragma: no cover
        """hook: None, or fn(point, tensor) -> tensor called at each hook point (module docstring)."""
        raise NotImplementedError

    def item_embeddings(self) -> torch.Tensor:
        """x_v for every item id, (n+1, d); row 0 is padding."""
        return self.embed.E.weight

    def head_item_bias(self) -> torch.Tensor | None:
        """A fixed per-head item bias added to P^(h)(v), (H, n+1), or None (the default: none)."""
        return None

    @property
    def gate_temperature(self) -> float | None:
        """The temperature the gate is read at (None for a model without a gate)."""
        return None

    def item_sub_embeddings(self) -> torch.Tensor:  # pragma: no cover
        """x_v^(h) for every item, (H, n+1, d')."""
        raise NotImplementedError

    def combine(self, heads: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """u with x_v · u = sum_h w_h P^(h)(v), from per-head outputs (B, T, H, d') and weights (B, T, H)."""
        raise NotImplementedError

    def represent(self, out: ModelOutput, merge: str = "gated") -> torch.Tensor:
        """(B, T, d) user representation under a merge mode, from an existing forward pass."""
        if merge == "gated":
            return out.u
        return self.combine(out.heads, out.head_weights(merge))

    def scores(self, out: ModelOutput, merge: str = "gated", position: int = -1) -> torch.Tensor:
        """(B, n+1) scores of every item id after one position under a merge mode (column 0 is
        padding)."""
        return self.represent(out, merge)[:, position] @ self.item_embeddings().T

    def head_scores(self, out: ModelOutput, position: int = -1) -> torch.Tensor:
        """(B, H, n+1) per-head scores P^(h)(v) = x_v^(h) · F_t^(h) at one position."""
        return torch.einsum("hve,bhe->bhv", self.item_sub_embeddings(), out.heads[:, position])
