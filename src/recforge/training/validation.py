"""Validation during training: a seeded per-user holdout and compact metric functions.

These serve early stopping only. The full evaluation protocol (all metrics, reports) lives
in `recforge.evaluation`; here we need NDCG@K / Recall@K over a full ranking and RMSE,
computed fast after every epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.training.config import parse_metric

__all__ = ["holdout_split", "make_validator", "ndcg_at_k", "recall_at_k", "rmse", "top_k"]

#: score blocks stay under this many cells
_BLOCK_CELLS = 1 << 22

ScoreFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def holdout_split(
    interactions: Interactions, ratio: float, rng: np.random.Generator
) -> tuple[Interactions, Interactions]:
    """Hold out a random `ratio` of each user's interactions: returns (train, held_out).

    A user with ``n >= 2`` interactions gives ``max(1, round(ratio · n))`` of them, always
    keeping at least one for training; users with a single interaction give none. Both
    parts keep the original ID maps. Vectorized: one sort by (user, random key).
    """
    n = len(interactions)
    users = interactions.user_idx.astype(np.int64)
    counts = np.bincount(users, minlength=interactions.n_users)
    want = np.where(counts >= 2, np.maximum(1, np.rint(ratio * counts)), 0).astype(np.int64)
    want = np.minimum(want, np.maximum(counts - 1, 0))
    order = np.lexsort((rng.random(n), users))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - starts[users[order]]
    held = rank < want[users]
    return interactions.subset(~held), interactions.subset(held)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the `k` largest scores per row, best first: shape (rows, k)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k with binary relevance.

    Args:
        hits: (users, k) booleans, hit at each rank of the top-k list.
        n_relevant: (users,) number of relevant items per user (> 0).
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return dcg / ideal


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user Recall@k = hits in the top k / number of relevant items."""
    return hits[:, :k].sum(axis=1) / n_relevant


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - target) ** 2)))


def make_validator(
    score: ScoreFn,
    exclude: sp.csr_matrix,
    held_out: Interactions,
    metric: str,
    rating_scale: tuple[float, float] | None = None,
) -> tuple[Callable[[], float], bool]:
    """A zero-argument function computing `metric` on `held_out`, and whether higher is better.

    Args:
        score: the model's ``score(user_idx, item_idx=None)``.
        exclude: users × items matrix of the training items removed from each ranking.
        held_out: the validation interactions (same ID maps).
        metric: ``ndcg@K``, ``recall@K`` or ``rmse`` (needs ratings in `held_out`).
        rating_scale: predictions are clipped to it for ``rmse``.
    """
    kind, k = parse_metric(metric)
    if kind == "rmse":
        if held_out.ratings is None:
            raise ValueError("validation metric rmse needs ratings in the validation data")
        users, items = held_out.user_idx.astype(np.int64), held_out.item_idx.astype(np.int64)
        target = held_out.ratings.astype(np.float64)

        def validate_rmse() -> float:
            pred = np.asarray(score(users, items), np.float64)
            if rating_scale is not None:
                pred = np.clip(pred, *rating_scale)
            return rmse(pred, target)

        return validate_rmse, False

    relevant = held_out.csr(binary=True)
    val_users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    n_relevant = np.diff(relevant.indptr)[val_users]
    n_items = exclude.shape[1]
    keys = np.sort(held_out.user_idx.astype(np.int64) * n_items + held_out.item_idx)
    block = max(1, _BLOCK_CELLS // max(n_items, 1))
    per_user = ndcg_at_k if kind == "ndcg" else recall_at_k

    def validate_ranking() -> float:
        values = np.empty(len(val_users))
        for start in range(0, len(val_users), block):
            users = val_users[start:start + block]
            scores = np.array(score(users, None), dtype=np.float32, copy=True)
            seen = exclude[users]
            rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
            top = top_k(scores, k)
            cand = users[:, None] * n_items + top
            pos = np.minimum(np.searchsorted(keys, cand), len(keys) - 1)
            hits = keys[pos] == cand
            stop = start + len(users)
            values[start:stop] = per_user(hits, n_relevant[start:stop], k)
        return float(values.mean()) if len(values) else 0.0

    return validate_ranking, True
