"""The settings: one checked dataclass per model and for training/evaluation, the CLI generated
from them, old checkpoints' records still read, every bad value one line before anything is built."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import fame_core
from fame_core.checkpoint import dataset_record, load_checkpoint, write_checkpoint
from fame_core.cli import build_parser, train_settings
from fame_core.errors import CheckpointError, ConfigError
from fame_core.evaluate import EvalOptions
from fame_core.models import MODELS, FAMEConfig, SASRecConfig, build_model, config_from_dict
from fame_core.objectives import FacetObjectives
from fame_core.training import TrainConfig
from tests.conftest import REPO, make_model

pytestmark = pytest.mark.fast

LEGACY_SASREC = {"model": "sasrec", "n_items": 600, "d": 64, "n_layers": 2, "n_heads": 2, "n_experts": 1,
                 "max_len": 50, "dropout": 0.2, "attn_dropout": 0.2, "ffn_dim": 0, "residual": False}


def test_each_registered_model_builds_from_its_own_config():
    for name, cls in MODELS.items():
        cfg = cls.config_class(n_items=10)
        assert cfg.model == name and type(build_model(cfg)) is cls
        assert config_from_dict(cfg.to_dict()) == cfg          # the checkpoint record round-trips
    assert "n_experts" not in SASRecConfig.__dataclass_fields__ and SASRecConfig().n_experts == 1


def test_records_of_code_0_1_0_still_read():
    cfg = config_from_dict(LEGACY_SASREC)
    assert type(cfg) is SASRecConfig and cfg.dropout == 0.2 and "n_experts" not in cfg.to_dict()
    fame = config_from_dict(dict(LEGACY_SASREC, model="fame", n_experts=4, residual=True))
    assert type(fame) is FAMEConfig and fame.n_experts == 4 and fame.residual is True


@pytest.mark.parametrize("change,message", [
    ({"n_heads": 0}, r"n_heads \(--heads\) must be from 1 to 256"),
    ({"n_heads": 2.0}, r"n_heads \(--heads\) must be a whole number, got 2.0"),
    ({"d": 0}, r"d \(--hidden\) must be from 1 to 4096"),
    ({"d": 63}, "must be divisible"),
    ({"max_len": -1}, "--max-len must be from 1 to 10,000"),
    ({"n_items": None}, "n_items must be given"),
    ({"residual": "yes"}, "--residual must be true or false, got 'yes'"),
    ({"dropout": 1.0}, "--dropout must be >= 0 and < 1"),
    ({"n_experts": True}, "whole number"),
    ({"model": "gpt"}, "model must be one of sasrec, fame"),
    ({"colour": "red"}, "unknown setting 'colour'"),
])
def test_bad_model_records_are_refused_with_one_line(change, message):
    record = {**LEGACY_SASREC, "model": "fame", "n_experts": 4, **change}
    with pytest.raises(ConfigError, match=message) as e:
        config_from_dict(record)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [
    {"n_heads": 0}, {"n_heads": 2.0}, {"d": -64}, {"max_len": -1}, {"n_items": None}, {"residual": "yes"},
    "deep", "list",
])
def test_a_corrupt_config_json_is_refused_before_building(tmp_path, tiny_world, bad):
    out = write_checkpoint(tmp_path / "c", make_model("fame", n_items=tiny_world.n_items), dataset_record(tiny_world),
                           {}, [])
    config = json.loads((out / "config.json").read_text())
    if bad == "deep":
        (out / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    elif bad == "list":
        (out / "config.json").write_text("[1, 2]")
    else:
        config["model"].update(bad)
        (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert "\n" not in str(e.value) and "config.json" in str(e.value)


@pytest.mark.parametrize("cls,change", [
    (TrainConfig, {"epochs": 0}), (TrainConfig, {"batch_size": -5}), (TrainConfig, {"lr": 1e300}),
    (TrainConfig, {"lr": 0.0}), (TrainConfig, {"device": "tpu"}), (TrainConfig, {"seed": -1}),
    (TrainConfig, {"warm": 1}), (FacetObjectives, {"router_decisive": float("nan")}),
    (FacetObjectives, {"facet_weight": -1.0}), (EvalOptions, {"split": "train"}), (EvalOptions, {"batch_size": 0}),
])
def test_training_and_evaluation_settings_are_checked(cls, change):
    with pytest.raises(ConfigError):
        cls(**change)


def test_cli_defaults_are_the_dataclass_defaults():
    a = build_parser().parse_args(["train", "--out", "x"])
    mcfg, tcfg = train_settings(a)
    assert mcfg == FAMEConfig() and tcfg == TrainConfig()
    a = build_parser().parse_args(["train", "--out", "x", "--model", "sasrec", "--facet-heads", "genre,actor",
                                   "--hidden", "32", "--dropout", "0.2"])
    mcfg, tcfg = train_settings(a)
    assert mcfg == SASRecConfig(d=32, dropout=0.2, attn_dropout=0.2)
    assert tcfg.objectives.facet_heads == ("genre", "actor")


def test_one_name_for_history_masking_old_spellings_kept():
    p = build_parser()
    assert p.parse_args(["evaluate", "--checkpoint", "c"]).__dict__.get("mask_history", True) is True
    assert p.parse_args(["evaluate", "--checkpoint", "c", "--no-mask-history"]).mask_history is False
    assert p.parse_args(["inspect", "--checkpoint", "c", "--user", "1", "--include-history"]).mask_history is False
    assert p.parse_args(["inspect", "--checkpoint", "c", "--user", "1", "--no-mask-history"]).mask_history is False


def test_a_setting_of_another_model_is_refused():
    a = build_parser().parse_args(["train", "--out", "x", "--model", "sasrec", "--experts", "4"])
    with pytest.raises(ConfigError, match="--experts is a setting of --model fame"):
        train_settings(a)


def test_inspect_runs_the_model_once_for_every_merge_mode():
    model = make_model("fame")
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    res = fame_core.inspect(model, [3, 5, 7], target=4)
    assert len(calls) == 1 and res.merge_modes == ["gated", "concat", "head:0", "head:1"]
    assert not np.array_equal(res.scores["head:0"], res.scores["head:1"])


def test_one_version_string():
    from fame_core import _version

    out = subprocess.run([sys.executable, "-m", "fame_core", "--version"], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == f"fame_core {_version.__version__}" == f"fame_core {fame_core.__version__}"


@pytest.mark.parametrize("value", ["0", "-3", "1001", "2.5", "abc"])
def test_kcore_is_checked_once_for_every_command(value, capsys):
    from fame_core.cli import main
    from fame_core.data import KCORE

    for argv in (["train", "--out", "never-written"], ["data", "describe", "synthetic"]):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--kcore", value])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: argument --kcore")
    assert f"default {KCORE})" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    with pytest.raises(fame_core.DataError, match="kcore must be a whole number from 1 to 1000"):
        fame_core.load_dataset("synthetic", kcore_k=int(value) if value.lstrip("-").isdigit() else 0)


def test_the_ffn_activation_is_recorded_and_old_records_read_as_relu():
    assert config_from_dict(LEGACY_SASREC).activation == "relu"          # written before the option existed
    cfg = SASRecConfig(n_items=10, activation="gelu", ffn_dim=64)
    assert config_from_dict(cfg.to_dict()) == cfg
    torch.manual_seed(0)
    x = torch.randn(3, 16)
    ffn = build_model(SASRecConfig(n_items=10, d=16, activation="gelu")).eval().blocks[0].ffn
    np.testing.assert_allclose(ffn(x).detach(), ffn.W2(torch.nn.functional.gelu(ffn.W1(x))).detach())
    with pytest.raises(ConfigError, match="activation must be one of relu, gelu"):
        SASRecConfig(n_items=10, activation="tanh")
