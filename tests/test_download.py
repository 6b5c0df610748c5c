"""Downloads end to end against a local HTTP server on 127.0.0.1 serving copies of ../shared/data."""

import http.server
import io
import json
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from fame_core.cli import main
from fame_core.data import load_dataset
from fame_core.download import SOURCES, download, with_mirror
from fame_core.errors import DataError
from tests.conftest import needs_shared


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the directory; /broken/... answers 500; /cut/... promises more bytes than it sends."""

    def do_GET(self):
        if self.path.startswith("/broken/"):
            self.send_error(500, "Internal Server Error")
            return
        if self.path.startswith("/cut/"):
            body = (Path(self.directory) / self.path[len("/cut/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/endless/"):        # no Content-Length, streams until the client stops (or 64 MB)
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(1024):
                    self.wfile.write(b"1 2 3\n" * 10923)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return
        if self.path.startswith("/huge/"):           # announces a terabyte
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    amazon = root / "salesforce/ICLRec/master/data"
    attrs = root / "aHuiWang/CIKM2020-S3Rec/master/data"
    amazon.mkdir(parents=True)
    attrs.mkdir(parents=True)
    (amazon / "Beauty.txt").write_bytes(needs_shared("amazon/Beauty.txt").read_bytes())
    (attrs / "Beauty_item2attributes.json").write_bytes(needs_shared("amazon/Beauty_item2attributes.json").read_bytes())
    # a Sports file that differs by one byte from the pinned one
    sports = bytearray(needs_shared("amazon/Sports_and_Outdoors.txt").read_bytes())
    sports[-2:-1] = b"9"
    (amazon / "Sports_and_Outdoors.txt").write_bytes(bytes(sports))
    ml = root / "datasets/movielens"
    ml.mkdir(parents=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in ("ratings.csv", "movies.csv", "links.csv", "tags.csv", "README.txt"):
            z.write(needs_shared(f"ml-latest-small/{f}"), f"ml-latest-small/{f}")
    (ml / "ml-latest-small.zip").write_bytes(buf.getvalue())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_mirror_keeps_the_path():
    assert with_mirror(SOURCES["beauty"].files[0].url, "http://127.0.0.1:9") == \
        "http://127.0.0.1:9/salesforce/ICLRec/master/data/Beauty.txt"
    with pytest.raises(DataError, match="--mirror must look like"):
        with_mirror("https://a/b", "127.0.0.1")


def test_beauty_downloads_verifies_and_trains_from_the_folder(mirror, tmp_path, capsys):
    assert main(["data", "download", "beauty", "--to", str(tmp_path), "--mirror", mirror, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["files"] == {"Beauty.txt": "downloaded", "Beauty_item2attributes.json": "downloaded"}
    data = load_dataset(tmp_path / "beauty")
    assert (data.n_users, data.n_items, data.n_actions) == (22363, 12101, 198502) and "attribute" in data.facets
    again = download("beauty", tmp_path, mirror=mirror, progress=False)   # verified files are not fetched again
    assert set(again["files"].values()) == {"verified"}
    assert not list((tmp_path / "beauty").glob("*.part"))


def test_wrong_checksum_is_an_error_and_leaves_nothing(mirror, tmp_path):
    with pytest.raises(DataError, match=r"Sports_and_Outdoors.txt: sha256 .* does not match the pinned .* not kept"):
        download("sports", tmp_path, mirror=mirror, progress=False)
    assert list((tmp_path / "sports").iterdir()) == []


def test_interrupted_transfer_and_server_error_leave_nothing(mirror, tmp_path):
    with pytest.raises(DataError, match="was cut off after"):
        download("beauty", tmp_path, mirror=mirror + "/cut", progress=False)
    with pytest.raises(DataError, match="HTTP 500"):
        download("beauty", tmp_path / "b", mirror=mirror + "/broken", progress=False)
    assert list((tmp_path / "beauty").iterdir()) == [] and list((tmp_path / "b" / "beauty").iterdir()) == []


def test_movielens_zip_is_unpacked_checked_and_5_core_filtered(mirror, tmp_path, capsys):
    assert main(["data", "download", "ml-latest-small", "--to", str(tmp_path), "--mirror", mirror]) == 0
    assert "ratings.csv: downloaded" in capsys.readouterr().out
    data = load_dataset(tmp_path / "ml-latest-small")
    assert data.source["reader"] == "movielens" and data.source["options"]["kcore"] == 5
    assert data.label(1).startswith("Toy Story (1995) · ")
    assert set(download("ml-latest-small", tmp_path, mirror=mirror, progress=False)["files"].values()) == {"verified"}


def test_unknown_name_and_unreachable_host(tmp_path, capsys):
    assert main(["data", "download", "netflix", "--to", str(tmp_path)]) == 2
    assert "unknown data set 'netflix'; choose one of beauty, sports" in capsys.readouterr().err
    with pytest.raises(DataError, match="failed"):
        download("toys", tmp_path, mirror="http://127.0.0.1:9", progress=False)


def test_a_file_that_does_not_verify_is_never_replaced(mirror, tmp_path, capsys):
    """A user's own file where a download would go stays as it is unless --overwrite (issue 11)."""
    folder = tmp_path / "beauty"
    folder.mkdir()
    (folder / "Beauty.txt").write_text("my own edited copy\n")
    assert main(["data", "download", "beauty", "--to", str(tmp_path), "--mirror", mirror]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert (folder / "Beauty.txt").read_text() == "my own edited copy\n"
    assert main(["data", "download", "beauty", "--to", str(tmp_path), "--mirror", mirror, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"]["Beauty.txt"] == "downloaded"
    assert load_dataset(folder).n_users == 22363


def test_an_unpacked_member_never_replaces_a_different_file(mirror, tmp_path):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,mine,1\n")   # unpinned member, user's edit
    with pytest.raises(DataError, match=r"tags.csv exists and differs .* pass --overwrite"):
        download("ml-latest-small", tmp_path, mirror=mirror, progress=False)
    assert (folder / "tags.csv").read_text().endswith("mine,1\n")
    assert sorted(p.name for p in folder.iterdir()) == ["tags.csv"]


@pytest.mark.parametrize("kind", ["endless", "huge"])
def test_an_unpinned_download_past_the_size_cap_is_refused_and_leaves_nothing(kind, mirror, tmp_path):
    """Issue 39: a mirror that streams without end, or announces too much, cannot fill the disk."""
    with pytest.raises(DataError, match="cap of 1,000,000") as info:
        download("yelp", tmp_path, mirror=f"{mirror}/{kind}", progress=False, max_bytes=10**6)
    assert "\n" not in str(info.value)
    assert [p for p in (tmp_path / "yelp").rglob("*")] == []


def test_zip_members_past_the_cap_are_not_unpacked(mirror, tmp_path, capsys):
    assert main(["data", "download", "ml-latest-small", "--to", str(tmp_path), "--mirror", mirror,
                 "--max-size", "2M"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "unpacks to" in err[0] and "above the cap of 2,000,000" in err[0]
    assert [p.name for p in (tmp_path / "ml-latest-small").iterdir()] == []
    assert main(["data", "download", "ml-latest-small", "--to", str(tmp_path), "--max-size", "lots"]) == 2
    assert capsys.readouterr().err.startswith("error: --max-size must be a positive size")
