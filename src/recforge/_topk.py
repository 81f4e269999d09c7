"""The compiled kernel behind `recforge.ranking.top_k` (imported on first use: numba).

Per row, in the order `recforge.ranking` documents (score desc as float32, then the tie rank
desc, which is the lower index first unless a tiebreak key is given; non-finite scores count
as the lowest float32 and stay eligible; excluded items are never returned):

1. one vectorized pass takes the maximum of each of m = n_items // CHUNK chunks, chunk c
   holding the items c, c + m, c + 2m... (an elementwise maximum of contiguous slices);
2. the k-th largest finite chunk maximum is a bound: k eligible items (the maxima of k
   distinct chunks) score at least that much, so no item below it is in the top k. A chunk
   whose maximum may be an excluded item's counts as unbounded instead: scanned, not used;
3. the items at or above the bound (about k) are the candidates; excluded ones are dropped,
   and the rest are ordered by one int64 key per candidate that packs the score's
   order-preserving bits above the tie rank.

A row without a bound (fewer than k finite chunk maxima, a bound at the lowest float32, a
candidate list, a short row) takes every eligible item as a candidate. The kernel holds no
Python object and releases the GIL, so callers run row blocks on threads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

#: items per chunk of the first pass: the bound is the k-th largest of n_items / CHUNK maxima
CHUNK = 32

_FMIN = np.float32(np.finfo(np.float32).min)


@nb.njit(nogil=True, cache=True)
def _kth_largest_finite(values: np.ndarray, k: int, top: np.ndarray) -> np.float32:
    """The k-th largest finite value of `values` (NaN-free), or -inf when fewer are finite.

    `top` (k floats) is scratch, kept ascending: one compare per value, a short shift for the
    few that enter.
    """
    count = 0
    low = np.float32(-np.inf)
    for v in values:
        if not (v > low and v < np.inf):
            continue
        if count < k:
            pos = count
            count += 1
            while pos > 0 and top[pos - 1] > v:
                top[pos] = top[pos - 1]
                pos -= 1
            top[pos] = v
            if count == k:
                low = top[0]
            continue
        pos = 1
        while pos < k and top[pos] < v:
            top[pos - 1] = top[pos]
            pos += 1
        top[pos - 1] = v
        low = top[0]
    return low if count == k else np.float32(-np.inf)


@nb.njit(nogil=True, cache=True)
def _emit(row: np.ndarray, cand: np.ndarray, n_cand: int, k: int, tie: np.ndarray, tie_row: int,
          keys: np.ndarray, clean: np.ndarray, items_out: np.ndarray, scores_out: np.ndarray) -> None:
    """Order the candidate items by (clean score, tie rank), both descending; write the top k."""
    n = row.shape[0]
    for t in range(n_cand):
        v = row[cand[t]]
        clean[t] = v + np.float32(0.0) if np.isfinite(v) else _FMIN  # -0.0 becomes +0.0
    bits = clean[:n_cand].view(np.int32)
    for t in range(n_cand):
        b = np.int64(bits[t])
        ordered = b ^ np.int64(0x7FFFFFFF) if b < 0 else b
        j = cand[t]
        rank = n - 1 - j if tie.shape[0] == 0 else tie[tie_row, j]
        keys[t] = (ordered << 32) | rank  # unique per row: the rank is
    found = keys[:n_cand]
    if n_cand > 2 * k + 64:  # keep the k largest keys first, then sort only them
        threshold = np.partition(found, n_cand - k)[n_cand - k]
        kept = 0
        for t in range(n_cand):
            if found[t] >= threshold:
                keys[kept] = found[t]
                cand[kept] = cand[t]
                kept += 1
        n_cand = kept
        found = keys[:n_cand]
    order = np.argsort(found)
    n_out = min(k, n_cand)
    for a in range(n_out):
        t = order[n_cand - 1 - a]
        items_out[a] = cand[t]
        scores_out[a] = row[cand[t]] + np.float32(0.0) if np.isfinite(row[cand[t]]) else _FMIN
    for a in range(n_out, k):
        items_out[a] = -1
        scores_out[a] = -np.inf


@nb.njit(nogil=True, cache=True)
def top_k_rows(scores: np.ndarray, k: int, ex_start: np.ndarray, ex_end: np.ndarray,
               ex_idx: np.ndarray, candidates: np.ndarray, tie: np.ndarray,
               items_out: np.ndarray, scores_out: np.ndarray) -> None:
    """Top-`k` of every row of `scores` (float32, C order) into `items_out` / `scores_out`.

    Row r's excluded items are ``ex_idx[ex_start[r]:ex_end[r]]`` (any order, repeats allowed).
    `candidates`: sorted unique item indices that alone may be returned, or empty for every
    item. `tie`: (0, 0) for the default tie rank (lower index first), else (1 or n_rows,
    n_items) ranks, a permutation of 0..n_items-1 per row.
    """
    n_rows, n = scores.shape
    m = n // CHUNK
    covered = m * CHUNK
    restricted = candidates.shape[0] > 0
    chunk_max = np.empty(m, np.float32)
    top = np.empty(k, np.float32)
    excluded = np.zeros(n, np.bool_)
    cand = np.empty(n, np.int64)
    keys = np.empty(n, np.int64)
    clean = np.empty(n, np.float32)
    for r in range(n_rows):
        row = scores[r]
        ex = ex_idx[ex_start[r]:ex_end[r]]
        for e in range(ex.shape[0]):
            excluded[ex[e]] = True
        n_cand = 0
        bound = np.float32(-np.inf)
        if not restricted and m >= k:
            # 1. chunk maxima (NaN never wins a `>`)
            chunk_max[:] = -np.inf
            for t in range(CHUNK):
                part = row[t * m:(t + 1) * m]
                for c in range(m):
                    v = part[c]
                    chunk_max[c] = v if v > chunk_max[c] else chunk_max[c]
            for e in range(ex.shape[0]):
                j = ex[e]
                if j < covered and row[j] == chunk_max[j % m]:
                    chunk_max[j % m] = np.inf  # maybe an excluded item's: scan, do not use
            # 2. the bound
            bound = _kth_largest_finite(chunk_max, k, top)
        if bound > _FMIN:
            # 3. candidates: the items at or above the bound
            for c in range(m):
                if chunk_max[c] >= bound:
                    for j in range(c, covered, m):
                        if row[j] >= bound and not excluded[j]:
                            cand[n_cand] = j
                            n_cand += 1
            for j in range(covered, n):
                if row[j] >= bound and not excluded[j]:
                    cand[n_cand] = j
                    n_cand += 1
        else:
            n_scan = candidates.shape[0] if restricted else n
            for t in range(n_scan):
                j = candidates[t] if restricted else t
                if not excluded[j]:
                    cand[n_cand] = j
                    n_cand += 1
        for e in range(ex.shape[0]):
            excluded[ex[e]] = False
        _emit(row, cand, n_cand, k, tie, r if tie.shape[0] > 1 else 0, keys, clean,
              items_out[r], scores_out[r])
