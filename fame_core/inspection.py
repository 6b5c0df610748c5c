"""One inspection call (SPEC §5): everything the app, notebooks, exports and tests show of a model.

`inspect(model, sequence, target)` runs the model's own forward pass with `return_details=True`
and lays out what it computed: final scores under every merge mode, per-head scores, gates,
every expert's attention, router weights, top-k lists and the target's rank. The analysed
numbers are the trained model's, not a re-implementation beside it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import check_dataset, load_checkpoint
from .data import SequenceDataset, load_dataset
from .errors import DataError
from .evaluate import left_pad


@dataclass
class Inspection:
    """What the model computes for one input sequence (all numpy; items indexed by id).

    sequence:    the input items the model saw (newest max_len of what was given), oldest first
    target:      the item to find, or None
    merge_modes: "gated", "concat", then "head:0".."head:H-1"
    scores:      merge mode -> (n_items+1,) final scores; index 0 (padding) is -inf
    head_scores: (H, n_items+1) per-head scores P^(h)(v) = x_v^(h) · F_t^(h)
    gates:       (H,) gate g at the last position (SASRec: ones, it has no gate)
    attention:   (H, N, L, L) alpha[h, n, i, j]: expert n of head h, position i attending to j
    router:      (H, L, N) beta[h, i, n]: weight of expert n of head h at position i
    top:         merge mode -> item ids, best first (history excluded when exclude_history)
    target_rank: merge mode -> 1-based rank of the target (1 = top), or None without a target
    """

    model_kind: str
    sequence: np.ndarray
    target: int | None
    merge_modes: list[str]
    scores: dict[str, np.ndarray]
    head_scores: np.ndarray
    gates: np.ndarray
    attention: np.ndarray
    router: np.ndarray
    top: dict[str, np.ndarray]
    target_rank: dict[str, int] | None
    exclude_history: bool = True
    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dropped: int = 0  # items older than max_len that the model did not see

    @property
    def n_heads(self) -> int:
        return self.head_scores.shape[0]

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
            "exclude_history": self.exclude_history,
            "dropped": self.dropped,
        }


def _ranked(scores: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    s = scores.copy()
    s[excluded] = -np.inf
    s[0] = -np.inf
    return s


@torch.no_grad()
def inspect(model, sequence, target: int | None = None, top_k: int = 20, exclude_history: bool = True) -> Inspection:
    """Inspect one input sequence (a user's history, or any edited list of item ids)."""
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
    x = left_pad([used], cfg.max_len, device)
    E = model.embed.E.weight
    H = cfg.n_heads
    modes = ["gated", "concat"] + [f"head:{h}" for h in range(H)]
    scores = {}
    for mode in modes:
        u, details = model(x, return_details=True, merge=mode)
        s = (u[0, -1] @ E.T).float().cpu().numpy()
        s[0] = -np.inf
        scores[mode] = s
    F_t = details["F_heads"][0, -1]                                        # (H, d')
    head_scores = torch.einsum("hve,he->hv", model.item_sub_embeddings(), F_t).cpu().numpy()
    head_scores[:, 0] = -np.inf
    excluded = np.unique(seq) if exclude_history else np.zeros(0, dtype=np.int64)
    top, ranks = {}, ({} if target is not None else None)
    for mode in modes:
        ranked = _ranked(scores[mode], excluded)
        top[mode] = np.argsort(-ranked, kind="stable")[:top_k]
        if target is not None:
            t = ranked[int(target)]
            ranks[mode] = int((ranked > t).sum() + (ranked == t).sum())  # ties against the target
    return Inspection(
        model_kind=cfg.model, sequence=used, target=None if target is None else int(target), merge_modes=modes,
        scores=scores, head_scores=head_scores, gates=details["gates"][0, -1].cpu().numpy(),
        attention=details["alpha"][0].cpu().numpy(), router=details["beta"][0].cpu().numpy(),
        top=top, target_rank=ranks, exclude_history=exclude_history, excluded=excluded,
        dropped=int(len(seq) - len(used)))


def user_example(dataset: SequenceDataset, user, split: str = "test") -> tuple[np.ndarray, int | None]:
    """A user's input sequence and target under leave-one-out (user = the source's user id)."""
    return dataset.example(dataset.user_row(user), split)


def recorded_data_path(spec: str, checkpoint_dir) -> str | None:
    """Where a data path recorded in a checkpoint is: as given (absolute, or relative to the
    working directory), else relative to the folders above the checkpoint, nearest first (a
    path recorded as `../shared/data/...` at the repository root then opens from a notebook
    folder too). None when no candidate exists."""
    path = Path(spec).expanduser()
    if path.is_absolute() or path.exists():
        return str(path) if path.exists() else None
    for base in Path(checkpoint_dir).resolve().parents:
        if (base / path).exists():
            return str((base / path).resolve())
    return None


def load(checkpoint_dir, data=None, device: str = "cpu", data_roots=None):
    """Open a checkpoint: returns (model, dataset).

    data: None reads the data set recorded in the checkpoint when it is found with its recorded
    sha256s, at its recorded path or in the data home (`fame_core.datahome`; the synthetic world
    is regenerated from its recorded parameters), and otherwise returns dataset=None: the model
    still opens and inspects any hand-made sequence. data_roots: only read recorded data under
    these folders (the app). A path, spec or SequenceDataset given here must be the data set the
    model was trained on.
    """
    model = load_checkpoint(checkpoint_dir, device=device)
    record = model.dataset_record
    if data is None:
        from .datahome import missing_message, open_recorded
        spec = record.get("spec")
        if record.get("reader") != "synthetic" and isinstance(spec, str) and spec:
            found = recorded_data_path(spec, checkpoint_dir)   # relative paths also from the checkpoint's repository
            if found and found != spec:
                record = dict(record, spec=found)
        data = open_recorded(record, roots=data_roots)
        if data is None:
            print(f"note: {missing_message(record, data_roots)}; opened the model alone "
                  "(pass data=PATH for user histories and item labels)", file=sys.stderr)
            return model, None
    if not isinstance(data, SequenceDataset):
        data = load_dataset(data, kcore_k=record.get("options", {}).get("kcore"))
    check_dataset(record, data, where=f"checkpoint {checkpoint_dir}")
    return model, data


__all__ = ["Inspection", "inspect", "load", "recorded_data_path", "user_example"]
