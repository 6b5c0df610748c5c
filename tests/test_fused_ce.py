"""The chunked linear + cross-entropy equals F.cross_entropy(u @ E.T): value, gradients, training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fame_core.fused_ce as fused_ce
import fame_core.training as training
from fame_core.fused_ce import LOGITS_BUDGET, chunk_rows, linear_cross_entropy
from fame_core.models import build_model, model_config
from fame_core.evaluate import left_pad
from fame_core.training import epoch_batches, training_pairs

pytestmark = pytest.mark.fast


def problem(M=37, n=23, d=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    u = (torch.randn(M, d, generator=g, dtype=dtype) * 2).requires_grad_()
    E = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()
    target = torch.randint(0, n, (M,), generator=g)
    return u, E, target


def grads(loss_fn, u, E, target):
    u, E = u.detach().clone().requires_grad_(), E.detach().clone().requires_grad_()
    loss = loss_fn(u, E, target)
    loss.backward()
    return loss.detach(), u.grad, E.grad


def reference(u, E, target):
    return F.cross_entropy(u @ E.T, target)


@pytest.mark.parametrize("rows", [1, 5, 36, 37, 1000, None])    # 5 leaves a part chunk; None: the budget
def test_value_and_gradients_equal_the_unchunked_cross_entropy(rows):
    u, E, target = problem()
    ref = grads(reference, u, E, target)
    got = grads(lambda *a: linear_cross_entropy(*a, rows=rows), u, E, target)
    for r, g in zip(ref, got):   # float32 summation order only: measured 2.5e-7 relative
        assert ((g - r).norm() / r.norm()).item() < 1e-6


def test_chunk_rows_follows_the_budget():
    assert chunk_rows(12_101) == LOGITS_BUDGET // (4 * 12_101) == 1386    # Beauty: 64 MiB of float32 logits
    assert chunk_rows(10**9) == 1 and chunk_rows(10, budget=400) == 10
    u, E, target = problem(M=30, n=50)
    a = grads(lambda *x: linear_cross_entropy(*x, budget=4 * 50 * 7), u, E, target)   # 7 rows a chunk
    b = grads(reference, u, E, target)
    assert all(((x - y).norm() / y.norm()).item() < 1e-6 for x, y in zip(a, b))


def test_float64_gradcheck():
    u, E, target = problem(M=6, n=5, d=3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda u, E: linear_cross_entropy(u, E, target, rows=4), (u, E))


def test_only_the_inputs_that_need_it_get_a_gradient_and_shapes_are_checked():
    u, E, target = problem()
    E_fixed = E.detach()
    linear_cross_entropy(u, E_fixed, target, rows=3).backward()
    assert u.grad is not None and E_fixed.grad is None
    with torch.no_grad():                                 # no gradient is computed or kept
        assert torch.allclose(linear_cross_entropy(u, E, target, rows=3), reference(u, E, target))
    with pytest.raises(ValueError):
        linear_cross_entropy(u, E[:, :3], target)
    with pytest.raises(ValueError):
        linear_cross_entropy(u, E, target, rows=0)


def test_bf16_autocast_runs_the_products_in_bfloat16_and_stays_close():
    u, E, target = problem(M=40, n=30, d=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = grads(lambda *a: F.cross_entropy((a[0] @ a[1].T).float(), a[2]), u, E, target)
        got = grads(lambda *a: linear_cross_entropy(*a, rows=7), u, E, target)
    for r, g in zip(ref, got):
        assert g.dtype == torch.float32 and torch.allclose(g, r, rtol=2e-2, atol=2e-2 * r.abs().max().item())


def _unchunked_loss_on_batch(model, inputs, targets, *rest, **kw):
    """training.loss_on_batch as it was before fame_core/fused_ce.py (full softmax only)."""
    where = targets > 0
    u = model(inputs).u
    return F.cross_entropy(u[where] @ model.item_embeddings()[1:].T, targets[where] - 1)


def _one_epoch(kind, world, loss_fn, **model_kw):
    torch.manual_seed(0)
    cfg = model_config(kind, n_items=world.n_items, d=16, n_heads=2, max_len=10, dropout=0.0, attn_dropout=0.0,
                       **model_kw)
    model = build_model(cfg)
    if kind == "fame" and cfg.head_cluster_bias:
        model.item_cluster.copy_(torch.arange(world.n_items + 1) % 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    pairs = training_pairs(world, cfg.max_len)
    losses = []
    model.train()
    for idx in epoch_batches(pairs, 32, np.random.default_rng(0)):
        inputs = left_pad([pairs[i][0] for i in idx], cfg.max_len, "cpu")
        targets = left_pad([pairs[i][1] for i in idx], cfg.max_len, "cpu")
        loss = loss_fn(model, inputs, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model.state_dict()


@pytest.mark.parametrize("kind,kw", [("sasrec", {}), ("fame", {"n_experts": 2}),
                                     ("fame", {"n_experts": 2, "head_cluster_bias": 1.0})])
def test_one_training_epoch_matches_the_unchunked_loss(tiny_world, monkeypatch, kind, kw):
    """FAME's training scores are u @ E[1:].T too: u merges the heads under the gate (and appends the
    gate weights under --head-cluster-bias, whose bias columns E carries), so one product covers them."""
    ref_losses, ref_w = _one_epoch(kind, tiny_world, _unchunked_loss_on_batch, **kw)
    monkeypatch.setattr(fused_ce, "LOGITS_BUDGET", 4 * tiny_world.n_items * 7)   # 7 rows a chunk
    got_losses, got_w = _one_epoch(kind, tiny_world, training.loss_on_batch, **kw)
    assert len(ref_losses) > 3
    assert np.allclose(got_losses, ref_losses, rtol=1e-6, atol=0)      # measured 1.2e-7
    # weights after Adam: within 1 % of one step (lr 1e-2). A key bias has a zero gradient in exact
    # arithmetic (softmax ignores a shift shared by all keys), so Adam turns rounding noise there
    # into steps of up to 2e-5 on either path: hence an absolute, not a relative, bound
    for name, w in ref_w.items():
        assert torch.allclose(got_w[name], w, rtol=1e-4, atol=1e-4), name
