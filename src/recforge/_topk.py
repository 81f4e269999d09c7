"""The compiled kernel behind `recforge.ranking.top_k` (imported on first use: numba).

Per row, in the order `recforge.ranking` documents (score desc as float32, then the tie rank
desc, which is the lower index first unless a tiebreak key is given; non-finite scores count
as the lowest float32 and stay eligible; excluded items are never returned):

1. one vectorized pass takes the maximum of every chunk of CHUNK items. Items come in
   pieces of PIECE (the last one shorter); a piece of w items has m = w // CHUNK chunks,
   chunk c holding its items c, c + m, c + 2m... (an elementwise maximum of contiguous
   slices), and the last piece's last w % CHUNK items belong to no chunk (always scanned).
   `piece_maxima` computes one piece's maxima;
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
#: items per piece (a multiple of CHUNK): the first pass's maxima are elementwise maxima of
#: slices a piece / CHUNK long, so long pieces vectorize best; a piece is 256 KiB of a row
PIECE = 1 << 16

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
def _sift_down(keys: np.ndarray, items: np.ndarray, size: int, pos: int) -> None:
    """Restore the min-heap order of keys[:size] (items alongside) below `pos`."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= keys[pos]:
            return
        keys[child], keys[pos] = keys[pos], keys[child]
        items[child], items[pos] = items[pos], items[child]
        pos = child


@nb.njit(nogil=True, cache=True)
def _emit(row: np.ndarray, cand: np.ndarray, n_cand: int, k: int, tie: np.ndarray, tie_row: int,
          keys: np.ndarray, clean: np.ndarray, items_out: np.ndarray, scores_out: np.ndarray) -> None:
    """Order the candidate items by (clean score, tie rank), both descending; write the top k.

    One int64 key per candidate packs the clean score's order-preserving bits above the tie
    rank (unique per row); a k-heap keeps the largest keys, popped smallest first.
    """
    n = row.shape[0]
    for t in range(n_cand):
        v = row[cand[t]]
        clean[t] = v + np.float32(0.0) if np.isfinite(v) else _FMIN  # -0.0 becomes +0.0
    bits = clean[:n_cand].view(np.int32)
    size = 0
    heap_items = cand[n_cand:]  # scratch after the candidates (cand has n slots, n_cand + k <= n + k)
    heap_keys = keys[n_cand:]
    for t in range(n_cand):
        b = np.int64(bits[t])
        ordered = b ^ np.int64(0x7FFFFFFF) if b < 0 else b
        j = cand[t]
        rank = n - 1 - j if tie.shape[0] == 0 else tie[tie_row, j]
        key = (ordered << 32) | rank
        if size < k:
            heap_keys[size], heap_items[size] = key, j
            pos = size
            size += 1
            while pos > 0 and heap_keys[(pos - 1) >> 1] > heap_keys[pos]:
                parent = (pos - 1) >> 1
                heap_keys[parent], heap_keys[pos] = heap_keys[pos], heap_keys[parent]
                heap_items[parent], heap_items[pos] = heap_items[pos], heap_items[parent]
                pos = parent
        elif key > heap_keys[0]:
            heap_keys[0], heap_items[0] = key, j
            _sift_down(heap_keys, heap_items, size, 0)
    for a in range(size - 1, -1, -1):  # pop the smallest into the last free place
        j = heap_items[0]
        items_out[a] = j
        scores_out[a] = row[j] + np.float32(0.0) if np.isfinite(row[j]) else _FMIN
        size -= 1
        heap_keys[0], heap_items[0] = heap_keys[size], heap_items[size]
        _sift_down(heap_keys, heap_items, size, 0)
    for a in range(min(k, n_cand), k):
        items_out[a] = -1
        scores_out[a] = -np.inf


@nb.njit(nogil=True, cache=True)
def n_chunks(n_items: int) -> int:
    """Chunks of a row of `n_items` scores (see the module docstring)."""
    full, rest = divmod(n_items, PIECE)
    return full * (PIECE // CHUNK) + rest // CHUNK


@nb.njit(nogil=True, cache=True)
def piece_maxima(scores: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
    """Chunk maxima of the items [start, stop) of every row (one piece) into `out`'s
    columns from ``(start // PIECE) * (PIECE // CHUNK)`` on. NaN never wins a `>`."""
    m = (stop - start) // CHUNK
    first = (start // PIECE) * (PIECE // CHUNK)
    maxima = np.empty(m, np.float32)  # a fresh array: no aliasing, so the loop vectorizes
    for r in range(scores.shape[0]):
        row = scores[r]
        maxima[:] = -np.inf
        for t in range(CHUNK):
            part = row[start + t * m:start + (t + 1) * m]
            for c in range(m):
                v = part[c]
                maxima[c] = v if v > maxima[c] else maxima[c]
        out[r, first:first + m] = maxima


@nb.njit(nogil=True, cache=True)
def _chunk_of(j: int, n: int) -> int:
    """The chunk of item j in a row of n items, or -1 for the unchunked tail."""
    full = n // PIECE
    if j < full * PIECE:
        piece = j // PIECE
        return piece * (PIECE // CHUNK) + (j - piece * PIECE) % (PIECE // CHUNK)
    m = (n - full * PIECE) // CHUNK
    if j < full * PIECE + m * CHUNK:
        return full * (PIECE // CHUNK) + (j - full * PIECE) % m
    return -1


@nb.njit(nogil=True, cache=True)
def _chunk_items(c: int, n: int) -> tuple[int, int]:
    """(first item, stride) of chunk c: its items are first + t * stride for t < CHUNK."""
    per_piece = PIECE // CHUNK
    full = n // PIECE
    if c < full * per_piece:
        piece = c // per_piece
        return piece * PIECE + c - piece * per_piece, per_piece
    return full * PIECE + c - full * per_piece, (n - full * PIECE) // CHUNK


@nb.njit(nogil=True, cache=True)
def top_k_rows(scores: np.ndarray, k: int, ex_start: np.ndarray, ex_end: np.ndarray,
               ex_idx: np.ndarray, candidates: np.ndarray, tie: np.ndarray, maxima: np.ndarray,
               items_out: np.ndarray, scores_out: np.ndarray) -> None:
    """Top-`k` of every row of `scores` (float32, C order) into `items_out` / `scores_out`.

    Row r's excluded items are ``ex_idx[ex_start[r]:ex_end[r]]`` (any order, repeats allowed).
    `candidates`: sorted unique item indices that alone may be returned, or empty for every
    item. `tie`: (0, 0) for the default tie rank (lower index first), else (1 or n_rows,
    n_items) ranks, a permutation of 0..n_items-1 per row. `maxima`: the rows' chunk maxima
    from `piece_maxima`, or (0, 0) to take them here.
    """
    n_rows, n = scores.shape
    m = n_chunks(n)
    covered = n - (n % PIECE) % CHUNK  # items from here on belong to no chunk
    restricted = candidates.shape[0] > 0
    chunk_max = np.empty(m, np.float32)
    top = np.empty(k, np.float32)
    excluded = np.zeros(n, np.bool_)
    cand = np.empty(n + k, np.int64)  # candidates, then the heap of `_emit`
    keys = np.empty(n + k, np.int64)
    clean = np.empty(n, np.float32)
    own = np.empty((1, m), np.float32)
    for r in range(n_rows):
        row = scores[r]
        ex = ex_idx[ex_start[r]:ex_end[r]]
        for e in range(ex.shape[0]):
            excluded[ex[e]] = True
        n_cand = 0
        bound = np.float32(-np.inf)
        if not restricted and m >= k:
            # 1. chunk maxima
            if maxima.shape[0]:
                chunk_max[:] = maxima[r]
            else:
                for start in range(0, n, PIECE):
                    piece_maxima(scores[r:r + 1], start, min(start + PIECE, n), own)
                chunk_max[:] = own[0]
            for e in range(ex.shape[0]):
                c = _chunk_of(ex[e], n)
                if c >= 0 and row[ex[e]] == chunk_max[c]:
                    chunk_max[c] = np.inf  # maybe an excluded item's: scan, do not use
            # 2. the bound
            bound = _kth_largest_finite(chunk_max, k, top)
        if bound > _FMIN:
            # 3. candidates: the items at or above the bound
            for c in range(m):
                if chunk_max[c] >= bound:
                    first, stride = _chunk_items(c, n)
                    for t in range(CHUNK):
                        j = first + t * stride
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
