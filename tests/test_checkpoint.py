"""The checkpoint format: round trip, model-only opening, data-set refusal, corrupt files."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import fame_core
from fame_core.checkpoint import dataset_record, load_checkpoint, write_checkpoint
from fame_core.errors import CheckpointError
from tests.conftest import TINY_WORLD, make_model

pytestmark = pytest.mark.fast  # the fast tier: `python -m pytest -m fast`


@pytest.fixture
def saved(tmp_path, tiny_world):
    model = make_model("fame", n_items=tiny_world.n_items)
    out = write_checkpoint(tmp_path / "ckpt", model, dataset_record(tiny_world), {"seed": 0}, [{"epoch": 1}])
    return model, out


def test_round_trip_gives_the_same_numbers(saved, tiny_world):
    model, out = saved
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "dataset.json", "metrics.jsonl", "weights.safetensors"]
    assert not list(out.parent.glob(".ckpt.*"))           # no temporary directory left behind
    loaded, data = fame_core.load(out)
    assert data.fingerprint() == tiny_world.fingerprint()  # the synthetic world is regenerated
    a = fame_core.inspect(model, [1, 2, 3], target=5)
    b = fame_core.inspect(loaded, [1, 2, 3], target=5)
    for mode in a.merge_modes:
        np.testing.assert_array_equal(a.scores[mode], b.scores[mode])
    assert json.loads((out / "config.json").read_text())["model"]["n_experts"] == 3
    # where it came from is one typed record; a model built in code has none
    assert model.provenance is None
    assert loaded.provenance.directory == str(out)
    assert loaded.provenance.dataset == dataset_record(tiny_world)
    assert loaded.provenance.training["seed"] == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.provenance.directory = "elsewhere"


def test_half_precision_weights_load_as_float32(tmp_path, tiny_world):
    model = make_model("fame", n_items=tiny_world.n_items)
    out = write_checkpoint(tmp_path / "half", model, dataset_record(tiny_world), {}, [], half=True)
    loaded = load_checkpoint(out)
    assert loaded.embed.E.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.embed.E.weight, model.embed.E.weight, atol=1e-3, rtol=1e-3)


def test_opens_without_its_data_set(saved, tmp_path, capsys):
    model, out = saved
    record = json.loads((out / "dataset.json").read_text())
    record.update(reader="sequence-file", spec=str(tmp_path / "gone.txt"))
    (out / "dataset.json").write_text(json.dumps(record))
    loaded, data = fame_core.load(out)
    assert data is None and "opened the model alone" in capsys.readouterr().err
    assert fame_core.inspect(loaded, [4, 5], top_k=3).top["gated"].shape == (3,)


def test_another_data_set_is_refused(saved):
    _, out = saved
    with pytest.raises(CheckpointError, match="was trained on data set 'synthetic-3'.*pass the data set it was trained on"):
        fame_core.load(out, data="synthetic:seed=4,n_users=150,n_items=60")


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "weights.safetensors").write_bytes(b"\x00garbage"), "weights.safetensors is corrupt"),
    (lambda d: (d / "config.json").write_text("{"), "config.json: unreadable"),
    (lambda d: (d / "dataset.json").unlink(), "missing dataset.json"),
])
def test_damaged_checkpoints_give_one_line_errors(saved, damage, message):
    _, out = saved
    damage(out)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(out)


def test_weights_of_another_shape_are_refused(saved):
    _, out = saved
    cfg = json.loads((out / "config.json").read_text())
    cfg["model"]["n_experts"] = 5
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="weights do not fit the configuration"):
        load_checkpoint(out)


def test_rewriting_replaces_the_whole_checkpoint(saved, tiny_world):
    model, out = saved
    (out / "train_state.pt").write_bytes(b"old")
    write_checkpoint(out, model, dataset_record(tiny_world), {}, [])
    assert not (out / "train_state.pt").exists()
    assert TINY_WORLD.startswith("synthetic")
