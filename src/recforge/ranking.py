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

The selection is a compiled kernel (`recforge._topk`, numba): per row, the maxima of chunks
of scores give a lower bound on the k-th best score, and only the few chunks that reach it
are scanned into a k-heap on (score, tie rank). It never copies or densifies: exclusions
are read from the CSR (or lists) as they are, rows run on `recforge.resources.threads()`
threads, and the result is the one the order above defines, whatever the blocks or threads.

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

from recforge import resources

__all__ = ["CsrRows", "Exclusion", "RankedLists", "exclusion_mask_rows", "top_k", "top_k_product", "top_k_row"]


@dataclass(frozen=True)
class CsrRows:
    """Rows `rows` of a CSR matrix, read in place (e.g. the seen items of a block of users)."""

    matrix: sp.csr_matrix | sp.csr_array
    rows: np.ndarray


#: seen items per row: a CSR matrix (rows aligned with the score rows), `CsrRows`, or one index
#: array per row
Exclusion = sp.csr_matrix | sp.csr_array | CsrRows | Sequence[np.ndarray]


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
    starts, ends, items = _exclusion_rows(exclude, n_rows)
    lengths = ends - starts
    rows = np.repeat(np.arange(n_rows), lengths)
    at = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return rows, items[at].astype(np.int64)


def _exclusion_rows(exclude: Exclusion, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, items): row r excludes ``items[starts[r]:ends[r]]`` (a CSR's indices as
    they are, without a copy when int32)."""
    if isinstance(exclude, CsrRows):
        rows = np.asarray(exclude.rows, np.int64)
        if len(rows) != n_rows:
            raise ValueError(f"exclusion has {len(rows)} rows for a score block of {n_rows}")
        indptr = exclude.matrix.indptr
        return (indptr[rows].astype(np.int64), indptr[rows + 1].astype(np.int64),
                exclude.matrix.indices.astype(np.int32, copy=False))
    if sp.issparse(exclude):
        csr = exclude if isinstance(exclude, sp.csr_matrix | sp.csr_array) else sp.csr_matrix(exclude)
        if csr.shape[0] != n_rows:
            raise ValueError(f"exclusion has {csr.shape[0]} rows for a score block of {n_rows}")
        indptr = csr.indptr.astype(np.int64)
        return indptr[:-1], indptr[1:], csr.indices.astype(np.int32, copy=False)
    if len(exclude) != n_rows:
        raise ValueError(f"exclusion has {len(exclude)} rows for a score block of {n_rows}")
    lists = [np.asarray(e, np.int64).ravel() for e in exclude]
    lengths = np.array([len(e) for e in lists], np.int64)
    ends = np.cumsum(lengths)
    items = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    if len(items) and (items.min() < 0 or items.max() > np.iinfo(np.int32).max):
        raise ValueError("excluded item indices must be non-negative item indices")
    return ends - lengths, ends, items.astype(np.int32)


def _tie_rank(tiebreak: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Per cell a value in [0, n_items) that is larger for the item that wins a tie.

    (0, 0) for no key (the kernel then ranks the lower index first); one row for an
    item-level key, one row per score row for a per-row key.
    """
    n_items = shape[1]
    if tiebreak is None:
        return np.zeros((0, 0), np.int64)
    key = np.asarray(tiebreak, np.float64)
    if key.shape not in ((n_items,), shape):
        raise ValueError(f"tiebreak must have shape ({n_items},) or {shape}, got {key.shape}")
    key = np.nan_to_num(np.atleast_2d(key), nan=-np.inf)
    index = np.broadcast_to(np.arange(n_items), key.shape)
    order = np.lexsort((index, -key), axis=1)
    rank = np.empty(key.shape, np.int64)
    np.put_along_axis(rank, order, np.arange(n_items - 1, -1, -1)[None, :], axis=1)
    return rank


def _candidate_items(candidates: np.ndarray | None, n_items: int) -> np.ndarray | None:
    """Sorted unique item indices allowed, from an index array or a boolean mask (None: all)."""
    if candidates is None:
        return None
    allowed = np.asarray(candidates)
    if allowed.dtype == bool:
        if allowed.shape != (n_items,):
            raise ValueError(f"a candidate mask must have shape ({n_items},), got {allowed.shape}")
        return np.flatnonzero(allowed).astype(np.int64)
    items = np.unique(allowed.astype(np.int64).ravel())
    if len(items) and (items[0] < 0 or items[-1] >= n_items):
        raise ValueError(f"candidate item indices must lie in 0..{n_items - 1}")
    return items


_NO_MAXIMA = np.zeros((0, 0), np.float32)
#: below this many score cells a call runs on the calling thread alone
_PARALLEL_CELLS = 1 << 20


def top_k(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Exclusion | None = None,
    candidates: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` items per row of a score block, best first, in the module's documented order.

    Args:
        scores: (n_rows, n_items) scores, higher is better; not modified (float32 and
            C-ordered scores are read in place, others are converted once).
        k: list length (>= 1); rows with fewer eligible items are padded.
        exclude: items never returned per row (seen items): a CSR matrix whose rows align
            with `scores`, or one array of item indices per row.
        candidates: when given, only these items may be returned: an index array, or a
            boolean mask of length n_items.
        tiebreak: secondary key for equal scores, higher first: (n_items,) for one key per
            item (e.g. popularity), or the shape of `scores` for one per cell (e.g. a seeded
            random key, so that an evaluation of tied scores lands at chance).
        threads: rows are split over this many threads (default `recforge.resources.threads()`).

    Returns:
        (items, scores): int64 and float32 arrays of shape (n_rows, k); padding is item -1
        with score -inf.
    """
    values = np.ascontiguousarray(scores, np.float32)
    if values.ndim != 2:
        raise ValueError(f"scores must be a 2-D (rows, items) block, got shape {values.shape}")
    return _top_k(values, k, exclude, candidates, tiebreak, threads, _NO_MAXIMA)


def top_k_product(
    left: np.ndarray,
    right: np.ndarray,
    k: int,
    *,
    exclude: Exclusion | None = None,
    candidates: np.ndarray | None = None,
    buffer: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k(left @ right.T, k, ...)` for scores that are a product of factors (iALS, MF).

    The product is written into `buffer` (a float32 block of at least len(left) rows, reused
    across calls so that no block is a fresh allocation; allocated when None). The lists
    follow `top_k`'s order exactly, on the scores the product gives. Runs on the calling
    thread: callers run blocks of rows on threads (with one BLAS thread each). (Taking the
    chunk maxima piece by piece while the product is computed measured slower: the kernel's
    own pass over a fresh block costs less than the extra per-piece calls.)
    """
    left = np.ascontiguousarray(left, np.float32)
    right = np.asarray(right, np.float32)
    n_rows, n_items = len(left), len(right)
    block = np.empty((n_rows, n_items), np.float32) if buffer is None else buffer[:n_rows]
    np.matmul(left, right.T, out=block)
    return _top_k(block, k, exclude, candidates, None, 1, _NO_MAXIMA)


def _top_k(values: np.ndarray, k: int, exclude: Exclusion | None, candidates: np.ndarray | None,
           tiebreak: np.ndarray | None, threads: int | None, maxima: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of a float32 C-ordered block; `maxima`: its chunk maxima, or (0, 0)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n_rows, n_items = values.shape
    tie = _tie_rank(tiebreak, values.shape)
    starts, ends, excluded = (_exclusion_rows(exclude, n_rows) if exclude is not None
                              else (np.zeros(n_rows, np.int64), np.zeros(n_rows, np.int64), np.zeros(0, np.int32)))
    matrix = exclude.matrix if isinstance(exclude, CsrRows) else exclude if sp.issparse(exclude) else None
    if matrix is not None:  # a CSR's indices lie below its width: no pass over them
        if matrix.shape[1] > n_items:
            raise ValueError(f"exclusion has {matrix.shape[1]} columns for a score block of {n_items}")
    elif len(excluded) and (excluded.min() < 0 or excluded.max() >= n_items):
        raise ValueError(f"excluded item indices must lie in 0..{n_items - 1}")
    allowed = _candidate_items(candidates, n_items)
    items_out = np.full((n_rows, k), -1, np.int64)
    scores_out = np.full((n_rows, k), -np.inf, np.float32)
    if n_rows == 0 or n_items == 0 or (allowed is not None and len(allowed) == 0):
        return items_out, scores_out
    from recforge._topk import top_k_rows  # numba: compiled (and cached) on first use

    cand = np.zeros(0, np.int64) if allowed is None else allowed
    n_threads = resources.threads() if threads is None else threads
    n_parts = max(1, min(n_threads, n_rows * n_items // _PARALLEL_CELLS))
    bounds = np.linspace(0, n_rows, n_parts + 1).astype(np.int64)

    def run(part: int) -> None:
        a, b = bounds[part], bounds[part + 1]
        top_k_rows(values[a:b], k, starts[a:b], ends[a:b], excluded, cand,
                   tie if len(tie) <= 1 else tie[a:b], maxima if len(maxima) == 0 else maxima[a:b],
                   items_out[a:b], scores_out[a:b])

    resources.parallel_map(run, range(n_parts), n_parts)
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
