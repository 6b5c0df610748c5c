"""Per-user metrics and the paired tests every comparison in the project uses: one place.

- `hit_at(ranks, k)`, `ndcg_at(ranks, k)`: per-user HR@k and NDCG@k of 0-based target ranks
  (rank r counts as a hit when r < k; NDCG = 1 / log2(r + 2)), the numbers `evaluate` averages.
- `wilcoxon_by_user(a, b)`: the two-sided Wilcoxon signed-rank test of paired per-user values
  (scipy.stats.wilcoxon, zero differences dropped: zero_method="wilcox"; p = 1 where every
  difference is zero).
- `t_by_seed(a, b)`: the paired t-test of per-seed values (scipy.stats.ttest_rel; None for fewer
  than two seeds).
- `exact_binomial(wins, losses)`: the two-sided exact binomial (sign / McNemar) test on the
  discordant users (scipy.stats.binomtest, p = 0.5).
- `bootstrap_ci(diff)`: the paired bootstrap percentile interval of the mean of per-user
  differences (resampling users with replacement; fixed seed, so a reading is reproducible).
- `paired(a, b)`: the summary of one paired comparison: mean difference, users better and worse,
  the Wilcoxon p and the bootstrap interval.

Sample standard deviations (ddof = 1) are what `numpy.std(x, ddof=1)` gives; nothing here
rescales them.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
WILCOXON = "Wilcoxon signed-rank over users, two-sided, zero differences dropped"


def hit_at(ranks, k: int) -> np.ndarray:
    """Per-user HR@k (1.0 or 0.0) of 0-based ranks."""
    return (np.asarray(ranks, dtype=np.float64) < k).astype(np.float64)


def ndcg_at(ranks, k: int) -> np.ndarray:
    """Per-user NDCG@k of 0-based ranks: 1 / log2(rank + 2) inside the top k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0)


def wilcoxon_by_user(a, b) -> tuple[float, float]:
    """(statistic, p) of the two-sided Wilcoxon signed-rank test of a against b (paired by user)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (a != b).any():
        return 0.0, 1.0
    res = wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def t_by_seed(a, b) -> float | None:
    """p of the paired t-test of per-seed values a against b (None for fewer than two seeds)."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return None
    if np.allclose(a - b, (a - b)[0]) and (a - b)[0] == 0:
        return 1.0
    return float(ttest_rel(a, b).pvalue)


def exact_binomial(wins: int, losses: int) -> float:
    """Two-sided exact binomial p of `wins` against `losses` discordant users (1.0 when there are none)."""
    from scipy.stats import binomtest

    n = int(wins) + int(losses)
    return 1.0 if n == 0 else float(binomtest(int(wins), n, 0.5).pvalue)


def bootstrap_ci(diff, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of per-user differences under the paired bootstrap (users
    resampled with replacement). (nan, nan) for no users."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 100):          # blocks of resamples: bounded memory for 10^5 users
        stop = min(resamples, start + 100)
        idx = rng.integers(0, len(diff), size=(stop - start, len(diff)))
        means[start:stop] = diff[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired(a, b, seed: int = 0) -> dict:
    """a against b per user: mean difference, users better and worse, Wilcoxon p, bootstrap 95 % interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a - b
    _, p = wilcoxon_by_user(a, b)
    lo, hi = bootstrap_ci(d, seed=seed)
    return {"difference": float(d.mean()) if len(d) else 0.0, "p": p, "users_better": int((d > 0).sum()),
            "users_worse": int((d < 0).sum()), "ci95": [lo, hi], "test": WILCOXON}
