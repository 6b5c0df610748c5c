"""experiments/head_cluster_check.py: how well the history names the next item's k-means cluster."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from fame_core.dataset import SequenceDataset
from experiments import head_cluster_check as check
from tests.conftest import REPO, make_model

pytestmark = pytest.mark.research


def two_group_world(mixed_users: int, detour_users: int = 0):
    """Items 1-10 and 11-20 in two far-apart groups; 20 users stay in one group. The first
    `mixed_users` end (test target) in the other group; the next `detour_users` visit the other
    group with the last history item only (their target is back in their own group), so the
    last-item reader is wrong for them and the history-majority reader right."""
    rng = np.random.default_rng(0)
    seqs = []
    for u in range(20):
        lo = 1 if u % 2 == 0 else 11
        seq = list(rng.integers(lo, lo + 10, size=6))
        other = 12 if lo == 1 else 2
        if u < mixed_users:
            seq[-1] = other
        elif u < mixed_users + detour_users:
            seq[-2] = other
        seqs.append(np.array(seq, dtype=np.int64))
    return SequenceDataset(name="two-groups", sequences=seqs, n_items=20, user_ids=[str(u) for u in range(20)],
                           item_ids=["<pad>"] + [str(i) for i in range(1, 21)])


def far_apart(model):
    with torch.no_grad():      # item embeddings: group 1 at +5, group 2 at -5 along every dimension
        E = model.embed.E.weight
        E[1:11] = 5 + 0.01 * torch.randn(10, E.shape[1])
        E[11:21] = -5 + 0.01 * torch.randn(10, E.shape[1])
    return model


def test_the_two_readers_differ_where_only_the_last_item_strays():
    data = two_group_world(mixed_users=4, detour_users=6)
    model = far_apart(make_model("fame", n_items=20))
    row = check.cluster_predictability(model, data, k=2)
    assert row["history majority"] == pytest.approx(16 / 20)     # wrong for the 4 who leave
    assert row["last item"] == pytest.approx(10 / 20)            # wrong for those 4 and the 6 detours


@pytest.mark.parametrize("mixed", [0, 4])
def test_the_history_names_the_cluster_of_targets_that_stay_in_it(mixed):
    data = two_group_world(mixed)
    model = far_apart(make_model("fame", n_items=20))
    row = check.cluster_predictability(model, data, k=2)
    assert row["users"] == 20 and sum(row["target share"]) == pytest.approx(1.0)
    assert row["largest cluster"] == pytest.approx(0.5)          # ten users' targets in each group
    assert row["history majority"] == pytest.approx(1 - mixed / 20)   # wrong exactly for the users who leave
    assert row["last item"] == pytest.approx(1 - mixed / 20)


def test_a_missing_checkpoint_is_one_error_line():
    r = subprocess.run([sys.executable, "-m", "experiments.head_cluster_check", "no-such-run"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
