"""Compiled kernels of `recforge.models.ials` (numba), imported only when training.

Loading or serving a fitted model needs none of them, so numba is imported on the first
fit, not with the model class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np


@contextlib.contextmanager
def numba_threads(threads: int | None) -> Iterator[int]:
    """Run numba's parallel loops on `threads` threads (None: its default), restoring after."""
    previous = numba.get_num_threads()
    # numba.config fills its settings in at import time, so its stubs cannot declare them
    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    n = previous if threads is None else min(threads, most)
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)


@numba.njit(nogil=True, cache=True)
def padding(d: int) -> int:  # pragma: no cover - compiled
    """float32 slots (≥ 1 KiB) kept free around the kernels' own work vectors.

    LLVM guards a vectorized loop with a runtime alias check that, for arrays whose starts
    are closer than a few vector widths, falls back to a scalar loop with another rounding.
    With this much room around every array a kernel writes, the vector loops always run, so
    the results do not depend on where the allocator put things (nor on the thread count).
    """
    return (d + 256 + 63) // 64 * 64


@numba.njit(fastmath=True, nogil=True, cache=True)
def gram(Y: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """YᵀY (d × d, float32) as a sum of rank-one updates, on one thread, without BLAS.

    Between numba's parallel sweeps a BLAS call wakes BLAS's own thread pool, and the two
    pools spinning against each other cost far more than this product (measured on 2 cores:
    0.7 s instead of 3 ms per call); one thread does it in about 0.25 µs per row at d = 64.
    G sits in padding (see `padding`).
    """
    d = Y.shape[1]
    pad = padding(d)
    G = np.zeros(pad + d * d + pad, np.float32)[pad:pad + d * d].reshape(d, d)
    for u in range(Y.shape[0]):
        y = Y[u]
        for k in range(d):
            yk = y[k]
            g = G[k]
            for j in range(d):
                g[j] += yk * y[j]
    return G


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def cg_sweep(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, Y: np.ndarray,
              gram: np.ndarray, X: np.ndarray, reg: np.ndarray, steps: int,
              chunks: np.ndarray) -> None:  # pragma: no cover - compiled
    """`steps` CG steps on every row's system, in place on X, warm-started from X.

    Row u solves ``(YᵀY + λ_u I + Σ_i w_ui y_i y_iᵀ) x = Σ_i (1 + w_ui) y_i`` over its
    non-zeros i (``w = c − 1 = weights``, per non-zero, or one value for all when of length
    1). Chunks ``chunks[c]:chunks[c + 1]`` of rows run in parallel; each row is independent
    of the others, so the result does not depend on threads.
    """
    d = Y.shape[1]
    stride = 1 if len(weights) > 1 else 0
    one = np.float32(1.0)
    tiny = np.float32(1e-20)
    pad = padding(d)
    for c in numba.prange(len(chunks) - 1):
        scratch = np.empty(4 * pad, np.float32)
        r = scratch[pad:pad + d]
        p = scratch[2 * pad:2 * pad + d]
        ap = scratch[3 * pad:3 * pad + d]
        for u in range(chunks[c], chunks[c + 1]):
            x = X[u]
            lam = reg[u]
            # residual r = b − A x
            for k in range(d):
                acc = np.float32(0.0)
                g = gram[k]
                for j in range(d):
                    acc += g[j] * x[j]
                r[k] = -acc - lam * x[k]
            for n in range(indptr[u], indptr[u + 1]):
                y = Y[indices[n]]
                w = weights[n * stride]
                dot = np.float32(0.0)
                for k in range(d):
                    dot += y[k] * x[k]
                coef = one + w - w * dot
                for k in range(d):
                    r[k] += coef * y[k]
            rs = np.float32(0.0)
            for k in range(d):
                p[k] = r[k]
                rs += r[k] * r[k]
            if rs < tiny:
                continue
            for _ in range(steps):
                for k in range(d):  # A p
                    acc = np.float32(0.0)
                    g = gram[k]
                    for j in range(d):
                        acc += g[j] * p[j]
                    ap[k] = acc + lam * p[k]
                for n in range(indptr[u], indptr[u + 1]):
                    y = Y[indices[n]]
                    dot = np.float32(0.0)
                    for k in range(d):
                        dot += y[k] * p[k]
                    coef = weights[n * stride] * dot
                    for k in range(d):
                        ap[k] += coef * y[k]
                pap = np.float32(0.0)
                for k in range(d):
                    pap += p[k] * ap[k]
                if pap <= 0:
                    break
                step = rs / pap
                rs_new = np.float32(0.0)
                for k in range(d):
                    x[k] += step * p[k]
                    r[k] -= step * ap[k]
                    rs_new += r[k] * r[k]
                if rs_new < tiny:
                    break
                beta = rs_new / rs
                for k in range(d):
                    p[k] = r[k] + beta * p[k]
                rs = rs_new


@numba.njit(nogil=True, cache=True)
def transpose(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
               n_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The CSR arrays (indptr, indices, values) of the transposed matrix, by counting sort.

    Allocates only the result (scipy's transpose goes through a full copy with values);
    `values` of length 1 (one value for all cells) stays of length 1.
    """
    indptr_t = np.zeros(n_cols + 1, np.int64)
    for n in range(len(indices)):
        indptr_t[indices[n] + 1] += 1
    for i in range(n_cols):
        indptr_t[i + 1] += indptr_t[i]
    indices_t = np.empty_like(indices)
    values_t = values.copy() if len(values) == 1 else np.empty_like(values)
    fill = indptr_t[:-1].copy()
    for u in range(len(indptr) - 1):
        for n in range(indptr[u], indptr[u + 1]):
            i = indices[n]
            indices_t[fill[i]] = u
            if len(values) > 1:
                values_t[fill[i]] = values[n]
            fill[i] += 1
    return indptr_t, indices_t, values_t


@numba.njit(nogil=True, cache=True)
def row_sums(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Σ of each row's values (float64); `values` of length 1 is that value in every cell."""
    n = len(indptr) - 1
    out = np.zeros(n, np.float64)
    if len(values) == 1:
        for u in range(n):
            out[u] = (indptr[u + 1] - indptr[u]) * np.float64(values[0])
        return out
    for u in range(n):
        for k in range(indptr[u], indptr[u + 1]):
            out[u] += values[k]
    return out
