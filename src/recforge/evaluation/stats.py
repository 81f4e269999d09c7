"""Significance of differences between two models, and bootstrap confidence intervals.

Both models are evaluated on the same test users, so their per-user metric vectors are
paired: `paired_test` runs the Wilcoxon signed-rank test and the paired t-test on them
(scipy.stats, two-sided). `bootstrap_ci` gives a seeded percentile interval of a mean by
resampling users with replacement, vectorized in blocks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: resampled cells (resamples × values) per vectorized block: 128 MiB of float64
_BLOCK_CELLS = 1 << 24


@dataclass(frozen=True)
class PairedTest:
    """Two-sided paired tests of ``a`` vs ``b`` over `n` pairs (pairs with a NaN dropped)."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    p_wilcoxon: float
    p_ttest: float


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length ({len(a)} vs {len(b)})")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the Wilcoxon signed-rank test (scipy defaults: zero differences dropped).

    1.0 when every difference is zero; NaN for fewer than one pair.
    """
    a, b = _pairs(a, b)
    if len(a) == 0:
        return float("nan")
    if np.all(a == b):
        return 1.0
    from scipy import stats  # lazy: scipy.stats is slow to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.wilcoxon(a, b).pvalue)


def ttest_p(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the paired t-test; 1.0 when every difference is zero, NaN under two pairs."""
    a, b = _pairs(a, b)
    if len(a) < 2:
        return float("nan")
    if np.all(a == b):
        return 1.0
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def paired_test(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Wilcoxon signed-rank and paired t-test of two aligned per-user metric vectors."""
    x, y = _pairs(a, b)
    nan = float("nan")
    return PairedTest(
        n=len(x),
        mean_a=float(x.mean()) if len(x) else nan,
        mean_b=float(y.mean()) if len(y) else nan,
        mean_diff=float((x - y).mean()) if len(x) else nan,
        p_wilcoxon=wilcoxon_p(x, y),
        p_ttest=ttest_p(x, y),
    )


def bootstrap_means(values: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples,) means of `values` resampled with replacement (NaNs dropped first)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0 or n_resamples < 1:
        return np.full(max(n_resamples, 0), np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    block = max(1, _BLOCK_CELLS // len(v))
    for start in range(0, n_resamples, block):
        m = min(block, n_resamples - start)
        idx = rng.integers(0, len(v), (m, len(v)))
        out[start:start + m] = v[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (e.g. per-user NDCG@10).

    `transform` maps resampled means to the reported statistic, e.g. ``np.sqrt`` on squared
    errors gives an RMSE interval. Same `seed`, same interval.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    means = bootstrap_means(values, n_resamples, seed)
    if transform is not None:
        means = transform(means)
    if not np.isfinite(means).any():
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    lo, hi = np.nanquantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_diff_ci(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference ``a − b``."""
    x, y = _pairs(a, b)
    return bootstrap_ci(x - y, n_resamples, confidence, seed)
