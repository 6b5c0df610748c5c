"""The one checkpoint format (docs/design.md, "Checkpoint format"): a directory, written atomically,
that never unpickles code.

    weights.safetensors   model weights (float32, or float16 when saved with half=True)
    config.json           model hyper-parameters, training settings, seed, code version, result
    dataset.json          name, n_items, n_users, content fingerprint, reader, spec, file sha256s
    metrics.jsonl         the training log, one JSON line per epoch
    train_state.pt        only while training runs: last epoch's weights and optimizer state for
                          --resume (tensors and numbers only; read with weights_only=True)

A checkpoint is written into a temporary sibling directory and renamed into place, so a reader
(or a kill) never sees half of one. It opens without its data set (`load_checkpoint`); data given
alongside is checked against the recorded fingerprint. `load` opens a checkpoint together with
its data set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._version import __version__ as CODE_VERSION
from .data import SequenceDataset, load_dataset
from .errors import CheckpointError, ConfigError
from .models import build_model, config_from_dict
FILES = ("weights.safetensors", "config.json", "dataset.json")


def dataset_record(dataset: SequenceDataset) -> dict:
    src = dataset.source
    return {"name": dataset.name, "n_items": dataset.n_items, "n_users": dataset.n_users,
            "fingerprint": dataset.fingerprint(), "reader": src.get("reader"), "spec": src.get("spec"),
            "paths": src.get("paths", []), "sha256": src.get("sha256", {}), "options": src.get("options", {})}


def write_checkpoint(directory, model, dataset: dict, config: dict, metrics: list[dict],
                     train_state: dict | None = None, weights: dict | None = None, half: bool = False) -> Path:
    """Write a whole checkpoint atomically (temporary directory, then rename).

    weights: the state dict to store (default: the model's); train_state: resume state or None.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = weights if weights is not None else model.state_dict()
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    save_file(tensors, tmp / "weights.safetensors", metadata={"format": "fame-core", "version": CODE_VERSION})
    full_config = dict(config, model=model.config.to_dict(), code_version=CODE_VERSION)
    (tmp / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")
    (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    (tmp / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    if directory.exists():
        os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply to be a checkpoint record") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path} must hold a JSON object, found {type(record).__name__}")
    return record


def read_config(directory) -> tuple[dict, dict]:
    """config.json and dataset.json of a checkpoint, with clear errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint not found: {directory} (pass a directory written by 'train')")
    missing = [f for f in FILES if not (directory / f).exists()]
    if missing:
        raise CheckpointError(f"{directory} is not a complete checkpoint: missing {', '.join(missing)}")
    return _read_json(directory / "config.json"), _read_json(directory / "dataset.json")


def load_checkpoint(directory, device="cpu"):
    """Model (eval mode, float32) and the checkpoint's records, without its data set."""
    directory = Path(directory)
    config, dataset = read_config(directory)
    if "model" not in config:
        raise CheckpointError(f"{directory}/config.json has no \"model\" record; pass a directory written by 'train'")
    try:
        cfg = config_from_dict(config["model"], where="\"model\"")
    except ConfigError as e:
        raise CheckpointError(f"{directory}/config.json: {e}") from None
    if cfg.n_items < 1:
        raise CheckpointError(f"{directory}/config.json: \"model\" n_items must be >= 1, got {cfg.n_items}")
    model = build_model(cfg)
    try:
        state = load_file(directory / "weights.safetensors")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{directory}/weights.safetensors is corrupt ({e})") from None
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{directory}: weights do not fit the configuration "
                              f"({str(e).splitlines()[0]})") from None
    model.to(device).eval()
    model.checkpoint_dir = str(directory)
    model.dataset_record = dataset
    model.training_record = config
    return model


def read_metrics(directory) -> list[dict]:
    path = Path(directory) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compact_checkpoint(src, dst) -> Path:
    """Copy a finished checkpoint with float16 weights and no resume state, for bundling (about half
    the size). float16 rounding can move a few ranks: re-evaluate the copy before quoting it."""
    src = Path(src)
    if (src / "train_state.pt").exists():
        raise CheckpointError(f"{src} is an unfinished run (train_state.pt present); resume it to the end first")
    config, dataset = read_config(src)
    model = load_checkpoint(src)
    kept = {k: v for k, v in config.items() if k not in ("model", "code_version")}
    kept.update(weights_dtype="float16", compacted_from=str(src))
    return write_checkpoint(dst, model, dataset, kept, read_metrics(src), half=True)


def check_dataset(record: dict, dataset: SequenceDataset, where: str = "checkpoint") -> None:
    """Refuse a data set other than the one the model was trained on."""
    if record.get("n_items") != dataset.n_items or record.get("fingerprint") != dataset.fingerprint():
        raise CheckpointError(
            f"{where} was trained on data set {record.get('name')!r} ({record.get('n_items')} items, "
            f"fingerprint {str(record.get('fingerprint'))[:12]}) but the data given is {dataset.name!r} "
            f"({dataset.n_items} items, fingerprint {dataset.fingerprint()[:12]}); pass the data set it was trained on")


def find_checkpoints(roots, depth: int = 2) -> dict[str, Path]:
    """Checkpoint directories under each root (the root itself included), by a display name:
    the path relative to its root, prefixed with the root's name for roots after the first."""
    found: dict[str, Path] = {}
    for i, root in enumerate(Path(r).expanduser().resolve() for r in roots):
        if not root.is_dir():
            continue
        candidates = [root] + [p for p in sorted(root.glob("*")) if p.is_dir()]
        if depth > 1:
            candidates += [p for p in sorted(root.glob("*/*")) if p.is_dir()]
        for path in candidates:
            if all((path / f).exists() for f in FILES) and not path.name.startswith("."):
                rel = path.relative_to(root).as_posix()
                name = rel if i == 0 else f"{root.name}/{rel}"
                found.setdefault(name if rel != "." else root.name, path)
    return found


def load(checkpoint_dir, data=None, device: str = "cpu"):
    """Open a checkpoint: returns (model, dataset).

    data: None reads the data set recorded in the checkpoint when it can be found (the synthetic
    world is regenerated from its recorded parameters) and otherwise returns dataset=None: the
    model still opens and inspects any hand-made sequence. A path, spec or SequenceDataset given
    here must be the data set the model was trained on.
    """
    model = load_checkpoint(checkpoint_dir, device=device)
    record = model.dataset_record
    if data is None:
        spec = record.get("spec")
        reachable = record.get("reader") == "synthetic" or (spec and Path(spec).exists())
        if not reachable:
            print(f"note: data set {record.get('name')!r} not found at {spec}; opened the model alone "
                  "(pass data=PATH for user histories and item labels)", file=sys.stderr)
            return model, None
        data = spec
    if not isinstance(data, SequenceDataset):
        data = load_dataset(data, kcore_k=record.get("options", {}).get("kcore"))
    check_dataset(record, data, where=f"checkpoint {checkpoint_dir}")
    return model, data
