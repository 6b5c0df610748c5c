"""The readers that build the one data type of a data set (docs/design.md, "Data flow").

A `SequenceDataset` (defined in `fame_core.dataset`, re-exported here) is a list of per-user
chronological item sequences over item ids 1..n (0 is padding) plus optional item metadata:
titles and categorical facets (genre, brand, attribute, planted facets of the synthetic world).
Every reader returns this type:

- `read_sequence_file`: `user item item ...` per line (ICLRec / S3-Rec / CL4SRec format);
- `read_movielens`: `ratings.csv` / `ratings.dat` / `u.data`, with titles and genres when the
  movie file sits beside it;
- `read_interactions`: a generic `user,item,timestamp` CSV, or a RecBole atomic `.inter` file;
- `add_item_attributes`: an S3-Rec `item2attributes.json` as item metadata.

`load_dataset(spec)` picks the reader from what it is given (a file, a directory, or
`synthetic[:key=value,...]`). The leave-one-out split is a view: `dataset.example(row, split)`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import SPLITS, SequenceDataset, sha256_of  # noqa: F401  (re-exported)
from .errors import DataError
from .items import attach_beside  # <stem>_items.csv / .tsv / <stem>.item: item facet tables
from .safe_io import write_file_atomic
from .synthetic import make_facet_world

KCORE = 5  # default k of the k-core filter of raw interaction logs
KCORE_MAX = 1000


def convert_outputs(path) -> list[Path]:
    """The files `write_sequence_file(dataset, path)` may write (the sequence file and its siblings)."""
    path = Path(path)
    return [path, path.with_name(f"{path.stem}_item_ids.csv"), path.with_name(f"{path.stem}_item2attributes.json")]


def write_sequence_file(dataset: SequenceDataset, path) -> list[Path]:
    """Write the data set in the sequence-file format (`user item item ...`, internal item ids),
    with `<stem>_item_ids.csv` mapping internal ids to the source's ids and, when the data set has
    item facets, `<stem>_item2attributes.json` (S3-Rec format, values as strings). Returns the paths."""
    path, ids, attributes = convert_outputs(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, "".join(user + " " + " ".join(map(str, seq.tolist())) + "\n"
                                    for user, seq in zip(dataset.user_ids, dataset.sequences)))
    written = [path]
    frame = {"item": range(1, dataset.n_items + 1),
             "source_id": [dataset.item_source_id(i) for i in range(1, dataset.n_items + 1)]}
    if dataset.titles:
        frame["title"] = dataset.titles[1:]
    write_file_atomic(ids, pd.DataFrame(frame).to_csv(index=False))
    written.append(ids)
    if dataset.facets:
        attrs = {str(i): [f"{name}:{v}" for name, values in dataset.facets.items() for v in values[i]]
                 for i in range(1, dataset.n_items + 1)}
        write_file_atomic(attributes, json.dumps(attrs))
        written.append(attributes)
    return written


# ---- helpers shared by the readers -------------------------------------------------------------

def _source(reader: str, spec: str, paths: list[Path], **options) -> dict:
    return {
        "reader": reader,
        "spec": spec,
        "paths": [str(p.resolve()) for p in paths],
        "sha256": {p.name: sha256_of(p) for p in paths},
        "options": options,
    }


def _require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} is not a file: {path}")
    return path


def kcore(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Keep only users and items with at least k interactions, repeated until stable."""
    if k <= 1:
        return df
    while True:
        n = len(df)
        df = df[df.groupby("item")["item"].transform("size") >= k]
        df = df[df.groupby("user")["user"].transform("size") >= k]
        if len(df) == n:
            return df


def from_interactions(df: pd.DataFrame, name: str, source: dict, k: int = KCORE,
                      titles: dict | None = None, facets: dict | None = None) -> SequenceDataset:
    """Build a data set from a (user, item, timestamp) log: k-core, sort by time, remap ids.

    Ties in timestamp keep the log's original order (stable sort). Items are renumbered 1..n in
    the order of their source ids; users keep their source ids.
    """
    df = df[["user", "item", "timestamp"]].copy()
    ts = pd.to_numeric(df["timestamp"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if not np.isfinite(ts).all():    # an inf timestamp would sort last and silently become the test target
        row = int(np.argmax(~np.isfinite(ts))) + 1
        raise DataError(f"{name}: row {row} has a timestamp that is not a finite number; pass numeric times")
    df["user"] = df["user"].astype(str)
    df["item"] = df["item"].astype(str)
    df["_order"] = np.arange(len(df))
    df = kcore(df, k)
    if df.empty:
        raise DataError(f"{name}: no interactions left after {k}-core filtering")
    items = sorted(df["item"].unique(), key=lambda s: (len(s), s) if s.isdigit() else (float("inf"), s))
    item_index = {it: i + 1 for i, it in enumerate(items)}
    df["iid"] = df["item"].map(item_index)
    df = df.sort_values(["user", "timestamp", "_order"], kind="stable")
    users, sequences = [], []
    for user, group in df.groupby("user", sort=False):
        users.append(user)
        sequences.append(group["iid"].to_numpy(dtype=np.int64))
    order = sorted(range(len(users)), key=lambda i: (len(users[i]), users[i]) if users[i].isdigit() else (float("inf"), users[i]))
    users = [users[i] for i in order]
    sequences = [sequences[i] for i in order]
    item_ids = ["<pad>"] + items
    item_titles = None
    if titles:
        item_titles = [""] + [titles.get(it, f"item {it}") for it in items]
    item_facets = {}
    for fname, mapping in (facets or {}).items():
        item_facets[fname] = [()] + [tuple(mapping.get(it, ())) for it in items]
    source = dict(source, options=dict(source.get("options", {}), kcore=k))
    return SequenceDataset(name=name, sequences=sequences, n_items=len(items), user_ids=users,
                           item_ids=item_ids, titles=item_titles, facets=item_facets, source=source)


# ---- readers ------------------------------------------------------------------------------------

def read_sequence_file(path, name: str | None = None) -> SequenceDataset:
    """`user item item ...` per line, chronological, item ids >= 1 kept as they are."""
    path = _require_file(Path(path), "sequence file")
    users, sequences, seen = [], [], set()
    n_items = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            bad = next((t for t in tokens[1:] if not _ID.fullmatch(t)), None)
            if bad is not None:
                shown = bad if len(bad) <= 24 else bad[:20] + "..."
                raise DataError(f"{path.name}:{lineno}: expected whole-number item ids below 10^18 "
                                f"('user item item ...'), found {shown!r}")
            user, items = tokens[0], [int(t) for t in tokens[1:]]
            if len(user) > 200:
                raise DataError(f"{path.name}:{lineno}: a user id of {len(user)} characters; ids are short tokens")
            if not items:
                raise DataError(f"{path.name}:{lineno}: user {user} has no items")
            if min(items) < 1:
                raise DataError(f"{path.name}:{lineno}: item id {min(items)} is invalid (ids start at 1; 0 is padding)")
            if user in seen:
                raise DataError(f"{path.name}:{lineno}: user {user} appears twice")
            seen.add(user)
            users.append(user)
            sequences.append(np.asarray(items, dtype=np.int64))
            n_items = max(n_items, max(items))
    if not sequences:
        raise DataError(f"{path.name}: no users found (expected lines 'user item item ...')")
    name = name or path.stem
    item_ids = None
    distinct = np.unique(np.concatenate(sequences))
    if n_items > 2 * len(distinct) + 1000:
        # sparse ids (e.g. raw catalogue numbers up to 10^9): renumber 1..n in id order instead of
        # allocating an embedding row for every unused id; the source ids stay as the item ids
        sequences = [np.searchsorted(distinct, s).astype(np.int64) + 1 for s in sequences]
        item_ids = ["<pad>"] + [str(v) for v in distinct.tolist()]
        n_items = len(distinct)
    return SequenceDataset(name=name, sequences=sequences, n_items=n_items, user_ids=users, item_ids=item_ids,
                           source=_source("sequence-file", str(path), [path], remapped=item_ids is not None))


def add_item_attributes(dataset: SequenceDataset, path, facet: str = "attribute") -> SequenceDataset:
    """Attach an S3-Rec `item2attributes.json` (`{"item": [attr, ...]}`) as an item facet."""
    path = _require_file(Path(path), "item attributes file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise DataError(f"{path.name}: nested too deeply; expected {{\"item_id\": [attribute, ...]}}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path.name}: not valid JSON ({str(e)[:120]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path.name}: expected an object {{\"item_id\": [attribute, ...]}}")
    values: list[tuple[str, ...]] = [()] * (dataset.n_items + 1)
    index = ({sid: i for i, sid in enumerate(dataset.item_ids)} if dataset.item_ids is not None else None)
    for key, attrs in raw.items():
        item = index.get(str(key)) if index is not None else (int(key) if str(key).isdigit() else None)
        if item is None or not 1 <= item <= dataset.n_items:
            raise DataError(f"{path.name}: item {str(key)[:40]!r} is not an item of data set {dataset.name!r} "
                            f"(items 1..{dataset.n_items})")
        if not isinstance(attrs, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                                  for a in attrs):
            raise DataError(f"{path.name}: attributes of item {str(key)[:40]!r} must be a list of strings or numbers")
        values[item] = tuple(str(a) for a in attrs)
    dataset.facets[facet] = values
    dataset.source.setdefault("sha256", {})[path.name] = sha256_of(path)
    dataset.source.setdefault("paths", []).append(str(path.resolve()))
    return dataset


_MOVIELENS_RATINGS = ("ratings.csv", "ratings.dat", "u.data")
_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() also takes '²' and '٣', and 10^18 < 2^63


_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


def read_movielens(path, k: int = KCORE, name: str | None = None) -> SequenceDataset:
    """MovieLens ratings (ml-latest*, ml-20m/25m `ratings.csv`; ml-1m `ratings.dat`; ml-100k
    `u.data`), sorted by timestamp, k-core filtered; titles and genres from the movie file
    beside it (`movies.csv`, `movies.dat`, `u.item`) when present, and the release decade from the
    title's year ("1990s") as a second item facet."""
    path = Path(path)
    if path.is_dir():
        found = [path / f for f in _MOVIELENS_RATINGS if (path / f).exists()]
        if not found:
            raise DataError(f"{path}: no MovieLens ratings file ({', '.join(_MOVIELENS_RATINGS)})")
        path = found[0]
    _require_file(path, "MovieLens ratings file")
    folder, paths = path.parent, [path]
    try:
        if path.name == "ratings.csv":
            df = pd.read_csv(path, usecols=["userId", "movieId", "timestamp"])
            df.columns = ["user", "item", "timestamp"]
        elif path.name == "ratings.dat":
            df = pd.read_csv(path, sep="::", engine="python", header=None,
                             names=["user", "item", "rating", "timestamp"])
        elif path.name == "u.data":
            df = pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"])
        else:
            raise DataError(f"{path.name}: not a MovieLens ratings file ({', '.join(_MOVIELENS_RATINGS)})")
        _require_complete(df, ["user", "item", "timestamp"], path.name)
        df["timestamp"] = pd.to_numeric(df["timestamp"], errors="raise")
    except DataError:
        raise
    except (pd.errors.ParserError, ValueError, KeyError) as e:
        raise DataError(f"{path.name}: cannot read MovieLens ratings ({str(e).splitlines()[0][:160]})") from None
    titles, genres, decades = {}, {}, {}
    movie_file = next((folder / f for f in ("movies.csv", "movies.dat", "u.item") if (folder / f).exists()), None)
    if movie_file is not None:
        _require_file(movie_file, "MovieLens movie file")
        paths.append(movie_file)
        try:
            movies = _read_movies(movie_file)
        except DataError:
            raise
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{movie_file.name}: cannot read MovieLens movies ({str(e).splitlines()[0][:160]})") from None
        for mid, title, g in zip(movies["movieId"], movies["title"], movies["genres"]):
            titles[str(mid)] = str(title)
            genres[str(mid)] = tuple(x for x in str(g).split("|") if x and x != "(no genres listed)")
            year = _TITLE_YEAR.search(str(title))     # "Heat (1995)": the release decade, a second facet
            decades[str(mid)] = (f"{int(year.group(1)) // 10 * 10}s",) if year else ()
    name = name or folder.name
    source = _source("movielens", str(path), paths)
    return from_interactions(df, name, source, k=k, titles=titles or None,
                             facets={"genre": genres, "decade": decades} if genres else None)


_UITEM_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]


def _read_movies(movie_file: Path) -> pd.DataFrame:
    """movieId, title, genres of a MovieLens movie file (movies.csv, movies.dat or u.item)."""
    if movie_file.name == "movies.csv":
        movies = pd.read_csv(movie_file, dtype=str)
        missing = [c for c in ("movieId", "title", "genres") if c not in movies.columns]
        if missing:
            raise DataError(f"{movie_file.name} lacks column(s) {', '.join(missing)}; expected the header "
                            "movieId,title,genres (or remove the file to read the ratings alone)")
    elif movie_file.name == "movies.dat":
        movies = pd.read_csv(movie_file, sep="::", engine="python", header=None, dtype=str,
                             names=["movieId", "title", "genres"], encoding="latin-1")
    else:  # u.item: id|title|date|video date|url|19 genre flags
        raw = pd.read_csv(movie_file, sep="|", header=None, dtype=str, encoding="latin-1")
        if raw.shape[1] != 5 + len(_UITEM_GENRES):
            raise DataError(f"{movie_file.name}: expected {5 + len(_UITEM_GENRES)} '|'-separated fields per line "
                            f"(id|title|date|video date|url|19 genre flags), found {raw.shape[1]}")
        flags = raw.iloc[:, 5:].to_numpy() == "1"
        movies = pd.DataFrame({"movieId": raw[0], "title": raw[1],
                               "genres": ["|".join(n for n, f in zip(_UITEM_GENRES, row) if f) for row in flags]})
    movies = movies[movies["movieId"].notna()]
    return movies.fillna("")


def _require_complete(df: pd.DataFrame, columns, name: str) -> None:
    """Refuse a row with an empty field (pandas reads it as NaN and would carry on)."""
    bad = df[columns].isna().any(axis=1).to_numpy()
    if bad.any():
        raise DataError(f"{name}: row {int(np.argmax(bad)) + 1} has an empty field ({', '.join(columns)} "
                        "must all be given)")


# column names accepted for a header of a user,item,timestamp CSV
_CSV_NAMES = {"user": ("user", "user_id", "userid", "uid"), "item": ("item", "item_id", "itemid", "iid", "movieid"),
              "timestamp": ("timestamp", "time", "ts", "datetime", "date")}


def _csv_columns(header: list[str], name: str) -> list[str]:
    """The header's columns for user, item and timestamp, matched by name (never by position)."""
    lowered = {h.strip().lower(): h for h in header}
    found = {}
    for role, aliases in _CSV_NAMES.items():
        match = next((lowered[a] for a in aliases if a in lowered), None)
        if match is None:
            shown = ",".join("".join(c if c.isprintable() else "?" for c in h[:20]) for h in header[:6])
            raise DataError(f"{name}: the header {shown} has no {role} column; "
                            f"name the columns user,item,timestamp (or drop the header to read them by position)")
        found[role] = match
    return [found["user"], found["item"], found["timestamp"]]


def read_interactions(path, k: int = KCORE, name: str | None = None) -> SequenceDataset:
    """A generic `user,item,timestamp` CSV (header optional) or a RecBole atomic `.inter` file."""
    path = _require_file(Path(path), "interactions file")
    try:
        if path.suffix == ".inter":
            df = pd.read_csv(path, sep="\t", dtype=str)
            cols = {c.split(":")[0]: c for c in df.columns}
            missing = [c for c in ("user_id", "item_id") if c not in cols]
            if missing:
                raise DataError(f"{path.name}: RecBole .inter file lacks field(s) {', '.join(missing)}")
            ts = df[cols["timestamp"]] if "timestamp" in cols else pd.Series(np.arange(len(df)))
            df = pd.DataFrame({"user": df[cols["user_id"]], "item": df[cols["item_id"]], "timestamp": ts})
            reader = "recbole-inter"
        else:
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            has_header = not first.split(",")[-1].strip().replace(".", "", 1).lstrip("-").isdigit()
            df = pd.read_csv(path, header=0 if has_header else None, dtype=str)
            if df.shape[1] < 3:
                raise DataError(f"{path.name}: expected columns user,item,timestamp; found {df.shape[1]} column(s)")
            if has_header:
                df = df[_csv_columns([str(c) for c in df.columns], path.name)]
            else:
                df = df.iloc[:, :3]
            df.columns = ["user", "item", "timestamp"]
            reader = "interactions-csv"
        bad = df[["user", "item", "timestamp"]].isna().any(axis=1)
        if bad.any():
            raise DataError(f"{path.name}: row {int(np.argmax(bad.to_numpy())) + 1} has an empty field")
        df["timestamp"] = pd.to_numeric(df["timestamp"], errors="coerce")
        if df["timestamp"].isna().any():
            row = int(np.argmax(df["timestamp"].isna().to_numpy())) + 1
            raise DataError(f"{path.name}: row {row} has a timestamp that is not a number")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path.name}: malformed ({str(e).splitlines()[0][:160]})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path.name}: not UTF-8 text; pass a user,item,timestamp CSV") from None
    return from_interactions(df, name or path.stem, _source(reader, str(path), [path]), k=k)


# ---- one entry point ----------------------------------------------------------------------------

def _parse_synthetic(spec: str) -> dict:
    params = {}
    if ":" in spec:
        for part in spec.split(":", 1)[1].split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise DataError(f"synthetic option {part!r} must look like key=value")
            key, value = (s.strip() for s in part.split("=", 1))
            params[key] = float(value) if re.fullmatch(r"-?\d*\.\d+", value) else (
                int(value) if re.fullmatch(r"-?\d+", value) else value)
    return params


SYNTHETIC_MAX = 10_000_000  # users or items of a generated world: beyond it, refuse before allocating


def load_dataset(spec, kcore_k: int | None = None) -> SequenceDataset:
    """Read a data set from what the user gave.

    - `synthetic` or `synthetic:seed=1,n_users=500`: the planted-facet world (no download);
    - a sequence file (`*.txt`), with `<stem>_item2attributes.json` beside it picked up;
    - a MovieLens folder or ratings file; a `.csv` / `.inter` interactions log (k-core `kcore_k`,
      default KCORE = 5 for raw logs, none for sequence files, which are 5-core already);
    - a folder holding exactly one of those.
    """
    if kcore_k is not None and (isinstance(kcore_k, bool) or not isinstance(kcore_k, int)
                                or not 1 <= kcore_k <= KCORE_MAX):
        raise DataError(f"kcore must be a whole number from 1 to {KCORE_MAX}, got {kcore_k!r:.40}; "
                        f"pass --kcore K (default {KCORE})")
    spec = str(spec)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        params = _parse_synthetic(spec)
        for key, top in (("n_users", SYNTHETIC_MAX), ("n_items", SYNTHETIC_MAX), ("min_len", 10_000),
                         ("max_len", 10_000), ("genre", 100_000), ("actor", 100_000)):
            value = params.get(key)
            if value is not None and (not isinstance(value, int) or not 1 <= value <= top):
                raise DataError(f"synthetic option {key}={value!r} is out of range; pass a whole number from 1 to "
                                f"{top:,}")
        if params.get("n_users", 2000) * params.get("max_len", 30) > 20 * SYNTHETIC_MAX:
            raise DataError("synthetic world too large (n_users x max_len above 2*10^8 interactions); "
                            "pass fewer users or shorter sequences")
        try:
            return make_facet_world(**params)
        except (TypeError, ValueError) as e:
            raise DataError(f"bad synthetic option: {e}") from None
    try:
        path = Path(spec).expanduser()
    except RuntimeError:  # '~nobody/...' for a user that does not exist
        raise DataError(f"data not found: {spec} (no such user's home folder; pass a full path)") from None
    if not path.exists():
        raise DataError(f"data not found: {spec} (pass a file, a folder, or 'synthetic')")
    k = KCORE if kcore_k is None else kcore_k
    if path.is_dir():
        if any((path / f).exists() for f in _MOVIELENS_RATINGS):
            return read_movielens(path, k=k)
        candidates = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".inter", ".csv")
                            and not p.name.startswith(".") and not p.stem.endswith(("_items", "_item_ids")))
        if len(candidates) != 1:
            names = ", ".join(p.name for p in candidates) or "none"
            raise DataError(f"{path}: cannot tell which data file to read (found: {names}); pass the file")
        path = candidates[0]
    if path.name in _MOVIELENS_RATINGS:
        return read_movielens(path, k=k)
    if path.suffix in (".csv", ".inter"):
        return attach_beside(read_interactions(path, k=k), path)
    dataset = read_sequence_file(path)
    if kcore_k:
        dataset = _kcore_sequences(dataset, kcore_k)
    attrs = path.with_name(f"{path.stem}_item2attributes.json")
    if attrs.exists():
        add_item_attributes(dataset, attrs)
    attach_beside(dataset, path)
    dataset.source["spec"] = str(path)
    return dataset


def _kcore_sequences(dataset: SequenceDataset, k: int) -> SequenceDataset:
    rows = [(u, i, t) for u, s in zip(dataset.user_ids, dataset.sequences) for t, i in enumerate(s)]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return from_interactions(df, dataset.name, dataset.source, k=k)

