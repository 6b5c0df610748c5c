"""experiments/head_pair_check.py: could a gate tell two heads apart, and what would its merge cost."""

import subprocess
import sys

import numpy as np
import pytest

from fame_core.dataset import SequenceDataset
from experiments import head_pair_check as pairs
from tests.conftest import REPO, make_model
from tests.experiments.test_head_cluster_check import far_apart, two_group_world

pytestmark = pytest.mark.research


def test_the_reading_on_hand_made_ranks():
    # side b is better for users 0 and 2, side a for user 1, user 3 is a tie (not counted)
    a = np.array([10, 0, 40, 7])
    b = np.array([1, 25, 2, 7])
    X = np.array([[1.0], [-1.0], [1.0], [0.0]])                 # the feature says which side is better
    r = pairs.pair_reading((a, b), X, (a, b), X)
    assert r["users"] == 3
    assert r["second better"] == pytest.approx(2 / 3) and r["majority"] == pytest.approx(2 / 3)
    assert r["linear ceiling"] == pytest.approx(1.0)
    assert r["margin (points)"] == pytest.approx(100 / 3, abs=0.01)
    best = np.minimum(a, b)                                      # the switch takes the better side every time
    assert r["NDCG@20 switch"] == pytest.approx(pairs.ndcg(best).mean())
    assert r["NDCG@20 first"] == pytest.approx(pairs.ndcg(a).mean())
    assert r["NDCG@20 second"] == pytest.approx(pairs.ndcg(b).mean())
    assert r["fit margin (points, 5-fold)"] is None                # too few users for five folds


def test_sides_that_never_differ_have_no_reading():
    same = np.array([3, 4, 5])
    r = pairs.pair_reading((same, same), np.zeros((3, 1)), (same, same), np.zeros((3, 1)))
    assert r["users"] == 0 and r["linear ceiling"] is None and r["margin (points)"] is None


def stay_in_group_world():
    """Items 1-10 and 11-20 in two groups; 200 users, each with six different items of one group,
    so that no target is among its own (masked) history."""
    rng = np.random.default_rng(0)
    seqs = [rng.permutation(np.arange(1, 11) + (0 if u % 2 == 0 else 10))[:6].astype(np.int64) for u in range(200)]
    return SequenceDataset(name="stay", sequences=seqs, n_items=20, user_ids=[str(u) for u in range(200)],
                           item_ids=["<pad>"] + [str(i) for i in range(1, 21)])


def test_a_cluster_bias_is_read_from_the_history_where_users_stay_in_their_group():
    data = stay_in_group_world()
    model = far_apart(make_model("sasrec", n_items=20))
    res = pairs.check(model, data, shorts=(), popularity=(), cluster=(100.0,), context=(100.0,))
    row, context = res["rows"]
    assert row["pair"] == "cluster 100" and context["pair"] == "context cluster 100"
    # the groups' items follow different histories, so their contexts fall into the same two clusters
    assert context["users"] == 200 and context["linear ceiling"] == pytest.approx(1.0)
    # every user's two sides differ (the bias puts a whole group first), and half the users'
    # targets lie in each group: always trusting one side is right for half, the history for all
    assert row["users"] == 200 and row["majority"] == pytest.approx(0.5)
    assert row["linear ceiling"] == pytest.approx(1.0)
    assert row["fit margin (points, 5-fold)"] == pytest.approx(50.0)   # the same on validation users alone
    assert row["NDCG@20 switch"] >= max(row["NDCG@20 first"], row["NDCG@20 second"])


def test_a_short_side_as_long_as_every_history_is_the_model_itself():
    data = two_group_world(mixed_users=4)
    model = make_model("sasrec", n_items=20)                     # histories of 5 (test) and 4 (valid) items
    res = pairs.check(model, data, shorts=(5,), popularity=(1e-9,), cluster=())
    rows = {r["pair"]: r for r in res["rows"]}
    assert rows["short 5"]["users"] == 0 and rows["short 5"]["linear ceiling"] is None
    assert rows["short 5"]["NDCG@20 first"] == pytest.approx(res["test NDCG@20 model"])
    assert rows["popularity 1e-09"]["users"] == 0                # a vanishing offset changes no rank


def test_the_short_side_is_the_model_on_the_last_items_and_the_offsets_shift_every_score():
    import torch

    from fame_core.evaluate import mask_items, score_last, target_ranks

    data = stay_in_group_world()
    model = far_apart(make_model("sasrec", n_items=20, seed=3))
    counts = pairs.target_counts(model, data)
    c = pairs.item_clusters(model, counts)
    p = np.log1p(counts)
    ranks, _ = pairs.pair_ranks(model, data, "test", [2], {"cluster": c, "popularity": p},
                                   {"cluster": [3.0], "popularity": [0.7]})
    ex = [data.example(r, "test") for r in data.splittable_rows()]
    hist = [h for h, _ in ex]
    t = torch.as_tensor([y for _, y in ex])

    def direct(scores):
        mask_items(scores, hist)
        return target_ranks(scores, t).numpy()

    full = score_last(model, hist)
    np.testing.assert_array_equal(ranks["model"], direct(full.clone()))
    np.testing.assert_array_equal(ranks[("short", 2)][1], direct(score_last(model, [h[-2:] for h in hist])))
    shift = torch.as_tensor(c - 0.5, dtype=torch.float32)
    np.testing.assert_array_equal(ranks[("cluster", 3.0)][1], direct(full + 3.0 * shift))
    np.testing.assert_array_equal(ranks[("cluster", 3.0)][0], direct(full - 3.0 * shift))
    centred = torch.as_tensor(p - p[1:].mean(), dtype=torch.float32)
    np.testing.assert_array_equal(ranks[("popularity", 0.7)][1], direct(full + 0.7 * centred))
    # the training counts: each user's items after its first, up to the validation item
    expected = np.zeros(21)
    for h in data.sequences:
        np.add.at(expected, h[1:-2], 1)
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize("args", [["no-such-run"], ["checkpoints/demo-sasrec", "--short", "0"],
                                  ["checkpoints/demo-sasrec", "--cluster", "-1"]])
def test_bad_input_is_one_error_line(args):
    r = subprocess.run([sys.executable, "-m", "experiments.head_pair_check", *args],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
