"""Negative sampling, minibatch order and the validation holdout."""

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.training.sampling import NegativeSampler, batch_indices


def dense_seen(seed: int = 0, n_users: int = 40, n_items: int = 25, density: float = 0.6):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_rejection_never_returns_a_seen_item(distribution):
    seen = dense_seen()
    sampler = NegativeSampler(seen, distribution=distribution, alpha=0.75)
    users = np.repeat(np.arange(seen.shape[0]), 50)
    neg = sampler.sample(users, 3, np.random.default_rng(1))
    assert neg.shape == (len(users), 3)
    dense = seen.toarray() > 0
    assert not dense[np.repeat(users, 3), neg.ravel()].any()
    assert (neg >= 0).all() and (neg < seen.shape[1]).all()


def test_exact_fallback_is_uniform_over_unseen():
    seen = dense_seen(density=0.9)
    sampler = NegativeSampler(seen, max_rounds=0)  # every rejected draw goes to the fallback
    user = int(np.argmax(seen.shape[1] - np.diff(seen.indptr) >= 2))
    unseen = np.flatnonzero(seen[user].toarray()[0] == 0)
    draws = sampler.sample_unseen_uniform(np.full(20_000, user), np.random.default_rng(3))
    counts = np.bincount(draws, minlength=seen.shape[1])
    assert set(np.flatnonzero(counts)) == set(unseen)
    expected = len(draws) / len(unseen)
    assert np.abs(counts[unseen] - expected).max() < 0.1 * expected


def test_sampling_is_seeded():
    sampler = NegativeSampler(dense_seen(), distribution="popularity")
    users = np.arange(40)
    a = sampler.sample(users, 4, np.random.default_rng(7))
    b = sampler.sample(users, 4, np.random.default_rng(7))
    c = sampler.sample(users, 4, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_without_rejection_seen_items_do_occur():
    seen = dense_seen(density=0.8)
    sampler = NegativeSampler(seen, exclude_seen=False)
    users = np.repeat(np.arange(seen.shape[0]), 20)
    neg = sampler.sample(users, 1, np.random.default_rng(0)).ravel()
    assert sampler.contains(users, neg).mean() > 0.5


def test_popularity_distribution_follows_counts():
    # item 0 seen by everyone, item 1 by a quarter of the users, item 2 by nobody
    seen = np.zeros((40, 3), np.float32)
    seen[:, 0] = 1
    seen[:10, 1] = 1
    sampler = NegativeSampler(sp.csr_matrix(seen), distribution="popularity", alpha=1.0,
                              exclude_seen=False)
    np.testing.assert_allclose(np.exp(sampler.log_prob), [40 / 51, 10 / 51, 1 / 51], rtol=1e-5)
    draws = sampler.sample(np.zeros(50_000, np.int64), 1, np.random.default_rng(0)).ravel()
    freq = np.bincount(draws, minlength=3) / len(draws)
    np.testing.assert_allclose(freq, np.exp(sampler.log_prob), atol=0.01)


def test_user_who_saw_everything_gets_some_item():
    seen = sp.csr_matrix(np.ones((2, 5), np.float32))
    seen[1, 3] = 0
    seen.eliminate_zeros()
    neg = NegativeSampler(seen).sample(np.array([0, 1, 1]), 4, np.random.default_rng(0))
    assert ((neg >= 0) & (neg < 5)).all()
    assert (neg[1:] == 3).all()  # the only unseen item of user 1


def test_batch_indices_cover_everything_once():
    rng = np.random.default_rng(0)
    batches = list(batch_indices(10, 4, rng))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert [len(b) for b in batch_indices(10, 4, rng, drop_last=True)] == [4, 4]
    np.testing.assert_array_equal(np.concatenate(list(batch_indices(5, 2))), np.arange(5))
