"""The one data type of a data set: `SequenceDataset` (readers that build it are in `fame_core.data`).

Its own module so that every builder (the readers, `synthetic`, `items`) imports it without
importing each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

SPLITS = ("train", "valid", "test")


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class SequenceDataset:
    """Per-user chronological item sequences plus item metadata.

    sequences: one int64 array per user, internal item ids in 1..n_items, oldest first.
    user_ids:  the user's id as written in the source (a string), one per sequence.
    item_ids:  the source's id of each internal item id (index 0 is padding), or None when
               the source's ids are already 1..n and kept as they are (sequence files).
    titles:    a title per internal item id (index 0 unused), or None.
    facets:    facet name -> a tuple of values per internal item id (index 0 is ()).
    source:    how it was read: reader, spec, paths, sha256 of each file, options.
    truth:     ground truth of the synthetic facet world (None for real data).
    """

    name: str
    sequences: list[np.ndarray]
    n_items: int
    user_ids: list[str]
    item_ids: list[str] | None = None
    titles: list[str] | None = None
    facets: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    truth: dict | None = None

    def __post_init__(self):
        self._user_row = {u: i for i, u in enumerate(self.user_ids)}
        self._fingerprint = None

    # ---- basic facts -------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_actions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def fingerprint(self) -> str:
        """sha256 of the content (item count and every sequence), independent of file format."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(np.int64(self.n_items).tobytes())
            h.update(np.array([len(s) for s in self.sequences], dtype=np.int64).tobytes())
            if self.sequences:
                h.update(np.concatenate(self.sequences).astype(np.int64).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        lengths = np.array([len(s) for s in self.sequences])
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "actions": self.n_actions,
            "avg_length": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "density": round(self.n_actions / max(1, self.n_users * self.n_items), 6),
            "users_too_short_to_split": int((lengths < 3).sum()),
            "facets": {k: len({x for vals in v for x in vals}) for k, v in self.facets.items()},
            "has_titles": self.titles is not None,
            "reader": self.source.get("reader"),
            "fingerprint": self.fingerprint(),
        }

    # ---- users and the leave-one-out split ------------------------------------------------
    def has_user(self, user) -> bool:
        return str(user) in self._user_row

    def user_row(self, user) -> int:
        """Row of a user given by its source id (e.g. `230` for line 230 of Sports)."""
        row = self._user_row.get(str(user))
        if row is None:
            raise DataError(f"unknown user {str(user)!r} in data set {self.name!r} "
                            f"({self.n_users} users; ids look like {self.user_ids[0]!r}..{self.user_ids[-1]!r})")
        return row

    def example(self, row: int, split: str = "test") -> tuple[np.ndarray, int | None]:
        """Input sequence and target of user `row` under leave-one-out.

        test: all but the last item -> last item; valid: all but the last two -> second to
        last; train: all but the last two items (its targets are its own next items, no single
        target: returns None).
        """
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; pass one of {', '.join(SPLITS)}")
        seq = self.sequences[row]
        if len(seq) < 3:
            raise DataError(f"user {self.user_ids[row]!r} has {len(seq)} item(s); "
                            "leave-one-out needs at least 3")
        if split == "test":
            return seq[:-1], int(seq[-1])
        if split == "valid":
            return seq[:-2], int(seq[-2])
        return seq[:-2], None

    def splittable_rows(self) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.sequences) if len(s) >= 3], dtype=np.int64)

    # ---- item labels ------------------------------------------------------------------------
    def item_source_id(self, item: int) -> str:
        return str(item) if self.item_ids is None else self.item_ids[item]

    def label(self, item: int, short: bool = False) -> str:
        """A human-readable label: "Toy Story (1995) · Adventure|Animation|Children +2 more ·
        1990s" (a title, then each named facet's values), "item 12 · Drama · Actor 05" (no title:
        the item id), "item 4 · attribute 23|2|28 +3 more" (anonymous value ids, such as Amazon's
        attributes, shown only where there is no title: a title takes over from them).

        Every facet's values are shown by `facet_text`: each value once, in order of first
        appearance, the first LABEL_VALUES of them, then "+N more". `short=True`: the title alone
        where there is one, else the item id and the named facets' values (no anonymous ids)."""
        item = int(item)
        if item <= 0 or item > self.n_items:
            return "<pad>" if item == 0 else f"item {item} (unknown)"
        title = self.titles[item].strip() if self.titles and self.titles[item] else ""
        if title and short:
            return title
        parts = [title or f"item {self.item_source_id(item)}"]
        for name, values in self.facets.items():
            if values[item]:
                anonymous = all(v.isdigit() for v in values[item])   # e.g. Amazon attribute ids
                if anonymous and (title or short):
                    continue
                parts.append(("%s " % name if anonymous else "") + facet_text(values[item]))
        return " · ".join(parts)


LABEL_VALUES = 3   # values of one facet that a label shows before "+N more"


def facet_text(values, cap: int = LABEL_VALUES) -> str:
    """One item's values of one facet as labels show them: each value once (repeats dropped),
    in order of first appearance in the source's list (not by frequency: the order the source
    gives, the same for every view), the first `cap` joined by "|", then " +N more" for the N
    other distinct values. ("23", "2", "28", "29", "2", "28", "157") -> "23|2|28 +2 more"."""
    distinct = list(dict.fromkeys(str(v) for v in values))
    shown = "|".join(distinct[:cap])
    return shown + (f" +{len(distinct) - cap} more" if len(distinct) > cap else "")

__all__ = ["LABEL_VALUES", "SequenceDataset", "SPLITS", "facet_text", "sha256_of"]
