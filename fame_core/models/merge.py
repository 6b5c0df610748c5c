"""Merge modes: how per-head scores combine into one ranking (SPEC §3)."""

from __future__ import annotations

import torch

MERGE_MODES = ("gated", "concat")  # plus "head:h" for each head h


def merge_weights(merge: str, gates: torch.Tensor) -> torch.Tensor:
    """Per-head weights of a merge mode: gated = g; concat = 1/H each; head:h = one-hot."""
    H = gates.shape[-1]
    if merge == "gated":
        return gates
    if merge == "concat":
        return torch.full_like(gates, 1.0 / H)
    if merge.startswith("head:") and merge[5:].isdigit() and int(merge[5:]) < H:
        w = torch.zeros_like(gates)
        w[..., int(merge[5:])] = 1.0
        return w
    raise ValueError(f"unknown merge mode {merge!r}; use 'gated', 'concat' or 'head:0'..'head:{H - 1}'")
