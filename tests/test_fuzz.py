"""Property-based fuzzing of the edges (issue 11): data readers, CLI options, checkpoint loader.

The contract, for every input: either one line `error: ...` with exit status 2 (a `FameError` in
the library), or success with results in range — never a traceback, never a hang, never a file
changed outside the output path.

CI runs the "ci" profile (about a minute); a longer run by hand:

    FAME_FUZZ=long python -m pytest tests/test_fuzz.py -q
"""

import contextlib
import json
import os
import shutil
import signal
import string

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fame_core.data import load_dataset
from fame_core.errors import FameError

from .conftest import REPO, TINY_WORLD
from .test_reliability import cli, tree

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=1500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = os.environ.get("FAME_FUZZ", "ci")
settings.load_profile(PROFILE)

DEMO = REPO / "checkpoints" / "demo"


@contextlib.contextmanager
def time_limit(seconds: int = 60):
    """A hang is a failure: SIGALRM ends the call after `seconds`."""
    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def read_or_refuse(path):
    """load_dataset: a DataError (one line), or a data set whose every id is in range."""
    with time_limit(30):
        try:
            data = load_dataset(path)
        except FameError as e:
            assert "\n" not in str(e) and len(str(e)) < 600
            return None
    assert data.n_items >= 1 and data.n_users == len(data.sequences) >= 1
    for seq in data.sequences:
        assert seq.dtype == np.int64 and seq.min() >= 1 and seq.max() <= data.n_items
    return data


# ---- readers -------------------------------------------------------------------------------------

token = st.one_of(st.integers(-5, 10**6).map(str), st.integers(0, 10**30).map(str),
                  st.sampled_from(["²", "٣", "1e3", "0x1f", "nan", "-", "", "9" * 5000, "１２"]),
                  st.text(string.ascii_letters + string.digits, max_size=6))
line = st.lists(token, min_size=0, max_size=8).map(" ".join)


@given(st.lists(line, min_size=0, max_size=12))
def test_sequence_files(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("seq") / "data.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read_or_refuse(path)


field = st.one_of(st.integers(-3, 50).map(str), st.sampled_from(["", "x", "1.5", "1e400", "nan", '"', "a,b"]))
header = st.one_of(st.just(None), st.permutations(["user", "item", "timestamp"]).map(list),
                   st.lists(st.sampled_from(["user", "item", "timestamp", "userId", "rating", "x", ""]),
                            min_size=1, max_size=5))


@given(header, st.lists(st.lists(field, min_size=1, max_size=5), max_size=40))
def test_interaction_logs(tmp_path_factory, head, rows):
    path = tmp_path_factory.mktemp("csv") / "log.csv"
    body = [",".join(r) for r in rows]
    path.write_text("\n".join(([",".join(head)] if head else []) + body) + "\n")
    data = read_or_refuse(path)
    if data is not None and head and sorted(head[:3]) == ["item", "timestamp", "user"]:
        assert len(head) == 3  # read by name: a permuted header is honoured (checked in test_data too)


movies = st.sampled_from([
    "movieId,title,genres\n1,A (1995),Drama\n2,B,Comedy|Drama\n",
    "movieId,title\n1,A (1995)\n",
    "movieId,genres\n1,Drama\n",
    "movieId,title,genres\n1,,\n,,\n",
    "",
    "garbage\x00\x01",
])


@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6), st.one_of(st.integers(0, 99).map(str),
                                                                        st.sampled_from(["", "x"]))),
                max_size=60), movies)
def test_movielens_folders(tmp_path_factory, ratings, movie_text):
    folder = tmp_path_factory.mktemp("ml")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"
                                        + "".join(f"{u},{i},4.0,{t}\n" for u, i, t in ratings))
    (folder / "movies.csv").write_text(movie_text)
    read_or_refuse(folder)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.text(max_size=4)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=12)


@given(st.one_of(json_values, st.dictionaries(st.integers(-2, 12).map(str), json_values, max_size=8)))
def test_item_attribute_files(tmp_path_factory, attrs):
    folder = tmp_path_factory.mktemp("attrs")
    (folder / "d.txt").write_text("1 1 2 3 4\n2 2 3 4 5\n3 5 4 3 2\n")
    (folder / "d_item2attributes.json").write_text(json.dumps(attrs))
    data = read_or_refuse(folder / "d.txt")
    if data is not None:
        assert all(len(v) == data.n_items + 1 for v in data.facets.values())


def test_deeply_nested_attributes_are_one_line(tmp_path):
    (tmp_path / "d.txt").write_text("1 1 2 3\n")
    (tmp_path / "d_item2attributes.json").write_text("[" * 100_000 + "]" * 100_000)
    assert read_or_refuse(tmp_path / "d.txt") is None


# ---- CLI options ---------------------------------------------------------------------------------

number_text = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                        st.sampled_from(["", "abc", "1e309", "-inf", "nan", "2.0", "9" * 40, "0x10", "٣", " 3"]))
TRAIN_OPTIONS = ["--heads", "--experts", "--layers", "--hidden", "--max-len", "--dropout", "--epochs",
                 "--patience", "--batch-size", "--lr", "--seed", "--kcore"]


def in_sandbox(tmp_path, *argv, out=None):
    """The CLI run in a folder with a file of the user's: it must be untouched, whatever happens."""
    (tmp_path / "keep.txt").write_text("the user's file")
    before = {k: v for k, v in tree(tmp_path).items() if not (out and k.startswith(out))}
    with time_limit(120):
        rc, err = cli(*argv, cwd=tmp_path)
    after = {k: v for k, v in tree(tmp_path).items() if not (out and k.startswith(out))}
    assert after == before
    assert (rc == 2 and len(err) == 1) or (rc == 0 and not err), (argv, rc, err)
    return rc


# each example trains a tiny model: 25 in CI, the profile's 1,500 under FAME_FUZZ=long
@settings(max_examples=int(os.environ.get("FAME_FUZZ_TRAIN", 1500 if PROFILE == "long" else 25)))
@given(st.sampled_from(TRAIN_OPTIONS), number_text)
def test_train_options(tmp_path_factory, option, value):
    tmp = tmp_path_factory.mktemp("train")
    base = {"--data": TINY_WORLD, "--epochs": "1", "--hidden": "8", "--max-len": "6", "--heads": "2",
            "--experts": "2", "--layers": "1", "--batch-size": "64"}
    base[option] = value
    argv = ["train"] + [x for kv in base.items() for x in kv] + ["--out", "run"]
    if in_sandbox(tmp, *argv, out="run") == 0:
        config = json.loads((tmp / "run" / "config.json").read_text())
        assert all(0 <= v <= 1 for v in config["test"].values())
    shutil.rmtree(tmp, ignore_errors=True)


@given(st.sampled_from(["--top-k", "--items", "--user", "--target", "--split"]), number_text)
def test_inspect_options(tmp_path_factory, option, value):
    tmp = tmp_path_factory.mktemp("inspect")
    args = {"--checkpoint": str(DEMO), "--items": "1,2,3"}
    if option == "--user":
        args.pop("--items")
    args[option] = value
    in_sandbox(tmp, "inspect", *[x for kv in args.items() for x in kv], "--json")


# ---- checkpoints ---------------------------------------------------------------------------------

MODEL_KEYS = ["n_heads", "n_experts", "d", "n_layers", "max_len", "n_items", "dropout", "residual", "model"]
weird = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True), st.text(max_size=5),
                  st.lists(st.integers(), max_size=2), st.just({"a": [[[]]]}), st.sampled_from(["yes", "2", 2.0, 0]))


@given(st.sampled_from(MODEL_KEYS), weird)
def test_corrupt_model_configs(tmp_path_factory, key, value):
    tmp = tmp_path_factory.mktemp("ckpt")
    bad = tmp / "bad"
    shutil.copytree(DEMO, bad)
    config = json.loads((bad / "config.json").read_text())
    config["model"][key] = value
    (bad / "config.json").write_text(json.dumps(config))
    in_sandbox(tmp, "inspect", "--checkpoint", "bad", "--items", "1,2,3", "--json")


@given(st.sampled_from(["config.json", "dataset.json", "weights.safetensors", "metrics.jsonl"]),
       st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"null", b"[]", b"{}", b"[" * 50_000])),
       st.booleans())
def test_corrupt_checkpoint_files(tmp_path_factory, name, content, truncate):
    tmp = tmp_path_factory.mktemp("ckpt")
    bad = tmp / "bad"
    shutil.copytree(DEMO, bad)
    path = bad / name
    path.write_bytes(path.read_bytes()[: len(content) * 97] if truncate else content)
    in_sandbox(tmp, "evaluate", "--checkpoint", "bad", "--json")


def test_a_fifo_as_a_data_file_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "data.txt")
    assert read_or_refuse(tmp_path / "data.txt") is None
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,1\n")
    os.mkfifo(tmp_path / "ml" / "movies.csv")
    assert read_or_refuse(tmp_path / "ml") is None
