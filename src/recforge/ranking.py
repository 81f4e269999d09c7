"""The one place where scores become ranked lists.

Every ranked list recforge produces — `Recommender.recommend`, `similar_items`, fold-in and
cold-start lists, the trainer's early-stopping metric, every evaluator and every service
endpoint — comes from `top_k` here, so the same scores give the same list everywhere.

Order (documented once, deterministic on any machine):

1. higher score first, scores compared as float32;
2. among equal scores, higher `tiebreak` first (when a tiebreak key is given);
3. then the lower item index first.

A non-finite model score (NaN, ±inf) ranks below every finite score but stays eligible.
Excluded items (a user's seen items, items outside `candidates`) are never returned; a row
with fewer than `k` eligible items is padded with item ``-1`` and score ``-inf``.

The selection is an `argpartition` over one int64 key per cell that packs the score's
order-preserving bits above the tie-break rank, so ties at the k-th place are resolved by
the same rule as ties inside the list.

>>> import numpy as np
>>> items, scores = top_k(np.array([[0.5, 0.75, 0.5, 0.25]]), k=3)
>>> items.tolist(), scores.tolist()
([[1, 0, 2]], [[0.75, 0.5, 0.5]])
>>> top_k(np.array([[0.5, 0.9, 0.5]]), k=3, exclude=[np.array([1])])[0].tolist()
[[0, 2, -1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["Exclusion", "RankedLists", "exclusion_mask_rows", "top_k", "top_k_row"]

#: seen items per row: a CSR matrix (rows aligned with the score rows) or one index array per row
Exclusion = sp.csr_matrix | sp.csr_array | Sequence[np.ndarray]

_EXCLUDED = np.iinfo(np.int64).min


@dataclass(frozen=True)
class RankedLists:
    """Top-k lists of a batch of users (`Recommender.rank_users`, `rank_unknown`).

    `items` (int64) and `scores` (float32) are (n_users, k), best first, padded with -1 and
    -inf; `fallback` holds per user None (the model ranked a known user) or the label of the
    unknown-user fallback that ranked it: ``features``, ``fold_in`` or ``popularity``.
    """

    items: np.ndarray
    scores: np.ndarray
    fallback: np.ndarray

    @classmethod
    def empty(cls, n_rows: int, k: int) -> RankedLists:
        """`n_rows` lists of padding only (item -1, score -inf, no fallback), to be filled."""
        return cls(np.full((n_rows, k), -1, np.int64), np.full((n_rows, k), -np.inf, np.float32),
                   np.full(n_rows, None, dtype=object))


def exclusion_mask_rows(exclude: Exclusion, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) index pairs of the excluded cells of a score block with `n_rows` rows."""
    if sp.issparse(exclude):
        csr = sp.csr_matrix(exclude)
        if csr.shape[0] != n_rows:
            raise ValueError(f"exclusion has {csr.shape[0]} rows for a score block of {n_rows}")
        rows = np.repeat(np.arange(n_rows), np.diff(csr.indptr))
        return rows, csr.indices.astype(np.int64)
    if len(exclude) != n_rows:
        raise ValueError(f"exclusion has {len(exclude)} rows for a score block of {n_rows}")
    lists = [np.asarray(e, np.int64).ravel() for e in exclude]
    rows = np.repeat(np.arange(n_rows), [len(e) for e in lists])
    cols = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    return rows, cols


def _ordered_bits(scores: np.ndarray) -> np.ndarray:
    """int64 values that sort exactly as the finite float32 `scores` (no -0.0: add 0.0 first)."""
    bits = np.ascontiguousarray(scores, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _tie_rank(tiebreak: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Per cell a value in [0, n_items) that is larger for the item that wins a tie.

    Broadcastable to `shape`: one row for an item-level key (or none), one row per score row
    for a per-row key.
    """
    n_items = shape[1]
    if tiebreak is None:
        return np.arange(n_items - 1, -1, -1, dtype=np.int64)[None, :]
    key = np.asarray(tiebreak, np.float64)
    if key.shape not in ((n_items,), shape):
        raise ValueError(f"tiebreak must have shape ({n_items},) or {shape}, got {key.shape}")
    key = np.nan_to_num(np.atleast_2d(key), nan=-np.inf)
    index = np.broadcast_to(np.arange(n_items), key.shape)
    order = np.lexsort((index, -key), axis=1)
    rank = np.empty(key.shape, np.int64)
    np.put_along_axis(rank, order, np.arange(n_items - 1, -1, -1)[None, :], axis=1)
    return rank


def top_k(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Exclusion | None = None,
    candidates: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` items per row of a score block, best first, in the module's documented order.

    Args:
        scores: (n_rows, n_items) scores, higher is better; not modified.
        k: list length (>= 1); rows with fewer eligible items are padded.
        exclude: items never returned per row (seen items): a CSR matrix whose rows align
            with `scores`, or one array of item indices per row.
        candidates: when given, only these items may be returned: an index array, or a
            boolean mask of length n_items.
        tiebreak: secondary key for equal scores, higher first: (n_items,) for one key per
            item (e.g. popularity), or the shape of `scores` for one per cell (e.g. a seeded
            random key, so that an evaluation of tied scores lands at chance).

    Returns:
        (items, scores): int64 and float32 arrays of shape (n_rows, k); padding is item -1
        with score -inf.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    values = np.asarray(scores, np.float32)
    if values.ndim != 2:
        raise ValueError(f"scores must be a 2-D (rows, items) block, got shape {values.shape}")
    n_rows, n_items = values.shape
    items_out = np.full((n_rows, k), -1, np.int64)
    scores_out = np.full((n_rows, k), -np.inf, np.float32)
    if n_rows == 0 or n_items == 0:
        return items_out, scores_out
    clean = np.where(np.isfinite(values), values, np.finfo(np.float32).min) + np.float32(0.0)
    key = (_ordered_bits(clean) << 32) | _tie_rank(tiebreak, values.shape)
    if exclude is not None:
        rows, cols = exclusion_mask_rows(exclude, n_rows)
        key[rows, cols] = _EXCLUDED
    if candidates is not None:
        allowed = np.asarray(candidates)
        if allowed.dtype != bool:
            mask = np.zeros(n_items, bool)
            mask[allowed.astype(np.int64)] = True
            allowed = mask
        key[:, ~allowed] = _EXCLUDED
    k_eff = min(k, n_items)
    top = np.argpartition(key, n_items - k_eff, axis=1)[:, n_items - k_eff:]
    top_keys = np.take_along_axis(key, top, axis=1)
    order = np.argsort(top_keys, axis=1)[:, ::-1]  # keys are unique per row but for exclusions
    top = np.take_along_axis(top, order, axis=1)
    valid = np.take_along_axis(top_keys, order, axis=1) != _EXCLUDED
    items_out[:, :k_eff] = np.where(valid, top, -1)
    scores_out[:, :k_eff] = np.where(valid, np.take_along_axis(clean, top, axis=1), -np.inf)
    return items_out, scores_out


def top_k_row(
    scores: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of one score row, without the padding: (items, scores), each of length <= k.

    >>> top_k_row(np.array([0.2, 0.7, 0.7]), k=5, exclude=np.array([2]))[0].tolist()
    [1, 0]
    """
    items, values = top_k(np.asarray(scores)[None, :], k,
                          exclude=None if exclude is None else [np.asarray(exclude, np.int64)],
                          candidates=candidates, tiebreak=tiebreak)
    keep = items[0] >= 0
    return items[0][keep], values[0][keep]
