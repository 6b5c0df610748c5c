"""Named intermediates, interventions and counterfactual histories (issue 44: fame_core.hooks,
fame_core.interventions, fame_core.counterfactual)."""

import numpy as np
import pytest
import torch

import fame_core
from fame_core.errors import ConfigError, FameError
from fame_core.evaluate import left_pad
from fame_core.hooks import hook_names, run_with_cache, run_with_hooks
from fame_core.counterfactual import counterfactual
from fame_core.inspection import inspect
from fame_core.interventions import intervene, intervene_population
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


# ---- interventions --------------------------------------------------------------------------------

def tiny_inputs(world, n=40, split="test"):
    rows = world.splittable_rows()[:n]
    ex = [world.example(r, split) for r in rows]
    return [x for x, _ in ex], [t for _, t in ex]


def gate_zero_model():
    """FAME whose gate is exactly (0, 1) for every input: W_g reads nothing, b_g = (-1000, 0)."""
    m = make_model("fame", n_items=60)
    with torch.no_grad():
        m.W_g.weight.zero_()
        m.W_g.bias.copy_(torch.tensor([-1000.0, 0.0]))
    return m


def same_reading(a, b):
    for m in a.top:
        assert np.array_equal(a.top[m], b.top[m]), m
        if a.ranks is not None:
            assert np.array_equal(a.ranks[m], b.ranks[m]), m
    assert np.array_equal(a.gates, b.gates)
    assert (a.router is None and b.router is None) or np.array_equal(a.router, b.router)


def test_ablating_a_head_whose_gate_is_zero_changes_nothing(tiny_world):
    m = gate_zero_model()
    seqs, targets = tiny_inputs(tiny_world)
    res = intervene(m, seqs, targets, ["head:0"], k=10)
    assert (res.before.gates[:, 0] == 0).all()
    same_reading(res.before, res.after)
    pop = intervene_population(m, tiny_world, "test", ["head:0"], k=10)["summary"]
    assert pop["users_unchanged"] == pop["users"] and pop["p_value"] == 1.0 and pop["mean_change_NDCG@10"] == 0
    moved = intervene(m, seqs, targets, ["head:1"], k=10)      # the head that decides does change things
    assert not np.array_equal(moved.before.ranks["gated"], moved.after.ranks["gated"])


def test_a_uniform_gate_is_the_concat_merge_exactly(tiny_world):
    from fame_core.interventions import _pair, parse_all

    m = make_model("fame", n_items=60)
    seqs, targets = tiny_inputs(tiny_world)
    res = intervene(m, seqs, targets, ["gate=uniform"], k=15)
    assert np.array_equal(res.after.ranks["gated"], res.before.ranks["concat"])
    assert np.array_equal(res.after.top["gated"], res.before.top["concat"])
    assert np.allclose(res.after.gates, 0.5)
    before, after, _ = _pair(m, parse_all(m, ["gate=uniform"]), left_pad(seqs, 8), seqs, {}, {})
    assert torch.equal(m.scores(after, "gated"), m.scores(before, "concat"))   # bit for bit


def test_patching_a_users_own_activations_is_the_identity(tiny_world):
    m = make_model("fame", n_items=60)
    seqs, targets = tiny_inputs(tiny_world)
    specs = ["gate=user:self", "patch:head.0=user:self", "patch:router.1=user:self",
             "patch:block.1.expert_out.0.2=user:self", "patch:attention.1.0=user:self"]
    for spec in specs + [specs]:
        res = intervene(m, seqs, targets, spec, k=10)
        same_reading(res.before, res.after)
    pop = intervene_population(m, tiny_world, "test", specs, k=10)["summary"]
    assert pop["users_unchanged"] == pop["users"]


def test_another_users_gate_and_head_output_are_carried_over(tiny_world):
    m = make_model("fame", n_items=60)
    seqs, targets = tiny_inputs(tiny_world, 5)
    other = tiny_world.user_ids[tiny_world.splittable_rows()[7]]
    res = intervene(m, seqs, targets, [f"gate=user:{other}"], dataset=tiny_world)
    own = intervene(m, [tiny_world.example(tiny_world.user_row(other), "test")[0]], None, ["gate=user:self"])
    assert np.allclose(res.after.gates, own.before.gates[0])
    with pytest.raises(FameError, match="pass the data set"):
        intervene(m, seqs, targets, [f"gate=user:{other}"])
    with pytest.raises(ConfigError, match="length axis"):
        intervene(m, seqs, targets, [f"patch:attention.0.0=user:{other}"], dataset=tiny_world)


def test_knocking_out_an_expert_renormalises_the_router_and_a_one_hot_router_routes_to_one(tiny_world):
    m = make_model("fame", n_items=60)
    seqs, targets = tiny_inputs(tiny_world, 10)
    res = intervene(m, seqs, targets, ["expert:1.2"])
    r = res.after.router
    assert (r[:, 1, 2] == 0).all() and np.allclose(r[:, 1].sum(-1), 1) and np.array_equal(r[:, 0], res.before.router[:, 0])
    b = res.before.router[:, 1]
    expect = b.copy()
    expect[:, 2] = 0
    assert np.allclose(r[:, 1], expect / expect.sum(-1, keepdims=True), atol=1e-6)
    arg = intervene(m, seqs, targets, ["router:0=argmax"]).after.router[:, 0]
    assert np.array_equal(arg, np.eye(3)[res.before.router[:, 0].argmax(-1)])


def test_the_rule_gate_is_the_majority_of_history_votes(tiny_world):
    from fame_core.inspection import inspect

    m = make_model("fame", n_items=60)
    seqs, targets = tiny_inputs(tiny_world, 12)
    res = intervene(m, seqs, targets, ["gate=rule"])
    for i, seq in enumerate(seqs):
        insp = inspect(m, seq, top_k=1, mask_history=False)
        hs = insp.head_scores                                     # (H, n+1), padding -inf
        used = insp.sequence
        above = np.array([[(hs[h, 1:] > hs[h, v]).sum() for v in used] for h in range(2)])   # (H, S)
        votes = np.bincount(above.argmin(0), minlength=2)
        assert res.rule_votes[i].tolist() == votes.tolist()
        assert res.after.gates[i].tolist() == np.eye(2)[votes.argmax()].tolist()


def test_population_changes_equal_a_per_user_loop(tiny_world):
    from fame_core.interventions import reference_means
    from fame_core.stats import ndcg_at

    m = make_model("fame", n_items=60)
    specs = ["expert:0.1", "head:1", "gate=rule"]
    rows = tiny_world.splittable_rows()
    inputs = [tiny_world.example(r, "test")[0] for r in rows]
    ref = reference_means(m, inputs, ["head.1", "block.1.expert_out.0.1"])
    pop = intervene_population(m, tiny_world, "test", specs, k=10, mode="mean", batch_size=37)
    table = pop["table"]
    for i, r in enumerate(rows):
        seq, t = tiny_world.example(r, "test")
        one = intervene(m, [seq], [t], specs, k=10, mode="mean", reference=ref)
        assert table["rank_before"].iloc[i] == one.before.ranks["gated"][0]
        assert table["rank_after"].iloc[i] == one.after.ranks["gated"][0]
    change = ndcg_at(table["rank_after"] - 1, 10) - ndcg_at(table["rank_before"] - 1, 10)
    assert pop["summary"]["mean_change_NDCG@10"] == pytest.approx(change.mean())
    lo, hi = pop["summary"]["ci95_mean_change"]
    assert lo <= change.mean() <= hi


def test_sasrec_refuses_gate_router_and_expert_interventions_but_ablates_heads(tiny_world):
    m = make_model("sasrec", n_items=60)
    seqs, targets = tiny_inputs(tiny_world, 8)
    for spec, part in [("gate=uniform", "gate"), ("expert:0.0", "experts"), ("router:1", "router"),
                       ("gate=rule", "gate")]:
        with pytest.raises(ConfigError, match=f"SASRec has no {part} \\(its capabilities: heads\\); ablate a head"):
            intervene(m, seqs, targets, [spec])
    res = intervene(m, seqs, targets, ["head:0"])
    assert np.array_equal(res.after.ranks["gated"], res.before.ranks["head:1"])   # its score sums the heads


@pytest.mark.parametrize("spec, says", [("head:x", "pass one of head:H"), ("expert:1", "pass one of"),
                                        ("gate=half", "pass gate=uniform|rule|onehot:h"), ("gate=fixed:1,-1", "non-negative"),
                                        ("router:0=median", "pass one of"), ("head:5", "heads 0..1"),
                                        ("expert:0.9", "experts 0..2"), ("gate=onehot:4", "onehot:0..onehot:1"),
                                        ("gate=fixed:1,2,3", "give 2 weights")])
def test_bad_specs_say_what_to_pass(spec, says):
    with pytest.raises(ConfigError, match=says.replace("|", "\\|").replace(".", "\\.")):
        intervene(make_model("fame"), [[1, 2, 3]], [4], [spec])


# ---- counterfactual histories ------------------------------------------------------------------------

def test_when_one_history_item_alone_decides_the_score_removing_it_is_the_one_edit_counterfactual():
    from tests.test_attribution import DECISIVE, one_item_model

    m = one_item_model()
    seq = [3, DECISIVE, 12, 5, 9, 1]
    assert (inspect(m, seq, top_k=1).attention[:, :, -1, 1] > 0.999).all()   # all attention on item 7
    target = int(inspect(m, [v for v in seq if v != DECISIVE], top_k=1).top["gated"][0])
    assert inspect(m, seq, target).target_rank["gated"] > 3
    removal = [{"op": "remove", "position": 1, "item": DECISIVE}]
    for goal, k in [("top-k", 3), ("top-1", 20)]:
        cf = counterfactual(m, seq, target, goal=goal, k=k, budget=3)
        assert cf.found and cf.verified and cf.size == 1 and cf.edits == removal, (goal, cf.message)
        assert cf.edited == [3, 12, 5, 9, 1]
    assert cf.after["top"]["gated"][0] == target


@pytest.mark.parametrize("goal", ["top-k", "flip-gate", "top-1"])
def test_every_counterfactual_returned_is_verified_by_inspect(goal, demo, monkeypatch):
    import fame_core.inspection as inspection
    from fame_core.counterfactual import apply_edit

    m, data = demo
    seen = []
    real = inspection.inspect

    def spy(model, sequence, target=None, **kw):
        seen.append([int(v) for v in sequence])
        return real(model, sequence, target, **kw)
    monkeypatch.setattr(inspection, "inspect", spy)
    found = 0
    for r in data.splittable_rows()[:8]:
        seq, t = data.example(r, "test")
        cf = counterfactual(m, seq, t, goal=goal, k=5, budget=2)
        if not cf.found:
            assert cf.edited is None and cf.message.startswith("no edit of at most 2") and cf.best is not None
            continue
        found += 1
        assert cf.verified and cf.edited in seen and cf.size <= 2
        replay = tuple(int(v) for v in seq)
        for e in cf.edits:
            replay = apply_edit(replay, e)
        assert list(replay) == cf.edited
        again = real(m, cf.edited, t, top_k=20)
        assert again.to_dict(5) == cf.after
        if goal == "top-k":
            assert again.target_rank["gated"] <= 5
        elif goal == "flip-gate":
            assert int(np.argmax(again.gates)) == cf.goal_head != int(np.argmax(cf.before["gates"]))
        else:
            assert again.top["gated"][0] != cf.top_item == cf.before["top"]["gated"][0]
    assert found >= 3


def test_no_edit_within_the_budget_says_so_plainly():
    m = gate_zero_model()        # the gate is (0, 1) whatever the history
    cf = counterfactual(m, [1, 2, 3, 4], 9, goal="flip-gate", budget=2)
    assert not cf.found and cf.edits == [] and cf.edited is None and cf.goal_head == 0
    assert cf.message.startswith("no edit of at most 2 (removals, and replacements and insertions from")
    assert "makes head 0's gate the largest" in cf.message
    with pytest.raises(ConfigError, match="SASRec has no gate.*pass goal top-k or top-1"):
        counterfactual(make_model("sasrec"), [1, 2, 3], 4, goal="flip-gate")
    with pytest.raises(ConfigError, match="unknown goal"):
        counterfactual(m, [1, 2, 3], 4, goal="top-2")


# ---- the command line ----------------------------------------------------------------------------------

DEMO = str(REPO / "checkpoints" / "demo")


@pytest.mark.parametrize("args, says", [
    (["--user", "7", "--ablate", "head:x"], "unknown intervention 'head:x'; pass one of head:H"),
    (["--user", "7", "--ablate", "expert:0.7"], "no expert 7; head 0 has experts 0..3"),
    (["--user", "7", "--gate", "half"], "pass gate=uniform|rule|onehot:h"),
    (["--user", "7", "--ablate", "gate=uniform"], "set the gate with --gate VALUE"),
    (["--user", "7"], "nothing to intervene on; pass --ablate"),
    (["--user", "7", "--ablate", "router:9"], "no head 9; this model has heads 0..1"),
    (["--user", "7", "--gate", "user:nobody"], "unknown user 'nobody'"),
])
def test_cli_bad_specs_are_one_error_line(args, says, capsys):
    from fame_core.cli import main

    assert main(["intervene", "--checkpoint", DEMO, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err


def test_cli_sasrec_refuses_a_gate_and_counterfactual_a_flip(capsys):
    from fame_core.cli import main

    sas = str(REPO / "checkpoints" / "demo-sasrec")
    assert main(["intervene", "--checkpoint", sas, "--user", "7", "--gate", "uniform"]) == 2
    assert "SASRec has no gate (its capabilities: heads)" in capsys.readouterr().err
    assert main(["counterfactual", "--checkpoint", sas, "--user", "7", "--goal", "flip-gate"]) == 2
    assert "SASRec has no gate" in capsys.readouterr().err


def test_cli_intervene_one_user_and_the_population_as_json(capsys):
    import json

    from fame_core.cli import main

    assert main(["intervene", "--checkpoint", DEMO, "--user", "7", "--ablate", "expert:1.0", "--gate", "uniform",
                 "--k", "10", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["interventions"] == ["expert:1.0", "gate=uniform"] and one["after"]["gates"] == [0.5, 0.5]
    assert len(one["after"]["top"]["gated"]) == 10 and one["before"]["rank"]["gated"] >= 1
    assert main(["intervene", "--checkpoint", DEMO, "--ablate", "head:1", "--k", "20", "--json"]) == 0
    pop = json.loads(capsys.readouterr().out)
    assert pop["users"] == 2000 and pop["before"]["NDCG@20"] == pytest.approx(0.1351, abs=1e-4)
    assert 0 <= pop["p_value"] <= 1 and pop["ci95_mean_change"][0] <= pop["mean_change_NDCG@20"] <= pop["ci95_mean_change"][1]


def test_cli_counterfactual_json_replays_with_inspect_items(capsys):
    import json

    from fame_core.cli import main

    assert main(["counterfactual", "--checkpoint", DEMO, "--user", "7", "--goal", "top-k", "--json"]) == 0
    cf = json.loads(capsys.readouterr().out)
    assert cf["found"] and cf["verified"] and cf["size"] == len(cf["edits"]) >= 1
    assert cf["replay"].endswith(f"--items {cf['edited_items']} --target {cf['target']}")
    assert main(["inspect", "--checkpoint", DEMO, "--items", cf["edited_items"], "--target", str(cf["target"]),
                 "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["target_rank"] == cf["after"]["target_rank"] and replay["target_rank"]["gated"] <= 20
