"""Multi-process training on torch DistributedDataParallel (issue 18).

    torchrun --nproc_per_node=2 -m fame_core train --data ... --out runs/x       (gloo on CPU, NCCL on CUDA)

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `setup` joins the
process group they describe (and does nothing in a plain one-process run). What each process does:

- every process builds the same global batches (same seed, same data) and takes its share of
  each, rows rank, rank + world, ... (DistributedSampler's strided split, per batch); its loss is
  weighted by its share of the batch's targets, so that DDP's gradient average equals the
  gradient of the one-process loss on the whole global batch;
- evaluation ranks users rank, rank + world, ... on each process and gathers the ranks, so every
  process sees the same metrics and takes the same early-stopping decision;
- only rank 0 writes the checkpoint, metrics and resume state (atomically, as in one process);
  after a kill of any rank, torchrun stops the others and `--resume` continues from the last
  finished epoch that rank 0 wrote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .errors import FameError

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes."""
    return int(os.environ.get("RANK", "0") or 0) == 0


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False   # this call started the process group and ends it in close()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This process's rows of a global batch and the weight of its loss (1 in one process).

        A process left without a row (a batch smaller than the world) still takes part with the
        batch's first row at weight 0: every process must run every forward and backward."""
        if not self.active:
            return idx, 1.0
        mine = idx[self.rank::self.world]
        return (mine, 1.0) if len(mine) else (idx[:1], 0.0)

    def wrap(self, model: Recommender):
        """The model to call in training: DDP over it with more than one process."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.device.index] if self.device.type == "cuda" else None
        return _ModelView(DDP(model, device_ids=ids))

    def sum(self, *values: float) -> list[float]:
        """Sums over processes of a few numbers (themselves in one process)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any of them (one all-reduce): so that a
        failure seen by one process stops all of them at the same step, none left waiting in a
        collective the others never reach."""
        if not self.active:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def evaluate(self, model: Recommender, dataset, split: str, batch_size: int) -> dict:
        """`evaluate.evaluate`, its users sharded over processes and the ranks gathered."""
        from .evaluate import evaluate, metrics_from_ranks, rank_sequences
        if not self.active:
            return evaluate(model, dataset, split, batch_size=batch_size)
        rows = dataset.splittable_rows()
        mine = rows[self.rank::self.world]
        examples = [dataset.example(r, split) for r in mine]
        from .errors import FameError

        failed = None
        try:
            local = rank_sequences(model, [x for x, _ in examples], [t for _, t in examples], ("gated",),
                                   True, batch_size)["ranks"]["gated"] if len(mine) else np.zeros(0, np.int64)
        except FameError as err:          # e.g. NaN scores: every process stops, none waits in the gather
            local, failed = np.zeros(0, np.int64), str(err)
        if self.any(failed is not None):
            raise FameError(failed or f"evaluation failed on another of the {self.world} processes "
                                      "(NaN or infinite scores); retrain with a lower --lr or use --resume")
        parts = [None] * self.world
        dist.all_gather_object(parts, np.asarray(local, dtype=np.int64))
        ranks = np.empty(len(rows), dtype=np.int64)
        for r, part in enumerate(parts):
            ranks[r::self.world] = part
        return {"split": split, "users": int(len(ranks)), "mask_history": True, "merge": "gated",
                "metrics": metrics_from_ranks(ranks)}

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


class _ModelView:
    """Calls go through DDP (which synchronises gradients); attributes are the model's."""

    def __init__(self, ddp):
        self._ddp = ddp

    def __call__(self, *args, **kwargs):
        return self._ddp(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._ddp.module, name)


def setup(device: torch.device) -> Context:
    """Join the torchrun process group (gloo on CPU, NCCL on CUDA), or a one-process Context."""
    world = world_size()
    if world <= 1 and not dist.is_initialized():
        return Context(device=device)
    owns = False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
            if key not in os.environ:
                raise FameError(f"WORLD_SIZE={world} but {key} is not set; launch with "
                                "'torchrun --nproc_per_node=N -m fame_core train ...'")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), device=device, owns_group=owns)


__all__ = ["Context", "setup", "world_size", "is_main_process"]
