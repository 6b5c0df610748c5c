"""The training terms (fame_core/objectives.py): each kept term's value on hand-made inputs,
training and resuming with them, the registry (a new term is one class plus one line), and the
retired settings (issue 40): a record that holds a retired default opens, one that used it is refused."""

import json
import math

import pytest
import torch

import fame_core
from fame_core import objectives
from fame_core.models import FAMEConfig, ModelOutput
from fame_core.objectives import Batch, FacetObjectives, FacetProbes, build_terms, facet_leakage, terms_loss
from fame_core.training import TrainConfig, train
from tests.conftest import make_model


def details(gates, logits=None):
    B, H = gates.shape
    d = ModelOutput(u=torch.zeros(B, 1, 4), heads=torch.zeros(B, 1, H, 4), attention=torch.zeros(B, H, 1, 1, 1),
                    gates=gates[:, None, :],
                    router_logits=None if logits is None else logits[:, :, None, :])  # (B, H, T=1, N)
    where = torch.ones(B, 1, dtype=torch.bool)
    return d, Batch(torch.ones(B, 1, dtype=torch.long), torch.ones(B, 1, dtype=torch.long), where)


def value(settings, out, batch, model=None):
    model = model or make_model("fame", n_items=30)
    return terms_loss(build_terms(settings, model, None), model, out, batch).item()


@pytest.mark.fast
def test_router_term_rewards_decisive_and_balanced_routing():
    obj = FacetObjectives(router_decisive=1.0)
    hard = torch.eye(2)[[0, 1, 0, 1]].reshape(4, 1, 2) * 30               # each position picks one expert
    d_hard, batch = details(torch.ones(4, 1), hard)
    d_soft, _ = details(torch.ones(4, 1), torch.zeros(4, 1, 2))
    assert value(obj, d_hard, batch) == pytest.approx(-math.log(2), abs=1e-3)
    assert value(obj, d_soft, batch) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.fast
def test_expert_diversity_is_one_for_copies_and_small_for_random_queries():
    model = make_model("fame", n_items=30)
    obj = FacetObjectives(expert_diversity=1.0)
    det, batch = details(torch.full((2, model.config.n_heads), 0.5))
    random_value = value(obj, det, batch, model)
    with torch.no_grad():
        model.moe.W_Q[:] = model.moe.W_Q[:, :1]
    assert value(obj, det, batch, model) == pytest.approx(1.0, abs=1e-5)
    assert random_value < 0.05


@pytest.mark.fast
def test_terms_for_parts_a_model_lacks_add_nothing():
    sasrec = make_model("sasrec", n_items=30)
    assert build_terms(FacetObjectives(router_decisive=1.0, expert_diversity=1.0), sasrec, None) == []


def test_facet_probes_learn_and_resume(tmp_path, tiny_world):
    obj = FacetObjectives(facet_heads="genre,actor", facet_weight=1.0, facet_exclusive=0.5, router_decisive=0.1,
                          expert_diversity=0.1)
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10)
    tc = TrainConfig(epochs=3, batch_size=64, objectives=obj)
    full = train(tiny_world, cfg, tc, tmp_path / "full", progress=False)
    train(tiny_world, cfg, tc, tmp_path / "part", progress=False, stop_after=1)
    assert "probes" in torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)
    resumed = train(tiny_world, cfg, tc, tmp_path / "part", resume=True, progress=False)
    assert resumed["test"] == full["test"]
    saved = json.loads((tmp_path / "full" / "config.json").read_text())["train"]["objectives"]
    assert saved["facet_heads"] == ["genre", "actor"] and saved["facet_exclusive"] == 0.5
    assert FacetObjectives(facet_heads="genre,actor").facet_heads == ("genre", "actor")  # 0.1.0 records
    with pytest.raises(fame_core.FameError, match="names 3 facets but the model has 2 heads"):
        FacetProbes(tiny_world, ["genre", "actor", "genre"], 8, 2)


@pytest.mark.fast
def test_leakage_is_high_when_a_head_encodes_the_other_facet_and_low_otherwise(tiny_world):
    from fame_core.labels import facet_labels

    genre, _ = facet_labels(tiny_world, "genre")
    actor, _ = facet_labels(tiny_world, "actor")
    labels = objectives.facet_labels_of(tiny_world, ["genre", "actor"])
    g = torch.nn.functional.one_hot(torch.as_tensor(genre).clamp_min(0), 4).float()
    a = torch.nn.functional.one_hot(torch.as_tensor(actor).clamp_min(0) % 4, 4).float()
    clean = torch.stack([g, a])        # head 0 genre only, head 1 actor only
    swapped = torch.stack([a, g])      # each head carries the other's facet
    assert facet_leakage(clean, labels).item() < 0.1 and facet_leakage(swapped, labels).item() > 0.8


@pytest.mark.fast
def test_kept_options_are_checked():
    from fame_core.errors import FameError

    for bad in (dict(expert_diversity=float("nan")), dict(router_decisive=-1), dict(facet_weight=1e9)):
        with pytest.raises(FameError, match="must be|must lie|from"):
            FacetObjectives(**bad)


# ---- the registry --------------------------------------------------------------------------------

def test_a_new_term_is_one_class_and_one_registry_line(tmp_path, tiny_world, monkeypatch):
    monkeypatch.setattr(objectives, "TERMS", dict(objectives.TERMS))
    monkeypatch.setattr(objectives, "_CLASS", [])
    calls = []

    class GateEntropy(objectives.Term):            # the file a new term would be
        name = "gate_entropy_weight"
        help = "weight: mean gate entropy"
        needs = frozenset({"gate"})

        def loss(self, model, out, batch):
            calls.append(1)
            g = out.gates[batch.where]
            return -(g * torch.log(g.clamp_min(1e-9))).sum(-1).mean()

    objectives.register(GateEntropy)               # ... and its one registry line
    settings = objectives.objectives_class()(gate_entropy_weight=0.5)
    assert settings.active and "gate_entropy_weight" in settings.to_dict()
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10)
    train(tiny_world, cfg, TrainConfig(epochs=1, batch_size=64, objectives=settings), tmp_path / "run", progress=False)
    assert calls                                    # the loop called it without knowing it
    rec = json.loads((tmp_path / "run" / "config.json").read_text())["train"]["objectives"]
    assert rec["gate_entropy_weight"] == 0.5
    from fame_core.cli import build_parser          # and `train` has a flag for it
    assert "--gate-entropy-weight" in build_parser().format_help() or \
        "--gate-entropy-weight" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()


# ---- retired settings (issue 40) ------------------------------------------------------------------

@pytest.mark.fast
def test_a_record_with_retired_defaults_opens_and_one_that_used_them_is_refused():
    record = {"router_decisive": 0.5, "gate_competence": 0.0, "head_dropout": 0.0, "competence_temperature": 1.0,
              "head_clusters_epochs": 0, "mixture_likelihood": 0.0}
    assert FacetObjectives.from_dict(record).router_decisive == 0.5
    with pytest.raises(fame_core.ConfigError, match=f"mixture_likelihood = 5.0 was retired.*{objectives.RETIRED_AT}"):
        FacetObjectives.from_dict(dict(record, mixture_likelihood=5.0))


@pytest.mark.fast
def test_a_checkpoint_with_a_retired_model_setting_is_refused_in_one_line(tmp_path):
    import shutil

    from tests.conftest import REPO
    ckpt = tmp_path / "c"
    shutil.copytree(REPO / "checkpoints" / "demo", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["recent_window"] = 0                          # as checkpoints before issue 40 recorded it
    (ckpt / "config.json").write_text(json.dumps(config))
    assert fame_core.load_checkpoint(ckpt) is not None
    config["model"]["recent_window"] = 2
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(fame_core.FameError, match="recent_window = 2 was retired") as info:
        fame_core.load_checkpoint(ckpt)
    assert "\n" not in str(info.value)


def test_resuming_a_run_that_used_a_retired_term_names_the_commit(tmp_path, tiny_world):
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10)
    tc = TrainConfig(epochs=3, batch_size=64)
    train(tiny_world, cfg, tc, tmp_path / "run", progress=False, stop_after=1)
    path = tmp_path / "run" / "config.json"
    config = json.loads(path.read_text())
    config["train"]["objectives"]["head_dropout"] = 0.3
    path.write_text(json.dumps(config))
    with pytest.raises(fame_core.FameError, match=f"head_dropout = 0.3 was retired.*{objectives.RETIRED_AT}"):
        train(tiny_world, cfg, tc, tmp_path / "run", resume=True, progress=False)


@pytest.mark.fast
def test_train_help_has_no_retired_flag_and_a_status_on_every_setting():
    import argparse

    from fame_core.cli import build_parser
    train_parser = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    flags = {s: a for a in train_parser._actions for s in a.option_strings}
    for retired in list(objectives.RETIRED) + ["recent_window"]:
        assert "--" + retired.replace("_", "-") not in flags
    import dataclasses
    from fame_core.models import MODELS
    from fame_core.options import flag
    for cls in [TrainConfig, objectives.objectives_class(), *(m.config_class for m in MODELS.values())]:
        for f in dataclasses.fields(cls):
            if flag(f):
                assert "status:" in flags[flag(f)].help, flag(f)
    assert "status:" in flags["--model"].help
