"""Named intermediates of a forward pass, TransformerLens style (issue 44): read them, replace them.

    out, cache = run_with_cache(model, seq)                 # every name (or names=[...])
    cache["gate"], cache["head.0"], cache["attention.1.2"]
    out = run_with_hooks(model, seq, {"head.0": lambda t, name: torch.zeros_like(t)})

Names (stable; `hook_names(model)` lists a model's). L blocks, H heads, N experts per head;
T positions (1 with last_only), S = input length; every tensor has the batch first:

    embed                              (B, T, d)   input embeddings x_i (after LayerNorm and dropout)
    block.{l}.out                      (B, T, d)   block l's output, l = 0..L-1; for FAME block L-1
                                                   is the facet layer and its output [F^(1)|...|F^(H)]
    block.{L-1}.expert_query.{h}.{n}   (B, T, d')  q_i(n)^(h), expert n's query in head h (Eq. 12)
    block.{L-1}.expert_out.{h}.{n}     (B, T, d')  f_i(n)^(h), expert n's output in head h (Eq. 15)
    attention.{h}.{n}                  (B, T, S)   alpha(n)^(h) of the last block (Eq. 14; SASRec: n = 0)
    router.{h}                         (B, T, N)   router weights beta^(h) (Eq. 16)
    head.{h}                           (B, T, d')  head h's output F^(h) (Eq. 7; SASRec: the h-th slice)
    gate.logits                        (B, T, H)   the gate's logits (divided by its temperature)
    gate                               (B, T, H)   gate weights g (Eq. 10)
    scores.head.{h}                    (B, n+1)    P^(h)(v) after the last position (Eq. 8), read only
    scores.gated                       (B, n+1)    the model's own scores after the last position, read only

A name exists where the model's `capabilities` give it: expert_query, expert_out need "experts",
router.{h} "router", gate and gate.logits "gate"; the others every model has. Asking a model for
a name it lacks is one ConfigError naming what it has.

How: the models pass each hook point (`fame_core.models.base`, "Hook points": whole tensors such
as "router" (B, H, T, N)) through an optional `hook` argument of `forward`; this module reads and
replaces the slices the names above denote. Without a hook the forward pass is unchanged and
bit-identical (tests/test_interventions.py checks the bundled checkpoints). A replacement
function receives the slice and its name and returns a tensor of the same shape; it propagates
downstream (replacing head.0 changes the gate, which reads the heads).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from .errors import ConfigError

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

# capability each family of names needs (None: every model has it)
_NEEDS = {"expert_query": "experts", "expert_out": "experts", "router": "router", "gate": "gate"}
READ_ONLY = ("scores.",)


def hook_names(model: Recommender) -> list[str]:
    """Every name of `model`, in forward order."""
    cfg, caps = model.config, model.capabilities
    L, H, N = cfg.n_layers, cfg.n_heads, cfg.n_experts
    names = ["embed"] + [f"block.{i}.out" for i in range(L - 1)]
    if "experts" in caps:
        names += [f"block.{L - 1}.expert_query.{h}.{n}" for h in range(H) for n in range(N)]
    names += [f"attention.{h}.{n}" for h in range(H) for n in range(N)]
    if "experts" in caps:
        names += [f"block.{L - 1}.expert_out.{h}.{n}" for h in range(H) for n in range(N)]
    if "router" in caps:
        names += [f"router.{h}" for h in range(H)]
    names += [f"block.{L - 1}.out"] + [f"head.{h}" for h in range(H)]
    if "gate" in caps:
        names += ["gate.logits", "gate"]
    return names + [f"scores.head.{h}" for h in range(H)] + ["scores.gated"]


def _locate(model: Recommender, name: str):
    """(point, index into the point's tensor) of a name; ConfigError for one the model lacks."""
    L = model.config.n_layers
    m = re.fullmatch(r"block\.(\d+)\.(expert_query|expert_out)\.(\d+)\.(\d+)", name)
    if m and int(m[1]) == L - 1:
        return m[2], (slice(None), int(m[3]), int(m[4]))
    m = re.fullmatch(r"attention\.(\d+)\.(\d+)", name)
    if m:
        return "attention", (slice(None), int(m[1]), int(m[2]))
    m = re.fullmatch(r"router\.(\d+)", name)
    if m:
        return "router", (slice(None), int(m[1]))
    m = re.fullmatch(r"head\.(\d+)", name)
    if m:
        return "heads", (slice(None), slice(None), int(m[1]))
    m = re.fullmatch(r"scores\.head\.(\d+)", name)
    if m:
        return "scores.head", (slice(None), int(m[1]))
    return name, ()


def check_names(model: Recommender, names) -> list[str]:
    """The names, each checked against the model's (a ConfigError naming what it has otherwise)."""
    known = hook_names(model)
    known_set = set(known)
    for name in names:
        if name not in known_set:
            kind = type(model).__name__
            family = next((need for key, need in _NEEDS.items() if key in str(name)), None)
            why = (f"{kind} has no {family} (its capabilities: {', '.join(sorted(model.capabilities)) or 'none'})"
                   if family and family not in model.capabilities else f"{kind} has no intermediate {name!r}")
            raise ConfigError(f"{why}; its names are {_summary(known)}")
    return list(names)


def _summary(names) -> str:
    """The names with indices folded: 'embed, block.{0..1}.out, head.{0..1}, ...'."""
    seen, out = {}, []
    for name in names:
        pattern = re.sub(r"\d+", "#", name)
        if pattern not in seen:
            seen[pattern] = [name]
            out.append(pattern)
        else:
            seen[pattern].append(name)
    return ", ".join(seen[p][0] if len(seen[p]) == 1 else p.replace("#", "{i}") for p in out)


def as_batch(model: Recommender, seq) -> torch.Tensor:
    """(B, T) left-padded ids from a tensor, or from one sequence of item ids (its newest max_len)."""
    from .evaluate import left_pad

    device = next(model.parameters()).device
    if isinstance(seq, torch.Tensor) and seq.dim() == 2:
        return seq.to(device)
    return left_pad([np.asarray(seq, dtype=np.int64).reshape(-1)], model.config.max_len, device)


class Hook:
    """The `hook(point, tensor)` a model's forward calls: stores the slices of `names` in `cache`
    and applies `edits` (point -> list of fn(tensor) -> tensor on the whole point tensor, in order)."""

    def __init__(self, model: Recommender, names=(), edits=None):
        self.cache: dict[str, torch.Tensor] = {}
        self.edits = edits or {}
        self.reads: dict[str, list] = {}
        for name in names:
            point, index = _locate(model, name)
            self.reads.setdefault(point, []).append((name, index))

    def __call__(self, point: str, tensor: torch.Tensor) -> torch.Tensor:
        for fn in self.edits.get(point, ()):
            tensor = fn(tensor)
        for name, index in self.reads.get(point, ()):
            self.cache[name] = tensor[index]
        return tensor

    def wants(self, point: str) -> bool:
        return point in self.reads or point in self.edits

    @property
    def active(self) -> bool:
        return bool(self.reads or self.edits)


def slice_edit(index, fn, name):
    """A point edit that replaces the slice `index` by fn(slice, name)."""
    def edit(tensor):
        new = fn(tensor[index], name)
        if tuple(new.shape) != tuple(tensor[index].shape):
            raise ConfigError(f"the hook for {name!r} returned shape {tuple(new.shape)}; it must keep "
                              f"{tuple(tensor[index].shape)}")
        tensor = tensor.clone()
        tensor[index] = new
        return tensor
    return edit


def run(model: Recommender, seq, names=(), edits=None, last_only: bool = False):
    """(ModelOutput, cache) of one forward pass under a `Hook` (names read, point edits applied);
    scores.* names are read after the pass, at the last position."""
    hook = Hook(model, [n for n in names if not n.startswith(READ_ONLY)], edits)
    with torch.no_grad():
        out = model(as_batch(model, seq), last_only=last_only, hook=hook if hook.active else None)
        cache = hook.cache
        if any(n.startswith("scores.head.") for n in names):
            hs = model.head_scores(out)
            for n in names:
                if n.startswith("scores.head."):
                    cache[n] = hs[:, int(n.rsplit(".", 1)[1])]
        if "scores.gated" in names:
            cache["scores.gated"] = model.scores(out, "gated")
    return out, {n: cache[n] for n in names}


def run_with_cache(model: Recommender, seq, names=None, last_only: bool = False):
    """(ModelOutput, {name: tensor}) of one forward pass; names=None caches every name of the model."""
    model.eval()
    names = hook_names(model) if names is None else check_names(model, list(names))
    return run(model, seq, names, last_only=last_only)


def run_with_hooks(model: Recommender, seq, hooks: dict, names=(), last_only: bool = False):
    """(ModelOutput, cache) of one forward pass with each named intermediate in `hooks` replaced by
    hooks[name](tensor, name) (same shape); `names` are cached as in run_with_cache (after the
    replacements at their point)."""
    model.eval()
    check_names(model, list(hooks) + list(names))
    edits: dict[str, list] = {}
    for name, fn in hooks.items():
        if name.startswith(READ_ONLY):
            raise ConfigError(f"{name!r} is read after the forward pass and cannot be replaced; replace "
                              "head.{h} or gate instead")
        point, index = _locate(model, name)
        edits.setdefault(point, []).append(slice_edit(index, fn, name))
    return run(model, seq, list(names), edits, last_only=last_only)


__all__ = ["hook_names", "check_names", "run_with_cache", "run_with_hooks", "run", "Hook", "slice_edit", "as_batch"]
