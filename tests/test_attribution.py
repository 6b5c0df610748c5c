"""Integrated gradients beside attention, and deletion-curve faithfulness (fame_core.attribution)."""

import json

import numpy as np
import pytest
import torch

from fame_core.attribution import aopc, attribute, deletion_curves, effective_attention, faithfulness_sample
from fame_core.errors import DataError
from fame_core.inspection import inspect
from fame_core.models import build_model, model_config
from tests.conftest import make_model

DECISIVE = 7  # the one item the hand-built model's score rests on


def one_item_model(n_items=20, d=8, seed=0):
    """FAME with only its facet layer (L=1), every expert query a constant that matches the key of
    item DECISIVE alone: all attention from the last position sits on that item, so the score is a
    function of that item's embedding only (up to the LayerNorm of the others)."""
    torch.manual_seed(seed)
    cfg = model_config("fame", n_items=n_items, d=d, n_layers=1, n_heads=2, n_experts=2, max_len=8,
                      dropout=0.0, attn_dropout=0.0)
    m = build_model(cfg).eval()
    with torch.no_grad():
        E = torch.randn(n_items + 1, d)
        E[:, 0] = 0.0
        E[DECISIVE, 0] = 4.0
        m.embed.E.weight.copy_(E)
        m.embed.P.weight.zero_()
        m.embed.P.weight[:, d - 1] = 3.0
        m.moe.W_Q.zero_()
        m.moe.b_Q.zero_()
        m.moe.b_Q[:, :, 0] = 30.0
        m.moe.W_K.weight.zero_()
        m.moe.W_K.bias.zero_()
        for h in range(cfg.n_heads):
            m.moe.W_K.weight[h * cfg.d_head, 0] = 1.0
    return m


@pytest.mark.parametrize("merge", ["gated", "head:0", "head:1"])
def test_the_one_decisive_item_is_ranked_first_and_deleting_it_first_drops_the_score(merge):
    m = one_item_model()
    seq = [3, DECISIVE, 12, 5, 9, 1]
    insp = inspect(m, seq, top_k=1)
    assert (insp.attention[:, :, -1, 1] > 0.999).all()               # the construction holds
    target = int(insp.top["gated"][0])
    res = attribute(m, seq, target, merge, n_steps=64)
    order = np.argsort(-res.attribution)
    assert order[0] == 1 and np.argsort(-np.abs(res.attribution))[0] == 1
    assert abs(res.attribution[1]) > 20 * np.abs(np.delete(res.attribution, 1)).sum()
    curve = deletion_curves(m, res, n_random=20)
    first = curve[curve["removed"] == 1].set_index("method")["score"]
    drop = res.score - first
    assert drop["integrated gradients"] == pytest.approx(drop["attention"], abs=1e-5)   # both remove item 7 first
    assert drop["integrated gradients"] > drop["random"]
    table = aopc(curve).set_index("method")
    assert table.loc["integrated gradients", "aopc_score"] > table.loc["random", "aopc_score"]


@pytest.mark.parametrize("bias", [0.0, 3.0])
def test_completeness_scores_and_curve_start_are_the_models_own(bias):
    m = make_model(n_items=30, head_cluster_bias=bias)
    if bias:   # --head-cluster-bias: the score includes L(g_c(v) - 1/H), which the attribution must explain too
        with torch.no_grad():
            m.item_cluster.copy_((torch.arange(31) % 2).float())
    seq, target = [4, 9, 17, 2, 25], 11
    for merge in ("gated", "head:1"):
        res = attribute(m, seq, target, merge, n_steps=128)
        # Captum's delta is sum(attribution) - (score - baseline score), checked here directly
        assert res.attribution.sum() == pytest.approx(res.score - res.baseline_score, abs=2e-3)
        insp = inspect(m, seq, target)
        direct = insp.scores["gated"][target] if merge == "gated" else insp.head_scores[1, target]
        assert res.score == pytest.approx(float(direct), rel=1e-5, abs=1e-5)
        curve = deletion_curves(m, res)
        start = curve[curve["removed"] == 0]
        np.testing.assert_allclose(start["score"], res.score, rtol=1e-5)
        assert (start["rank"] == insp.target_rank[merge]).all()     # the rank under the attributed score (issue 42)
        assert curve["removed"].max() == len(seq) - 1


def test_effective_attention_is_the_router_weighted_expert_attention():
    m = make_model(n_items=30)
    seq = [4, 9, 17, 2, 25, 3]
    insp = inspect(m, seq)
    for h in range(2):
        direct = sum(insp.router[h, -1, n] * insp.attention[h, n, -1] for n in range(insp.n_experts))
        np.testing.assert_allclose(effective_attention(m, seq, f"head:{h}"), direct, rtol=1e-5)
    gated = effective_attention(m, seq, "gated")
    assert gated.sum() == pytest.approx(1.0, abs=1e-5)
    sasrec = make_model("sasrec", n_items=30)
    assert effective_attention(sasrec, seq, "gated").sum() == pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_are_one_line_errors():
    m = make_model(n_items=30)
    with pytest.raises(DataError, match="unknown score"):
        attribute(m, [1, 2], 3, "head:9")
    with pytest.raises(DataError, match="not an item"):
        attribute(m, [1, 99], 3)
    with pytest.raises(DataError, match="target"):
        attribute(m, [1, 2], None)


def test_sample_average_and_cli_json(tiny_world, tmp_path, capsys):
    from fame_core.cli import main

    m = make_model(n_items=tiny_world.n_items)
    out = faithfulness_sample(m, tiny_world, n_users=6, n_steps=8)
    assert out["users"] == 6 and set(out["scores"]) == {"gated", "head:0", "head:1"}
    s = out["scores"]["gated"]
    assert 0.0 <= s["ig_beats_attention_share"] <= 1.0 and 0.0 <= s["p_value"] <= 1.0
    assert main(["attribution", "--checkpoint", "checkpoints/demo", "--users", "3", "--steps", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == 3 and "Wilcoxon" in report["test"]
    # issue 41: head:h's ranks are head h's own (not the gated rank under a head's key); IG's gap reported
    assert "head h alone" in report["rank_under"] and report["random_orders"] == 20
    for r in report["scores"].values():
        assert r["max_relative_completeness_gap"] <= 0.01 or r["max_ig_steps"] == report["ig_step_cap"]
        lo, hi = r["ci95_integrated_gradients_minus_attention"]
        assert lo <= hi
    assert main(["attribution", "--checkpoint", "checkpoints/demo", "--merge", "head:7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_cli_json_keys_name_the_score_each_rank_is_under(capsys):
    """Issue 42: every entry's ranks were the gated rank, shown under "head:0"/"head:1". Each entry's
    ranks are now under its own score: checked against fame_core.inspect's target ranks."""
    import fame_core
    from fame_core.cli import main
    from tests.conftest import REPO

    model, data = fame_core.load(REPO / "checkpoints" / "demo")
    assert main(["attribution", "--checkpoint", "checkpoints/demo", "--users", "3", "--steps", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["scores"]) == {"gated", "head:0", "head:1"}
    users = list(report["scores"]["gated"]["target_rank_by_user"])
    assert len(users) == 3
    differs = 0
    for user in users:
        insp = inspect(model, *data.example(data.user_row(user), "test"), top_k=1)
        for merge, entry in report["scores"].items():
            assert entry["target_rank_by_user"][user] == insp.target_rank[merge], (user, merge)
        differs += insp.target_rank["head:0"] != insp.target_rank["gated"]
    assert differs                  # the heads' ranks are not the gated one: a mislabelled rank would show
