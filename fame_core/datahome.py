"""Where data sets live, and how a checkpoint finds the data set it was trained on.

The **data home** is `$FAME_DATA`, by default `~/.cache/fame` (`$XDG_CACHE_HOME/fame` where that
is set). `python -m fame_core data download NAME` puts NAME's files in `<home>/<name>/`.

A checkpoint's `dataset.json` records the data set's name, content fingerprint, the spec it was
read from and the sha256 of every source file. `locate(record, roots)` looks for those files:
at the recorded spec, at the recorded absolute paths, in the data home (by file name) and under
the `roots` given; a place is accepted only if every recorded file is there, is a regular file
(checked with `stat`, before anything is opened: a FIFO is refused without blocking), lies under
one of `roots` when roots are given (symlinks resolved first) and has the recorded sha256. Nothing
is parsed before that, and no message ever quotes a file that failed these checks.
`open_recorded` then reads the data set (or regenerates a recorded synthetic world, refusing
absurd sizes before generating); `missing_message` says what to run when it is nowhere, and
`fetch_recorded` runs that verified download (the app's "Download sports (2.4 MB)" button).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .data import _parse_synthetic, load_dataset, sha256_of
from .download import SOURCES, data_home, download
from .errors import DataError

# a recorded synthetic world is regenerated only up to this size (the default world: 2,000 users x
# up to 30 items = 60,000 steps, about a second); a crafted checkpoint asking for 10^8 users is refused
MAX_SYNTHETIC_STEPS = 2_000_000
MAX_SYNTHETIC_ITEMS = 1_000_000


def data_roots(extra=()) -> list[Path]:
    """The folders the app may read recorded data from: the data home, then `$FAME_DATA_ROOTS`
    (os.pathsep-separated), then `extra`."""
    roots = [data_home()] + [Path(p).expanduser() for p in os.environ.get("FAME_DATA_ROOTS", "").split(os.pathsep) if p]
    return roots + [Path(p).expanduser() for p in extra]


def roots_state(roots) -> tuple:
    """A cheap fingerprint of what the data roots hold: (path, size, mtime) of every entry of each
    root and of each folder in it (two levels; a download into <home>/<name>/ changes it). The app
    reopens a checkpoint that opened without its data when this changes."""
    state = []
    for root in roots:
        for folder in [Path(root)] + [Path(e.path) for e in _entries(Path(root)) if _is_dir(e)]:
            for entry in _entries(folder):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                state.append((entry.path, st.st_size, st.st_mtime_ns))
    return tuple(sorted(state))


def _is_dir(entry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _entries(folder: Path) -> list:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:    # missing, a file, unreadable: holds nothing
        return []


def source_for(record: dict) -> str | None:
    """The `data download` name whose files include the recorded data file (same name and sha256)."""

    spec, sums = record.get("spec"), record.get("sha256") or {}
    if not isinstance(spec, str) or not isinstance(sums, dict):
        return None
    main = Path(spec).name
    for key, source in SOURCES.items():
        pinned = {r.name: r.sha256 for r in source.files}
        pinned.update({Path(m).name: s for m, s in source.zip_members.items()})
        if main in pinned and (pinned[main] is None or pinned[main] == sums.get(main)):
            return key
    return None


@dataclass
class Located:
    """Where the recorded data set is: `path` (the data file to read) or None, and why the places
    looked at were refused (paths and reasons only, never a file's content)."""

    path: Path | None
    files: dict = field(default_factory=dict)      # recorded file name -> verified path
    refused: list[str] = field(default_factory=list)


_SHA_CACHE: dict = {}


def _under(real: Path, roots) -> bool:
    return roots is None or any(real.is_relative_to(r) for r in roots)


def _verified(path: Path, sha256: str, roots) -> tuple[Path | None, str | None]:
    """(resolved path, None) if `path` is a regular file under `roots` with this sha256, else (None, reason).
    No reason quotes anything of the file (not even its sha256)."""

    try:
        real = path.expanduser().resolve()
        st = os.stat(real)
    except (OSError, RuntimeError):
        return None, None                       # not there: nothing to report
    if not _under(real, roots):
        return None, f"{path} is outside the data roots ({', '.join(map(str, roots))})"
    if not stat.S_ISREG(st.st_mode):
        return None, f"{path} is not a regular file"
    key = (str(real), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        try:
            _SHA_CACHE[key] = sha256_of(real)
        except OSError as e:
            return None, f"{path} cannot be read ({e.__class__.__name__})"
    if _SHA_CACHE[key] != sha256:
        return None, f"{path} is not the recorded file (its sha256 differs from the one the checkpoint records)"
    return real, None


def open_given(record: dict, path, roots):
    """The data set at a path a visitor typed (the app's "Data set path" box), opened only if it is
    under `roots` (symlinks resolved), a regular file, and has the sha256 the checkpoint records for
    its data file; nothing is parsed before that, and no message quotes the file."""

    roots = [Path(r).expanduser().resolve() for r in roots]
    given = Path(str(path).strip())
    spec, sums = record.get("spec"), record.get("sha256")
    main = Path(spec).name if isinstance(spec, str) and spec else None
    if not given.is_absolute():
        raise DataError(f"{given} is not an absolute path; pass the full path of the data file under one of the "
                        f"data roots ({', '.join(map(str, roots))})")
    real = given.resolve()
    if not _under(real, roots):
        raise DataError(f"{given} is outside the data roots ({', '.join(map(str, roots))}); put the file in one of "
                        "them or add its folder to $FAME_DATA_ROOTS")
    if not isinstance(sums, dict) or not main or not isinstance(sums.get(main), str):
        raise DataError("the checkpoint records no data file and sha256, so a typed path cannot be verified; "
                        "open it with the CLI's --data PATH")
    found, reason = _verified(real, sums[main], roots)
    if found is None:
        raise DataError((reason or f"{given} does not exist") + "; pass the data file this checkpoint was trained on")
    others = [p for p in record.get("paths") or [] if isinstance(p, str) and Path(p).name != main]
    data = open_recorded(dict(record, spec=str(found), paths=[str(found)] + others), roots=roots)
    if data is None:   # an item table the checkpoint records is not under the roots
        raise DataError(missing_message(dict(record, spec=str(found)), roots))
    return data


def _folders(record: dict, main: str, roots) -> list[Path]:
    """Candidate folders for the recorded files, most specific first."""
    spec = Path(record["spec"]).expanduser()
    folders = [spec.parent]
    folders += [Path(p).parent for p in record.get("paths") or [] if isinstance(p, str) and Path(p).name == main]
    home = data_home()
    name = source_for(record)
    if name:
        folders.append(home / name)
    for root in [home] + list(roots or []):
        folders.append(root)
        for pattern in ("*", "*/*"):
            try:
                folders += sorted(p.parent for p in root.glob(f"{pattern}/{main}"))
            except OSError:
                pass
    seen, unique = set(), []
    for f in folders:
        if str(f) not in seen:
            seen.add(str(f))
            unique.append(f)
    return unique


def locate(record: dict, roots=None) -> Located:
    """Find the recorded data files (see the module doc). roots: None = anywhere (the CLI and the
    Python API, where the sha256 check alone decides), or the folders allowed (the app)."""
    roots = None if roots is None else [Path(r).expanduser().resolve() for r in roots]
    spec, sums = record.get("spec"), record.get("sha256")
    if not isinstance(spec, str) or not spec or not isinstance(sums, dict):
        return Located(None, refused=["the checkpoint records no data file and sha256"])
    main = Path(spec).name
    if not isinstance(sums.get(main), str):
        return Located(None, refused=[f"the checkpoint records no sha256 for {main}, so it cannot be verified"])
    recorded_paths = {Path(p).name: Path(p) for p in record.get("paths") or [] if isinstance(p, str)}
    refused = []
    for folder in _folders(record, main, roots):
        files, ok = {}, True
        for name, sha in sums.items():
            if not isinstance(sha, str):
                ok = False
                break
            found, reason = _verified(folder / name, sha, roots)
            if found is None and name != main and name in recorded_paths:   # e.g. an --items table elsewhere
                found, reason2 = _verified(recorded_paths[name], sha, roots)
                reason = reason or reason2
            if reason and reason not in refused:
                refused.append(reason)
            if found is None:
                ok = False
                break
            files[name] = found
        if ok:
            return Located(files[main], files, refused)
    return Located(None, refused=refused)


def check_synthetic(record: dict) -> str:
    """The recorded synthetic world's spec, refused (before generating) when absurdly large."""

    spec = record.get("spec")
    if not isinstance(spec, str) or not (spec == "synthetic" or spec.startswith("synthetic:")):
        raise DataError("the checkpoint records a synthetic world without a valid spec; pass --data synthetic:...")
    params = _parse_synthetic(spec)
    users, items, length = (params.get(k, d) for k, d in (("n_users", 2000), ("n_items", 600), ("max_len", 30)))
    if not all(isinstance(v, int) and v > 0 for v in (users, items, length)):
        raise DataError("the checkpoint records a synthetic world with bad sizes (n_users, n_items, max_len); "
                        "pass --data synthetic:... explicitly")
    if users * length > MAX_SYNTHETIC_STEPS or items > MAX_SYNTHETIC_ITEMS:
        raise DataError(f"the checkpoint records a synthetic world of {users:,} users x up to {length:,} items over "
                        f"{items:,} items; a recorded world is regenerated only up to {MAX_SYNTHETIC_STEPS:,} steps and "
                        f"{MAX_SYNTHETIC_ITEMS:,} items (pass --data synthetic:... explicitly to generate it)")
    return spec


def open_recorded(record: dict, roots=None):
    """The checkpoint's own data set (a SequenceDataset), or None where it is not found or refused."""

    kcore = (record.get("options") or {}).get("kcore") if isinstance(record.get("options"), dict) else None
    if record.get("reader") == "synthetic":
        return load_dataset(check_synthetic(record))
    found = locate(record, roots)
    if found.path is None:
        return None
    try:
        data = load_dataset(found.path, kcore_k=kcore)
        table = (record.get("options") or {}).get("items")
        if isinstance(table, str) and Path(table).name in found.files:
            from .items import add_item_table
            add_item_table(data, found.files[Path(table).name])
    except (DataError, OSError, ValueError) as e:   # the reader's message may quote the file: not repeated
        raise DataError(f"the recorded data file {found.path} matches its recorded sha256 but cannot be read as a "
                        f"{record.get('reader')} data set ({e.__class__.__name__}); pass --data PATH") from None
    return data


def size_text(n: int | None) -> str:
    return "" if not n else f" ({n / 1e6:.1f} MB)"


def download_offer(record: dict) -> tuple[str, int | None] | None:
    """(download name, bytes or None) of the data set that provides the recorded files, or None."""

    name = source_for(record)
    return (name, SOURCES[name].size) if name else None


def missing_message(record: dict, roots=None) -> str:
    """One line: the recorded data set is not found (and where refused, why), and what to run."""
    found = locate(record, roots) if record.get("reader") != "synthetic" else Located(None)
    where = f"its recorded path {record.get('spec')}" if isinstance(record.get("spec"), str) else "a recorded path"
    text = f"data set {record.get('name')!r} is neither at {where} nor in the data home {data_home()}"
    if found.refused:
        text += f" ({found.refused[0]})"
    offer = download_offer(record)
    if offer:
        return text + f"; fetch it with: python -m fame_core data download {offer[0]}{size_text(offer[1])}, or pass --data PATH"
    return text + "; pass --data PATH"


def fetch_recorded(record: dict, on_progress=None, progress: bool = False) -> Path:
    """Run the verified download that provides the recorded data set into the data home and
    return the data file found there (the app's download button; the CLI says the command)."""

    offer = download_offer(record)
    if offer is None:
        raise DataError(f"no download provides data set {record.get('name')!r}; pass its file with --data PATH")
    download(offer[0], data_home(), progress=progress, on_progress=on_progress)
    found = locate(record, [data_home()])
    if found.path is None:
        raise DataError(f"the download of {offer[0]} does not hold the recorded files of {record.get('name')!r} "
                        f"({found.refused[0] if found.refused else 'missing'}); pass --data PATH")
    return found.path
