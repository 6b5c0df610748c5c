"""A disk cache for slow analyses of a checkpoint (facet checks, UMAP maps), so that a restart of
the app does not recompute them.

Results live in `$FAME_CACHE` (default `~/.cache/fame`), in one folder per checkpoint
fingerprint: the sha256 of the checkpoint's weights, config and data record (which holds the data
set's fingerprint), so a retrained or edited checkpoint never reads stale results. Nothing here
needs managing: delete the folder to start afresh. Values are JSON or .npy (never pickles), each
written atomically; an unwritable cache folder only means recomputing.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def cached_json(checkpoint, name: str, compute: Callable[[], object]):
    """compute() once per checkpoint: JSON-ready data (dicts, lists, numbers, None) or a
    DataFrame; later calls (also after a restart) read it from disk."""
    path = _folder(checkpoint) / f"{_safe(name)}.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if isinstance(stored, dict) and stored.get("__frame__"):
                return pd.DataFrame(**stored["split"])
            return stored
        except (OSError, ValueError, TypeError):
            pass
    value = compute()
    if isinstance(value, pd.DataFrame):
        stored = {"__frame__": True, "split": json.loads(value.to_json(orient="split", index=False))}
        stored["split"].pop("index", None)
    else:
        stored = value
    _write(path, lambda p: p.write_text(json.dumps(stored, default=_plain)))
    if isinstance(value, pd.DataFrame):
        return pd.DataFrame(**stored["split"])
    return json.loads(json.dumps(value, default=_plain))   # the same types as a read from disk


def cached_array(checkpoint, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """compute() once per checkpoint: a numeric array, kept as .npy."""
    path = _folder(checkpoint) / f"{_safe(name)}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass
    value = np.asarray(compute())
    _write(path, lambda p: np.save(p, value, allow_pickle=False))
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
