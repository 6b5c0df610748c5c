"""Named intermediates, interventions and counterfactual histories (issue 44: fame_core.hooks,
fame_core.interventions, fame_core.counterfactual)."""

import pytest
import torch

import fame_core
from fame_core.errors import ConfigError, FameError
from fame_core.evaluate import left_pad
from fame_core.hooks import hook_names, run_with_cache, run_with_hooks
from tests.conftest import REPO, make_model

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def demo():
    return fame_core.load(REPO / "checkpoints" / "demo")


@pytest.fixture(scope="module")
def demo_sasrec():
    return fame_core.load(REPO / "checkpoints" / "demo-sasrec")


# ---- names and the cache ------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["demo", "demo_sasrec"])
@pytest.mark.parametrize("last_only", [False, True])
def test_the_cache_leaves_the_bundled_checkpoints_bit_identical(which, last_only, request):
    model, data = request.getfixturevalue(which)
    x = left_pad([data.example(r, "test")[0] for r in range(48)], model.config.max_len)
    with torch.no_grad():
        plain = model(x, last_only=last_only)
    out, cache = run_with_cache(model, x, last_only=last_only)
    for merge in fame_core.merge_modes(model.config.n_heads):
        assert torch.equal(model.scores(plain, merge), model.scores(out, merge))
    assert torch.equal(cache["scores.gated"], model.scores(plain, "gated"))
    assert torch.equal(torch.stack([cache[f"head.{h}"] for h in range(2)], 2), plain.heads)
    # no-op hooks on every replaceable name: still the same scores, bit for bit
    same = {n: (lambda t, name: t) for n in hook_names(model) if not n.startswith("scores.")}
    out2, _ = run_with_hooks(model, x, same, last_only=last_only)
    assert torch.equal(model.scores(out2), model.scores(plain))


def test_cached_intermediates_are_the_model_output_fields():
    m = make_model("fame")
    seq = [3, 5, 7, 2, 9]
    out, cache = run_with_cache(m, seq)
    H, N = m.config.n_heads, m.config.n_experts
    for h in range(H):
        assert torch.equal(cache[f"router.{h}"], out.router[:, h])
        assert torch.equal(cache[f"head.{h}"], out.heads[:, :, h])
        for n in range(N):
            assert torch.equal(cache[f"attention.{h}.{n}"], out.attention[:, h, n])
    assert torch.equal(cache["gate"], out.gates)
    assert torch.allclose(torch.softmax(cache["gate.logits"], -1), out.gates)
    assert torch.equal(cache["block.1.out"], out.heads.flatten(-2))
    hs = m.head_scores(out)
    assert torch.equal(cache["scores.head.1"], hs[:, 1])


def test_a_replaced_intermediate_propagates_downstream():
    m = make_model("fame")
    seq = [3, 5, 7, 2, 9]
    out0, _ = run_with_cache(m, seq, ["gate"])
    out, cache = run_with_hooks(m, seq, {"head.0": lambda t, name: torch.zeros_like(t)}, names=["head.0", "gate"])
    assert torch.equal(cache["head.0"], torch.zeros_like(cache["head.0"]))
    assert not torch.equal(out.gates, out0.gates)          # the gate reads the heads (Eq. 10)
    with pytest.raises(ConfigError, match="same shape|must keep"):
        run_with_hooks(m, seq, {"gate": lambda t, name: t[..., :1]})
    with pytest.raises(ConfigError, match="read after"):
        run_with_hooks(m, seq, {"scores.gated": lambda t, name: t})


def test_sasrec_names_what_it_has_when_asked_for_a_router_gate_or_expert():
    m = make_model("sasrec")
    names = hook_names(m)
    assert "gate" not in names and not any(n.startswith("router") for n in names)
    for name, part in [("router.0", "router"), ("gate", "gate"), ("block.1.expert_query.0.0", "experts")]:
        with pytest.raises(ConfigError, match=f"SASRec has no {part}.*head"):
            run_with_cache(m, [1, 2, 3], [name])
    with pytest.raises(FameError, match="no intermediate 'attention.0.1'"):
        run_with_cache(m, [1, 2, 3], ["attention.0.1"])
