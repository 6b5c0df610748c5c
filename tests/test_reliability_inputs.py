"""Noisy or questionable inputs found by the third fuzzing round (issue 39, item 7): each is one
`error:` line with exit 2, or refused before it can mislead."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from fame_core.errors import FameError
from fame_core.items import read_recbole_items

from .conftest import REPO
from .test_reliability import cli

pytestmark = pytest.mark.fast


def test_a_csv_header_with_a_quoted_newline_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text('"us\ner",item,when\n1,2,3\n')
    rc, err = cli("data", "describe", path)
    assert rc == 2 and len(err) == 1 and "has no user column" in err[0]


def test_an_infinite_timestamp_is_refused_not_made_the_test_target(tmp_path):
    path = tmp_path / "log.csv"
    rows = [f"{u},{i},{t}" for u in range(1, 7) for t, i in enumerate(range(1, 7))]
    rows.append("1,3,inf")
    path.write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    rc, err = cli("data", "describe", path)
    assert rc == 2 and len(err) == 1 and "not a finite number" in err[0]


def test_an_absurd_gate_temperature_names_the_temperature_not_the_weights(tmp_path):
    rc, err = cli("compact", "--checkpoint", REPO / "checkpoints" / "demo", "--out", tmp_path / "c",
                  "--gate-temperature", "1e-300")
    assert rc == 2 and len(err) == 1 and "--gate-temperature must be between 0.001 and 1000" in err[0]


def test_huge_finite_weights_are_refused_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "huge"
    shutil.copytree(REPO / "checkpoints" / "demo", ckpt)
    weights = load_file(ckpt / "weights.safetensors")
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], 3e38)
    save_file(weights, ckpt / "weights.safetensors", metadata={"format": "fame-core"})
    from fame_core.cli import main
    assert main(["facets", "--checkpoint", str(ckpt), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "magnitude above" in err


def test_an_infinite_float_field_of_a_recbole_item_file_is_refused(tmp_path):
    item = tmp_path / "bad.item"
    item.write_text("item_id:token\tprice:float\n1\t2.5\n2\tinf\n3\t1.0\n")
    with pytest.raises(FameError, match="not a finite number"):
        read_recbole_items(item)


def test_no_sha256_bits_of_a_file_a_checkpoint_names_are_printed(tmp_path, capsys):
    ckpt = tmp_path / "c"
    shutil.copytree(REPO / "checkpoints" / "demo-sasrec", ckpt)
    record = json.loads((ckpt / "dataset.json").read_text())
    record.update(reader="sequence-file", spec="/etc/hostname", paths=["/etc/hostname"],
                  sha256={"hostname": "0" * 64}, options={})
    (ckpt / "dataset.json").write_text(json.dumps(record))
    import hashlib
    real = hashlib.sha256(open("/etc/hostname", "rb").read()).hexdigest()
    from fame_core.cli import main
    assert main(["evaluate", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "/etc/hostname is not the recorded file" in err and real[:12] not in err and real[:8] not in err
