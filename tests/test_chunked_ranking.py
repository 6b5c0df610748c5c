"""Ranking in chunks of items equals ranking the full score matrix exactly: ranks, top-k, ties."""

import numpy as np
import pytest
import torch

import fame_core.ranking as ranking
from fame_core.evaluate import evaluate, mask_items, rank_targets, target_ranks
from fame_core.ranking import embedding_scorer, streaming_rank
from tests.conftest import make_model


def full_reference(S, targets, excluded, k):
    """Ranks and top-k from the whole matrix, by the rules evaluate.py and inspection.py use."""
    s = S.clone()
    for r, ex in enumerate(excluded):
        s[r, torch.as_tensor(ex, dtype=torch.long)] = -torch.inf
    ranks = target_ranks(s, targets).numpy()
    top = np.stack([np.argsort(-row, kind="stable")[:k] for row in s.numpy()])
    return ranks, top, s


@pytest.mark.parametrize("chunk", [1, 3, 7, 50, 64, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_rank_equals_full_ranking_with_ties(chunk, seed):
    g = torch.Generator().manual_seed(seed)
    rows, cols, k = 40, 64, 10
    S = torch.randint(-3, 4, (rows, cols), generator=g).float() / 2    # 7 values: many ties
    targets = torch.randint(0, cols, (rows,), generator=g)
    rng = np.random.default_rng(seed)
    excluded = [rng.choice(cols, size=rng.integers(0, 6), replace=False) for _ in range(rows)]
    excluded[0] = np.array([int(targets[0])])                            # a masked target ranks last
    ref_ranks, ref_top, masked = full_reference(S, targets, excluded, k)
    ranks, top_ids, top_vals = streaming_rank(lambda c: S[:, c], cols, targets, k=k, excluded=excluded, chunk=chunk)
    assert ranks.tolist() == ref_ranks.tolist()
    assert top_ids.tolist() == ref_top.tolist()
    assert torch.equal(top_vals, masked.gather(1, torch.as_tensor(ref_top)))
    assert ranks[0] == cols - 1


def test_streaming_rank_without_targets_gives_top_k_only_and_refuses_nan():
    S = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    ranks, top, _ = streaming_rank(lambda c: S[:, c], 5, k=4, chunk=2)
    assert ranks is None and top.tolist() == [[1, 2, 4, 3]]
    S[0, 3] = float("nan")
    with pytest.raises(Exception, match="NaN"):
        streaming_rank(lambda c: S[:, c], 5, k=2, chunk=2)


def test_rank_targets_in_chunks_equals_one_product_on_a_model():
    model = make_model("fame", n_items=50)
    E = model.embed.E.weight.detach()
    u = torch.randn(30, E.shape[1], generator=torch.Generator().manual_seed(0))
    targets = torch.randint(1, 51, (30,), generator=torch.Generator().manual_seed(1))
    hist = [np.random.default_rng(i).integers(1, 51, size=i % 7) for i in range(30)]
    full = rank_targets(u, E, targets, hist)          # 51 ids <= ITEM_CHUNK: one product
    scores = u @ E.T
    mask_items(scores, hist)
    assert full.tolist() == target_ranks(scores, targets).tolist()
    for chunk in (1, 8, 17, 50):
        assert rank_targets(u, E, targets, hist, item_chunk=chunk).tolist() == full.tolist()


def test_evaluate_gives_the_same_metrics_with_small_item_chunks(tiny_world, monkeypatch):
    model = make_model("fame", n_items=tiny_world.n_items)
    whole = evaluate(model, tiny_world, "test", return_ranks=True)
    monkeypatch.setattr(ranking, "ITEM_CHUNK", 9)
    chunked = evaluate(model, tiny_world, "test", return_ranks=True)
    assert chunked["ranks"].tolist() == whole["ranks"].tolist() and chunked["metrics"] == whole["metrics"]
    unmasked = evaluate(model, tiny_world, "test", mask_history=False, return_ranks=True)
    monkeypatch.setattr(ranking, "ITEM_CHUNK", 10**6)
    assert evaluate(model, tiny_world, "test", mask_history=False, return_ranks=True)["ranks"].tolist() \
        == unmasked["ranks"].tolist()


def test_embedding_scorer_scores_selected_rows():
    u, E = torch.randn(3, 4), torch.randn(10, 4)
    cols = torch.tensor([7, 2])
    assert torch.allclose(embedding_scorer(u, E)(cols), (u @ E.T)[:, cols])


@pytest.mark.parametrize("rows,block", [(0, 128), (5, 128), (128, 128), (300, 128), (41, 1), (41, 7)])
def test_counts_in_row_blocks_equal_the_one_sum_formula(rows, block, monkeypatch):
    """streaming_rank compares and counts `COUNT_ROWS` rows at a time (a bool sum copies its input
    to int64 whole): the same counts as the formula it replaced, for any number of rows, with
    targets inside and outside the chunk."""
    monkeypatch.setattr(ranking, "COUNT_ROWS", block)
    g = torch.Generator().manual_seed(rows + block)
    lo, width = 20, 37
    scores = torch.randint(-3, 4, (rows, width), generator=g).float()   # many ties
    targets = torch.randint(0, 80, (rows,), generator=g)                  # columns of all chunks
    t_score = torch.randint(-3, 4, (rows,), generator=g).float()
    cols = torch.arange(lo, lo + width)
    old = ((scores >= t_score[:, None]) & (cols[None, :] != targets[:, None])).sum(1, dtype=torch.int64)
    got = ranking._count_at_least(scores, t_score, targets - lo)
    assert got.dtype == torch.int64 and torch.equal(got, old)
    S = torch.randint(-3, 4, (rows, 64), generator=g).float()
    t = torch.randint(0, 64, (rows,), generator=g)
    ranks, _, _ = streaming_rank(lambda c: S[:, c], 64, t, chunk=10)
    assert ranks.tolist() == ((S >= S.gather(1, t[:, None])).sum(1) - 1).tolist()


@pytest.mark.parametrize("block", [1, 3, 40, 128])
def test_row_blocks_give_the_ranks_of_a_direct_count(block, monkeypatch):
    """rank_targets scores ROW_BLOCK users at a time on a CPU; every block size must give the
    rank counted directly in numpy (items scoring >= the target, history and padding masked)."""
    import importlib

    ev = importlib.import_module("fame_core.evaluate")  # the package's `evaluate` is the function
    monkeypatch.setattr(ev, "ROW_BLOCK", block)
    g = torch.Generator().manual_seed(block)
    rows, n, d = 41, 30, 4
    u = torch.randint(-2, 3, (rows, d), generator=g).float()      # small integers: exact ties
    E = torch.randint(-2, 3, (n + 1, d), generator=g).float()
    targets = torch.randint(1, n + 1, (rows,), generator=g)
    rng = np.random.default_rng(block)
    histories = [rng.choice(np.arange(1, n + 1), size=rng.integers(1, 5), replace=False) for _ in range(rows)]
    got = ev.rank_targets(u, E, targets, histories).numpy()
    S = (u @ E.T).numpy()
    for r in range(rows):
        s = S[r].copy()
        s[0] = -np.inf
        s[histories[r]] = -np.inf
        assert got[r] == (s >= s[targets[r]]).sum() - 1
    with pytest.raises(Exception, match="NaN or infinite"):
        ev.rank_targets(u, torch.where(E == 2, torch.nan, E), targets, histories)


@pytest.mark.parametrize("chunk", [5, 16])
def test_inspection_of_a_catalogue_beyond_one_chunk_gives_the_same_lists_and_ranks(chunk, monkeypatch):
    """Above ranking.ITEM_CHUNK ids, inspect keeps no full score vector and finds every merge
    mode's top-k and the target's rank chunk by chunk: the same as the whole-catalogue path,
    with the history masked and a target that is in the history ranked last."""
    import fame_core

    model = make_model("fame", n_items=40)
    for seq, target in (([3, 7, 7, 12, 30], 9), ([1, 2, 3], 2), ([5], None)):
        whole = fame_core.inspect(model, seq, target=target, top_k=10)
        monkeypatch.setattr(ranking, "ITEM_CHUNK", chunk)
        parts = fame_core.inspect(model, seq, target=target, top_k=10)
        monkeypatch.undo()
        assert parts.scores is None and parts.head_scores is None and whole.scores is not None
        assert parts.n_heads == whole.n_heads
        for mode in whole.merge_modes:
            assert parts.top[mode].tolist() == whole.top[mode].tolist(), mode
        assert parts.target_rank == whole.target_rank
    assert whole.target_rank is None


def test_inspect_refuses_nan_scores_on_both_paths(monkeypatch):
    import fame_core

    model = make_model("fame", n_items=40)
    with torch.no_grad():
        model.embed.E.weight[7, 0] = float("nan")
    for chunk in (ranking.ITEM_CHUNK, 5):
        monkeypatch.setattr(ranking, "ITEM_CHUNK", chunk)
        with pytest.raises(Exception, match="NaN or infinite scores"):
            fame_core.inspect(model, [1, 2, 3], target=4)
