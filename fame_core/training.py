"""Training (docs/design.md, "Training"): full-softmax cross-entropy, Adam, early stopping, atomic checkpoints, resume.

Targets: every position of a user's training sequence predicts the next item (all-position
training, as SASRec); logits are computed only where there is a target, never on padding, and
a chunk of rows at a time (fame_core/fused_ce.py), never the whole batch's targets x items at once.
Batches hold sequences of similar length (sorted into length buckets, then shuffled), trimmed
to their longest sequence: same loss, about half the work of padding everything to max_len.

Every epoch reseeds from (seed, epoch), so a run resumed after a kill repeats exactly the epochs
an uninterrupted run would have made.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import (check_checkpoint_out, check_dataset, dataset_record, is_complete, load_checkpoint, portable_path,
                         read_config, read_metrics, write_checkpoint)
from .data import SequenceDataset
from .errors import CheckpointError, ConfigError, FameError
from .safe_io import recover_dir
from .evaluate import left_pad
from .fused_ce import linear_cross_entropy
from .models import (FAMEConfig, ModelConfig, SASRec, assign_head_clusters, build_model, config_from_dict,
                     fame_from_sasrec, sasrec_continued)
from .objectives import Batch, Objectives, build_terms, drop_retired, objectives_class, terms_loss
from .options import DEVICE_PATTERN, check, option
from . import distributed
from .sampled import LOSSES, InBatchUniformSampler, bce_loss, one_negative, sampled_softmax_loss

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

SELECT_METRIC = "NDCG@20"


@dataclass
class TrainConfig:
    """How to train: optimiser, early stopping, seed, device, and the optional facet terms."""

    epochs: int = option(200, "at most this many epochs", min=1, max=100_000)
    batch_size: int = option(256, "training sequences per batch", min=1, max=10**6)
    lr: float = option(1e-3, "Adam learning rate", min=0, min_exclusive=True, max=10)
    weight_decay: float = option(0.0, "Adam weight decay", min=0, max=10)
    patience: int = option(10, "stop after this many epochs without a better validation NDCG@20", min=1, max=100_000)
    seed: int = option(0, "random seed (initialisation, batches, dropout)", min=0, max=2**32 - 1)
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N", pattern=DEVICE_PATTERN,
                         expect="auto, cpu, cuda or cuda:N")
    eval_batch_size: int = option(1024, "users per batch when evaluating", min=1, max=10**6)
    init_from: str | None = option(None, "a SASRec checkpoint: FAME is built from it (the paper's pipeline), or "
                                   "with --model sasrec it is trained on with a fresh optimizer (the equal-budget control)")
    warm: bool = option(False, "with --init-from: warm-start expert queries and W_f (see fame_from_sasrec)")
    reinit_last: bool = option(False, "with --model sasrec --init-from: draw the last block afresh except W_K and W_V, "
                               "as FAME's build does (the restart control: is FAME's gain a restart of the last block?)")
    objectives: Objectives = option(factory=lambda: objectives_class()(), cli=False,
                                    help="optional training terms (fame_core/objectives.py), off by default")
    # issue 18 (large catalogues): the full softmax over all items, or the sampled one (fame_core/sampled.py)
    loss: str = option("full", "full softmax over all items; sampled: in-batch + uniform negatives, logQ-corrected; "
                               "bce: the original SASRec's binary cross-entropy with one negative per position",
                       choices=LOSSES)
    negatives: int = option(1024, "with --loss sampled: uniform negatives per batch besides the in-batch ones",
                            min=0, max=10**7)
    # issue 18 (GPU): bfloat16 autocast of the training step's forward and loss (weights, optimizer and
    # evaluation stay float32); on CUDA, and on CPUs with bfloat16 support
    amp: str = option("off", "mixed precision for training: off, or bf16 (torch.autocast)", choices=("off", "bf16"))

    def __post_init__(self):
        check(self)
        if not isinstance(self.objectives, Objectives):
            raise ConfigError(f"objectives must be an objectives_class() instance, got {type(self.objectives).__name__}")


RESUME_MAY_CHANGE = ("device", "eval_batch_size")  # settings that do not change what a run computes


def train_record(tcfg: TrainConfig) -> dict:
    """The JSON record of a TrainConfig, as config.json stores it (tuples become lists)."""
    return json.loads(json.dumps(asdict(tcfg)))


def _saved_train(record) -> dict:
    """A recorded "train" object, with facet_heads as a list (code 0.1.0 stored "genre,actor")."""
    if not isinstance(record, dict):
        return {}
    obj = record.get("objectives")
    if isinstance(obj, dict):
        obj = drop_retired(obj, "the recorded training settings")   # a retired term that was on is refused
        if isinstance(obj.get("facet_heads"), str):
            obj = dict(obj, facet_heads=[f.strip() for f in obj["facet_heads"].split(",") if f.strip()])
        record = dict(record, objectives=obj)
    return record


def _same_file(a, b) -> bool:
    """Whether two recorded paths name one existing file or folder (links followed)."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        return Path(a).exists() and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _differences(old: dict, new: dict, ignore=(), prefix="") -> str:
    """'lr 0.001 -> 0.01, seed 0 -> 1': the settings that differ between two records."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, prefix=f"{prefix}{key}.")
            out += [inner] if inner else []
        elif a != b:
            out.append(f"{prefix}{key} {a!r} -> {b!r}")
    return ", ".join(out)


def _check_resume_state(state, path, tcfg: TrainConfig, term_keys=()) -> None:
    """The resume state's structure, types and ranges, before anything is loaded from it."""
    def bad(why: str):
        raise CheckpointError(f"{path} is not a resume state of this project ({why}); start the run again "
                              "without --resume into a new --out")
    if not isinstance(state, dict):
        bad(f"a {type(state).__name__}, not a dict")
    need = {"model": dict, "optimizer": dict, "epoch": int, "best": float, "best_epoch": int, "bad_epochs": int}
    for key in term_keys:     # the state of each training term that keeps one (the facet probes)
        need[key] = dict
    for key, kind in need.items():
        value = state.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            bad(f"{key} is {type(value).__name__}")
    if not 0 <= state["epoch"] or not -1 <= state["best_epoch"] <= state["epoch"] \
            or not 0 <= state["bad_epochs"] <= state["epoch"] + 1:
        bad(f"epoch {state['epoch']}, best epoch {state['best_epoch']}, bad epochs {state['bad_epochs']} are inconsistent")
    if state["epoch"] >= tcfg.epochs:
        bad(f"epoch {state['epoch']} is not below the run's {tcfg.epochs} epochs")
    best = float(state["best"])
    if state["best_epoch"] == -1 and best != -math.inf or state["best_epoch"] >= 0 and not 0.0 <= best <= 1.0:
        bad(f"best score {best:.3g} is not a validation {SELECT_METRIC} in [0, 1] (or -inf before the first)")
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        bad("model weights are not all tensors")


def resolve_device(name: str) -> torch.device:
    if not isinstance(name, str) or not DEVICE_PATTERN.match(name):
        raise ConfigError(f"--device {name!r}: unknown device; pass auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FameError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


@torch.no_grad()
def item_contexts(model: Recommender, pairs, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Each item's context vector, the mean of the model's user vector u_t over the training positions
    whose next item it is (the item's own scoring vector, x_v for SASRec, where it never is one), and its count as a
    training target. Items that follow similar histories get similar vectors, so k-means clusters of
    them are parts of the catalogue a history can name (experiments/head_pair_check.py: on Sports the
    clusters of x_v itself cannot be named from the history, those of the contexts can)."""
    model.eval()
    n, T = model.config.n_items, model.config.max_len
    E = model.item_embeddings().detach().cpu().double().numpy()     # the same width as u
    sums, counts = np.zeros((n + 1, E.shape[1])), np.zeros(n + 1)
    device = next(model.parameters()).device
    for s in range(0, len(pairs), batch):
        chunk = pairs[s:s + batch]
        inputs = left_pad([x for x, _ in chunk], T, device)
        targets = left_pad([t for _, t in chunk], T, device)
        u = model(inputs).u
        where = targets > 0
        np.add.at(sums, targets[where].cpu().numpy(), u[where].double().cpu().numpy())
        np.add.at(counts, targets[where].cpu().numpy(), 1)
    seen = counts > 0
    sums[seen] /= counts[seen, None]
    sums[~seen] = E[~seen]
    return sums, counts


def training_pairs(dataset: SequenceDataset, max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, next items) of each user's training part, newest max_len positions."""
    pairs = []
    for row in dataset.splittable_rows():
        seq = dataset.example(row, "train")[0]
        if len(seq) >= 2:
            pairs.append((seq[:-1][-max_len:], seq[1:][-max_len:]))
    return pairs


def epoch_batches(pairs, batch_size: int, rng: np.random.Generator):
    """Batches of similar-length sequences, in random order."""
    order = rng.permutation(len(pairs))
    order = order[np.argsort([len(pairs[i][0]) for i in order], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def loss_on_batch(model: Recommender, inputs: torch.Tensor, targets: torch.Tensor, terms=(), candidates=None,
                  loss: str = "full") -> torch.Tensor:
    """Mean cross-entropy of the next item over all items, at positions with a target only, plus
    the optional training terms (`objectives.build_terms`). candidates: (S, log pi_S) for the
    sampled softmax of fame_core/sampled.py instead of the full one; loss "bce": the original
    SASRec objective (one negative per position, fame_core/sampled.py)."""
    where = targets > 0
    out = model(inputs)
    u = out.u
    if candidates is not None:                           # issue 18: sampled softmax
        value = sampled_softmax_loss(u[where], model.item_embeddings(), targets[where], *candidates)
    elif loss == "bce":                                  # issue 15: the original SASRec objective
        E = model.item_embeddings()
        value = bce_loss(u[where], E, targets[where], one_negative(inputs, targets, E.shape[0] - 1)[where])
    else:
        # = F.cross_entropy(u[where] @ E[1:].T, targets - 1) (padding id 0 is not a class), in chunks of
        # rows: the (targets x items) logits are never held whole (fame_core/fused_ce.py)
        value = linear_cross_entropy(u[where], model.item_embeddings()[1:], targets[where] - 1)
    if terms:
        value = value + terms_loss(terms, getattr(model, "module", model), out, Batch(inputs, targets, where))
    return value


def numerics_environment(device, ctx) -> dict:
    """What, beside the seed and the settings, decides a run's floating-point results: the same seed
    with another number of CPU threads gives other weights (reductions are summed in another
    order), so a remake that differs from its record can be told apart from a changed setting."""
    return {"torch": torch.__version__, "device": torch.device(device).type, "threads": torch.get_num_threads(),
            "processes": ctx.world}


def fit(model: Recommender, dataset: SequenceDataset, out, tcfg: TrainConfig, resume: bool = False,
        progress: bool = True, stop_after: int | None = None, extra_config: dict | None = None,
        overwrite: bool = False, allow_changes: bool = False) -> dict:
    """Train `model` on `dataset`, writing the best checkpoint (by validation NDCG@20) to `out`.

    stop_after: end this call after that many epochs as if killed (the resume state stays).
    Returns a summary: best epoch, validation and test metrics of the best model, timings.
    """
    out = Path(out) if resume else check_checkpoint_out(out, overwrite=overwrite)
    if tcfg.loss not in LOSSES or isinstance(tcfg.negatives, bool) or not isinstance(tcfg.negatives, int) \
            or tcfg.negatives < 0:
        raise FameError(f"loss {tcfg.loss!r} with {tcfg.negatives!r} negatives: pass loss 'full', 'sampled' or "
                        "'bce' and a whole number of negatives from 0 up")
    # issue 18: one process, or this rank of a torchrun group (gloo on CPU, NCCL on CUDA)
    ctx = distributed.setup(resolve_device(tcfg.device))
    try:
        return _fit(ctx, model, dataset, out, tcfg, resume, progress, stop_after, extra_config, allow_changes)
    except BaseException:
        # a rank that stops on an error (a NaN every rank agreed on, a kill) tears its group down
        # before it exits: a gloo group left alive can abort the process at interpreter exit
        # ("terminate called without an active exception", SIGABRT) instead of the error
        with contextlib.suppress(Exception):   # the error that stopped the run is the one to see
            ctx.close()
        raise


def _resume(ctx, model: Recommender, dataset, out: Path, tcfg: TrainConfig, stateful, opt, config: dict, allow_changes: bool):
    """Continue a killed run: check the recorded model, data and settings against this call's, load
    the resume state (model, optimizer, each stateful term). Returns (start epoch, best, best epoch,
    bad epochs, best weights, metrics so far, config to write)."""
    device = ctx.device
    if ctx.is_main:
        recover_dir(out, is_complete, clean=True)  # a kill between the fallback renames left the old copy aside
    ctx.barrier()
    state_path = out / "train_state.pt"
    if not state_path.exists():
        if (out / "config.json").exists():
            raise FameError(f"{out}: the run has finished; nothing to resume")
        raise FameError(f"{out}: no run to resume (no train_state.pt); start it without --resume")
    saved_config, saved_data = read_config(out)
    check_dataset(saved_data, dataset, where=str(out))
    try:
        saved_model = config_from_dict(saved_config.get("model"), where=f"{out}/config.json \"model\"")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    if saved_model != model.config:
        changed = _differences(saved_model.to_dict(), model.config.to_dict())
        raise FameError(f"{out} was started with other model settings ({changed}); resume with the same ones")
    # settings added after the run was recorded take their defaults (objectives too: one level down)
    defaults = train_record(TrainConfig())
    saved_train = {**defaults, **_saved_train(saved_config.get("train", {}))}
    if isinstance(saved_train.get("objectives"), dict):
        saved_train["objectives"] = {**defaults["objectives"], **saved_train["objectives"]}
    if _same_file(saved_train.get("init_from"), tcfg.init_from):
        # the base named by another path to the same file (a runs folder reached through a new
        # link) is not a change: the weights it held are in the resume state. A recorded path that
        # no longer exists cannot be compared and counts as changed (the study records resolved paths)
        saved_train["init_from"] = tcfg.init_from
    changed = _differences(saved_train, train_record(tcfg), ignore=RESUME_MAY_CHANGE)
    if changed and not allow_changes:
        raise FameError(f"{out} was started with other training settings ({changed}); resume with the "
                        "recorded ones, or pass --allow-changes to continue with the new ones (recorded)")
    try:
        state = torch.load(state_path, map_location=device, weights_only=True)
    except Exception as e:  # a corrupt file: say which, never unpickle code
        raise CheckpointError(f"{state_path} is corrupt ({e.__class__.__name__})") from None
    _check_resume_state(state, state_path, tcfg, [t.state_key for t in stateful])
    try:
        model.load_state_dict(state["model"])
        for t in stateful:
            t.load_state_dict(state[t.state_key])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{state_path} does not fit this run ({str(e).splitlines()[0][:120]}); "
                              "start the run again without --resume into a new --out") from None
    start, best, best_epoch, bad = state["epoch"] + 1, state["best"], state["best_epoch"], state["bad_epochs"]
    best_weights = load_checkpoint(out).state_dict()
    metrics = read_metrics(out)[:start]
    config = dict(saved_config, status="running", train=train_record(tcfg), seed=tcfg.seed)
    now = numerics_environment(device, ctx)
    # against the environment the run last trained in (a study resumes every epoch: one entry
    # per change, not per epoch); a run begun before environments were recorded gets its first
    last = (config.get("resumed_in_environment") or [{"environment": saved_config.get("environment")}])[-1]
    if last["environment"] != now:   # a remake that differs can then say why
        config["resumed_in_environment"] = config.get("resumed_in_environment", []) + [
            {"epoch": start + 1, "environment": now}]
    if changed:
        config["resumed_with_changes"] = config.get("resumed_with_changes", []) + [
            {"epoch": start + 1, "changes": changed}]
    config.pop("model", None)
    config.pop("code_version", None)

    return start, best, best_epoch, bad, best_weights, metrics, config


def _train_epoch(ctx, model: Recommender, train_model, pairs, sampler, terms, opt, tcfg: TrainConfig, epoch: int, rng,
                 out: Path, progress: bool) -> tuple[float, int, float]:
    """One epoch over the training pairs: (summed loss, targets, seconds) of this process."""
    device = ctx.device
    model.train()
    t0, total, count = time.perf_counter(), 0.0, 0
    batches = epoch_batches(pairs, tcfg.batch_size, rng)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{tcfg.epochs}", disable=None if progress and ctx.is_main else True,
               leave=False)   # None: a bar only on a terminal; logs get the one line per epoch below
    for step, idx in enumerate(bar):
        candidates = None if sampler is None else sampler.candidates(
            np.concatenate([pairs[i][1] for i in idx]), [tcfg.seed, epoch, step])  # the global batch's
        n_global = sum(len(pairs[i][1]) for i in idx)
        idx, weight = ctx.shard(idx)   # this process's rows (all of them in one process)
        inputs = left_pad([pairs[i][0] for i in idx], model.config.max_len, device)
        targets = left_pad([pairs[i][1] for i in idx], model.config.max_len, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tcfg.amp == "bf16"):
            loss = loss_on_batch(train_model, inputs, targets, terms, candidates, tcfg.loss)
        if ctx.any(not torch.isfinite(loss)):     # every process stops here, not only the one that saw it
            seen = f"loss became {loss.item()}" if not torch.isfinite(loss) else \
                f"the loss of another of the {ctx.world} processes became non-finite"
            raise FameError(f"{seen} in epoch {epoch + 1}, step {step + 1}; the last good checkpoint "
                            f"is kept in {out}; lower --lr and pass --resume")
        n = int((targets > 0).sum()) if weight else 0
        opt.zero_grad(set_to_none=True)
        # DDP averages gradients over processes: weighting by this process's share of the
        # batch's targets makes the average the gradient of the whole batch's mean loss
        (loss * (n * ctx.world / n_global) if ctx.active else loss).backward()
        opt.step()
        total, count = total + loss.item() * n, count + n
        bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
    return total, count, time.perf_counter() - t0


def _fit(ctx, model: Recommender, dataset, out, tcfg, resume, progress, stop_after, extra_config, allow_changes) -> dict:
    device = ctx.device
    model.to(device)
    record = dataset_record(dataset, out)   # portable paths: no absolute path of this machine
    terms = build_terms(tcfg.objectives, model, dataset, device)
    stateful = [t for t in terms if t.state_key]
    if stateful and ctx.active:
        raise FameError(f"the {stateful[0].name} term trains in one process only; launch without torchrun")
    params = list(model.parameters()) + [p for t in terms for p in t.parameters()]
    opt = torch.optim.Adam(params, lr=tcfg.lr, betas=(0.9, 0.999), weight_decay=tcfg.weight_decay)
    metrics, start, best, best_epoch, bad = [], 0, -math.inf, -1, 0
    best_weights = copy.deepcopy(model.state_dict())
    config = {"train": train_record(tcfg), "status": "running", "environment": numerics_environment(device, ctx),
              **(extra_config or {})}

    if resume:
        start, best, best_epoch, bad, best_weights, metrics, config = _resume(
            ctx, model, dataset, out, tcfg, stateful, opt, config, allow_changes)

    pairs = training_pairs(dataset, model.config.max_len)
    if not pairs:
        raise FameError(f"data set {dataset.name!r} has no user with a training sequence of 2+ items")
    sampler = InBatchUniformSampler.from_pairs(pairs, model.config.n_items, tcfg.negatives) \
        if tcfg.loss == "sampled" else None
    train_model = ctx.wrap(model)       # DDP with more than one process, the model itself otherwise
    epochs_run = 0
    for epoch in range(start, tcfg.epochs):
        if bad >= tcfg.patience:
            break
        rng = np.random.default_rng([tcfg.seed, epoch])
        torch.manual_seed(tcfg.seed * 100_003 + epoch + 1_000_003 * ctx.rank)
        for t in terms:
            t.start_epoch(model, epoch)
        t0 = time.perf_counter()
        total, count, train_seconds = _train_epoch(ctx, model, train_model, pairs, sampler, terms, opt, tcfg, epoch,
                                                   rng, out, progress)
        total, count = ctx.sum(total, count)
        valid = ctx.evaluate(model, dataset, "valid", tcfg.eval_batch_size)["metrics"]
        improved = valid[SELECT_METRIC] > best
        if improved:
            best, best_epoch, bad = valid[SELECT_METRIC], epoch, 0
            best_weights = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        line = {"epoch": epoch + 1, "loss": total / count, "valid": valid, "train_seconds": round(train_seconds, 3),
                "eval_seconds": round(time.perf_counter() - t0 - train_seconds, 3), "best": improved}
        metrics.append(line)
        if progress and ctx.is_main:
            tqdm.write(f"epoch {epoch + 1}: loss {line['loss']:.4f}  valid HR@10 {valid['HR@10']:.4f} "
                       f"NDCG@20 {valid['NDCG@20']:.4f}{'  *' if improved else ''}  ({train_seconds:.1f}s)")
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                 "best_epoch": best_epoch, "bad_epochs": bad}
        for t in stateful:
            state[t.state_key] = t.state_dict()
        if ctx.is_main:   # rank 0 alone writes
            write_checkpoint(out, model, record, dict(config, best_epoch=best_epoch + 1), metrics,
                             train_state=state, weights=best_weights)
        ctx.barrier()
        epochs_run += 1
        if stop_after is not None and epochs_run >= stop_after:
            ctx.close()
            return {"status": "interrupted", "epochs": epoch + 1, "out": str(out)}

    # the run is over: keep the best weights, drop the resume state, record the test result
    model.load_state_dict(best_weights)
    valid = ctx.evaluate(model, dataset, "valid", tcfg.eval_batch_size)["metrics"]
    test = ctx.evaluate(model, dataset, "test", tcfg.eval_batch_size)["metrics"]
    summary = {"status": "finished", "best_epoch": best_epoch + 1, "epochs": len(metrics), "valid": valid,
               "test": test, "seconds_per_epoch": round(float(np.mean([m["train_seconds"] for m in metrics])), 3)
               if metrics else None}
    if ctx.is_main:
        write_checkpoint(out, model, record, dict(config, **summary), metrics)
    ctx.barrier()
    ctx.close()
    return dict(summary, out=str(out))


def train(dataset: SequenceDataset, model_cfg: ModelConfig, tcfg: TrainConfig, out, resume: bool = False,
          progress: bool = True, stop_after: int | None = None, overwrite: bool = False,
          allow_changes: bool = False) -> dict:
    """Build the model (from scratch, or FAME from a SASRec checkpoint) and fit it.

    out: a new or empty folder, or (with resume) an unfinished run; with overwrite, an existing
    checkpoint may be replaced. A folder holding anything else is refused before training."""
    if not resume:
        check_checkpoint_out(out, overwrite=overwrite)
    torch.manual_seed(tcfg.seed)
    if model_cfg.n_items == 0:
        model_cfg.n_items = dataset.n_items
    if model_cfg.n_items != dataset.n_items:
        raise FameError(f"model has {model_cfg.n_items} items but data set {dataset.name!r} has {dataset.n_items}")
    spec = dataset.source.get("spec")
    extra = {"seed": tcfg.seed, "data": portable_path(spec, out) if isinstance(spec, str) else spec,
             "merge": "gated"}  # merge used to train and select
    if tcfg.reinit_last and (not tcfg.init_from or isinstance(model_cfg, FAMEConfig)):
        raise FameError("--reinit-last restarts the last block of a SASRec trained on: pass it with --model sasrec "
                        "and --init-from SASREC (FAME's build already draws its last layer afresh)")
    if tcfg.init_from and not resume:
        base = load_checkpoint(tcfg.init_from)
        check_dataset(base.provenance.dataset, dataset, where=f"--init-from {tcfg.init_from}")
        if type(base) is not SASRec:
            raise FameError("--init-from takes a SASRec checkpoint (FAME is built from it, or SASRec continued); "
                            f"{tcfg.init_from} holds a {base.config.model} model")
        if isinstance(model_cfg, FAMEConfig):
            model = fame_from_sasrec(base, model_cfg, warm=tcfg.warm, seed=tcfg.seed)
            if model_cfg.head_cluster_bias:      # the heads' parts of the catalogue, from the SASRec's contexts
                contexts, counts = item_contexts(base, training_pairs(dataset, model_cfg.max_len))
                assign_head_clusters(model, contexts, counts + 1.0, seed=tcfg.seed)
        else:  # the equal-budget control: the same SASRec trained on with a fresh optimizer
            model = sasrec_continued(base, model_cfg, reinit_last=tcfg.reinit_last, seed=tcfg.seed)
    else:
        if isinstance(model_cfg, FAMEConfig) and model_cfg.head_cluster_bias and not resume:
            raise FameError("--head-cluster-bias splits the catalogue by the contexts of a trained SASRec's items: "
                            "pass --init-from SASREC_CHECKPOINT with it")
        model = build_model(model_cfg)
    return fit(model, dataset, out, tcfg, resume=resume, progress=progress, stop_after=stop_after, extra_config=extra,
               overwrite=overwrite, allow_changes=allow_changes)


def train_or_resume(dataset: SequenceDataset, model_cfg: ModelConfig, tcfg: TrainConfig, out) -> dict:
    """The run in folder `out`, trained only as far as it still needs: a finished run (config.json
    without train_state.pt) is read and not trained again, an interrupted one (train_state.pt) is
    resumed, anything else trained from the start (progress bars where stderr is a terminal).
    Returns the run's config.json. Scripts that repeat a protocol after a kill (bench/reproduce.py,
    bench/sweep.py, experiments/facet_real.py) call this."""
    import sys

    out = Path(out)
    config = out / "config.json"
    if config.exists() and not (out / "train_state.pt").exists():
        return json.loads(config.read_text())
    resume = (out / "train_state.pt").exists()
    print(f"{'resuming' if resume else 'training'} {out}", file=sys.stderr)
    train(dataset, model_cfg, tcfg, out, resume=resume, progress=sys.stderr.isatty())
    return json.loads(config.read_text())


# Public names of the helpers that compare a run's recorded settings with the asked ones, for
# scripts outside the package (experiments/study.py, experiments/sampled_beauty.py).

def saved_train_record(record) -> dict:
    """A run's recorded "train" object (config.json) as this code writes it: facet_heads a list
    where code 0.1.0 stored "genre,actor"; {} for anything but a dict."""
    return _saved_train(record)


def same_file(a, b) -> bool:
    """Whether two recorded paths name one existing file or folder (links followed); False unless
    both are strings."""
    return _same_file(a, b)


def record_differences(old: dict, new: dict, ignore=(), prefix: str = "") -> str:
    """'lr 0.001 -> 0.01, seed 0 -> 1': the settings that differ between two records (nested dicts
    key by key, their keys prefixed with the outer key), keys in `ignore` left out; '' when none."""
    return _differences(old, new, ignore=ignore, prefix=prefix)
