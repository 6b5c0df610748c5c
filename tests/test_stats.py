"""fame_core.stats against direct computation: per-user metrics, the paired tests, the bootstrap."""

import numpy as np
import pytest
from scipy import stats as sp

from fame_core import stats

pytestmark = pytest.mark.fast


def test_per_user_metrics_are_the_definitions():
    ranks = np.array([0, 1, 4, 19, 20, 500])
    assert stats.hit_at(ranks, 20).tolist() == [1, 1, 1, 1, 0, 0]
    expected = [1.0, 1 / np.log2(3), 1 / np.log2(6), 1 / np.log2(21), 0.0, 0.0]
    assert np.allclose(stats.ndcg_at(ranks, 20), expected, rtol=0, atol=1e-15)


def test_the_paired_tests_equal_scipy_called_directly():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    b[:5] = a[:5]                                           # zero differences are dropped
    assert stats.wilcoxon_by_user(a, b)[1] == pytest.approx(sp.wilcoxon(a, b, zero_method="wilcox").pvalue, rel=1e-12)
    assert stats.wilcoxon_by_user(a, a) == (0.0, 1.0)
    assert stats.t_by_seed([1.0, 2.0, 3.5], [0.5, 2.5, 3.0]) == pytest.approx(
        sp.ttest_rel([1.0, 2.0, 3.5], [0.5, 2.5, 3.0]).pvalue)
    assert stats.t_by_seed([1.0], [2.0]) is None
    assert stats.exact_binomial(2238, 1897) == pytest.approx(sp.binomtest(2238, 4135).pvalue)
    assert stats.exact_binomial(0, 0) == 1.0


def test_the_bootstrap_interval_is_reproducible_and_covers_a_known_mean():
    rng = np.random.default_rng(2)
    d = rng.normal(0.3, 1.0, 4000)
    lo, hi = stats.bootstrap_ci(d)
    assert (lo, hi) == stats.bootstrap_ci(d)                 # fixed seed
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert lo < d.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert lo < 0.3 < hi
    assert np.isnan(stats.bootstrap_ci([])[0])


def test_paired_summary():
    out = stats.paired([1.0, 2.0, 3.0, 3.0], [0.0, 2.0, 1.0, 4.0])
    assert out["difference"] == pytest.approx(0.5) and out["users_better"] == 2 and out["users_worse"] == 1
    assert out["ci95"][0] <= 0.5 <= out["ci95"][1] and 0 < out["p"] <= 1
