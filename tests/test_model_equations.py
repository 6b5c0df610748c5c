"""FAME's numbers checked against a direct computation of the equations (docs/design.md) from the weights."""

import math

import numpy as np
import pytest
import torch

import fame_core
from fame_core.evaluate import left_pad
from fame_core.models import FAMEConfig, fame_from_sasrec
from tests.conftest import make_model

pytestmark = pytest.mark.fast  # the fast tier: `python -m pytest -m fast`

SEQ = [5, 17, 3, 29, 11, 8]


def direct_fame(model, seq):
    """Eqs. 12-17, 7-11 (docs/design.md), one position and one head at a time, in float64 numpy."""
    cfg = model.config
    H, N, dh = cfg.n_heads, cfg.n_experts, cfg.d_head
    with torch.no_grad():
        x_t = left_pad([np.array(seq)], cfg.max_len)
        allowed = fame_core.models.sasrec.attention_mask(x_t)
        x = model.embed(x_t)
        for block in model.blocks:
            x, _ = block(x, allowed)
    x = x[0].double().numpy()                                     # (L, d), input of the last block
    P = {k: v.detach().double().numpy() for k, v in model.named_parameters()}
    L = len(seq)
    WK, bK, WV, bV = P["moe.W_K.weight"].T, P["moe.W_K.bias"], P["moe.W_V.weight"].T, P["moe.W_V.bias"]
    alpha = np.zeros((H, N, L, L))
    beta = np.zeros((H, L, N))
    F = np.zeros((H, dh))
    for h in range(H):
        cols = slice(h * dh, (h + 1) * dh)
        k = x @ WK[:, cols] + bK[cols]                            # (13)
        v = x @ WV[:, cols] + bV[cols]
        f_n = np.zeros((N, L, dh))
        for n in range(N):
            q = x @ P["moe.W_Q"][h, n] + P["moe.b_Q"][h, n]       # (12)
            for i in range(L):
                lo = 0
                logits = np.array([q[i] @ k[j] / math.sqrt(dh) for j in range(lo, i + 1)])  # causal
                a = np.exp(logits - logits.max())
                alpha[h, n, i, lo: i + 1] = a / a.sum()           # (14)
                f_n[n, i] = alpha[h, n, i] @ v                    # (15)
        for i in range(L):
            z = np.concatenate(f_n[:, i]) @ P["moe.W_exp"][h]     # (16)
            beta[h, i] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        f = beta[h, -1] @ f_n[:, -1]                              # (17) at the last position t
        pre = f @ P["moe.ffn.W1.weight"].T + P["moe.ffn.W1.bias"]
        act = np.maximum(pre, 0) if cfg.activation == "relu" else \
            0.5 * pre * (1 + np.vectorize(math.erf)(pre / math.sqrt(2)))     # GELU, exact (erf) form
        ffn = act @ P["moe.ffn.W2.weight"].T + P["moe.ffn.W2.bias"]
        y = f + ffn                                               # (7), dropout off in eval
        F[h] = (y - y.mean()) / np.sqrt(y.var() + 1e-5) * P["moe.ln.weight"] + P["moe.ln.bias"]
    E = P["embed.E.weight"]
    head_scores = np.stack([(E @ P["W_f"][h]) @ F[h] for h in range(H)])   # (9), (8)
    z = (F.reshape(-1) @ P["W_g.weight"].T + P["W_g.bias"]) / cfg.gate_temperature   # (10), tau = 1 in the paper
    g = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return alpha, beta, head_scores, g, g @ head_scores                     # (11)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_inspection_equals_direct_computation_of_the_equations(activation):
    model = make_model("fame", activation=activation)
    res = fame_core.inspect(model, SEQ, target=4)
    alpha, beta, head_scores, g, gated = direct_fame(model, SEQ)
    assert res.attention.shape == (2, 3, len(SEQ), len(SEQ))
    np.testing.assert_allclose(res.attention, alpha, atol=1e-5)
    np.testing.assert_allclose(res.router, beta, atol=1e-5)
    np.testing.assert_allclose(res.gates, g, atol=1e-5)
    np.testing.assert_allclose(res.head_scores[:, 1:], head_scores[:, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.scores["gated"][1:], gated[1:], rtol=1e-4, atol=1e-5)
    # the check must be able to fail: the router is far from uniform and the heads disagree
    assert np.abs(beta - 1 / 3).max() > 0.1
    assert np.abs(head_scores[0] - head_scores[1]).max() > 0.1


@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_merge_modes_are_gate_weighted_mean_and_single_heads(kind):
    model = make_model(kind)
    res = fame_core.inspect(model, SEQ)
    hs = res.head_scores[:, 1:]
    np.testing.assert_allclose(res.scores["gated"][1:], res.gates @ hs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.scores["concat"][1:], hs.mean(0), rtol=1e-4, atol=1e-5)
    for h in range(2):
        np.testing.assert_allclose(res.scores[f"head:{h}"][1:], hs[h], rtol=1e-4, atol=1e-5)
    assert res.scores["gated"][0] == -np.inf and res.head_scores[0, 0] == -np.inf
    if kind == "sasrec":  # no gate: its score is the plain sum of the heads' slice scores
        np.testing.assert_array_equal(res.gates, [1.0, 1.0])
        assert res.attention.shape[1] == 1 and np.all(res.router == 1.0)
        assert not res.has_gate and not res.has_router
        out = model(left_pad([np.array(SEQ)], 8))
        assert out.gates is None and out.router is None and out.router_logits is None
    else:
        assert res.has_gate and res.has_router


def test_top_lists_and_target_rank_follow_the_scores():
    model = make_model("fame")
    res = fame_core.inspect(model, SEQ, target=4, top_k=5)
    for mode in res.merge_modes:
        s = res.scores[mode].copy()
        s[list(set(SEQ))] = -np.inf
        order = np.argsort(-s)
        np.testing.assert_array_equal(res.top[mode], order[:5])
        assert res.target_rank[mode] == int(np.flatnonzero(order == 4)[0]) + 1
        assert not set(res.top[mode]) & set(SEQ)
    with_history = fame_core.inspect(model, SEQ, top_k=30, mask_history=False)
    assert set(SEQ) <= set(with_history.top["gated"].tolist())


def test_h1_n1_reduces_to_a_single_head_attention_layer():
    model = make_model("fame", n_heads=1, n_experts=1)
    res = fame_core.inspect(model, SEQ)
    np.testing.assert_array_equal(res.gates, [1.0])
    np.testing.assert_array_equal(res.router, np.ones((1, len(SEQ), 1)))
    # single-head SASRec-style last layer: F = LN(f + FFN'(f)), score = (x_v W_f) · F
    with torch.no_grad():
        seq = left_pad([np.array(SEQ)], 8)
        x = model.embed(seq)
        x, _ = model.blocks[0](x, fame_core.models.sasrec.attention_mask(seq))
        m = model.moe
        q = x @ m.W_Q[0, 0] + m.b_Q[0, 0]
        att = torch.softmax(q @ m.W_K(x).transpose(1, 2) / math.sqrt(16), -1)   # no padding here
        att = att.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), 0)
        att = att / att.sum(-1, keepdim=True)
        f = att @ m.W_V(x)
        F = m.ln(f + m.ffn(f))[0, -1]
        expected = (model.embed.E.weight @ model.W_f[0]) @ F
    np.testing.assert_allclose(res.scores["gated"][1:], expected[1:].numpy(), rtol=1e-4, atol=1e-5)


def test_identical_experts_equal_fame_without_moe():
    """N experts with the same query weights route to the same output: FAME(N) == FAME(N=1)."""
    one = make_model("fame", n_experts=1)
    many = make_model("fame", n_experts=4, seed=1)
    with torch.no_grad():
        state = {k: v for k, v in one.state_dict().items() if not k.startswith(("moe.W_Q", "moe.b_Q", "moe.W_exp"))}
        many.load_state_dict(state, strict=False)
        many.moe.W_Q.copy_(one.moe.W_Q.expand_as(many.moe.W_Q))
        many.moe.b_Q.copy_(one.moe.b_Q.expand_as(many.moe.b_Q))
    a, b = fame_core.inspect(one, SEQ), fame_core.inspect(many, SEQ)
    np.testing.assert_allclose(a.scores["gated"][1:], b.scores["gated"][1:], rtol=1e-4, atol=1e-5)
    assert b.router.shape == (2, len(SEQ), 4) and np.abs(b.router - 0.25).max() > 0.01  # routing is not trivial


@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_causality_a_later_item_never_changes_an_earlier_position(kind):
    model = make_model(kind)
    a = left_pad([np.array(SEQ)], 8)
    b = a.clone()
    b[0, -1] = 2
    with torch.no_grad():
        da, db = model(a), model(b)
    ua, ub = da.u, db.u
    torch.testing.assert_close(ua[:, :-1], ub[:, :-1])
    torch.testing.assert_close(da.head_weights()[:, :-1], db.head_weights()[:, :-1])
    assert not torch.allclose(ua[:, -1], ub[:, -1])


@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_padding_invariance(kind):
    model = make_model(kind)
    short = left_pad([np.array(SEQ)], 8)                      # width 6
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), short], 1)   # width 8
    batch = left_pad([np.array(SEQ), np.array([1, 2, 3, 4, 5, 6, 7, 9])], 8)
    with torch.no_grad():
        u1, u2, u3 = model(short).u, model(padded).u[:, 2:], model(batch).u[:1, 2:]
    torch.testing.assert_close(u1, u2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(u1, u3, rtol=1e-5, atol=1e-5)


def test_fame_from_sasrec_copies_the_pretrained_parts():
    sas = make_model("sasrec")
    cfg = FAMEConfig(n_items=30, d=16, n_layers=2, n_heads=2, n_experts=3, max_len=8)
    fame = fame_from_sasrec(sas, cfg)
    torch.testing.assert_close(fame.embed.E.weight, sas.embed.E.weight)
    torch.testing.assert_close(fame.blocks[0].W_Q.weight, sas.blocks[0].W_Q.weight)
    torch.testing.assert_close(fame.moe.W_K.weight, sas.blocks[1].W_K.weight)
    torch.testing.assert_close(fame.moe.W_V.bias, sas.blocks[1].W_V.bias)
    warm = fame_from_sasrec(sas, cfg, warm=True).eval()
    # warm: x_v^(h) is the h-th slice of x_v, and each expert's query is near the head's W_Q
    torch.testing.assert_close(warm.item_sub_embeddings()[1], sas.embed.E.weight[:, 8:])
    q = sas.blocks[1].W_Q.weight.T[:, :8]
    assert (warm.moe.W_Q[0, 2] - q).abs().max() < 0.2 and not torch.equal(warm.moe.W_Q[0, 0], warm.moe.W_Q[0, 1])
    with pytest.raises(ValueError, match="n_heads"):
        fame_from_sasrec(sas, FAMEConfig(n_items=30, d=16, n_heads=4, max_len=8))


def test_inspect_rejects_bad_sequences():
    model = make_model("fame")
    for bad, msg in (([], "empty"), ([1, 99], "item id 99"), ([0, 3], "item id 0")):
        with pytest.raises(fame_core.DataError, match=msg):
            fame_core.inspect(model, bad)
    with pytest.raises(fame_core.DataError, match="target"):
        fame_core.inspect(model, [1, 2], target=31)


def test_inspect_keeps_the_newest_max_len_items():
    model = make_model("fame")
    res = fame_core.inspect(model, list(range(1, 13)))
    assert res.sequence.tolist() == list(range(5, 13)) and res.dropped == 4
    assert res.attention.shape[-1] == 8


def test_unknown_merge_mode_is_a_clear_error():
    model = make_model("fame")
    with torch.no_grad():
        out = model(left_pad([np.array(SEQ)], 8))
    with pytest.raises(fame_core.FameError, match="unknown merge mode 'head:5'"):
        model.scores(out, "head:5")


@pytest.mark.parametrize("kind", ["fame", "sasrec"])
def test_last_only_equals_the_last_position_of_the_full_pass(kind):
    model = make_model(kind, residual=True) if kind == "fame" else make_model(kind)
    seq = left_pad([np.array(SEQ), np.array([4, 9])], 8)
    with torch.no_grad():
        full, last = model(seq), model(seq, last_only=True)
    torch.testing.assert_close(model.represent(last, "concat")[:, 0], model.represent(full, "concat")[:, -1])
    torch.testing.assert_close(last.u[:, 0], full.u[:, -1])
    torch.testing.assert_close(last.head_weights()[:, 0], full.head_weights()[:, -1])
    torch.testing.assert_close(last.heads[:, 0], full.heads[:, -1])
    torch.testing.assert_close(last.attention[..., 0, :], full.attention[..., -1, :])
    if last.router is not None:
        torch.testing.assert_close(last.router[:, :, 0], full.router[:, :, -1])


def with_clusters(L=3.0, seed=0):
    """A FAME with --head-cluster-bias L and hand-set item clusters (items 1-14: cluster 0, 15-30: 1)."""
    model = make_model("fame", head_cluster_bias=L, seed=seed)
    with torch.no_grad():
        model.item_cluster.copy_(torch.tensor([0.0] + [0.0] * 14 + [1.0] * 16))
    return model


def test_head_cluster_bias_adds_L_times_the_gate_of_the_items_cluster_to_every_score():
    L = 3.0
    model = with_clusters(L)
    res = fame_core.inspect(model, SEQ, target=4)
    _, _, head_scores, g, _ = direct_fame(model, SEQ)             # P^(h)(v) of Eqs. 8-9, without the bias
    c = np.array([0] + [0] * 14 + [1] * 16)
    b = np.stack([L * ((c == h) - 0.5) for h in range(2)])          # b^(h)_v = L([c(v) = h] - 1/H)
    np.testing.assert_allclose(res.head_scores[:, 1:], (head_scores + b)[:, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.scores["gated"][1:], (g @ (head_scores + b))[1:], rtol=1e-4, atol=1e-5)
    for h in range(2):
        np.testing.assert_allclose(res.scores[f"head:{h}"][1:], (head_scores + b)[h, 1:], rtol=1e-4, atol=1e-5)
    # equal weights cancel the bias: the equal-weight merge is the model's own without it
    np.testing.assert_allclose(res.scores["concat"][1:], head_scores.mean(0)[1:], rtol=1e-4, atol=1e-5)
    assert np.abs(g[0] - 0.5) > 1e-3                                 # so the gated check can fail


@pytest.mark.parametrize("tau", [0.4, 3.0])
def test_a_gate_temperature_divides_the_gate_logits_and_keeps_the_favoured_head(tau):
    plain = make_model("fame")
    model = make_model("fame", gate_temperature=tau)                # the same weights (same seed)
    res, ref = fame_core.inspect(model, SEQ, target=4), fame_core.inspect(plain, SEQ, target=4)
    _, _, head_scores, g, gated = direct_fame(model, SEQ)
    np.testing.assert_allclose(res.gates, g, atol=1e-5)
    np.testing.assert_allclose(res.scores["gated"][1:], gated[1:], rtol=1e-4, atol=1e-5)
    z = np.log(ref.gates)                                           # the paper's gate logits, up to a constant
    np.testing.assert_allclose(res.gates, np.exp(z / tau) / np.exp(z / tau).sum(), rtol=1e-4)
    assert res.gates.argmax() == ref.gates.argmax()
    assert (abs(res.gates[0] - 0.5) > abs(ref.gates[0] - 0.5)) == (tau < 1)   # bolder below 1, softer above
    np.testing.assert_allclose(res.scores["concat"], ref.scores["concat"], rtol=1e-5)   # no gate in it


def test_head_cluster_bias_enters_the_training_loss():
    model = with_clusters(2.0)
    seq = left_pad([np.array(SEQ)], model.config.max_len)
    out = model(seq)
    # the main loss's logits are u · E over the catalogue: the gated scores, bias included
    logits = out.u[:, -1] @ model.item_embeddings()[1:].T
    np.testing.assert_allclose(logits.detach().numpy(), model.scores(out)[:, 1:].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_head_clusters_are_k_means_of_the_given_item_vectors():
    from fame_core.models import assign_head_clusters

    model = make_model("fame", head_cluster_bias=1.0)
    X = np.zeros((31, 4))
    X[1:11], X[11:] = 4.0, -4.0                                      # two far-apart groups of items
    X[1:] += 0.01 * np.random.default_rng(0).standard_normal((30, 4))
    labels = assign_head_clusters(model, X, np.ones(31))
    assert labels[0] == 0 and len(set(labels[1:11].tolist())) == 1 and len(set(labels[11:].tolist())) == 1
    assert labels[1] != labels[11]
    assert torch.equal(model.item_cluster.long(), labels)


def test_an_items_context_is_the_mean_user_vector_before_it():
    from fame_core.training import item_contexts

    sasrec = make_model("sasrec")
    pairs = [(np.array([3, 7, 9]), np.array([7, 9, 12])), (np.array([5, 7]), np.array([7, 12]))]
    contexts, counts = item_contexts(sasrec, pairs)
    assert counts[7] == 2 and counts[12] == 2 and counts[9] == 1 and counts[3] == 0

    def u_at(seq, i):   # the user vector at input position i, alone in its batch (positions count from the right)
        return sasrec(left_pad([np.array(seq)], sasrec.config.max_len)).u[0, i].detach().double().numpy()

    np.testing.assert_allclose(contexts[12], (u_at([3, 7, 9], 2) + u_at([5, 7], 1)) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(contexts[7], (u_at([3, 7, 9], 0) + u_at([5, 7], 0)) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(contexts[3], sasrec.embed.E.weight[3].detach().double().numpy(), rtol=1e-6)
    # a cluster-bias FAME's user vectors carry the H weight columns: its contexts are as wide, unseen items included
    fame = with_clusters(2.0)
    contexts, _ = item_contexts(fame, pairs)
    assert contexts.shape == (31, fame.config.d + 2)
    np.testing.assert_allclose(contexts[3], fame.item_embeddings()[3].detach().double().numpy(), rtol=1e-6)


def test_a_checkpoint_keeps_its_item_clusters_and_refuses_bad_ones(tmp_path):
    from fame_core.checkpoint import load_checkpoint, write_checkpoint
    from fame_core.errors import CheckpointError
    from safetensors.torch import load_file, save_file

    model = with_clusters(2.0)
    record = {"name": "t", "n_items": 30, "n_users": 3, "fingerprint": "x"}
    write_checkpoint(tmp_path / "ok", model, record, {}, [])
    back = load_checkpoint(tmp_path / "ok")
    assert torch.equal(back.item_cluster, model.item_cluster)
    x = left_pad([np.array(SEQ)], model.config.max_len)
    torch.testing.assert_close(back.scores(back(x)), model.scores(model(x)))
    state = load_file(tmp_path / "ok" / "weights.safetensors")
    state["item_cluster"][5] = 7.0                                   # no such head
    save_file(state, tmp_path / "ok" / "weights.safetensors")
    with pytest.raises(CheckpointError, match="item_cluster must hold cluster numbers 0..1"):
        load_checkpoint(tmp_path / "ok")


def test_the_case_study_note_names_each_heads_part_only_for_a_cluster_bias_model():
    from fame_core.lists import cluster_bias_note

    assert cluster_bias_note(make_model("fame")) is None
    assert cluster_bias_note(make_model("sasrec")) is None
    note = cluster_bias_note(with_clusters(3.0))
    assert "fixed bias of 3" in note and "head 0: 14 items" in note and "head 1: 16 items" in note


def test_the_gate_temperature_note_appears_only_away_from_1():
    from fame_core.lists import gate_temperature_note

    assert gate_temperature_note(make_model("fame")) is None and gate_temperature_note(make_model("sasrec")) is None
    assert "temperature 2 " in gate_temperature_note(make_model("fame", gate_temperature=2.0))
    assert "softer" in gate_temperature_note(make_model("fame", gate_temperature=2.0))
    assert "bolder" in gate_temperature_note(make_model("fame", gate_temperature=0.5))
