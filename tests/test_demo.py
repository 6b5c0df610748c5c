"""The bundled demo checkpoints open with no download and reproduce their recorded results."""

import json

import numpy as np
import pytest

import fame_core
from tests.conftest import REPO

DEMO = REPO / "checkpoints" / "demo"


@pytest.mark.fast
@pytest.mark.parametrize("name", ["demo", "demo-sasrec", "demo-nomoe", "demo-facets"])
def test_demo_checkpoint_reproduces_its_recorded_test_metrics(name):
    path = REPO / "checkpoints" / name
    model, data = fame_core.load(path)
    recorded = json.loads((path / "config.json").read_text())["test"]
    fresh = fame_core.evaluate(model, data, "test")["metrics"]
    assert fresh == pytest.approx(recorded, abs=1e-6)
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2**20
    assert not (path / "train_state.pt").exists()


def test_demo_is_fame_with_two_heads_and_four_experts_and_inspects_a_user():
    model, data = fame_core.load(DEMO)
    assert (model.config.model, model.config.n_heads, model.config.n_experts) == ("fame", 2, 4)
    seq, target = fame_core.user_example(data, "7")
    r = fame_core.inspect(model, seq, target)
    assert r.attention.shape == (2, 4, len(seq), len(seq)) and r.router.shape == (2, len(seq), 4)
    assert r.gates.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(r.router.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.attention.sum(-1), 1.0, atol=1e-5)


def test_demo_facets_heads_are_facets_and_its_gate_follows_the_planted_facet():
    from fame_core.facets import gate_vs_facet, head_alignment, specialisation

    model, data = fame_core.load(REPO / "checkpoints" / "demo-facets")
    spec = specialisation(head_alignment(model, data))
    assert spec["head 0"]["facet"] == "genre" and spec["head 1"]["facet"] == "actor"
    assert spec["head 0"]["gap"] > 0.2 and spec["head 1"]["gap"] > 0.2
    assert gate_vs_facet(model, data)["accuracy"] > 0.8


@pytest.mark.parametrize("name,data", [("beauty-sasrec", "amazon/Beauty.txt"), ("beauty-fame", "amazon/Beauty.txt"),
                                       ("beauty-fame-gated", "amazon/Beauty.txt"),
                                       ("sports-sasrec", "amazon/Sports_and_Outdoors.txt"),
                                       ("sports-fame", "amazon/Sports_and_Outdoors.txt"),
                                       ("sports-fame-gated", "amazon/Sports_and_Outdoors.txt")])
def test_bundled_table2_checkpoints_reproduce_their_test_metrics(name, data):
    from tests.conftest import needs_shared

    path = REPO / "checkpoints" / name
    model, dataset = fame_core.load(path, data=needs_shared(data))
    recorded = json.loads((path / "config.json").read_text())
    assert recorded["weights_dtype"] == "float16"
    fresh = fame_core.evaluate(model, dataset, "test")["metrics"]
    assert fresh == pytest.approx(recorded["test"], abs=5e-4)     # float16 rounding moves a few ranks at most
    assert sum(f.stat().st_size for f in path.iterdir()) < 8 * 2**20
