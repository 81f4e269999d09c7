"""Compiled per-row loops of the interaction loader (numba; imported on first use).

Loading 20 million rows spends its time in three loops that NumPy can only express as
several full passes with temporaries: reading integer IDs out of text, numbering distinct
IDs, and checking (user, item) pairs for repeats. Each is one pass here.
"""

from __future__ import annotations

import numba as nb
import numpy as np

#: integers of up to this many digits sort numerically as IDs (see `interactions._sorted_unique`)
MAX_DIGITS = 18


@nb.njit(nogil=True, cache=True)
def parse_canonical_ints(offsets: np.ndarray, data: np.ndarray, out: np.ndarray) -> bool:
    """Fill `out` with the integers of Arrow-style strings (``data[offsets[i]:offsets[i+1]]``).

    False as soon as one string is not the canonical text of an integer of at most
    `MAX_DIGITS` digits (empty, a sign other than one leading '-', a leading zero, "-0",
    whitespace, any other character): such IDs keep their text.
    """
    for i in range(out.shape[0]):
        start, end = offsets[i], offsets[i + 1]
        negative = end > start and data[start] == 45  # '-'
        first = start + 1 if negative else start
        n_digits = end - first
        if n_digits < 1 or n_digits > MAX_DIGITS:
            return False
        if data[first] == 48 and (n_digits > 1 or negative):  # '0': "07", "-0"
            return False
        value = np.int64(0)
        for pos in range(first, end):
            digit = np.int64(data[pos]) - 48
            if digit < 0 or digit > 9:
                return False
            value = value * 10 + digit
        out[i] = -value if negative else value
    return True


@nb.njit(nogil=True, cache=True)
def dense_codes(values: np.ndarray, low: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, int32 code per value) for integers in [low, low + span)."""
    rank = np.zeros(span, np.int32)
    for v in values:
        rank[v - low] = 1
    n_unique = 0
    for j in range(span):
        if rank[j]:
            rank[j] = n_unique
            n_unique += 1
        else:
            rank[j] = -1
    uniques = np.empty(n_unique, np.int64)
    for j in range(span):
        if rank[j] >= 0:
            uniques[rank[j]] = low + j
    codes = np.empty(values.shape[0], np.int32)
    for i in range(values.shape[0]):
        codes[i] = rank[values[i] - low]
    return uniques, codes


@nb.njit(nogil=True, cache=True)
def has_repeated_pairs(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> bool:
    """Whether some (user, item) pair occurs twice: rows bucketed by user, then one stamp per item."""
    counts = np.zeros(n_users + 1, np.int64)
    for u in users:
        counts[u + 1] += 1
    for u in range(n_users):
        counts[u + 1] += counts[u]
    fill = counts[:-1].copy()
    by_user = np.empty(users.shape[0], np.int32)
    for i in range(users.shape[0]):
        by_user[fill[users[i]]] = items[i]
        fill[users[i]] += 1
    stamp = np.full(n_items, -1, np.int64)
    for u in range(n_users):
        for pos in range(counts[u], counts[u + 1]):
            item = by_user[pos]
            if stamp[item] == u:
                return True
            stamp[item] = u
    return False
