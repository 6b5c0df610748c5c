"""The sampled softmax (fame_core/sampled.py) against direct computations."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fame_core.errors import FameError
from fame_core.models import SASRecConfig
from fame_core.sampled import InBatchUniformSampler, bce_loss, one_negative, sampled_softmax_loss
from fame_core.training import TrainConfig, train


def test_loss_on_a_hand_made_batch_equals_the_written_out_formula():
    E = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0], [3.0, -1.0]])
    u = torch.tensor([[0.5, -1.0], [2.0, 1.0]])
    targets = torch.tensor([2, 4])
    S = torch.tensor([1, 2, 4])
    pi = [0.5, 0.9, 0.3]
    loss = sampled_softmax_loss(u, E, targets, S, torch.log(torch.tensor(pi)))
    expected = 0.0
    for r, t in enumerate(targets.tolist()):
        logit = {j: float(u[r] @ E[j]) - math.log(p) for j, p in zip(S.tolist(), pi)}
        expected += -logit[t] + math.log(sum(math.exp(v) for v in logit.values()))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


def test_with_every_item_a_candidate_and_no_correction_it_is_the_full_softmax():
    g = torch.Generator().manual_seed(0)
    E, u = torch.randn(21, 8, generator=g), torch.randn(6, 8, generator=g)
    t = torch.randint(1, 21, (6,), generator=g)
    sampled = sampled_softmax_loss(u, E, t, torch.arange(1, 21), torch.zeros(20))
    assert sampled.item() == pytest.approx(F.cross_entropy(u @ E[1:].T, t - 1).item(), rel=1e-6)


def test_a_target_outside_the_candidates_is_refused():
    with pytest.raises(ValueError, match="candidate"):
        sampled_softmax_loss(torch.ones(1, 2), torch.ones(5, 2), torch.tensor([3]), torch.tensor([1, 2]), torch.zeros(2))


def test_candidates_hold_the_batch_targets_and_inclusion_probabilities_match_their_frequency():
    counts = np.array([0, 50, 20, 10, 5, 5, 3, 3, 2, 1, 1])         # item 0 is padding
    sampler = InBatchUniformSampler(counts, negatives=3)
    p = counts / counts.sum()
    rng = np.random.default_rng(0)
    hits, trials, M = np.zeros(11), 4000, 4
    log_pi_seen = {}
    for trial in range(trials):
        batch = rng.choice(11, size=M, p=p)
        S, log_pi = sampler.candidates(np.concatenate([[0, 0], batch]), [7, trial])   # padding is ignored
        assert set(batch.tolist()) <= set(S.tolist()) and 0 not in S.tolist()
        assert S.tolist() == sorted(set(S.tolist()))
        hits[S.numpy()] += 1
        log_pi_seen.update(zip(S.tolist(), log_pi.tolist()))
    n = 10
    pi = 1 - (1 - p) ** M * (1 - 1 / n) ** 3
    for j in range(1, 11):
        assert log_pi_seen[j] == pytest.approx(math.log(pi[j]), rel=1e-5)
        sd = math.sqrt(pi[j] * (1 - pi[j]) / trials)
        assert abs(hits[j] / trials - pi[j]) < 4 * sd + 1e-9, j


def test_the_same_seed_draws_the_same_candidates():
    sampler = InBatchUniformSampler(np.ones(101), negatives=16)
    a = sampler.candidates(np.array([5, 6]), [0, 1, 2])[0]
    assert torch.equal(a, sampler.candidates(np.array([5, 6]), [0, 1, 2])[0])
    assert not torch.equal(a, sampler.candidates(np.array([5, 6]), [0, 1, 3])[0])


def test_training_with_the_sampled_softmax_learns_and_is_recorded(tmp_path, tiny_world):
    cfg = SASRecConfig(n_items=tiny_world.n_items, d=16, n_heads=2, max_len=10,
                      dropout=0.1, attn_dropout=0.1)
    tc = TrainConfig(epochs=4, batch_size=32, seed=1, lr=1e-2, loss="sampled", negatives=8)
    result = train(tiny_world, cfg, tc, tmp_path / "run", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert recorded["loss"] == "sampled" and recorded["negatives"] == 8
    assert result["valid"]["HR@20"] > 1.2 * 20 / tiny_world.n_items    # better than a random ranking
    full = train(tiny_world, cfg, TrainConfig(epochs=4, batch_size=32, seed=1, lr=1e-2), tmp_path / "full", progress=False)
    assert abs(result["valid"]["NDCG@20"] - full["valid"]["NDCG@20"]) < 0.03   # measured: 0.1634 vs 0.1681
    with pytest.raises(FameError, match="--loss must be one of full, sampled, bce"):
        train(tiny_world, cfg, TrainConfig(epochs=1, loss="bpr"), tmp_path / "bad", progress=False)


def test_bce_loss_is_the_original_sasrec_formula_on_a_hand_made_batch():
    E = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    u = torch.tensor([[0.5, -1.0], [2.0, 1.0]])
    pos, neg = torch.tensor([2, 3]), torch.tensor([1, 2])
    s_pos = [0.5 * 0 + -1.0 * 1, 2.0 + 1.0]            # x_target . u
    s_neg = [0.5, 1.0]                                  # x_negative . u
    sig = lambda x: 1 / (1 + math.exp(-x))              # noqa: E731
    want = -sum(math.log(sig(x)) for x in s_pos) / 2 - sum(math.log(1 - sig(x)) for x in s_neg) / 2
    assert bce_loss(u, E, pos, neg).item() == pytest.approx(want, rel=1e-6)


def test_the_negative_is_never_an_item_of_the_users_sequence():
    torch.manual_seed(0)
    inputs = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    targets = torch.tensor([[0, 2, 3, 8], [5, 6, 7, 9]])
    for _ in range(50):
        neg = one_negative(inputs, targets, n_items=10)
        held = [set(inputs[r].tolist()) | set(targets[r].tolist()) for r in range(2)]
        assert all(int(v) not in held[r] and 1 <= int(v) <= 10 for r in range(2) for v in neg[r])
    assert set(one_negative(inputs, targets, n_items=10)[0].tolist()) <= {4, 5, 6, 7, 9, 10}


def test_training_with_the_bce_loss_learns_and_is_recorded(tmp_path, tiny_world):
    cfg = SASRecConfig(n_items=tiny_world.n_items, d=16, n_heads=2, max_len=10, dropout=0.1, attn_dropout=0.1)
    result = train(tiny_world, cfg, TrainConfig(epochs=12, batch_size=32, seed=1, lr=1e-2, loss="bce"),
                   tmp_path / "run", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] and losses[0] < 2 * math.log(2) + 0.1     # starts near 2 log 2 (scores ~ 0)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["loss"] == "bce"
    assert result["valid"]["HR@20"] > 1.2 * 20 / tiny_world.n_items
