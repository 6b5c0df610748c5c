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

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._version import __version__ as CODE_VERSION
from .data import SequenceDataset, load_dataset
from .datahome import missing_message, open_recorded
from .errors import CheckpointError, ConfigError
from .models import Provenance, Recommender, build_model, config_from_dict
from .safe_io import MARKER, OutputError, check_output_dir, recover_dir, replace_dir

FILES = ("weights.safetensors", "config.json", "dataset.json")


def repository_of(directory) -> Path | None:
    """The git repository holding `directory` (the nearest folder above it with a .git), or None."""
    here = Path(directory).expanduser().absolute()
    return next((d for d in (here, *here.parents) if (d / ".git").exists()), None)


def portable_path(path, checkpoint_dir=None) -> str:
    """A path as a checkpoint records it: never an absolute path of this machine. Relative to the
    checkpoint's repository where it has one (`../shared/data/amazon/Beauty.txt` from the repository
    root), else relative to the checkpoint folder; the file name alone when no checkpoint folder is
    known. A relative path is kept as given. Found again by `recorded_data_path` (and the file name
    and sha256 by `fame_core.datahome.locate`, in the data home and the data roots)."""
    p = Path(str(path)).expanduser()
    if not p.is_absolute():
        return str(path)
    if checkpoint_dir is None:
        return p.name
    base = repository_of(checkpoint_dir) or Path(checkpoint_dir).expanduser().absolute()
    return os.path.relpath(p.resolve(), base.resolve())


def dataset_record(dataset: SequenceDataset, checkpoint_dir=None) -> dict:
    """dataset.json of a checkpoint written to `checkpoint_dir`: name, sizes, fingerprint, reader,
    spec, file paths (portable: see portable_path), sha256 of each file by name, reader options."""
    src = dataset.source
    spec = src.get("spec")
    if src.get("reader") != "synthetic" and isinstance(spec, str) and spec:
        spec = portable_path(spec, checkpoint_dir)
    return {"name": dataset.name, "n_items": dataset.n_items, "n_users": dataset.n_users,
            "fingerprint": dataset.fingerprint(), "reader": src.get("reader"), "spec": spec,
            "paths": [portable_path(p, checkpoint_dir) for p in src.get("paths", [])],
            "sha256": src.get("sha256", {}), "options": src.get("options", {})}


MAX_WEIGHT = 1e4   # trained weights here stay below 3 (every bundled checkpoint); 3e38 overflows every score
CHECKPOINT_FILES = frozenset(FILES + ("metrics.jsonl", "train_state.pt"))
_OWN_NAMES = CHECKPOINT_FILES | {MARKER}   # the writer's marker, left only by a kill mid-swap


def is_checkpoint(directory) -> bool:
    """Whether `directory` holds only what this project writes into a checkpoint (so that replacing
    it loses nothing the user made): the checkpoint files and nothing else, config.json ours."""
    directory = Path(directory)
    try:
        names = {p.name for p in directory.iterdir()}
        if not names or not names <= _OWN_NAMES or "config.json" not in names:
            return False
        return "code_version" in json.loads((directory / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def is_complete(directory) -> bool:
    """A checkpoint with every file a reader needs (what `recover_dir` may move back)."""
    directory = Path(directory)
    return all((directory / f).is_file() for f in FILES) and is_checkpoint(directory)


def check_checkpoint_out(out, option: str = "--out", overwrite: bool = False) -> Path:
    """Refuse an output path for a new checkpoint before any work: a file, a protected folder, a
    folder with the user's own files (never deleted), or an existing checkpoint (unless overwrite)."""
    out = check_output_dir(out, is_checkpoint, "checkpoint", option)
    recover_dir(out, is_complete, clean=True)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        state = "an unfinished run (pass --resume to continue it" if (out / "train_state.pt").exists() \
            else "a checkpoint (pass --resume only for an unfinished run"
        raise OutputError(f"{option} {out} already holds {state}, --overwrite to replace it, "
                          f"or choose another {option})")
    return out


def write_checkpoint(directory, model: Recommender, dataset: dict, config: dict, metrics: list[dict],
                     train_state: dict | None = None, weights: dict | None = None, half: bool = False) -> Path:
    """Write a whole checkpoint atomically (see safe_io.replace_dir: at every instant `directory`
    holds the old checkpoint or the new one). A folder holding anything but a checkpoint is never
    replaced; a failed write (a full disk) leaves the previous checkpoint as it was.

    weights: the state dict to store (default: the model's); train_state: resume state or None.
    """
    directory = check_output_dir(directory, is_checkpoint, "checkpoint")
    state = weights if weights is not None else model.state_dict()
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    full_config = dict(config, model=model.config.to_dict(), code_version=CODE_VERSION)

    def fill(tmp: Path) -> None:
        save_file(tensors, tmp / "weights.safetensors", metadata={"format": "fame-core", "version": CODE_VERSION})
        (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
        if train_state is not None:
            torch.save(train_state, tmp / "train_state.pt")
        (tmp / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")

    return replace_dir(directory, fill, is_complete)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply to be a checkpoint record; pass a checkpoint written "
                              "by 'train'") from None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: unreadable ({e.__class__.__name__}: {str(e)[:120]})") from None


def read_config(directory) -> tuple[dict, dict]:
    """config.json and dataset.json of a checkpoint, with clear errors."""
    directory = Path(directory)
    recover_dir(directory, is_complete)  # a kill between the fallback renames left the old copy aside
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint not found: {directory} (pass a directory written by 'train')")
    odd = [f for f in CHECKPOINT_FILES if (directory / f).exists() and not (directory / f).is_file()]
    if odd:
        raise CheckpointError(f"{directory}/{odd[0]} is not a regular file; pass a checkpoint written by 'train'")
    missing = [f for f in FILES if not (directory / f).exists()]
    if missing:
        raise CheckpointError(f"{directory} is not a complete checkpoint: missing {', '.join(missing)}")
    config = _read_json(directory / "config.json")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{directory}/config.json must be an object with a 'model' object; "
                              "pass a checkpoint written by 'train'")
    return config, _read_json(directory / "dataset.json")


def load_checkpoint(directory, device="cpu"):
    """Model (eval mode, float32) and the checkpoint's records, without its data set."""
    directory = Path(directory)
    config, dataset = read_config(directory)
    try:
        cfg = config_from_dict(config["model"], where="\"model\"")
    except ConfigError as e:
        raise CheckpointError(f"{directory}/config.json: {e}") from None
    if cfg.n_items < 1:
        raise CheckpointError(f"{directory}/config.json: \"model\" n_items must be >= 1, got {cfg.n_items}")
    check_record(dataset, cfg.n_items, directory)  # before allocating n_items embeddings
    model = build_model(cfg)
    try:
        state = load_file(directory / "weights.safetensors")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{directory}/weights.safetensors is corrupt ({e})") from None
    for name, tensor in state.items():
        if tensor.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{directory}/weights.safetensors: {name} has dtype {tensor.dtype}; "
                                  "a checkpoint stores float32 or float16 weights (pass one written by 'train')")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{directory}/weights.safetensors: {name} holds NaN or infinite values; "
                                  "the model cannot rank (retrain it, or use an earlier checkpoint)")
        if tensor.numel() and float(tensor.abs().max()) > MAX_WEIGHT:
            raise CheckpointError(f"{directory}/weights.safetensors: {name} holds a weight of magnitude above "
                                  f"{MAX_WEIGHT:g} (trained weights stay below 10); its scores would overflow "
                                  "(retrain it, or use an earlier checkpoint)")
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{directory}: weights do not fit the configuration "
                              f"({str(e).splitlines()[0]})") from None
    clusters = getattr(model, "item_cluster", None)     # --head-cluster-bias: whole numbers 0..H-1
    if clusters is not None and not ((clusters == clusters.round()) & (clusters >= 0) & (clusters < cfg.n_heads)).all():
        raise CheckpointError(f"{directory}/weights.safetensors: item_cluster must hold cluster numbers 0..{cfg.n_heads - 1}; "
                              "pass a checkpoint written by 'train'")
    model.to(device).eval()
    model.provenance = Provenance(directory=str(directory), dataset=dataset, training=config)
    return model


WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_record(record, n_items: int, directory) -> None:
    """dataset.json must describe the catalogue the model scores (checked before any label is shown)."""
    if not isinstance(record, dict):
        raise CheckpointError(f"{directory}/dataset.json must hold a JSON object, not {type(record).__name__}; "
                              "pass a checkpoint written by 'train'")
    for key, kind in (("n_items", int), ("n_users", int), ("fingerprint", str), ("name", str)):
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{directory}/dataset.json: {key} must be a {kind.__name__}, not {value!r:.40}; "
                                  "pass a checkpoint written by 'train'")
    if record["n_items"] != n_items:
        raise CheckpointError(f"{directory}/dataset.json describes {record['n_items']} items but the model scores "
                              f"{n_items}; the file belongs to another data set (pass the checkpoint's own dataset.json)")


def read_metrics(directory) -> list[dict]:
    path = Path(directory) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compact_checkpoint(src, dst, overwrite: bool = False, gate_temperature: float | None = None, data=None) -> Path:
    """Copy a finished checkpoint with float16 weights and no resume state, for bundling (about half
    the size). float16 rounding can move a few ranks: re-evaluate the copy before quoting it.
    gate_temperature: a FAME's gate temperature for the copy (FAMEConfig.gate_temperature), chosen
    on validation users by experiments/gate_temperature.py; None keeps the model's. The gated ranking then
    changes, so the copy's recorded validation and test metrics are measured again at the new
    temperature (the data set: `data`, else the one the checkpoint records) and the source's are kept
    beside them as `valid_trained` / `test_trained`."""
    src = Path(src)
    if gate_temperature is not None and not 1e-3 <= gate_temperature <= 1e3:
        raise ConfigError(f"--gate-temperature must be between 0.001 and 1000, got {gate_temperature}; pass the temperature "
                          "chosen by experiments/gate_temperature.py (1 = the paper's gate)")
    if Path(dst).expanduser().absolute().resolve() == src.absolute().resolve():
        raise OutputError(f"--out {dst} is the checkpoint itself; pass another folder for the float16 copy")
    check_checkpoint_out(dst, overwrite=overwrite)
    if (src / "train_state.pt").exists():
        raise CheckpointError(f"{src} is an unfinished run (train_state.pt present); resume it to the end first")
    config, dataset = read_config(src)
    kept = {k: v for k, v in config.items() if k not in ("model", "code_version")}
    kept.update(weights_dtype="float16", compacted_from=portable_path(src.absolute(), dst))
    if gate_temperature is None:
        model = load_checkpoint(src)
    else:
        from .evaluate import evaluate

        model, data = load(src, data=data)
        if "gate" not in model.capabilities:
            raise ConfigError(f"--gate-temperature applies to FAME checkpoints; {src} is a {model.config.name} model "
                              "(leave the option out)")
        if data is None:
            raise CheckpointError(f"--gate-temperature measures the copy's metrics again and needs {src}'s data set; "
                                  "pass --data PATH")
        model.config = dataclasses.replace(model.config, gate_temperature=gate_temperature)   # checked there
        for split in ("valid", "test"):
            if split in config:
                kept.setdefault(f"{split}_trained", config[split])   # a copy of a copy keeps the first record
                kept[split] = evaluate(model, data, split)["metrics"]
        kept.update(gate_temperature_set_by="compact",
                    gate_temperature_trained=config.get("gate_temperature_trained",
                                                        config["model"].get("gate_temperature", 1.0)))
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
            real = path.resolve()  # a symlink inside a root must not reach a checkpoint outside it
            if real != root and root not in real.parents:
                continue
            if all((real / f).is_file() for f in FILES) and not path.name.startswith("."):
                rel = path.relative_to(root).as_posix()
                name = rel if i == 0 else f"{root.name}/{rel}"
                found.setdefault(name if rel != "." else root.name, path)
    return found


def recorded_data_path(spec: str, checkpoint_dir) -> str | None:
    """Where a data path recorded in a checkpoint is: as given (absolute, or relative to the
    working directory), else relative to the checkpoint folder or the folders above it, nearest
    first (a path recorded as `../shared/data/...` at the repository root then opens from a
    notebook folder too). None when no candidate exists."""
    path = Path(spec).expanduser()
    if path.is_absolute() or path.exists():
        return str(path) if path.exists() else None
    here = Path(checkpoint_dir).resolve()
    for base in (here, *here.parents):
        if (base / path).exists():
            return str((base / path).resolve())
    return None


def load(checkpoint_dir, data=None, device: str = "cpu", data_roots=None):
    """Open a checkpoint: returns (model, dataset).

    data: None reads the data set recorded in the checkpoint when it is found with its recorded
    sha256s, at its recorded path or in the data home (`fame_core.datahome`; the synthetic world
    is regenerated from its recorded parameters), and otherwise returns dataset=None: the model
    still opens and inspects any hand-made sequence. data_roots: only read recorded data under
    these folders (the app); a path given with data_roots is opened only under them and only with
    the recorded sha256, before anything is parsed. A path, spec or SequenceDataset given here must
    be the data set the model was trained on.
    """
    model = load_checkpoint(checkpoint_dir, device=device)
    record = model.provenance.dataset
    if data is not None and data_roots is not None and not isinstance(data, SequenceDataset):
        from .datahome import open_given   # a path typed in the app: checked like the recorded one
        data = open_given(record, data, data_roots)
    if data is None:
        spec = record.get("spec")
        if record.get("reader") != "synthetic" and isinstance(spec, str) and spec:
            found = recorded_data_path(spec, checkpoint_dir)   # relative paths also from the checkpoint's repository
            if found and found != spec:
                record = dict(record, spec=found)
            if isinstance(record.get("paths"), list):   # e.g. an item table beside the data file
                record = dict(record, paths=[recorded_data_path(p, checkpoint_dir) or p
                                             if isinstance(p, str) and not Path(p).is_absolute() else p
                                             for p in record["paths"]])
        data = open_recorded(record, roots=data_roots)
        if data is None:
            print(f"note: {missing_message(record, data_roots)}; opened the model alone "
                  "(pass data=PATH for user histories and item labels)", file=sys.stderr)
            return model, None
    if not isinstance(data, SequenceDataset):
        data = load_dataset(data, kcore_k=record.get("options", {}).get("kcore"))
    check_dataset(record, data, where=f"checkpoint {checkpoint_dir}")
    return model, data
