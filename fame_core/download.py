"""Public data sets in one command: `python -m fame_core data download NAME [--to DIR]` (default
DIR: the data home, `$FAME_DATA` or ~/.cache/fame, where checkpoints look for their data).

Each file is streamed to a `.part` file beside its destination while its sha256 is computed,
checked against the sum pinned here (where one is known), and only then renamed into place: a
wrong checksum, a cut transfer or a server error leaves no half-written file behind. A file that
is already there and verified is not downloaded again. `mirror` replaces the scheme and host of
every address and keeps its path (for tests, proxies and internal mirrors).

Sizes are capped before the disk fills: a file whose size is pinned here may not exceed it, any
other download and the members of a zip archive (summed, as declared in the archive and enforced
while unpacking) may not exceed `max_bytes` (default `MAX_BYTES`, 2 GB: the largest source,
ml-20m, is 0.2 GB packed and 0.9 GB unpacked; `data download --max-size`). A larger one is
refused in one line, from its Content-Length before anything is written, or as soon as it
streams past the cap.

After `download("beauty", to="data")`, `load_dataset("data/beauty")` reads it (attributes included).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .data import sha256_of
from .errors import DataError

ICLREC = "https://raw.githubusercontent.com/salesforce/ICLRec/master/data/"
S3REC = "https://raw.githubusercontent.com/aHuiWang/CIKM2020-S3Rec/master/data/"
GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


MAX_BYTES = 2_000_000_000


def parse_size(text: str) -> int:
    """'2G', '500M', '1500000' -> bytes (decimal units), for --max-size."""
    t = str(text).strip().upper().removesuffix("B")
    scale = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in "KMGT" and t else t
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not (value > 0 and value * scale < 2**63):
        raise DataError(f"--max-size must be a positive size such as 2G, 500M or 1500000, not {str(text)[:20]!r}")
    return int(value * scale)


@dataclass(frozen=True)
class Remote:
    """One file to fetch: its address, its name on disk, and its pinned sha256 (None = not pinned)."""

    url: str
    name: str
    sha256: str | None
    size: int | None = None   # bytes, where known (the app's "Download sports (2.4 MB)" button)


@dataclass(frozen=True)
class Source:
    """A data set: plain files, or one zip archive whose members are checked after unpacking."""

    files: tuple[Remote, ...]
    zip_members: dict = field(default_factory=dict)   # member path inside the zip -> pinned sha256
    note: str = ""

    @property
    def size(self) -> int | None:
        """Total bytes to fetch, or None where a file's size is not known."""
        sizes = [r.size for r in self.files]
        return None if None in sizes else sum(sizes)


def _amazon(name: str, text_sum: str | None, attr_sum: str | None, sizes=(None, None)) -> Source:
    return Source((Remote(ICLREC + f"{name}.txt", f"{name}.txt", text_sum, sizes[0]),
                   Remote(S3REC + f"{name}_item2attributes.json", f"{name}_item2attributes.json", attr_sum, sizes[1])))


SOURCES: dict[str, Source] = {
    "beauty": _amazon("Beauty", "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                      "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4", (1090094, 305674)),
    "sports": _amazon("Sports_and_Outdoors", "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
                      "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b", (1707483, 653780)),
    "toys": _amazon("Toys_and_Games", "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
                    "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0"),
    "yelp": _amazon("Yelp", None, None),
    "ml-latest-small": Source((Remote(GROUPLENS + "ml-latest-small.zip", "ml-latest-small.zip", None),), {
        "ml-latest-small/ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        "ml-latest-small/movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
        "ml-latest-small/links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
        "ml-latest-small/tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
        "ml-latest-small/README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
    }),
    "ml-1m": Source((Remote(GROUPLENS + "ml-1m.zip", "ml-1m.zip", None),), {}),
    "ml-20m": Source((Remote(GROUPLENS + "ml-20m.zip", "ml-20m.zip", None),), {}),
}


def with_mirror(url: str, mirror: str | None) -> str:
    """Replace the scheme and host of `url` by those of `mirror`, keeping the path."""
    if not mirror:
        return url
    m, u = urllib.parse.urlsplit(mirror), urllib.parse.urlsplit(url)
    if not m.scheme or not m.netloc:
        raise DataError(f"--mirror must look like http://host[:port], not {mirror!r}")
    return urllib.parse.urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def fetch(url: str, dest: Path, sha256: str | None, progress: bool = True, timeout: float = 60.0,
          on_progress=None, overwrite: bool = False, max_bytes: int = MAX_BYTES) -> str:
    """Stream `url` to `dest` through `dest.part`, verify, rename. Returns "downloaded" or "verified".
    A transfer larger than max_bytes is refused (from its Content-Length, or once past the cap).

    progress: a tqdm bar on a terminal (none when stderr is not a TTY); on_progress(received,
    total or None): called after every chunk (the app's progress bar)."""
    if dest.exists() or dest.is_symlink():
        if sha256 and dest.is_file() and sha256_of(dest) == sha256:
            return "verified"
        if not overwrite:   # not ours to replace: a user's own file, or an upstream file that changed
            if not sha256:
                return "kept (already there; no pinned sha256 to verify it)"
            raise DataError(f"{dest} exists and does not match the pinned sha256; it was left as it is; "
                            "move it away, or pass --overwrite to replace it")
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            if total is not None and total > max_bytes:
                raise DataError(f"download of {url} is {total:,} bytes, above the cap of {max_bytes:,}; nothing was "
                                "written; pass a larger --max-size if it is expected")
            received = 0
            with open(part, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                                              disable=None if progress else True, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    if received > max_bytes:
                        raise DataError(f"download of {url} passed the cap of {max_bytes:,} bytes; it was not kept; "
                                        "pass a larger --max-size if it is expected")
                    bar.update(len(chunk))
                    if on_progress is not None:
                        on_progress(received, total)
            if total is not None and received != total:
                raise DataError(f"download of {url} was cut off after {received} of {total} bytes; run the command again")
    except DataError:
        part.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise DataError(f"download of {url} failed ({reason}); check the connection or pass --mirror") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if sha256 and digest != sha256:
        part.unlink(missing_ok=True)
        raise DataError(f"{dest.name}: sha256 {digest[:16]}… does not match the pinned {sha256[:16]}…; "
                        "the file was not kept (a changed upstream file or a bad mirror)")
    os.replace(part, dest)
    return "downloaded"


def data_home() -> Path:
    """`$FAME_DATA`, else `$XDG_CACHE_HOME/fame`, else `~/.cache/fame` (not created here): where
    downloads go and where `fame_core.datahome` finds recorded data sets."""
    if os.environ.get("FAME_DATA"):
        return Path(os.environ["FAME_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "fame"


def make_folder(folder: Path, parent: Path) -> None:
    """mkdir -p `folder` (under `parent`: the data home or --to), or one DataError line that says
    which path is in the way (e.g. $FAME_DATA naming a file) instead of NotADirectoryError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return
    except OSError as err:
        problem = err
    blocker = next((p for p in [folder, *folder.parents] if (p.exists() or p.is_symlink()) and not p.is_dir()), None)
    if blocker is not None and blocker == parent and parent == data_home():
        if os.environ.get("FAME_DATA"):
            raise DataError(f"the data home $FAME_DATA={parent} is a file, not a folder; set FAME_DATA to a folder") from None
        raise DataError(f"the data home {parent} is a file, not a folder; move it away or set FAME_DATA to a folder") from None
    if blocker is not None:
        where = "the data home" if parent == data_home() else "--to"
        if blocker == parent:
            raise DataError(f"{where} {parent} is a file, not a folder; give a folder") from None
        raise DataError(f"{blocker} is a file, not a folder, so {where} {parent} cannot hold {folder.name}/; "
                        f"move it away or choose another folder") from None
    raise DataError(f"cannot create {folder} ({problem.strerror or problem.__class__.__name__}); "
                    "choose a folder you can write to (set FAME_DATA, or pass --to)") from None


def download(name: str, to=None, mirror: str | None = None, progress: bool = True, on_progress=None,
             overwrite: bool = False, max_bytes: int = MAX_BYTES) -> dict:
    """Fetch data set `name` into `to/<name>` (default: the data home, `$FAME_DATA` or
    ~/.cache/fame); returns {"name", "path", "files": {file: status}}. An existing file that does
    not verify is never replaced unless overwrite. mirror defaults to
    `$FAME_MIRROR`; on_progress(received, total) is called per chunk of each file; max_bytes caps
    each unpinned file and a zip's unpacked members (a file of pinned size is capped at that size)."""
    key = name.lower()
    if key not in SOURCES:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(SOURCES)}")
    source = SOURCES[key]
    to = data_home() if to is None else Path(to).expanduser()
    mirror = mirror or os.environ.get("FAME_MIRROR") or None
    folder = to / key
    make_folder(folder, to)
    status = {}
    for remote in source.files:
        if remote.name.endswith(".zip"):
            status.update(_fetch_zip(remote, folder, source.zip_members, mirror, progress, on_progress, overwrite,
                                     max_bytes))
        else:
            cap = min(max_bytes, remote.size) if remote.size else max_bytes
            status[remote.name] = fetch(with_mirror(remote.url, mirror), folder / remote.name, remote.sha256, progress,
                                        on_progress=on_progress, overwrite=overwrite, max_bytes=cap)
            if remote.sha256 is None:
                status[remote.name] += " (no pinned sha256)"
    return {"name": key, "path": str(folder), "files": status}


def _fetch_zip(remote: Remote, folder: Path, members: dict, mirror: str | None, progress: bool,
               on_progress=None, overwrite: bool = False, max_bytes: int = MAX_BYTES) -> dict:
    """Download an archive, unpack it into `folder` (its top directory flattened) and verify the
    pinned members; nothing is moved into `folder` unless every check passes."""
    top = remote.name[: -len(".zip")]
    if members and all((folder / Path(m).name).exists() and sha256_of(folder / Path(m).name) == s
                       for m, s in members.items()):
        return {Path(m).name: "verified" for m in members}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = Path(tmp) / remote.name
        fetch(with_mirror(remote.url, mirror), archive, remote.sha256, progress, on_progress=on_progress,
              max_bytes=max_bytes)
        try:
            with zipfile.ZipFile(archive) as z:
                unpacked_size = sum(i.file_size for i in z.infolist())   # zipfile stops each member at its declared size
                if unpacked_size > max_bytes:
                    raise DataError(f"{remote.name} unpacks to {unpacked_size:,} bytes, above the cap of {max_bytes:,}; "
                                    "nothing was unpacked; pass a larger --max-size if it is expected")
                z.extractall(Path(tmp) / "unpacked")
        except zipfile.BadZipFile:
            raise DataError(f"{remote.name} is not a valid zip archive; the download was not kept") from None
        root = Path(tmp) / "unpacked" / top
        root = root if root.is_dir() else Path(tmp) / "unpacked"
        for member, pinned in members.items():
            path = root / Path(member).name
            if not path.exists():
                raise DataError(f"{remote.name} lacks {member}; the download was not kept")
            if sha256_of(path) != pinned:
                raise DataError(f"{member}: sha256 does not match the pinned sum; the download was not kept")
        unpacked = [p for p in sorted(root.iterdir()) if p.is_file()]
        clash = [p.name for p in unpacked if (folder / p.name).exists() and
                 (not (folder / p.name).is_file() or sha256_of(folder / p.name) != sha256_of(p))]
        if clash and not overwrite:
            raise DataError(f"{folder / clash[0]} exists and differs from the file in {remote.name}; nothing was "
                            "replaced; move it away, or pass --overwrite to replace it")
        status = {}
        for path in unpacked:
            if path.is_file():
                os.replace(path, folder / path.name)
                status[path.name] = "downloaded" + ("" if path.name in {Path(m).name for m in members} else
                                                    " (no pinned sha256)")
        shutil.rmtree(Path(tmp) / "unpacked", ignore_errors=True)
    return status
