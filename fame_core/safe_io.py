"""Writing without losing anything: output-path policy and atomic replacement of folders and files.

The promise (README, "Reliability"): no command deletes or overwrites anything it did not create.

- An output folder is written only if it is new, empty, or already holds what this project wrote
  there (a checkpoint; a folder of exported figures with its manifest). Anything else is refused
  with one line, before any work is done.
- `.`, `..`, the working directory's ancestors, the home folder and `/` are never replaced.
- A folder is replaced atomically: the new content is written into a hidden sibling, then the two
  are swapped with one `renameat2(RENAME_EXCHANGE)` call, so at every instant the path holds
  either the complete old content or the complete new one. Where the kernel or file system has no
  exchange, two renames are used and the short gap between them is repaired on the next access
  (`recover_dir`): a complete old copy left in a hidden sibling is moved back.
- Hidden siblings carry a marker with a token written when they were made (`MARKER`); only those
  are ever moved or removed, stale ones only by write commands. Read-only commands never delete.
- A failed write (a full disk, an I/O error) removes its temporary sibling and raises one line;
  the previous content stays in place.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Callable

from .errors import FameError


class OutputError(FameError):
    """An output path that must not be written, or a write that failed (the old content is kept)."""


# ---- path policy -----------------------------------------------------------------------------------

def protected(path: Path) -> str | None:
    """Why `path` must never be replaced as a whole, or None."""
    p = path.expanduser().absolute()
    resolved = p.resolve()
    cwd = Path.cwd().resolve()
    if p.name in ("", ".", "..") or resolved == Path(resolved.anchor):
        return "is the current folder, its parent or the file-system root"
    if resolved == cwd or resolved in cwd.parents:
        return "is the current folder or one of its parents"
    if resolved == Path.home().resolve():
        return "is the home folder"
    if p.is_symlink():
        return "is a symbolic link (pass the folder it points to, or a new name)"
    return None


def check_output_dir(path, owned: Callable[[Path], bool], what: str, option: str = "--out") -> Path:
    """Refuse an output folder that may not be written: protected, a file, or a folder holding
    anything `owned` does not recognise as this project's. Returns the path (not created)."""
    path = Path(path).expanduser()
    why = protected(path)
    if why:
        raise OutputError(f"{option} {path} {why}; pass a new folder name, e.g. {option} runs/new-{what}")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(f"{option} {path} exists and is not a folder; nothing was written; "
                              f"pass a new folder name")
        if any(path.iterdir()) and not owned(path):
            names = sorted(p.name for p in path.iterdir())
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise OutputError(f"{option} {path} holds files that are not a {what} of this project ({shown}); "
                              f"nothing was written; pass a new or empty folder")
    return path


# ---- atomic folder replacement ---------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
USE_EXCHANGE = True  # tests switch this off to exercise the two-rename fallback and its repair


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2). False where unsupported."""
    if not USE_EXCHANGE:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


# Hidden siblings of a folder being written are named `.NAME.KIND-PID-TOKEN` and hold a marker file
# `.fame-writer` whose content is TOKEN, written when the sibling was made. Only a sibling with both
# (the name parsed by string comparison, never used as a glob pattern; the marker a regular file whose
# content equals the name's token) is ever moved or removed: a folder that merely looks like ours
# (`.results.old-999997` made by hand) is never touched.
MARKER = ".fame-writer"


def _new_sibling(directory: Path, kind: str) -> tuple[Path, str]:
    token = secrets.token_hex(8)
    return directory.with_name(f".{directory.name}.{kind}-{os.getpid()}-{token}"), token


def _mark(folder: Path, token: str) -> None:
    (folder / MARKER).write_text(token)


def _token_of(path: Path, prefix: str) -> tuple[int, str] | None:
    """(pid, token) when `path`'s name is `prefix` + PID-TOKEN and its marker holds TOKEN, else None."""
    rest = path.name[len(prefix):]
    pid, _, token = rest.partition("-")
    if not (pid.isdigit() and len(token) == 16 and all(c in "0123456789abcdef" for c in token)):
        return None
    try:
        marker = path / MARKER
        st = os.lstat(marker)
        if not (os.path.isdir(path) and not os.path.islink(path) and stat.S_ISREG(st.st_mode) and st.st_size == 16):
            return None
        if marker.read_text() != token:
            return None
    except (OSError, UnicodeDecodeError):
        return None
    return int(pid), token


def _siblings(directory: Path, kind: str) -> list[Path]:
    """This project's hidden siblings of `directory` of one kind (see MARKER), newest first."""
    parent, prefix = directory.parent, f".{directory.name}.{kind}-"
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)] if parent.is_dir() else []
    except OSError:
        return []
    ours = [parent / n for n in names if _token_of(parent / n, prefix) is not None]
    return sorted(ours, key=lambda p: p.lstat().st_mtime, reverse=True)


def _pid_alive(name: str) -> bool:
    """Whether the writer that named a hidden sibling `.NAME.KIND-PID-TOKEN` may still be running
    (this process's own leftovers are never in use: a failed write removes them first)."""
    try:
        pid = int(name.rsplit("-", 2)[1])
        if pid == os.getpid():
            return False
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def recover_dir(directory, complete: Callable[[Path], bool], clean: bool = False) -> None:
    """Repair what a kill between the two fallback renames left behind: if `directory` is missing
    and a complete old copy written aside by this project (see MARKER) is in a hidden sibling, move
    it back. clean=True (write commands only) also removes this project's temporary siblings whose
    writer is no longer running. Read-only commands pass clean=False and never delete anything;
    nothing that lacks this project's marker is ever moved or removed."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        for old in _siblings(directory, "old"):
            if complete(old):
                os.rename(old, directory)
                (directory / MARKER).unlink(missing_ok=True)
                break
    if clean:
        for leftover in _siblings(directory, "tmp") + _siblings(directory, "old"):
            if not _pid_alive(leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)


def replace_dir(directory, fill: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
    """Write a folder atomically: `fill(tmp)` writes the content into a hidden sibling, which then
    takes `directory`'s place. On any failure the sibling is removed, the old content stays, and
    one OutputError line says what happened. Whichever content a hidden sibling holds at any
    instant carries the sibling's marker, so a kill anywhere leaves only siblings provably ours."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(directory, complete, clean=True)
    tmp, token = _new_sibling(directory, "tmp")
    try:
        tmp.mkdir()
        _mark(tmp, token)
        fill(tmp)
        _fsync_dir(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (KeyboardInterrupt, SystemExit, FameError)):
            raise
        reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e).splitlines()[0][:200]
        raise OutputError(f"could not write {directory} ({reason}); "
                          + ("the previous content is unchanged" if directory.exists() else "nothing was written")
                          + "; free space or choose another place and run again") from None
    if directory.exists():
        _mark(directory, token)       # the old content goes aside with the same marker
        if _exchange(tmp, directory):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content
        else:
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}-{token}")
            os.rename(directory, old)
            os.rename(tmp, directory)  # a kill between these two renames is repaired by recover_dir
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, directory)
    (directory / MARKER).unlink(missing_ok=True)
    return directory


def _fsync_dir(folder: Path) -> None:
    """Flush the files of `folder` so that a crash after the swap cannot leave empty files."""
    for p in folder.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


# ---- single files ----------------------------------------------------------------------------------

def write_file_atomic(path, data: bytes | str) -> Path:
    """Write one file through a hidden sibling and os.replace, so readers never see half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"could not write {path} ({os.strerror(e.errno) if e.errno else e}); "
                          "free space or choose another place") from None
    return path


def check_new_file(path, option: str, overwrite: bool = False) -> Path:
    """A file an output option names: refused when it exists (unless overwrite) or is protected."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; pass a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{option} {path} exists; nothing was written; pass a new file name (or --overwrite)")
    return path


# ---- folders of written files (figure exports) ----------------------------------------------------

MANIFEST = ".fame-export.json"
MAX_MANIFEST_BYTES = 1 << 20     # a manifest lists file names: anything larger is not ours


def manifest_files(folder) -> set[str]:
    """The names a previous export recorded in `folder`'s manifest (empty when there is none)."""
    import json

    path = Path(folder) / MANIFEST
    try:
        st = os.lstat(path)       # its type before it is opened: a FIFO or a device would block or never end
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return set()
        names = json.loads(path.read_text()).get("files", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return set()
    return {n for n in names if isinstance(n, str)}


def owned_by_manifest(folder) -> bool:
    """True when every entry of `folder` is its manifest or a file the manifest lists."""
    listed = manifest_files(folder)
    entries = [p for p in Path(folder).iterdir()]
    return bool(listed) and all(p.name == MANIFEST or (p.name in listed and p.is_file() and not p.is_symlink())
                                for p in entries)


def record_files(folder, files) -> Path:
    """Add `files` (paths inside `folder`) to its manifest, so that a later export may replace them."""
    import json

    folder = Path(folder)
    names = sorted(manifest_files(folder) | {Path(f).name for f in files})
    return write_file_atomic(folder / MANIFEST, json.dumps({"written_by": "fame_core export", "files": names},
                                                           indent=1) + "\n")


def write_export(folder, fill: Callable[[Path], list]) -> list[Path]:
    """Run `fill(tmp)` (which writes files into the folder tmp and returns their paths) in a hidden
    sibling of `folder`, list the names in the manifest, then move them in one by one: a kill at
    any moment leaves only files the manifest lists, so the next export may replace them."""
    folder = Path(folder).expanduser()
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in _siblings(folder, "export-tmp"):
        if not _pid_alive(stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    tmp, token = _new_sibling(folder, "export-tmp")
    try:
        tmp.mkdir()
        _mark(tmp, token)
        written = [Path(f) for f in fill(tmp)]
        folder.mkdir(exist_ok=True)
        record_files(folder, written)
        for f in written:
            os.replace(f, folder / f.name)
    except OSError as e:
        raise OutputError(f"could not write the export to {folder} ({os.strerror(e.errno) if e.errno else e}); "
                          "free space or choose another place") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [folder / f.name for f in written]
