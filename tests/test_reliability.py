"""Nothing lost, nothing silently wrong: output folders, atomic replacement, kills, full disks,
resume settings, non-finite weights and records that do not fit the model (issue 11)."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import fame_core.checkpoint as ckpt
from fame_core import safe_io
from fame_core.cli import main
from fame_core.errors import FameError
from fame_core.evaluate import evaluate
from fame_core.training import TrainConfig, train

from .conftest import REPO, TINY_WORLD

DEMO = REPO / "checkpoints" / "demo"


def cli(*argv, cwd=None):
    """Run the CLI in this process; (exit status, its `error:` lines). Progress bars may share stderr;
    a traceback never may."""
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:
                rc = e.code
    finally:
        os.chdir(old)
    assert "Traceback" not in err.getvalue()
    return rc, [line for line in err.getvalue().replace("\r", "\n").splitlines() if line.startswith("error:")]


def tree(folder: Path) -> dict:
    """Every file under `folder` with its bytes, to prove nothing outside the output changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def small_checkpoint(path: Path, epochs: int = 1, **kw) -> Path:
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig

    data = load_dataset(TINY_WORLD)
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    train(data, cfg, TrainConfig(epochs=epochs, batch_size=64, **kw), path, progress=False)
    return path


W = ["--data", TINY_WORLD, "--epochs", "1", "--hidden", "16", "--max-len", "10"]


@pytest.mark.parametrize("make", ["folder-with-files", "file"])
def test_train_never_replaces_what_it_did_not_write(tmp_path, make):
    target = tmp_path / "results"
    if make == "file":
        target.write_text("precious")
    else:
        target.mkdir()
        (target / "thesis.tex").write_text("precious")
    before = tree(tmp_path)
    rc, err = cli("train", *W, "--out", target, "--overwrite")
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --out")
    assert "nothing was written" in err[0]
    assert tree(tmp_path) == before


@pytest.mark.parametrize("out", [".", "..", "sub/..", "/"])
def test_train_refuses_the_current_folder_and_its_parents(tmp_path, out):
    (tmp_path / "sub").mkdir()
    (tmp_path / "keep.txt").write_text("x")
    before = tree(tmp_path)
    rc, err = cli("train", *W, "--out", out, cwd=tmp_path)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --out") and "folder" in err[0]
    assert tree(tmp_path) == before


def test_an_empty_folder_or_an_existing_checkpoint_with_overwrite_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli("train", *W, "--out", tmp_path / "empty")[0] == 0
    assert ckpt.is_complete(tmp_path / "empty")
    rc, err = cli("train", *W, "--out", tmp_path / "empty")
    assert rc == 2 and "already holds a checkpoint" in err[0] and "--overwrite" in err[0]
    assert cli("train", *W, "--seed", "3", "--out", tmp_path / "empty", "--overwrite")[0] == 0
    assert json.loads((tmp_path / "empty" / "config.json").read_text())["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_compact_and_convert_refuse_to_overwrite(tmp_path):
    rc, err = cli("compact", "--checkpoint", DEMO, "--out", DEMO)
    assert rc == 2 and "is the checkpoint itself" in err[0]
    (tmp_path / "seq.txt").write_text("mine")
    rc, err = cli("data", "convert", TINY_WORLD, "--to", tmp_path / "seq.txt")
    assert rc == 2 and err == [f"error: --to {tmp_path / 'seq.txt'} exists; nothing was written; "
                               "pass a new file name (or --overwrite)"]
    assert (tmp_path / "seq.txt").read_text() == "mine"
    assert cli("data", "convert", TINY_WORLD, "--to", tmp_path / "seq.txt", "--overwrite")[0] == 0
    assert (tmp_path / "seq.txt").read_text().startswith("1 ")


def test_replacement_swaps_atomically_and_leaves_no_hidden_folder(tmp_path):
    out = small_checkpoint(tmp_path / "run")
    model = ckpt.load_checkpoint(out)
    seen = []
    real = safe_io._exchange

    def spy(a, b):
        ok = real(a, b)
        seen.append(ok)
        return ok

    safe_io._exchange = spy
    try:
        ckpt.write_checkpoint(out, model, model.provenance.dataset, {"note": "second"}, [])
    finally:
        safe_io._exchange = real
    if seen != [True]:
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this file system")
    assert json.loads((out / "config.json").read_text())["note"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


KILL_BETWEEN_RENAMES = """
import os, sys
from fame_core import safe_io, checkpoint
safe_io.USE_EXCHANGE = False            # the two-rename fallback, whose gap is at stake
real, calls = os.rename, []
def rename(a, b):
    real(a, b)
    calls.append(a)
    if len(calls) == 1:                 # directory -> .old-PID done, .tmp-PID -> directory not yet
        os._exit(9)
os.rename = rename
model = checkpoint.load_checkpoint(sys.argv[1])
checkpoint.write_checkpoint(sys.argv[1], model, model.provenance.dataset, {"note": "new"}, [])
"""


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    out = small_checkpoint(tmp_path / "run")
    old_weights = load_file(out / "weights.safetensors")
    r = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(out)], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    assert not out.exists()                                   # the gap: both copies sit in hidden siblings
    assert len(list(tmp_path.glob(".run.old-*"))) == 1 and len(list(tmp_path.glob(".run.tmp-*"))) == 1
    model = ckpt.load_checkpoint(out)                         # the next access puts the old one back
    assert model is not None and out.is_dir() and len(list(tmp_path.glob(".run.tmp-*"))) == 1  # a read deletes nothing
    assert all(torch.equal(v, old_weights[k]) for k, v in load_file(out / "weights.safetensors").items())
    ckpt.write_checkpoint(out, model, model.provenance.dataset, {"note": "again"}, [])  # a write cleans its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_resume_after_a_kill_in_the_gap_continues_the_run(tmp_path):
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig

    data = load_dataset(TINY_WORLD)
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    tc = TrainConfig(epochs=3, batch_size=64)
    full = train(data, cfg, tc, tmp_path / "full", progress=False)
    train(data, cfg, tc, tmp_path / "part", progress=False, stop_after=1)
    token = "0123456789abcdef"                                          # as left by a kill (dead PID, marked)
    old, tmp = tmp_path / f".part.old-999999999-{token}", tmp_path / f".part.tmp-999999999-{token}"
    os.rename(tmp_path / "part", old)
    (old / safe_io.MARKER).write_text(token)
    shutil.copytree(old, tmp)
    resumed = train(data, cfg, tc, tmp_path / "part", resume=True, progress=False)
    assert resumed["test"] == full["test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "part"]


@pytest.mark.parametrize("failure", ["enospc", "safetensors"])
def test_a_full_disk_gives_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    from safetensors import SafetensorError

    out = small_checkpoint(tmp_path / "run")
    before = tree(out)

    def full_disk(tensors, path, metadata=None):
        Path(path).write_bytes(b"\0" * 100)
        if failure == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    rc, err = cli("train", *W, "--out", out, "--overwrite")
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"error: could not write {out} (") and "previous content is unchanged" in err[0]
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    ckpt.load_checkpoint(out)


def test_resume_with_other_settings_names_them_or_records_them(tmp_path):
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig

    data = load_dataset(TINY_WORLD)
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    train(data, cfg, TrainConfig(epochs=3, batch_size=64, lr=1e-3), tmp_path / "run", progress=False, stop_after=1)
    other = TrainConfig(epochs=3, batch_size=64, lr=1e-2, seed=5)
    with pytest.raises(FameError, match=r"other training settings \(lr 0.001 -> 0.01, seed 0 -> 5\)"):
        train(data, cfg, other, tmp_path / "run", resume=True, progress=False)
    train(data, cfg, other, tmp_path / "run", resume=True, progress=False, allow_changes=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["lr"] == 0.01 and config["seed"] == 5
    assert config["resumed_with_changes"] == [{"epoch": 2, "changes": "lr 0.001 -> 0.01, seed 0 -> 5"}]


def test_resume_takes_the_same_base_reached_by_another_path_but_not_another_base(tmp_path):
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig, SASRecConfig

    data = load_dataset(TINY_WORLD)
    shared = dict(d=16, n_heads=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    train(data, SASRecConfig(**shared), TrainConfig(epochs=1, batch_size=64), tmp_path / "real" / "base", progress=False)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cfg = FAMEConfig(**shared, n_experts=2)
    train(data, cfg, TrainConfig(epochs=3, batch_size=64, init_from=str(tmp_path / "real" / "base")),
          tmp_path / "run", progress=False, stop_after=1)
    # the same base through a link (a runs folder reached from a new work tree): resumed, no change recorded
    train(data, cfg, TrainConfig(epochs=3, batch_size=64, init_from=str(tmp_path / "link" / "base")),
          tmp_path / "run", resume=True, progress=False, stop_after=2)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["init_from"] == str(tmp_path / "link" / "base") and "resumed_with_changes" not in config
    # a copy of it elsewhere is another file: named as a change
    shutil.copytree(tmp_path / "real" / "base", tmp_path / "copy")
    with pytest.raises(FameError, match=r"other training settings \(init_from .*link/base' -> .*copy'\)"):
        train(data, cfg, TrainConfig(epochs=3, batch_size=64, init_from=str(tmp_path / "copy")), tmp_path / "run",
              resume=True, progress=False)


def test_a_run_records_its_numerics_environment_and_a_resume_in_another_one(tmp_path):
    # the same seed with another number of threads gives other weights: a remake that differs from its
    # record must be able to say whether this is why
    from fame_core.data import load_dataset
    from fame_core.models import SASRecConfig

    data = load_dataset(TINY_WORLD)
    cfg = SASRecConfig(d=16, n_heads=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train(data, cfg, TrainConfig(epochs=3, batch_size=64), tmp_path / "run", progress=False, stop_after=1)
        config = json.loads((tmp_path / "run" / "config.json").read_text())
        assert config["environment"] == {"torch": torch.__version__, "device": "cpu", "threads": 1, "processes": 1}
        torch.set_num_threads(2)
        train(data, cfg, TrainConfig(epochs=3, batch_size=64), tmp_path / "run", resume=True, progress=False,
              stop_after=1)
        # resumed again in the same new environment (a study resumes every epoch): no second entry
        train(data, cfg, TrainConfig(epochs=3, batch_size=64), tmp_path / "run", resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["environment"]["threads"] == 1            # where it started
    assert config["resumed_in_environment"] == [{"epoch": 2, "environment": {**config["environment"], "threads": 2}}]


def corrupt_copy(tmp_path, name="bad") -> Path:
    dst = tmp_path / name
    shutil.copytree(DEMO, dst)
    return dst


def test_non_finite_weights_are_refused_before_ranking(tmp_path):
    bad = corrupt_copy(tmp_path)
    state = load_file(bad / "weights.safetensors")
    key = next(k for k in state if k.endswith("E.weight"))
    state[key][3, 0] = float("nan")
    save_file(state, bad / "weights.safetensors")
    rc, err = cli("evaluate", "--checkpoint", bad)
    assert rc == 2 and len(err) == 1 and "holds NaN or infinite values" in err[0] and key in err[0]


def test_a_dataset_record_of_another_catalogue_is_refused(tmp_path):
    bad = corrupt_copy(tmp_path)
    record = json.loads((bad / "dataset.json").read_text())
    (bad / "dataset.json").write_text(json.dumps(dict(record, n_items=record["n_items"] + 7)))
    rc, err = cli("inspect", "--checkpoint", bad, "--items", "1,2,3")
    assert rc == 2 and len(err) == 1 and "describes" in err[0] and "another data set" in err[0]
    for content in ("[]", "null", '{"n_items": "600"}'):
        (bad / "dataset.json").write_text(content)
        rc, err = cli("inspect", "--checkpoint", bad, "--items", "1,2,3")
        assert rc == 2 and len(err) == 1 and err[0].startswith("error:"), (content, err)


def test_metrics_out_of_their_range_are_never_printed():
    from fame_core.evaluate import metrics_from_ranks

    assert metrics_from_ranks([0, 5, 30])["HR@10"] == pytest.approx(2 / 3)
    with pytest.raises(FameError, match="out of range"):
        metrics_from_ranks([-1, 3])


def test_nan_scores_are_refused_not_ranked():
    from fame_core.evaluate import target_ranks

    scores = torch.tensor([[0.0, 1.0, float("nan")], [0.0, 2.0, 1.0]])
    with pytest.raises(FameError, match="NaN or infinite scores"):
        target_ranks(scores, torch.tensor([1, 1]))
    assert target_ranks(scores[1:], torch.tensor([2])).tolist() == [1]


def test_a_symlink_inside_a_root_does_not_reach_a_checkpoint_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    shutil.copytree(DEMO, outside / "demo")
    shutil.copytree(DEMO, root / "inside")
    (root / "link").symlink_to(outside / "demo")
    assert sorted(ckpt.find_checkpoints([root])) == ["inside"]


def test_non_regular_files_in_a_checkpoint_are_refused_without_reading(tmp_path):
    bad = corrupt_copy(tmp_path)
    (bad / "config.json").unlink()
    os.mkfifo(bad / "config.json")
    rc, err = cli("evaluate", "--checkpoint", bad)        # would block forever if the FIFO were opened
    assert rc == 2 and err == [f"error: {bad}/config.json is not a regular file; pass a checkpoint written by 'train'"]


def test_evaluate_on_the_demo_still_gives_in_range_metrics():
    import fame_core

    model, data = fame_core.load(DEMO)
    m = evaluate(model, data, "test")["metrics"]
    assert all(0.0 <= v <= 1.0 for v in m.values()) and m["HR@20"] >= m["HR@10"] >= m["HR@5"]


@pytest.mark.parametrize("edit", [
    lambda s: [1, 2, 3],
    lambda s: {k: v for k, v in s.items() if k != "optimizer"},
    lambda s: dict(s, epoch="3"),
    lambda s: dict(s, epoch=True),
    lambda s: dict(s, best_epoch=s["epoch"] + 5),
    lambda s: dict(s, bad_epochs=-1),
    lambda s: dict(s, model={"E": [1, 2]}),
    lambda s: dict(s, model={k: v[:1] for k, v in s["model"].items()}),
    lambda s: dict(s, optimizer={"state": {}, "param_groups": []}),
    lambda s: dict(s, best=1e9),                          # issue 39: a best score no validation NDCG can be
    lambda s: dict(s, epoch=10**9, bad_epochs=0),         # issue 39: an epoch past the run's epochs
])
def test_crafted_resume_states_are_refused_in_one_line(tmp_path, edit):
    from fame_core.data import load_dataset
    from fame_core.models import FAMEConfig

    data = load_dataset(TINY_WORLD)
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    tc = TrainConfig(epochs=3, batch_size=64)
    train(data, cfg, tc, tmp_path / "run", progress=False, stop_after=1)
    path = tmp_path / "run" / "train_state.pt"
    torch.save(edit(torch.load(path, weights_only=True)), path)
    with pytest.raises(FameError) as info:
        train(data, cfg, tc, tmp_path / "run", resume=True, progress=False)
    assert "\n" not in str(info.value) and "train_state.pt" in str(info.value)
