"""Population views of one checkpoint: every user of a split at once (issue 14, the Cohort page).

`cohort_table(model, dataset, split)` runs one batched pass over all users
(`fame_core.evaluate.rank_users`: ranks under gated, concatenated and every single-head merge,
gates and router at the last position) plus one batched pass for the router at every position,
and returns one row per user:

    user, row, length, target, target_popularity, history_length (bucket), popularity (bucket),
    dominant_<facet> (the most frequent value of an item facet among the history items the model
    sees, "(none)" where none has one), rank_gated, rank_concat, rank_head:h (0-based),
    gate_h (H), gate_entropy (normalised: 0 = one head decides, 1 = all equal), top_gate_head,
    expert_h (argmax router choice at the last position), top_router_h (its weight),
    positions_h_e<n> (how many of the user's positions route mostly to expert n of head h).

The table is cached on disk (`$FAME_CACHE/cohort/`, default ~/.cache/fame/cohort, parquet) under
a key made of the model's weights and configuration (`model_fingerprint`), the data set's content
fingerprint, the split and this module's CACHE_VERSION, so a second call is a file read. Where
the cache cannot be written (a read-only or full disk) the table is returned uncached. Every summary below takes
such a table (or any slice of it: `slice_users`) and computes from it alone, so each figure is
sliceable by any column.

Target popularity is the number of times the target item occurs in the training part (all but the
last two items) of every user's sequence.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import SequenceDataset
from .errors import DataError, FameError
from .evaluate import left_pad, metrics_from_ranks, rank_users
from .models import merge_modes

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the model contract (fame_core/models/base.py)
    from .models import Recommender

CACHE_VERSION = 1
LENGTH_EDGES = (0, 5, 10, 20, 50, np.inf)     # history length buckets (input items)
POPULARITY_BUCKETS = 5                        # target popularity quantiles over users
GATE_BINS = 20


# ---- the table ---------------------------------------------------------------------------------------

def model_fingerprint(model: Recommender) -> str:
    """sha256 of a model's configuration and every weight (what its outputs depend on)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    from .cache import cache_root

    return cache_root() / "cohort"


def cache_path(model: Recommender, dataset: SequenceDataset, split: str, directory=None) -> Path:
    key = hashlib.sha256(f"{model_fingerprint(model)}|{dataset.fingerprint()}|{split}|{CACHE_VERSION}".encode())
    return Path(directory or cache_dir()) / f"{key.hexdigest()[:32]}.parquet"


def item_popularity(dataset: SequenceDataset) -> np.ndarray:
    """Occurrences of each item id in the training part (all but the last two items) of every sequence."""
    train = [s[:-2] for s in dataset.sequences if len(s) > 2]
    flat = np.concatenate(train) if train else np.zeros(0, dtype=np.int64)
    return np.bincount(flat, minlength=dataset.n_items + 1)


def _dominant_values(inputs, labels: np.ndarray, values: list[str], max_len: int) -> list[str]:
    """The modal facet value among each input's newest max_len items (ties: the more frequent value)."""
    U, V = len(inputs), len(values)
    rows = np.concatenate([np.full(min(len(x), max_len), i) for i, x in enumerate(inputs)])
    lab = labels[np.concatenate([x[-max_len:] for x in inputs])]
    keep = lab >= 0
    counts = np.zeros((U, V), dtype=np.int64)
    np.add.at(counts, (rows[keep], lab[keep]), 1)
    best = counts.argmax(1)
    names = np.array(values + ["(none)"], dtype=object)
    return names[np.where(counts.max(1) > 0, best, V)].tolist()


@torch.no_grad()
def position_loads(model: Recommender, inputs, batch_size: int = 512) -> np.ndarray:
    """(U, H, N) counts: how many of each input's positions route mostly to each expert (argmax
    of the router beta at every non-padding position), one forward pass per batch."""
    cfg = model.config
    H, N = cfg.n_heads, (cfg.n_experts if "experts" in model.capabilities else 1)
    out = np.zeros((len(inputs), H, N), dtype=np.int32)
    if N == 1:
        for i, x in enumerate(inputs):
            out[i, :, 0] = min(len(x), cfg.max_len)
        return out
    device = next(model.parameters()).device
    order = np.argsort([min(len(x), cfg.max_len) for x in inputs], kind="stable")
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        seq = left_pad([inputs[i] for i in idx], cfg.max_len, device)
        choice = model(seq).router.argmax(-1)                              # (B, H, T)
        onehot = torch.nn.functional.one_hot(choice, N) * (seq != 0)[:, None, :, None]
        out[idx] = onehot.sum(2).cpu().numpy()
    model.train(was_training)
    return out


def build_table(model: Recommender, dataset: SequenceDataset, split: str = "test", facets=None, batch_size: int = 1024,
                progress: bool = False) -> pd.DataFrame:
    """The per-user table (see the module docstring), computed without a cache."""
    from .labels import facet_labels

    if split not in ("test", "valid"):
        raise DataError(f"split must be 'test' or 'valid', not {split!r}")
    cfg = model.config
    H = cfg.n_heads
    merges = tuple(merge_modes(H))
    ranked = rank_users(model, dataset, split, merges=merges, batch_size=batch_size, progress=progress)
    rows = ranked["rows"]
    examples = [dataset.example(r, split) for r in rows]
    inputs = [x for x, _ in examples]
    targets = np.array([t for _, t in examples], dtype=np.int64)
    gates = ranked["gates"].astype(np.float64)
    router = ranked["router"]
    entropy = (-(gates * np.log(np.clip(gates, 1e-12, None))).sum(1) / np.log(H)) if H > 1 and "gate" in model.capabilities \
        else np.zeros(len(rows))
    pop = item_popularity(dataset)[targets]
    table = pd.DataFrame({"user": [dataset.user_ids[r] for r in rows], "row": rows, "length": ranked["lengths"],
                          "target": targets, "target_popularity": pop})
    table["history_length"] = pd.cut(table["length"], LENGTH_EDGES, right=True,
                                     labels=_edge_labels(LENGTH_EDGES)).astype(str)
    table["popularity"] = popularity_buckets(pop)
    for facet in (list(dataset.facets) if facets is None else facets):
        labels, values = facet_labels(dataset, facet)
        table[f"dominant_{facet}"] = _dominant_values(inputs, labels, values, cfg.max_len)
    for m in merges:
        table[f"rank_{m}"] = ranked["ranks"][m]
    for h in range(H):
        table[f"gate_{h}"] = gates[:, h]
    table["gate_entropy"] = entropy
    table["top_gate_head"] = gates.argmax(1)
    loads = position_loads(model, inputs)
    for h in range(H):
        table[f"expert_{h}"] = router[:, h].argmax(1)
        table[f"top_router_{h}"] = router[:, h].max(1).astype(np.float64)
        for n in range(loads.shape[2]):
            table[f"positions_{h}_e{n}"] = loads[:, h, n]
    table.attrs.update(model=cfg.model, heads=H, experts=int(router.shape[2]), split=split, dataset=dataset.name)
    return table


def _edge_labels(edges) -> list[str]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        out.append(f"{int(lo) + 1}+" if not np.isfinite(hi) else f"{int(lo) + 1}-{int(hi)}")
    return out


def popularity_buckets(pop: np.ndarray, buckets: int = POPULARITY_BUCKETS) -> list[str]:
    """Quantile buckets of the targets' popularity over users, labelled by their count range
    (ties can merge buckets, so there may be fewer than `buckets`)."""
    if len(pop) == 0:
        return []
    codes, edges = pd.qcut(pop, buckets, labels=False, retbins=True, duplicates="drop")
    codes = np.asarray(codes, dtype=np.int64)
    names = []
    for i in range(len(edges) - 1):
        lo = int(np.floor(edges[i])) + (1 if i else 0)
        names.append(f"q{i + 1}: {lo}-{int(np.floor(edges[i + 1]))}")
    return [names[c] for c in codes]


def cohort_table(model: Recommender, dataset: SequenceDataset, split: str = "test", cache: bool = True, directory=None,
                 progress: bool = False) -> pd.DataFrame:
    """`build_table`, read from the disk cache when this model, data set and split were seen before
    (table.attrs["from_cache"] says which). The cache file is written atomically and only ever
    under its own key: nothing else is replaced."""
    if not cache:
        return build_table(model, dataset, split, progress=progress)
    path = cache_path(model, dataset, split, directory)
    if path.is_file():
        try:
            return _read_cached(path, model, dataset)
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as e:   # a miss: recomputed, said once
            why = str(e) if isinstance(e, ValueError) and str(e) else e.__class__.__name__
            print(f"note: the cached cohort table {path.name} failed verification ({why[:160]}); recomputed",
                  file=sys.stderr)
    table = build_table(model, dataset, split, progress=progress)
    meta = dict(table.attrs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            table.to_parquet(tmp, index=False)
            meta["sha256"] = _file_sha256(tmp)
            _write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:   # a cache that cannot be written is no reason to fail: say so once, go on
        print(f"note: the cohort table was not cached ({path.parent}: {err.strerror or err}); "
              "set $FAME_CACHE to a writable folder to keep it", file=sys.stderr)
    table.attrs.update(from_cache=False)
    return table


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_cached(path: Path, model: Recommender, dataset: SequenceDataset) -> pd.DataFrame:
    """A cached table, verified (issue 39): its record is a dict whose sha256 is the parquet file's,
    every column a freshly built table has is there with its type, and the values are in range."""
    meta = json.loads(path.with_suffix(".json").read_text())
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise ValueError("its record is not a table record")
    if meta["sha256"] != _file_sha256(path):
        raise ValueError("its sha256 does not match the file")
    table = pd.read_parquet(path)
    cfg = model.config
    H, N = cfg.n_heads, int(meta.get("experts", 1)) if isinstance(meta.get("experts"), int) else 0
    if meta.get("heads") != H or N < 1:
        raise ValueError("its heads or experts are not the model's")
    merges = tuple(merge_modes(H))
    ints = ["row", "length", "target", "target_popularity", "top_gate_head"] + [f"rank_{m}" for m in merges] \
        + [f"expert_{h}" for h in range(H)] + [f"positions_{h}_e{n}" for h in range(H) for n in range(N)]
    floats = [f"gate_{h}" for h in range(H)] + ["gate_entropy"] + [f"top_router_{h}" for h in range(H)]
    missing = [c for c in ["user", "history_length", "popularity"] + ints + floats if c not in table.columns]
    if missing:
        raise ValueError(f"column {missing[0]} is missing")
    for c in ints:
        if not pd.api.types.is_integer_dtype(table[c]):
            raise ValueError(f"column {c} is not integer")
    for c in floats:
        if not pd.api.types.is_float_dtype(table[c]) or not np.isfinite(table[c]).all():
            raise ValueError(f"column {c} is not finite floats")
    ranges = {"row": (0, dataset.n_users - 1), "target": (1, dataset.n_items), "length": (0, None),
              "target_popularity": (0, None), "top_gate_head": (0, H - 1)}
    ranges.update({f"rank_{m}": (0, dataset.n_items) for m in merges})
    ranges.update({f"expert_{h}": (0, N - 1) for h in range(H)})
    ranges.update({c: (0, cfg.max_len) for c in ints if c.startswith("positions_")})
    ranges.update({c: (0.0, 1.0) for c in floats})
    for c, (lo, hi) in ranges.items():
        if len(table) and (table[c].min() < lo or (hi is not None and table[c].max() > hi)):
            raise ValueError(f"column {c} is out of range")
    if not table["row"].is_unique:
        raise ValueError("a user appears twice")
    table.attrs.update({k: v for k, v in meta.items() if k != "sha256"}, from_cache=True)
    return table


# ---- slices ---------------------------------------------------------------------------------------------

def slice_columns(table: pd.DataFrame) -> list[str]:
    """The columns a figure can be sliced by: history length, target popularity, dominant facet values."""
    return ["history_length", "popularity"] + [c for c in table.columns if c.startswith("dominant_")]


def slice_users(table: pd.DataFrame, column: str | None = None, value=None) -> pd.DataFrame:
    """The users of one bucket (all users when column is None)."""
    if column is None:
        return table
    if column not in table.columns:
        raise FameError(f"unknown slice {column!r}; use one of {', '.join(slice_columns(table))}")
    return table[table[column].astype(str) == str(value)]


def bucket_order(table: pd.DataFrame, column: str) -> list[str]:
    values = table[column].astype(str).unique().tolist()
    if column == "history_length":
        order = _edge_labels(LENGTH_EDGES)
        return [v for v in order if v in values]
    if column == "popularity":
        return sorted(values, key=lambda v: int(v.split(":")[0][1:]))
    counts = table[column].astype(str).value_counts()
    return [v for v in counts.index if v != "(none)"] + (["(none)"] if "(none)" in counts.index else [])


# ---- summaries (each computed from a table or a slice of one) --------------------------------------------

def heads_of(table: pd.DataFrame) -> int:
    return sum(c.startswith("gate_") and c[5:].isdigit() for c in table.columns)


def experts_of(table: pd.DataFrame) -> int:
    return sum(c.startswith("positions_0_e") for c in table.columns)


def gate_distribution(table: pd.DataFrame, bins: int = GATE_BINS) -> pd.DataFrame:
    """Per head, the share of users whose gate falls in each of `bins` equal bins of [0, 1]; the
    same for the normalised gate entropy (head = "entropy"). The uniform gate is 1/H."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    cols = [(f"head {h}", f"gate_{h}") for h in range(heads_of(table))] + [("entropy", "gate_entropy")]
    for name, col in cols:
        counts, _ = np.histogram(np.clip(table[col].to_numpy(), 0, 1), edges)
        share = counts / max(len(table), 1)
        rows += [{"series": name, "bin_lo": edges[i], "bin_hi": edges[i + 1], "users": int(counts[i]),
                  "share": float(share[i])} for i in range(bins)]
    return pd.DataFrame(rows)


def top_gate_share(table: pd.DataFrame) -> pd.DataFrame:
    """Share of users whose largest gate is each head."""
    H = heads_of(table)
    counts = np.bincount(table["top_gate_head"].to_numpy(), minlength=H)[:H]
    return pd.DataFrame({"head": np.arange(H), "users": counts, "share": counts / max(len(table), 1),
                         "uniform": 1.0 / H})


def expert_load(table: pd.DataFrame) -> pd.DataFrame:
    """Per head and expert: share of positions and of users (last position) whose argmax router
    choice is that expert, and per head the mean top router weight, against the uniform 1/N."""
    H, N = heads_of(table), experts_of(table)
    rows = []
    for h in range(H):
        pos = np.array([table[f"positions_{h}_e{n}"].sum() for n in range(N)], dtype=np.float64)
        users = np.bincount(table[f"expert_{h}"].to_numpy(), minlength=N)[:N]
        top = float(table[f"top_router_{h}"].mean()) if len(table) else 0.0
        for n in range(N):
            rows.append({"head": h, "expert": n, "share_of_positions": float(pos[n] / max(pos.sum(), 1)),
                         "share_of_users": float(users[n] / max(len(table), 1)), "mean_top_router_weight": top,
                         "uniform": 1.0 / N})
    return pd.DataFrame(rows)


def merge_metrics(table: pd.DataFrame, k: int = 20) -> pd.DataFrame:
    """HR@k and NDCG@k of each single head next to gated and concatenated merging."""
    merges = [c[5:] for c in table.columns if c.startswith("rank_")]
    rows = []
    for m in merges:
        met = metrics_from_ranks(table[f"rank_{m}"].to_numpy(), ks=(k,)) if len(table) else {f"HR@{k}": 0.0,
                                                                                                f"NDCG@{k}": 0.0}
        rows.append({"merge": m, f"HR@{k}": met[f"HR@{k}"], f"NDCG@{k}": met[f"NDCG@{k}"], "users": len(table)})
    return pd.DataFrame(rows)


def hit_flips(table: pd.DataFrame, k: int = 20) -> dict:
    """Users whose target gated merging ranks in the top k and concatenation does not, and the reverse."""
    g, c = table["rank_gated"] < k, table["rank_concat"] < k
    return {"k": k, "gated_hit_concat_miss": int((g & ~c).sum()), "concat_hit_gated_miss": int((c & ~g).sum()),
            "both_hit": int((g & c).sum()), "both_miss": int((~g & ~c).sum()), "users": int(len(table))}


def flip_users(table: pd.DataFrame, which: str, k: int = 20) -> pd.DataFrame:
    g, c = table["rank_gated"] < k, table["rank_concat"] < k
    masks = {"gated_hit_concat_miss": g & ~c, "concat_hit_gated_miss": c & ~g, "both_hit": g & c, "both_miss": ~g & ~c}
    if which not in masks:
        raise FameError(f"unknown group {which!r}; use one of {', '.join(masks)}")
    return table[masks[which]]


def by_slice(table: pd.DataFrame, column: str, summary, **kwargs) -> pd.DataFrame:
    """`summary` (a function of a table returning a DataFrame) per bucket of `column`, with a
    `bucket` column and the bucket's user count."""
    parts = []
    for value in bucket_order(table, column):
        part = summary(slice_users(table, column, value), **kwargs)
        part.insert(0, "bucket", value)
        part.insert(1, "bucket_users", int((table[column].astype(str) == value).sum()))
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def cohort_summary(table: pd.DataFrame, k: int = 20) -> dict:
    """Plain JSON-ready numbers of a whole table (docs, CLI and bench)."""
    H = heads_of(table)
    gates = table[[f"gate_{h}" for h in range(H)]].to_numpy()
    load = expert_load(table)
    return {"users": int(len(table)), "heads": H, "experts": experts_of(table),
            "gate_mean": gates.mean(0).round(4).tolist(), "gate_std": gates.std(0, ddof=1).round(4).tolist(),
            "gate_quartiles": np.quantile(gates, [0.25, 0.5, 0.75], axis=0).round(4).tolist(),
            "gate_entropy_mean": round(float(table["gate_entropy"].mean()), 4),
            "top_gate_share": top_gate_share(table)["share"].round(4).tolist(),
            "expert_share_of_positions": [load[load["head"] == h]["share_of_positions"].round(4).tolist() for h in range(H)],
            "expert_share_of_users": [load[load["head"] == h]["share_of_users"].round(4).tolist() for h in range(H)],
            "mean_top_router_weight": [round(float(load[load["head"] == h]["mean_top_router_weight"].iloc[0]), 4)
                                       for h in range(H)],
            "uniform_router_weight": round(1.0 / max(experts_of(table), 1), 4),
            "metrics": merge_metrics(table, k).round(4).to_dict("records"), "flips": hit_flips(table, k)}
