"""The data home: a bundled checkpoint whose data is missing is opened from a fresh $FAME_DATA after
one verified download (CLI and app, served by a local http.server on 127.0.0.1), and recorded data
paths are opened only when sha256-verified regular files (under the data roots in the app)."""

import hashlib
import http.server
import json
import os
import re
import shutil
import threading
from functools import partial

import pytest

import fame_core
from fame_core.cli import main
from fame_core.datahome import data_home, locate, missing_message, open_recorded
from fame_core.errors import DataError
from tests.conftest import REPO, SHARED_DATA, needs_shared, run_app

SPORTS = "amazon/Sports_and_Outdoors.txt"
SPORTS_ATTRS = "amazon/Sports_and_Outdoors_item2attributes.json"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The two Sports files where `data download sports --mirror` asks for them."""
    root = tmp_path_factory.mktemp("mirror")
    (root / "salesforce/ICLRec/master/data").mkdir(parents=True)
    (root / "aHuiWang/CIKM2020-S3Rec/master/data").mkdir(parents=True)
    shutil.copy(needs_shared(SPORTS), root / "salesforce/ICLRec/master/data")
    shutil.copy(needs_shared(SPORTS_ATTRS), root / "aHuiWang/CIKM2020-S3Rec/master/data")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """The bundled sports-fame as on a fresh machine: its recorded folder does not exist there
    (the record's paths moved to a missing folder, the sha256s kept); an empty data home."""
    root = tmp_path / "roots"
    shutil.copytree(REPO / "checkpoints" / "sports-fame", root / "sports-fame")
    path = root / "sports-fame" / "dataset.json"
    record = json.loads(path.read_text())
    record["spec"] = record["spec"].replace("../shared", str(tmp_path / "elsewhere"))
    record["paths"] = [p.replace("../shared", str(tmp_path / "elsewhere")) for p in record["paths"]]
    path.write_text(json.dumps(record))
    monkeypatch.setenv("FAME_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("FAME_DATA_ROOTS", "")
    monkeypatch.setenv("FAME_CHECKPOINTS", str(root))
    return root / "sports-fame"


def test_missing_data_names_the_download_then_opens_user_230_from_the_data_home(fresh, mirror, capsys):
    assert main(["inspect", "--checkpoint", str(fresh), "--user", "230"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --user needs the data set")
    assert "fetch it with: python -m fame_core data download sports (2.4 MB)" in err[0]
    assert not data_home().exists()                       # looking never creates anything

    assert main(["data", "download", "sports", "--mirror", mirror, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(data_home() / "sports")

    assert main(["inspect", "--checkpoint", str(fresh), "--user", "230", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    model, data = fame_core.load(REPO / "checkpoints" / "sports-fame", data=SHARED_DATA / SPORTS)
    seq, target = fame_core.user_example(data, "230")
    expected = fame_core.inspect(model, seq, target, top_k=20)
    assert shown["top"]["gated"] == expected.top["gated"].tolist() and shown["target"] == target
    assert shown["labels"][str(expected.top["gated"][0])] == data.label(int(expected.top["gated"][0]))


def test_the_app_offers_the_download_and_then_shows_user_230(fresh, mirror, monkeypatch):
    monkeypatch.setenv("FAME_MIRROR", mirror)
    at = run_app(checkpoint="roots/sports-fame", user="230", k="20")
    assert at.subheader[0].value == "History of hand-made sequence"
    button = at.button(key="download")
    assert button.proto.label == "Download sports (2.4 MB)"
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == "History of user 230"
    assert sorted(p.name for p in (data_home() / "sports").iterdir()) == [
        "Sports_and_Outdoors.txt", "Sports_and_Outdoors_item2attributes.json"]


def _checkpoint_recording(tmp_path, path, sha256=None):
    """A copy of checkpoints/demo-sasrec whose dataset.json records a sequence file at `path`."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(REPO / "checkpoints" / "demo-sasrec", ckpt)
    record = json.loads((ckpt / "dataset.json").read_text())
    record.update(reader="sequence-file", spec=str(path), paths=[str(path)],
                  sha256={os.path.basename(str(path)): sha256 or "0" * 64}, options={})
    (ckpt / "dataset.json").write_text(json.dumps(record))
    return ckpt, record


def test_a_recorded_path_is_opened_only_if_its_sha256_matches(tmp_path, capsys):
    ckpt, record = _checkpoint_recording(tmp_path, "/etc/passwd")
    assert main(["evaluate", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "/etc/passwd is not the recorded file (its sha256 differs" in err and "root:" not in err
    assert err.count("error:") == 1
    # a record that carries the right sha256 of a non-data file: still no content in the message
    real = hashlib.sha256(open("/etc/passwd", "rb").read()).hexdigest()
    ckpt2, record2 = _checkpoint_recording(tmp_path / "b", "/etc/passwd", real)
    with pytest.raises(DataError, match="matches its recorded sha256 but cannot be read") as info:
        open_recorded(record2)
    assert "root:" not in str(info.value)
    # in the app's mode only the data roots count: outside them it is not even hashed
    assert open_recorded(record2, roots=[tmp_path]) is None
    assert "outside the data roots" in missing_message(record2, roots=[tmp_path])


def test_symlinks_are_resolved_before_the_roots_are_checked(tmp_path):
    outside = tmp_path / "outside" / "w.txt"
    outside.parent.mkdir()
    outside.write_text("1 1 2 3\n2 2 3 4\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "w.txt").symlink_to(outside)
    sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    _, record = _checkpoint_recording(tmp_path, root / "w.txt", sha)
    found = locate(record, roots=[root])
    assert found.path is None and any("outside the data roots" in r for r in found.refused)
    assert locate(record, roots=[root, outside.parent]).path == outside   # its target's folder is a root


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "data.txt"
    os.mkfifo(fifo)
    _, record = _checkpoint_recording(tmp_path, fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.update(found=locate(record)), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "locate blocked on a FIFO"
    assert result["found"].path is None and f"{fifo} is not a regular file" in result["found"].refused


def test_a_changed_data_file_is_refused_and_an_absurd_synthetic_world_not_generated(tmp_path, capsys):
    changed = tmp_path / "Sports_and_Outdoors.txt"
    changed.write_bytes(needs_shared(SPORTS).read_bytes()[:-2] + b"9\n")
    record = json.loads((REPO / "checkpoints" / "sports-fame" / "dataset.json").read_text())
    record.update(spec=str(changed), paths=[str(changed)])
    record["sha256"] = {changed.name: record["sha256"][changed.name]}
    found = locate(record, roots=[tmp_path])
    assert found.path is None and found.refused == [
        f"{changed} is not the recorded file (its sha256 differs from the one the checkpoint records)"]
    assert hashlib.sha256(changed.read_bytes()).hexdigest()[:12] not in found.refused[0]   # issue 39.7: no bits of it

    ckpt = tmp_path / "huge"
    shutil.copytree(REPO / "checkpoints" / "demo", ckpt)
    world = json.loads((ckpt / "dataset.json").read_text())
    world["spec"] = world["spec"].replace("n_users=2000", "n_users=100000000")
    (ckpt / "dataset.json").write_text(json.dumps(world))
    assert main(["evaluate", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the checkpoint records a synthetic world of 100,000,000 users") and err.count("\n") == 1


def test_the_data_path_box_opens_only_verified_files_under_the_data_roots(fresh, tmp_path, monkeypatch):
    """Issue 39.1: a path typed in the sidebar is opened only under the data roots (symlinks
    resolved), only with the recorded sha256, and no message quotes a file or tells whether a
    path outside the roots exists."""
    roots = tmp_path / "data-root"
    roots.mkdir()
    (roots / "changed.txt").write_text("secret-line 1 2 3\n")
    (roots / "link.txt").symlink_to("/etc/passwd")
    monkeypatch.setenv("FAME_DATA_ROOTS", str(roots))
    at = run_app(checkpoint="roots/sports-fame", user="230")
    assert at.subheader[0].value == "History of hand-made sequence"

    def typed(path):
        at.text_input(key="data_path:roots/sports-fame").input(str(path)).run()
        assert not at.exception, [e.value for e in at.exception]
        return [e.value for e in at.error]

    shown = {p: typed(p) for p in ("/etc/passwd", "/etc/no-such-file-here", roots / "link.txt", roots / "changed.txt")}
    text = " ".join(" ".join(v) for v in shown.values())
    assert "root:" not in text and "secret-line" not in text
    assert shown["/etc/passwd"] == [m.replace("/etc/no-such-file-here", "/etc/passwd")
                                    for m in shown["/etc/no-such-file-here"]]          # no existence oracle
    assert any("outside the data roots" in m for m in shown["/etc/passwd"])
    assert any("outside the data roots" in m for m in shown[roots / "link.txt"])
    assert any("is not the recorded file" in m for m in shown[roots / "changed.txt"])
    assert at.subheader[0].value == "History of hand-made sequence"
    good = roots / "kept" / "Sports_and_Outdoors.txt"      # found by the data-roots search too, so placed only now
    good.parent.mkdir()
    shutil.copy(needs_shared(SPORTS), good)
    shutil.copy(needs_shared(SPORTS_ATTRS), good.parent)
    assert typed(good) == []
    assert at.subheader[0].value.startswith("History of user ")


def test_a_typed_path_is_checked_before_it_is_parsed(tmp_path):
    from fame_core.datahome import open_given

    ckpt, record = _checkpoint_recording(tmp_path, tmp_path / "w.txt", "0" * 64)
    (tmp_path / "w.txt").write_text("1 1 2 3\n")
    for path, says in [("relative.txt", "not an absolute path"), ("/etc/passwd", "outside the data roots"),
                       (tmp_path / "w.txt", "not the recorded file"), (tmp_path / "none.txt", "does not exist")]:
        with pytest.raises(DataError, match=says) as info:
            open_given(record, path, [tmp_path])
        assert "\n" not in str(info.value) and "root:" not in str(info.value)


def test_a_data_home_that_is_a_file_is_one_error_line_in_the_library_and_the_cli(tmp_path, monkeypatch, capsys):
    from fame_core.download import download

    home = tmp_path / "fame-data"
    home.write_text("not a folder\n")
    monkeypatch.setenv("FAME_DATA", str(home))
    message = f"the data home $FAME_DATA={home} is a file, not a folder; set FAME_DATA to a folder"
    with pytest.raises(DataError) as info:          # before: NotADirectoryError from mkdir
        download("sports", progress=False)
    assert str(info.value) == message
    assert main(["data", "download", "sports"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: {message}"] and captured.out == ""
    assert home.read_text() == "not a folder\n"
    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("")
    assert main(["data", "download", "sports", "--to", str(elsewhere)]) == 2      # --to naming a file: the same way
    assert capsys.readouterr().err.splitlines() == [f"error: --to {elsewhere} is a file, not a folder; give a folder"]
    assert main(["data", "download", "sports", "--to", str(elsewhere / "sub")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {elsewhere} is a file, not a folder, so --to {elsewhere / 'sub'}")


def test_the_apps_download_button_says_in_one_line_that_the_data_home_is_a_file(fresh, tmp_path, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("")
    monkeypatch.setenv("FAME_DATA", str(home))
    at = run_app(checkpoint="roots/sports-fame", user="230")
    at.button(key="download").click().run()
    assert not at.exception, [e.value for e in at.exception]           # before: NotADirectoryError's traceback
    assert [e.value for e in at.error] == [f"the data home $FAME_DATA={home} is a file, not a folder; "
                                          "set FAME_DATA to a folder"]
    assert at.subheader[0].value == "History of hand-made sequence"


def test_a_running_app_finds_data_placed_in_the_data_home_after_it_opened_the_model_alone(tmp_path, monkeypatch):
    """The app's resource cache kept (model, None) until a restart: data fetched meanwhile with the
    CLI stayed 'not found'. Now the data roots' listing is part of what a data-less entry waits on."""
    from fame_core.data import load_dataset, write_sequence_file

    world = load_dataset(json.loads((REPO / "checkpoints" / "demo-sasrec" / "dataset.json").read_text())["spec"])
    staged = write_sequence_file(world, tmp_path / "staged" / "demo-world.txt")[0]
    gone = tmp_path / "elsewhere" / staged.name                      # recorded where it no longer is
    root = tmp_path / "roots"
    shutil.copytree(REPO / "checkpoints" / "demo-sasrec", root / "moved")
    record = json.loads((root / "moved" / "dataset.json").read_text())
    record.update(reader="sequence-file", spec=str(gone), paths=[str(gone)], options={},
                  sha256={staged.name: hashlib.sha256(staged.read_bytes()).hexdigest()})
    (root / "moved" / "dataset.json").write_text(json.dumps(record))
    monkeypatch.setenv("FAME_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("FAME_DATA_ROOTS", "")
    monkeypatch.setenv("FAME_CHECKPOINTS", str(root))

    at = run_app(checkpoint="roots/moved", user="42")
    assert at.subheader[0].value == "History of hand-made sequence"
    assert any("is not at its recorded path" in w.value for w in at.warning)
    (tmp_path / "home" / "demo").mkdir(parents=True)                 # as `data download` does, from a shell
    shutil.copy(staged, tmp_path / "home" / "demo" / staged.name)
    at.run()                                                          # a reload: same server, same caches
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == "History of user 42"
    assert not any("is not at its recorded path" in w.value for w in at.warning)
    at.run()                                                          # and it stays open with its data
    assert at.subheader[0].value == "History of user 42"


def test_roots_state_changes_when_a_download_lands_and_tolerates_odd_roots(tmp_path):
    from fame_core.datahome import roots_state

    home, a_file = tmp_path / "home", tmp_path / "a-file"
    a_file.write_text("")
    roots = [home, a_file, tmp_path / "missing"]
    empty = roots_state(roots)                     # a missing root and a file hold nothing: no error
    assert empty == ()
    (home / "sports").mkdir(parents=True)
    with_folder = roots_state(roots)
    (home / "sports" / "Sports_and_Outdoors.txt").write_text("1 1 2 3\n")
    landed = roots_state(roots)
    assert len({empty, with_folder, landed}) == 3 and roots_state(roots) == landed
    assert str(home / "sports" / "Sports_and_Outdoors.txt") in {entry[0] for entry in landed}


ABSOLUTE = re.compile(r"(?<![\w.~])(?:/[\w.+-]+){2,}")


def test_bundled_checkpoints_record_no_absolute_path_and_still_find_their_data():
    """Issue 42.3: dataset.json and config.json held /work/shared/..., /root/fame-runs/... and
    /work/main/... of the machines they were trained on (and the sidebar showed them)."""
    def strings(o):
        if isinstance(o, dict):
            return [s for v in o.values() for s in strings(v)]
        return [s for v in o for s in strings(v)] if isinstance(o, list) else [o] if isinstance(o, str) else []

    for folder in sorted((REPO / "checkpoints").iterdir()):
        for name in ("dataset.json", "config.json"):
            if (folder / name).exists():
                found = [s for s in strings(json.loads((folder / name).read_text())) if os.path.isabs(os.path.expanduser(s))]
                assert not found, (folder.name, name, found)
    needs_shared(SPORTS)
    model, data = fame_core.load(REPO / "checkpoints" / "sports-fame")
    assert data is not None and data.facets          # data file and item table, from the relative records


def test_new_records_are_portable(tmp_path):
    from fame_core.checkpoint import dataset_record, portable_path
    from fame_core.data import load_dataset

    shutil.copy(needs_shared(SPORTS), tmp_path / "Sports_and_Outdoors.txt")
    data = load_dataset(tmp_path / "Sports_and_Outdoors.txt")
    record = dataset_record(data, tmp_path / "runs" / "ckpt")     # no repository above: relative to the checkpoint
    assert record["spec"] == record["paths"][0] == "../../Sports_and_Outdoors.txt"
    assert dataset_record(data)["paths"] == ["Sports_and_Outdoors.txt"]   # no folder known: the file name alone
    assert portable_path(REPO.parent / "shared" / "data" / SPORTS, REPO / "checkpoints" / "x") == f"../shared/data/{SPORTS}"


def test_the_sidebar_shows_no_path_of_another_machine_and_the_main_area_says_why_no_user(fresh, tmp_path):
    at = run_app(checkpoint="roots/sports-fame", user="230")
    shown = " ".join(e.value for kind in ("warning", "caption", "error", "markdown") for e in getattr(at.sidebar, kind))
    assert "../shared/data" in shown or "elsewhere" in shown
    assert all(p.startswith(str(tmp_path)) for p in ABSOLUTE.findall(shown)), ABSOLUTE.findall(shown)
    assert any("User 230 cannot be shown" in i.value and "hand-made" in i.value for i in at.main.info)


def test_a_failed_download_in_the_app_names_fame_mirror_and_leaves_no_progress_bar(fresh, monkeypatch):
    monkeypatch.setenv("FAME_MIRROR", "http://127.0.0.1:9")    # nothing listens there: as offline
    at = run_app(checkpoint="roots/sports-fame", user="230")
    at.button(key="download").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "$FAME_MIRROR" in errors[0] and "--mirror" not in errors[0], errors
    assert not [e for e in at.get("progress")], "the progress bar stayed after the failure"
