"""Paired tests against scipy directly; seeded, vectorized bootstrap intervals."""

import numpy as np
import pytest
from scipy import stats

from recforge.evaluation.stats import (
    bootstrap_ci,
    bootstrap_diff_ci,
    paired_test,
    ttest_p,
    wilcoxon_p,
)


def _pair(seed=0, n=200):
    rng = np.random.default_rng(seed)
    a = rng.random(n)
    return a, a - 0.05 + 0.2 * rng.standard_normal(n)


def test_paired_tests_match_scipy():
    a, b = _pair()
    res = paired_test(a, b)
    assert res.p_wilcoxon == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert res.p_ttest == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert res.n == 200
    assert res.mean_diff == pytest.approx(np.mean(a - b))
    assert wilcoxon_p(a, b) == res.p_wilcoxon and ttest_p(a, b) == res.p_ttest


def test_identical_vectors_are_not_significant_and_nans_are_dropped():
    a = np.array([0.1, 0.0, 0.5, 0.5])
    res = paired_test(a, a.copy())
    assert res.p_wilcoxon == 1.0 and res.p_ttest == 1.0
    a2, b2 = _pair(1, 50)
    a_nan = np.append(a2, np.nan)
    b_nan = np.append(b2, 0.3)
    assert paired_test(a_nan, b_nan).p_ttest == pytest.approx(stats.ttest_rel(a2, b2).pvalue)
    with pytest.raises(ValueError):
        paired_test(np.zeros(3), np.zeros(4))


def test_bootstrap_ci_is_seeded_and_matches_a_naive_loop():
    values = np.random.default_rng(2).random(300)
    lo, hi = bootstrap_ci(values, n_resamples=500, seed=7)
    assert (lo, hi) == bootstrap_ci(values, n_resamples=500, seed=7)
    assert lo < values.mean() < hi
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(values), (500, len(values)))
    naive = np.quantile(values[idx].mean(axis=1), [0.025, 0.975])
    np.testing.assert_allclose([lo, hi], naive)
    lo99, hi99 = bootstrap_ci(values, n_resamples=500, seed=7, confidence=0.99)
    assert lo99 <= lo and hi99 >= hi


def test_bootstrap_transform_and_difference():
    sq = np.random.default_rng(3).random(100) ** 2
    lo, hi = bootstrap_ci(sq, n_resamples=200, seed=0, transform=np.sqrt)
    assert lo < np.sqrt(sq.mean()) < hi
    a, b = _pair(4)
    dlo, dhi = bootstrap_diff_ci(a, b, n_resamples=300)
    assert dlo < np.mean(a - b) < dhi
    assert all(np.isnan(bootstrap_ci(np.array([np.nan]))))
