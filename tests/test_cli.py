"""The command line: JSON for scripts, one-line errors and exit status 2 for bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fame_core
from fame_core.cli import main
from fame_core.models import FAMEConfig
from fame_core.training import TrainConfig, train
from tests.conftest import REPO, TINY_WORLD


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_world):
    out = tmp_path_factory.mktemp("cli") / "fame"
    train(tiny_world, FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10),
          TrainConfig(epochs=2, batch_size=64), out, progress=False)
    return out


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fame_core", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "FAME_DEBUG": ""})


def test_train_and_evaluate_json(tmp_path, capsys):
    out = tmp_path / "sas"
    assert main(["train", "--data", TINY_WORLD, "--model", "sasrec", "--hidden", "16", "--max-len", "10",
                 "--epochs", "2", "--out", str(out), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["status"] == "finished" and trained["epochs"] == 2
    assert main(["evaluate", "--checkpoint", str(out), "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "test" and res["users"] == 150 and set(res["metrics"]) == {
        "HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR"}
    assert res["metrics"] == pytest.approx(trained["test"])
    assert main(["evaluate", "--checkpoint", str(out), "--no-mask-history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mask_history"] is False


def test_inspect_json_and_text(ckpt, capsys):
    assert main(["inspect", "--checkpoint", str(ckpt), "--user", "5", "--top-k", "7", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["user"] == "5" and len(res["gates"]) == 2 and len(res["top"]["head:1"]) == 7
    assert set(res["target_rank"]) == {"gated", "concat", "head:0", "head:1"}
    assert all(str(v) in res["labels"] for v in res["top"]["gated"])
    assert next(iter(res["labels"].values())).count(" · ") == 2
    assert main(["inspect", "--checkpoint", str(ckpt), "--items", "3,4,5", "--target", "6"]) == 0
    text = capsys.readouterr().out
    assert "hand-made sequence: 3 items, target 6" in text and "[head:0]" in text


def test_data_describe(capsys):
    assert main(["data", "describe", TINY_WORLD, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["users"] == 150 and info["items"] == 60 and info["facets"] == {"genre": 4, "actor": 6}


@pytest.mark.parametrize("args,message", [
    (["inspect", "--checkpoint", "{ckpt}", "--user", "nobody"], "unknown user 'nobody'"),
    (["inspect", "--checkpoint", "{ckpt}", "--items", "1,x"], "--items must be comma-separated item ids"),
    (["inspect", "--checkpoint", "{ckpt}", "--items", "1,999"], "item id 999 is not an item"),
    (["evaluate", "--checkpoint", "/no/such/dir"], "checkpoint not found"),
    (["evaluate", "--checkpoint", "{ckpt}", "--data", "synthetic:seed=8,n_users=100,n_items=60"], "was trained on data set"),
    (["evaluate", "--checkpoint", "{ckpt}", "--merge", "head:9"], "unknown merge mode"),
    (["train", "--data", "/no/such/file.txt", "--out", "{tmp}/x"], "data not found"),
    (["train", "--data", TINY_WORLD, "--heads", "3", "--out", "{tmp}/x"], "must be divisible"),
    (["train", "--data", TINY_WORLD, "--out", "{ckpt}"], "already holds a checkpoint"),
    (["data", "describe", "synthetic:n_items=5"], "bad synthetic option"),
])
def test_bad_input_gives_one_line_and_exit_2(ckpt, tmp_path, capsys, args, message):
    args = [a.format(ckpt=ckpt, tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_real_process_never_prints_a_traceback(ckpt, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n2 4 oops\n")
    r = run_cli("train", "--data", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: bad.txt:2: expected whole-number item ids below 10^18 ('user item item ...'), found 'oops'"
    r = run_cli("inspect", "--checkpoint", str(ckpt), "--user", "3", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["user"] == "3"


def test_data_convert_round_trips_through_the_sequence_reader(tmp_path, capsys):
    from fame_core.data import load_dataset

    out = tmp_path / "world.txt"
    assert main(["data", "convert", TINY_WORLD, "--to", str(out), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [f.split("/")[-1] for f in files] == ["world.txt", "world_item_ids.csv", "world_item2attributes.json"]
    original, again = load_dataset(TINY_WORLD), load_dataset(out)
    assert again.fingerprint() == original.fingerprint()
    assert again.facets["attribute"][1] == tuple(f"{n}:{v[1][0]}" for n, v in original.facets.items())


def test_compact_halves_the_weights_and_keeps_the_rankings_close(ckpt, tmp_path, capsys):
    out = tmp_path / "small"
    assert main(["compact", "--checkpoint", str(ckpt), "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    full = (ckpt / "weights.safetensors").stat().st_size
    assert info["weights_bytes"] < 0.6 * full and not (out / "train_state.pt").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["weights_dtype"] == "float16" and config["compacted_from"] == os.path.relpath(ckpt, out)   # portable
    a, data = fame_core.load(ckpt)
    b, _ = fame_core.load(out)
    seq, target = fame_core.user_example(data, "5")
    np.testing.assert_allclose(fame_core.inspect(a, seq, target).scores["gated"],
                               fame_core.inspect(b, seq, target).scores["gated"], atol=2e-2)
    # a gate temperature for the copy: recorded, and the gates are the original's logits over tau
    hot = tmp_path / "hot"
    assert main(["compact", "--checkpoint", str(ckpt), "--out", str(hot), "--gate-temperature", "2"]) == 0
    config = json.loads((hot / "config.json").read_text())
    assert config["model"]["gate_temperature"] == 2.0 and config["gate_temperature_set_by"] == "compact"
    assert config["gate_temperature_trained"] == 1.0
    source = json.loads((ckpt / "config.json").read_text())
    assert config["test_trained"] == source["test"] and config["valid_trained"] == source["valid"]
    c, _ = fame_core.load(hot)
    from fame_core.facets import gate_temperature

    with gate_temperature(a, 2.0):               # the copy's records are the source's model measured at tau = 2
        for split in ("valid", "test"):
            assert config[split] == fame_core.evaluate(a, data, split)["metrics"]
    assert (config["test"], config["valid"]) != (source["test"], source["valid"])     # so the check can fail
    again = tmp_path / "again"                   # a copy of the copy keeps the first records
    assert main(["compact", "--checkpoint", str(hot), "--out", str(again), "--gate-temperature", "3"]) == 0
    config3 = json.loads((again / "config.json").read_text())
    assert config3["test_trained"] == source["test"] and config3["gate_temperature_trained"] == 1.0
    z = np.log(fame_core.inspect(b, seq, target).gates)
    np.testing.assert_allclose(fame_core.inspect(c, seq, target).gates, np.exp(z / 2) / np.exp(z / 2).sum(), rtol=1e-4)
    capsys.readouterr()
    assert main(["compact", "--checkpoint", str(ckpt), "--out", str(tmp_path / "y"), "--gate-temperature", "0"]) == 2
    assert "--gate-temperature must be between 0.001 and 1000" in capsys.readouterr().err and not (tmp_path / "y").exists()
    sasrec = str(REPO / "checkpoints" / "demo-sasrec")
    assert main(["compact", "--checkpoint", sasrec, "--out", str(tmp_path / "z"), "--gate-temperature", "2"]) == 2
    assert "applies to FAME checkpoints" in capsys.readouterr().err and not (tmp_path / "z").exists()
    unfinished = shutil.copytree(ckpt, tmp_path / "unfinished")
    (unfinished / "train_state.pt").write_bytes(b"")               # an unfinished run is refused
    assert main(["compact", "--checkpoint", str(unfinished), "--out", str(tmp_path / "x")]) == 2
    assert "unfinished run" in capsys.readouterr().err


class Terminal:
    """A stand-in stderr that says it is a terminal, keeping what is written."""

    def __init__(self):
        import io

        self.buf = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.buf.write(text)

    def flush(self):
        pass


@pytest.mark.parametrize("command", ["export", "facets"])
def test_long_commands_show_progress_on_a_terminal_only(ckpt, tmp_path, capsys, monkeypatch, command):
    """Issue 42: `facets --json` and `export` ran for long with no sign of progress."""
    args = {"export": ["export", "--checkpoint", str(ckpt), "--user", "5", "--formats", "svg", "--json",
                       "--out", str(tmp_path / "a")],
            "facets": ["facets", "--checkpoint", str(ckpt), "--users", "5", "--json"]}[command]
    if command == "export":                                        # not a terminal (a log, a pipe): quiet
        assert main(args) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and json.loads(captured.out)
        args[-1] = str(tmp_path / "b")
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(args) == 0
    monkeypatch.undo()
    assert json.loads(capsys.readouterr().out)                    # stdout keeps the one JSON document
    lines = [line for line in term.buf.getvalue().replace("\r", "\n").splitlines() if line.startswith("[")]
    total = lines[0].split("/")[1].split("]")[0]
    assert lines[0].startswith("[1/") and lines[-1].startswith(f"[{total}/{total}]") and len(lines) == int(total)
    if command == "export":
        assert "reading the checkpoint" in lines[0] and "figures" in term.buf.getvalue()   # and a bar over them
    else:
        assert "alignment" in lines[0] and "faithfulness" in lines[1] and len(lines) == 4   # a planted world: 4
