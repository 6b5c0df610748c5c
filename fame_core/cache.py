"""A disk cache for slow analyses of a checkpoint (facet checks, UMAP maps), so that a restart of
the app does not recompute them.

Results live in `$FAME_CACHE` (default `~/.cache/fame`), in one folder per checkpoint
fingerprint: the sha256 of the checkpoint's weights, config and data record (which holds the data
set's fingerprint), so a retrained or edited checkpoint never reads stale results. Nothing here
needs managing: delete the folder to start afresh. Values are JSON or .npy (never pickles), each
written atomically; an unwritable cache folder only means recomputing.

Every value is verified when read (issue 39): a JSON value sits in an envelope with the sha256
of its canonical text, an array beside a sidecar with the sha256 of its file, dtype and shape;
`check(value)` (optional, per caller) tests types and ranges. Anything that fails (a damaged or
edited file, a list where a record belongs, nesting too deep) is a miss: recomputed, rewritten, and
said once on stderr. The sha256 finds damage and careless edits, not a deliberate forger who
recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .checkpoint import CODE_VERSION, FILES


def cache_root() -> Path:
    return Path(os.environ.get("FAME_CACHE") or Path.home() / ".cache" / "fame")


@lru_cache(maxsize=64)
def _fingerprint(path: str, stamp: tuple) -> str:
    h = hashlib.sha256(CODE_VERSION.encode())
    for name in FILES:
        with open(Path(path) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def checkpoint_fingerprint(path) -> str:
    """sha256 of the checkpoint's files (recomputed only when their sizes or times change)."""
    path = Path(path).resolve()
    stamp = tuple((n, (path / n).stat().st_size, (path / n).stat().st_mtime_ns) for n in FILES)
    return _fingerprint(str(path), stamp)


def _folder(checkpoint) -> Path:
    return cache_root() / checkpoint_fingerprint(checkpoint)[:32]


def _write(path: Path, write: Callable[[Path], None]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass   # a read-only home or a full disk: the value is simply recomputed next time


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


ENVELOPE = "fame-cache/1"


def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, default=_plain, allow_nan=True).encode()


def _note(path: Path, why: str) -> None:
    print(f"note: the cached {path.name} failed verification ({why}); recomputed", file=sys.stderr)


def _read_json(path: Path, check):
    """The verified value stored at `path`, or raise ValueError saying why not."""
    try:
        stored = json.loads(path.read_text())
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(stored, dict) or stored.get("format") != ENVELOPE or "value" not in stored:
        raise ValueError("not a cache record")
    value = stored["value"]
    if stored.get("sha256") != _digest(_canonical(value)):
        raise ValueError("its sha256 does not match its content")
    if isinstance(value, dict) and value.get("__frame__"):
        split = value.get("split")
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list) or not isinstance(split.get("data"), list):
            raise ValueError("not a table")
        value = pd.DataFrame(**split)
    if check is not None and not check(value):
        raise ValueError("its values are out of range")
    return value


def cached_json(checkpoint, name: str, compute: Callable[[], object], check: Callable[[object], bool] | None = None):
    """compute() once per checkpoint: JSON-ready data (dicts, lists, numbers, None) or a
    DataFrame; later calls (also after a restart) read it from disk, verified (module doc);
    check(value) -> bool: the caller's test of a value read back."""
    path = _folder(checkpoint) / f"{_safe(name)}.json"
    if path.is_file():
        try:
            return _read_json(path, check)
        except (OSError, ValueError, TypeError, KeyError) as e:
            _note(path, str(e) if isinstance(e, ValueError) else e.__class__.__name__)
    value = compute()
    if isinstance(value, pd.DataFrame):
        stored = {"__frame__": True, "split": json.loads(value.to_json(orient="split", index=False))}
        stored["split"].pop("index", None)
    else:
        stored = json.loads(json.dumps(value, default=_plain))   # the same types as a read from disk
    _write(path, lambda p: p.write_text(json.dumps({"format": ENVELOPE, "sha256": _digest(_canonical(stored)),
                                                    "value": stored}, default=_plain)))
    if isinstance(value, pd.DataFrame):
        return pd.DataFrame(**stored["split"])
    return stored


def _read_array(path: Path, check) -> np.ndarray:
    side = json.loads(path.with_suffix(".npy.json").read_text())
    if not isinstance(side, dict) or side.get("format") != ENVELOPE:
        raise ValueError("no cache record beside it")
    if side.get("sha256") != _digest(path.read_bytes()):
        raise ValueError("its sha256 does not match its content")
    value = np.load(path, allow_pickle=False)
    if value.dtype.kind not in "biuf" or list(value.shape) != side.get("shape") or str(value.dtype) != side.get("dtype"):
        raise ValueError("its dtype or shape is not the recorded one")
    if check is not None and not check(value):
        raise ValueError("its values are out of range")
    return value


def cached_array(checkpoint, name: str, compute: Callable[[], np.ndarray],
                 check: Callable[[np.ndarray], bool] | None = None) -> np.ndarray:
    """compute() once per checkpoint: a numeric array, kept as .npy with a verified sidecar."""
    path = _folder(checkpoint) / f"{_safe(name)}.npy"
    if path.is_file():
        try:
            return _read_array(path, check)
        except (OSError, ValueError, TypeError, RecursionError) as e:
            _note(path, str(e) if isinstance(e, ValueError) else e.__class__.__name__)
    value = np.asarray(compute())

    def write(p: Path) -> None:
        np.save(p, value, allow_pickle=False)
        _write(path.with_suffix(".npy.json"), lambda q: q.write_text(json.dumps(
            {"format": ENVELOPE, "sha256": _digest(p.read_bytes()), "dtype": str(value.dtype),
             "shape": list(value.shape)})))
    _write(path, write)
    return value


def is_cached(checkpoint, name: str) -> bool:
    folder = _folder(checkpoint)
    return any((folder / f"{_safe(name)}{ext}").is_file() for ext in (".json", ".npy"))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.DataFrame):
        return value.to_dict("records")
    raise TypeError(f"cannot store {type(value).__name__} in the cache")
