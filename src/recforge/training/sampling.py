"""Vectorized random draws for training: negative items and shuffled minibatches.

Everything is driven by an explicit ``numpy.random.Generator`` so a seed fixes the result,
and nothing loops over interactions in Python: seen-item rejection looks sampled
``(user, item)`` keys up in the sorted keys of the training matrix with ``searchsorted``.

Example::

    >>> import numpy as np, scipy.sparse as sp
    >>> seen = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]], np.float32))
    >>> sampler = NegativeSampler(seen)
    >>> neg = sampler.sample(np.array([0, 0, 1]), 5, np.random.default_rng(0))
    >>> neg.shape, bool(sampler.contains(np.repeat([0, 0, 1], 5), neg.ravel()).any())
    ((3, 5), False)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["BatchShard", "NegativeSampler", "as_generator", "batch_indices", "sharded_batches"]

Distribution = Literal["uniform", "popularity"]


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A numpy Generator from a Generator (returned as is), a seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def batch_indices(
    n: int, batch_size: int, rng: np.random.Generator | None = None, *, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """Index arrays covering ``range(n)`` in batches of `batch_size`, shuffled when `rng` is given.

    Yields int64 arrays of shape (batch_size,) — the last one shorter unless `drop_last`.

    Inside `sharded_batches` (data-parallel training) each batch is cut into
    ``world_size`` near-equal parts and this process gets part ``rank`` of every batch; the
    order is then drawn from the shard's generator, the same in every process, so the
    processes together cover exactly the batches one process would see. A batch smaller
    than ``world_size`` (a tiny last batch) is skipped by every process alike.
    """
    shard = _SHARD.get()
    if shard is not None:
        shard.calls += 1
        rng = shard.rng if rng is not None else None
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = order[start:start + batch_size]
        if shard is None:
            yield batch
        elif len(batch) >= shard.world_size:
            size = len(batch)
            yield batch[size * shard.rank // shard.world_size:size * (shard.rank + 1) // shard.world_size]


@dataclass
class BatchShard:
    """This process's part of every minibatch in data-parallel training (`sharded_batches`).

    `rng` draws the batch order and must be seeded alike in every process; `calls` counts
    the `batch_indices` calls that were sharded (0: the batch factory does not use it).
    """

    rank: int
    world_size: int
    rng: np.random.Generator
    calls: int = 0


_SHARD: ContextVar[BatchShard | None] = ContextVar("recforge_batch_shard", default=None)


@contextlib.contextmanager
def sharded_batches(shard: BatchShard) -> Iterator[BatchShard]:
    """While inside, `batch_indices` yields only `shard`'s part of each batch."""
    token = _SHARD.set(shard)
    try:
        yield shard
    finally:
        _SHARD.reset(token)


class NegativeSampler:
    """Draws items for users, uniformly or by popularity^alpha, optionally rejecting seen items.

    Args:
        seen: users × items matrix of training interactions (nonzeros are "seen").
        distribution: ``uniform`` over all items, or ``popularity`` — item ``i`` drawn with
            probability proportional to ``max(count_i, 1) ** alpha`` (word2vec uses 0.75).
        alpha: popularity exponent (0 gives uniform).
        exclude_seen: resample any draw the user has in `seen`.
        max_rounds: rejection rounds before the few draws still rejected are completed by
            exact uniform sampling from the user's unseen items.

    Attributes:
        log_prob: (n_items,) float32 log sampling probability of each item before
            rejection — the ``log Q`` of the logQ correction in sampled softmax.

    A user who has seen every item cannot get a negative; such users receive uniform draws
    over all items (there is nothing else to give).
    """

    def __init__(
        self,
        seen: sp.spmatrix | sp.sparray,
        *,
        distribution: Distribution = "uniform",
        alpha: float = 1.0,
        exclude_seen: bool = True,
        max_rounds: int = 16,
    ) -> None:
        csr = sp.csr_matrix(seen)  # type: ignore[call-overload]  # scipy-stubs: spmatrix is a mixin
        csr.sum_duplicates()
        csr.sort_indices()
        self.n_users, self.n_items = csr.shape
        if self.n_items == 0:
            raise ValueError("cannot sample negatives from zero items")
        self.distribution = distribution
        self.exclude_seen = exclude_seen
        self.max_rounds = max_rounds
        self._indptr = csr.indptr.astype(np.int64)
        items = csr.indices.astype(np.int64)
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self._indptr))
        # sorted (user, item) keys of the seen entries (CSR with sorted indices is in key order)
        self._keys = users * self.n_items + items
        self._n_seen = np.diff(self._indptr)
        # keys of (user, items seen before entry j minus j): the gaps used by exact sampling
        gaps = items - (np.arange(len(items)) - self._indptr[users])
        self._gap_keys = users * (self.n_items + 1) + gaps
        if distribution == "uniform":
            self._cdf = None
            self.log_prob = np.full(self.n_items, -np.log(self.n_items), np.float32)
        elif distribution == "popularity":
            counts = np.bincount(items, minlength=self.n_items).astype(np.float64)
            prob = np.maximum(counts, 1.0) ** alpha
            prob /= prob.sum()
            self._cdf = np.cumsum(prob)
            self._cdf[-1] = 1.0
            self.log_prob = np.log(prob).astype(np.float32)
        else:
            raise ValueError(f"unknown negative distribution {distribution!r}")

    def contains(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Boolean mask, shape (len(user_idx),): is each (user, item) pair a seen entry?"""
        keys = np.asarray(user_idx, np.int64) * self.n_items + np.asarray(item_idx, np.int64)
        if len(self._keys) == 0:
            return np.zeros(len(keys), bool)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[pos] == keys

    def sample(
        self, user_idx: np.ndarray, n: int = 1, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Draw `n` items for each user in `user_idx`.

        Args:
            user_idx: (B,) user indices (repeats allowed, e.g. one per positive interaction).
            n: draws per entry of `user_idx`.
            rng: numpy Generator or seed.

        Returns:
            int64 array of shape (B, n).
        """
        gen = as_generator(rng)
        users = np.repeat(np.asarray(user_idx, np.int64), n)
        items = self._draw(len(users), gen)
        if self.exclude_seen and len(self._keys):
            bad = self.contains(users, items)
            rounds = 0
            while rounds < self.max_rounds and bad.any():
                redo = np.flatnonzero(bad)
                items[redo] = self._draw(len(redo), gen)
                bad[redo] = self.contains(users[redo], items[redo])
                rounds += 1
            if bad.any():
                redo = np.flatnonzero(bad)
                items[redo] = self.sample_unseen_uniform(users[redo], gen)
        return items.reshape(-1, n)

    def sample_unseen_uniform(self, user_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exactly uniform draws from each user's unseen items, no rejection: shape (B,).

        With user ``u``'s seen items sorted as ``s_0 < s_1 < …``, the number of unseen items
        below ``s_j`` is ``g_j = s_j - j``; the ``r``-th unseen item is then
        ``r + #{j : g_j <= r}``, one ``searchsorted`` over all users at once.
        """
        users = np.asarray(user_idx, np.int64)
        n_unseen = self.n_items - self._n_seen[users]
        full = n_unseen <= 0
        span = np.where(full, self.n_items, n_unseen)
        r = np.floor(rng.random(len(users)) * span).astype(np.int64)
        if full.all():
            return r
        below = np.searchsorted(self._gap_keys, users * (self.n_items + 1) + r, side="right")
        items = r + (below - self._indptr[users])
        return np.where(full, r, items)

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, self.n_items, size=size, dtype=np.int64)
        items = np.searchsorted(self._cdf, rng.random(size), side="right")
        return np.minimum(items, self.n_items - 1).astype(np.int64)
