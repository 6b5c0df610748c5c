"""Disk caches are verified on read (issue 39, item 4): an edited, damaged or odd-shaped cache entry is
a miss, recomputed with one note, never a wrong number or an exception."""

import json

import numpy as np
import pandas as pd
import pytest

from fame_core import cache, cohort
from tests.conftest import REPO, make_model

pytestmark = pytest.mark.fast


def _rehash(path):
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["sha256"] = cohort._file_sha256(path)
    path.with_suffix(".json").write_text(json.dumps(meta))


def _edit(path, change, rehash):
    table = pd.read_parquet(path)
    table = change(table)
    table.to_parquet(path, index=False)
    if rehash:          # a careful forger: the hash matches, so the schema and range checks must catch it
        _rehash(path)


EDITS = {
    "every rank set to 1": (lambda t: t.assign(**{c: 1 for c in t.columns if c.startswith("rank_")}), False),
    "negative ranks": (lambda t: t.assign(rank_gated=-5), True),
    "a missing column": (lambda t: t.drop(columns=["rank_concat"]), True),
    "gates above 1": (lambda t: t.assign(gate_0=3.0), True),
    "ranks as text": (lambda t: t.assign(rank_gated="x"), True),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_cohort_cache_is_recomputed_with_one_note(edit, tiny_world, tmp_path, capsys):
    m = make_model(n_items=tiny_world.n_items, seed=3)
    fresh = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    path = cohort.cache_path(m, tiny_world, "test", tmp_path)
    _edit(path, *EDITS[edit])
    capsys.readouterr()
    again = cohort.cohort_table(m, tiny_world, directory=tmp_path)
    assert again.attrs["from_cache"] is False
    pd.testing.assert_frame_equal(fresh.reset_index(drop=True), again.reset_index(drop=True), check_dtype=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"note: the cached cohort table {path.name} failed verification")
    assert cohort.cohort_table(m, tiny_world, directory=tmp_path).attrs["from_cache"] is True   # rewritten


@pytest.mark.parametrize("record", ["[1, 2]", "[" * 100000 + "]" * 100000, "{}", "not json"])
def test_an_odd_cohort_cache_record_is_a_miss(record, tiny_world, tmp_path, capsys):
    m = make_model(n_items=tiny_world.n_items, seed=3)
    cohort.cohort_table(m, tiny_world, directory=tmp_path)
    path = cohort.cache_path(m, tiny_world, "test", tmp_path)
    path.with_suffix(".json").write_text(record)
    assert cohort.cohort_table(m, tiny_world, directory=tmp_path).attrs["from_cache"] is False
    assert "failed verification" in capsys.readouterr().err


CKPT = REPO / "checkpoints" / "demo"


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2, 3]", "[" * 100000 + "]" * 100000,
                                     json.dumps({"format": cache.ENVELOPE, "sha256": "0" * 64, "value": {"a": 2}})])
def test_an_edited_json_cache_entry_is_recomputed(content, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAME_CACHE", str(tmp_path))
    calls = []
    compute = lambda: calls.append(1) or {"a": 1, "b": [1.5, None]}
    assert cache.cached_json(CKPT, "x", compute) == {"a": 1, "b": [1.5, None]}
    assert cache.cached_json(CKPT, "x", compute) == {"a": 1, "b": [1.5, None]} and len(calls) == 1
    (cache._folder(CKPT) / "x.json").write_text(content)
    assert cache.cached_json(CKPT, "x", compute) == {"a": 1, "b": [1.5, None]} and len(calls) == 2
    assert capsys.readouterr().err.count("failed verification") == 1


def test_a_caller_check_rejects_out_of_range_values(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAME_CACHE", str(tmp_path))
    frame = pd.DataFrame({"rank": [3, 4]})
    check = lambda v: isinstance(v, pd.DataFrame) and (v["rank"] >= 0).all()
    assert cache.cached_json(CKPT, "t", lambda: frame, check)["rank"].tolist() == [3, 4]
    stored = json.loads((cache._folder(CKPT) / "t.json").read_text())
    stored["value"]["split"]["data"] = [[-1], [-2]]
    stored["sha256"] = cache._digest(cache._canonical(stored["value"]))      # forged hash: the check still refuses
    (cache._folder(CKPT) / "t.json").write_text(json.dumps(stored))
    assert cache.cached_json(CKPT, "t", lambda: frame, check)["rank"].tolist() == [3, 4]
    assert "out of range" in capsys.readouterr().err


def test_an_edited_array_cache_entry_is_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAME_CACHE", str(tmp_path))
    value = np.arange(6.0).reshape(3, 2)
    assert np.array_equal(cache.cached_array(CKPT, "a", lambda: value), value)
    path = cache._folder(CKPT) / "a.npy"
    np.save(path, np.ones((3, 2)))
    assert np.array_equal(cache.cached_array(CKPT, "a", lambda: value), value)
    assert "sha256 does not match" in capsys.readouterr().err
    np.save(path, np.ones((3, 2)))
    path.with_suffix(".npy.json").write_text("[]")
    assert np.array_equal(cache.cached_array(CKPT, "a", lambda: value), value)
    assert np.array_equal(cache.cached_array(CKPT, "a", lambda: value * 0), value)    # a hit again
