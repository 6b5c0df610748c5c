"""Metrics and full ranking on hand-made rankings, ties included."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from fame_core.data import SequenceDataset
from fame_core.evaluate import evaluate, mask_items, metrics_from_ranks, target_ranks
from fame_core.models import ModelOutput, Recommender, SASRecConfig

pytestmark = pytest.mark.fast  # the fast tier: `python -m pytest -m fast`


def test_metrics_of_known_ranks():
    m = metrics_from_ranks([0, 4, 9, 25])
    assert m["HR@5"] == 0.5 and m["HR@10"] == 0.75 and m["HR@20"] == 0.75
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(6)) / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 5 + 1 / 10 + 1 / 26) / 4)


def test_ties_count_against_the_target():
    scores = torch.tensor([[-np.inf, 0.5, 0.9, 0.5, 0.5, 0.1]])
    # target 3 ties with items 1 and 4, one item (2) is strictly higher -> rank 0-based 3
    assert target_ranks(scores, torch.tensor([3])).item() == 3
    assert target_ranks(scores, torch.tensor([2])).item() == 0
    # all equal: the target is last
    assert target_ranks(torch.zeros(1, 5), torch.tensor([2])).item() == 4


def test_history_mask_and_padding_never_ranked():
    scores = torch.tensor([[9.0, 5.0, 4.0, 3.0, 2.0]])
    mask_items(scores, [np.array([1, 2])])
    assert scores[0, 0] == -np.inf and scores[0, 1] == -np.inf and scores[0, 2] == -np.inf
    assert target_ranks(scores, torch.tensor([3])).item() == 0


class FixedScores(Recommender):
    """A 'model' whose score for item v is a fixed number, whatever the input."""

    def __init__(self, item_scores):
        n = len(item_scores) - 1
        super().__init__(SASRecConfig(n_items=n, d=2, n_heads=1, max_len=4))
        self.embed = nn.Module()
        self.embed.E = nn.Embedding(n + 1, 2)
        with torch.no_grad():
            self.embed.E.weight.zero_()
            self.embed.E.weight[:, 0] = torch.tensor(item_scores)

    def forward(self, seq, last_only=False):
        u = torch.zeros(*seq.shape, 2)
        u[..., 0] = 1.0
        return ModelOutput(u=u, heads=u[..., None, :], attention=torch.ones(seq.shape[0], 1, 1, *seq.shape[1:2] * 2))

    def combine(self, heads, weights):
        return (weights[..., None] * heads).flatten(-2)


def test_evaluate_full_ranking_with_and_without_history_mask():
    # item scores: 6 > 5 > 4 > ... ; padding 0 scored highest and must be ignored
    model = FixedScores([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    data = SequenceDataset(name="hand", n_items=6, user_ids=["a", "b"],
                           sequences=[np.array([6, 5, 4]), np.array([1, 2, 6, 3])])
    masked = evaluate(model, data, "test", return_ranks=True)
    # a: history {6,5} masked, target 4 is best -> rank 0; b: history {1,2,6}, target 3: 5,4 above -> 2
    assert masked["ranks"].tolist() == [0, 2]
    plain = evaluate(model, data, "test", mask_history=False, return_ranks=True)
    assert plain["ranks"].tolist() == [2, 3]
    valid = evaluate(model, data, "valid", return_ranks=True)
    # a: input [6] -> target 5 ranks first once 6 is masked; b: input [1,2] -> target 6 first
    assert valid["ranks"].tolist() == [0, 0]
    assert masked["metrics"]["HR@5"] == 1.0 and masked["metrics"]["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert masked["users"] == 2
