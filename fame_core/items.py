"""Item tables: any number of item facets at once (genre, brand, price band, author).

- a CSV/TSV with an id column and facet columns (`read_item_table`): the id column is the first
  column named item_id, item, itemId, movieId or id (else the first column); a title column
  (title, name, movie_title, item_name) becomes the items' titles; every other column is a facet,
  single- or multi-valued (`Action|Drama`, split on `|`); a decimal column with more than 20
  distinct values (a price) is bucketed into quantile bands ("4.99-9.99"), integers stay categories;
- a RecBole atomic `.item` file (`read_recbole_items`): tab-separated `name:type` fields; `token`
  and `token_seq` fields become facets (token_seq split on spaces), `float` fields are bucketed
  into quantile bands, a title-like field gives titles, `float_seq` is skipped.

`add_item_table(dataset, path)` attaches every facet of a table to a data set (what `--items FILE`
does); `attach_beside(dataset, path)` picks up `<stem>_items.csv` / `<stem>_items.tsv` /
`<stem>.item` beside a data file. The facets then serve labels, the Facet explorer,
`--facet-heads` and the facet measures like any other. Problems are one-line `DataError`s: an id
column matching none of the data set's items, duplicate ids, an empty facet, a malformed row.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import SequenceDataset, sha256_of
from .errors import DataError

ID_COLUMNS = ("item_id", "item", "itemid", "movieid", "id")
TITLE_COLUMNS = ("title", "name", "movie_title", "item_name")
SEPARATOR = "|"
BANDS = 5            # quantile bands of a numeric facet
MAX_CATEGORIES = 20  # a numeric column with more distinct values than this is banded


def _regular_file(path: Path, what: str) -> Path:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise DataError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{what} is not a regular file: {path}")
    return path


def _shown(cell: str) -> str:
    """A cell of the user's own file quoted on one line: at most 40 printable characters."""
    return repr("".join(c if c.isprintable() else "?" for c in str(cell)[:40]))


def _bands(name: str, raw: pd.Series) -> pd.Series:
    """Numeric values -> quantile band labels ("4.99-9.99"); empty cells stay empty."""
    present = raw.str.strip() != ""
    values = pd.to_numeric(raw.where(present), errors="coerce")
    bad = present & ~np.isfinite(values.fillna(np.nan).astype(float))
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise DataError(f"facet {name!r}: row {row + 2} has {_shown(raw.iloc[row])}, not a finite number; "
                        "leave the cell empty for an item without a value")
    edges = np.unique(np.quantile(values.dropna(), np.linspace(0, 1, BANDS + 1)))
    if len(edges) < 2:
        edges = np.array([values.min(), values.max()])
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    return pd.Series([labels[i] if ok else "" for i, ok in zip(index, present)], index=raw.index)


def _is_numeric(raw: pd.Series) -> bool:
    """A measured quantity (price, rating): decimal numbers with many distinct values. Integer
    columns (brand ids, years) stay categorical."""
    present = raw[raw.str.strip() != ""].str.strip()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().all() \
        and not present.str.fullmatch(r"-?\d+").all() and present.nunique() > MAX_CATEGORIES


def read_item_table(path) -> tuple[list[str], list[str] | None, dict[str, list[tuple[str, ...]]]]:
    """(ids, titles or None, facet -> values per row) of a CSV/TSV item table."""
    path = _regular_file(Path(path), "item table")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path.name}: not a readable item table ({str(e).splitlines()[0][:120]})") from None
    lower = {c.lower().strip(): c for c in df.columns}
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), df.columns[0] if len(df.columns) else None)
    title_col = next((lower[c] for c in TITLE_COLUMNS if c in lower and lower[c] != id_col), None)
    facet_cols = [c for c in df.columns if c not in (id_col, title_col)]
    if id_col is None or not facet_cols:
        raise DataError(f"{path.name}: expected an id column and at least one facet column "
                        f"(e.g. 'item_id{sep}genres'), found {list(map(str, df.columns))[:6]}")
    if df.empty:
        raise DataError(f"{path.name}: no items (only a header)")
    facets = {}
    for col in facet_cols:
        raw = df[col].astype(str)
        if (raw.str.strip() == "").all():
            raise DataError(f"{path.name}: facet {col!r} is empty (no item has a value); drop the column or fill it")
        if _is_numeric(raw):
            raw = _bands(col, raw)
        facets[str(col).strip()] = [tuple(v.strip() for v in cell.split(SEPARATOR) if v.strip()) for cell in raw]
    titles = df[title_col].astype(str).tolist() if title_col else None
    return _check_ids(path, df[id_col].astype(str).str.strip().tolist(), id_col), titles, facets


def _check_ids(path: Path, ids: list[str], column: str) -> list[str]:
    if not ids:
        raise DataError(f"{path.name}: no items (only a header)")
    seen = {}
    for row, item in enumerate(ids, 2):
        if item == "":
            raise DataError(f"{path.name}: row {row} has an empty id in column {column!r}")
        if item in seen:
            raise DataError(f"{path.name}: item id {item[:40]!r} appears twice in column {column!r} "
                            f"(rows {seen[item]} and {row}); give each item one row")
        seen[item] = row
    return ids


RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def read_recbole_items(path) -> tuple[list[str], list[str] | None, dict[str, list[tuple[str, ...]]]]:
    """(ids, titles or None, facet -> values per row) of a RecBole atomic `.item` file."""
    path = _regular_file(Path(path), "RecBole .item file")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8", quoting=3)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path.name}: not a readable RecBole .item file ({str(e).splitlines()[0][:120]})") from None
    fields = {}
    for col in df.columns:
        name, _, kind = str(col).partition(":")
        if kind not in RECBOLE_TYPES:
            raise DataError(f"{path.name}: field {str(col)[:40]!r} must look like name:type with type one of "
                            f"{', '.join(RECBOLE_TYPES)}")
        fields[name] = (col, kind)
    if "item_id" not in fields:
        raise DataError(f"{path.name}: RecBole .item file lacks the field item_id:token")
    titles, facets = None, {}
    for name, (col, kind) in fields.items():
        if name == "item_id" or kind == "float_seq":
            continue
        raw = df[col].astype(str)
        if name.lower() in TITLE_COLUMNS and titles is None:
            titles = raw.tolist()
            continue
        if (raw.str.strip() == "").all():
            raise DataError(f"{path.name}: facet {name!r} is empty (no item has a value); drop the field or fill it")
        if kind == "float":
            raw = _bands(name, raw)
            facets[name] = [(v,) if v else () for v in raw]
        elif kind == "token_seq":
            facets[name] = [tuple(cell.split()) for cell in raw]
        else:
            facets[name] = [(cell.strip(),) if cell.strip() else () for cell in raw]
    if not facets and titles is None:
        raise DataError(f"{path.name}: no token, token_seq or float field besides item_id")
    return _check_ids(path, df[fields["item_id"][0]].astype(str).str.strip().tolist(), "item_id"), titles, facets


def _attach(dataset: SequenceDataset, path: Path) -> SequenceDataset:
    reader = read_recbole_items if path.suffix == ".item" else read_item_table
    ids, titles, facets = reader(path)
    if dataset.item_ids is None:        # source ids are the internal ids 1..n (sequence files)
        internal = [int(i) if i.isdigit() and len(i) < 19 and 1 <= int(i) <= dataset.n_items else None for i in ids]
    else:
        index = {sid: i for i, sid in enumerate(dataset.item_ids) if i > 0}
        internal = [index.get(i) for i in ids]
    matched = [(row, item) for row, item in enumerate(internal) if item is not None]
    if not matched:
        known = dataset.item_source_id(1) if dataset.n_items else "none"
        raise DataError(f"{path.name}: none of its {len(ids)} ids (e.g. {ids[0][:40]!r}) is an item of data set "
                        f"{dataset.name!r} (whose ids look like {known!r}); check the id column")
    for name, values in facets.items():
        column: list[tuple[str, ...]] = [()] * (dataset.n_items + 1)
        for row, item in matched:
            column[item] = values[row]
        if not any(column):
            raise DataError(f"{path.name}: facet {name!r} has no value for any item of data set {dataset.name!r}")
        dataset.facets[name] = column
    if titles is not None:
        merged = list(dataset.titles) if dataset.titles else [""] + [f"item {dataset.item_source_id(i)}"
                                                                      for i in range(1, dataset.n_items + 1)]
        for row, item in matched:
            if titles[row].strip():
                merged[item] = titles[row].strip()
        dataset.titles = merged
    dataset.source.setdefault("sha256", {})[path.name] = sha256_of(path)
    paths = dataset.source.setdefault("paths", [])
    if str(path.resolve()) not in paths:
        paths.append(str(path.resolve()))
    return dataset


def add_item_table(dataset: SequenceDataset, path) -> SequenceDataset:
    """Attach every facet (and titles) of an item table (CSV/TSV, or RecBole `.item`) to the data
    set, recorded in its source (file sha256, and `options["items"]` for the checkpoint)."""
    path = Path(path).expanduser()
    _attach(dataset, path)
    dataset.source["options"] = dict(dataset.source.get("options") or {}, items=path.name)
    return dataset


def attach_beside(dataset: SequenceDataset, path) -> SequenceDataset:
    """Attach `<stem>_items.csv`, `<stem>_items.tsv` or `<stem>.item` found beside data file `path`."""
    path = Path(path)
    for name in (f"{path.stem}_items.csv", f"{path.stem}_items.tsv", f"{path.stem}.item"):
        if (path.parent / name).exists():
            _attach(dataset, path.parent / name)
    return dataset
