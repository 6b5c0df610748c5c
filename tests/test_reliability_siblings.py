"""Hidden siblings (issue 39, item 2): only folders that carry this project's marker are ever moved
or removed; paths are never glob patterns; read-only commands never delete anything."""

import os
import shutil

import pytest

from fame_core import safe_io

from .conftest import REPO
from .test_reliability import cli, small_checkpoint, tree

pytestmark = pytest.mark.fast
DEMO = REPO / "checkpoints" / "demo"


def look_alike(path, content="mine"):
    """A user's own folder whose name looks like one of the writer's hidden siblings."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text(content)
    return path


def test_evaluate_keeps_a_look_alike_old_folder(tmp_path):
    shutil.copytree(DEMO, tmp_path / "results")
    mine = look_alike(tmp_path / ".results.old-999997")
    before = tree(mine)
    assert cli("evaluate", "--checkpoint", tmp_path / "results")[0] == 0
    assert tree(mine) == before


def test_a_glob_in_the_checkpoint_path_touches_no_sibling(tmp_path):
    shutil.copytree(DEMO, tmp_path / "x")
    mine = look_alike(tmp_path / ".x.tmp-424242")
    victim = tmp_path / ".victim.old-999996"
    shutil.copytree(DEMO, victim)                      # another run's complete copy
    before = tree(tmp_path)
    cli("inspect", "--checkpoint", tmp_path / "*", "--items", "1,2")
    cli("evaluate", "--checkpoint", tmp_path / "*")
    assert tree(tmp_path) == before and mine.is_dir() and victim.is_dir()
    assert not (tmp_path / "*").exists()


def test_train_with_glob_characters_moves_no_other_run(tmp_path):
    victim = tmp_path / ".victim.old-999995"
    shutil.copytree(DEMO, victim)
    before = tree(victim)
    cli("train", "--data", "synthetic:seed=3,n_users=60,n_items=30,genre=2,actor=3,min_len=4,max_len=8",
        "--epochs", "1", "--hidden", "16", "--max-len", "8", "--out", tmp_path / "[v]ictim")
    assert tree(victim) == before


def test_train_keeps_a_users_look_alike_old_folder(tmp_path):
    mine = look_alike(tmp_path / ".myrun.old-999998")
    small_checkpoint(tmp_path / "myrun")
    assert (mine / "notes.txt").read_text() == "mine"


def test_a_look_alike_with_a_forged_name_but_no_marker_is_kept(tmp_path):
    small_checkpoint(tmp_path / "run")
    forged = look_alike(tmp_path / ".run.tmp-999999-0123456789abcdef")
    (forged / safe_io.MARKER).write_text("fedcba9876543210")          # a marker with another token
    small_checkpoint(tmp_path / "run2")
    from fame_core.cli import main
    assert main(["train", "--data", "synthetic:seed=3,n_users=60,n_items=30,genre=2,actor=3,min_len=4,max_len=8",
                 "--epochs", "1", "--hidden", "16", "--max-len", "8", "--out", str(tmp_path / "run"),
                 "--overwrite"]) in (0, None)
    assert (forged / "notes.txt").read_text() == "mine"


def stale_sibling(directory, kind, source=None):
    """A hidden sibling as this project's writer leaves it when killed (dead PID, marker inside)."""
    token = "0123456789abcdef"
    path = directory.with_name(f".{directory.name}.{kind}-999999999-{token}")
    if source is not None:
        shutil.copytree(source, path)
    else:
        path.mkdir()
    (path / safe_io.MARKER).write_text(token)
    return path


def test_read_only_commands_never_delete_even_our_own_stale_siblings(tmp_path):
    out = small_checkpoint(tmp_path / "run")
    stale = stale_sibling(out, "tmp", out)
    assert cli("evaluate", "--checkpoint", out)[0] == 0
    assert stale.is_dir()
    small_checkpoint(tmp_path / "run2")                       # another output: run's sibling untouched
    assert stale.is_dir()
    assert cli("train", "--data", "synthetic:seed=3,n_users=60,n_items=30,genre=2,actor=3,min_len=4,max_len=8",
               "--epochs", "1", "--hidden", "16", "--max-len", "8", "--out", out, "--overwrite")[0] == 0
    assert not stale.exists()                                 # a write command of `run` cleans it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run2"]


def test_a_marked_old_copy_is_moved_back_by_a_read_and_leaves_no_marker(tmp_path):
    out = small_checkpoint(tmp_path / "run")
    old = stale_sibling(out, "old", out)
    shutil.rmtree(out)
    assert cli("evaluate", "--checkpoint", out)[0] == 0
    assert out.is_dir() and not old.exists() and not (out / safe_io.MARKER).exists()


def test_a_write_leaves_no_marker_in_the_result(tmp_path):
    out = small_checkpoint(tmp_path / "run")
    assert not (out / safe_io.MARKER).exists()
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_fifo_named_like_the_export_manifest_is_refused_without_blocking(tmp_path):
    """Issue 39.5: the manifest's type is checked before it is read (a FIFO would block forever)."""
    import signal

    out = tmp_path / "figs"
    out.mkdir()
    os.mkfifo(out / safe_io.MANIFEST)

    def hang(signum, frame):
        raise TimeoutError("export blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        rc, err = cli("export", "--checkpoint", DEMO, "--out", out, "--user", "1")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert rc == 2 and len(err) == 1 and "not a figure export" in err[0]
