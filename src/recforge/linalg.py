"""Small dense/sparse matrix helpers shared by models and metrics."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["Matrix", "dense", "unit_rows"]

#: what the helpers accept: a dense array or a compressed sparse matrix
Matrix = np.ndarray | sp.csr_matrix | sp.csc_matrix


def unit_rows(matrix: Matrix, dtype: type = np.float32) -> np.ndarray | sp.csr_matrix:
    """Rows scaled to unit L2 norm (zero rows stay zero), as `dtype`; sparse in, sparse out.

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    if isinstance(matrix, np.ndarray):
        rows: np.ndarray = np.asarray(matrix, dtype)
        lengths = np.linalg.norm(rows, axis=1, keepdims=True)
        lengths[lengths == 0] = 1.0
        return rows / lengths
    m = sp.csr_matrix(matrix, dtype=dtype)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=dtype)


def dense(matrix: Matrix) -> np.ndarray:
    """A float32 ndarray of a dense or sparse matrix."""
    if isinstance(matrix, np.ndarray):
        return np.asarray(matrix, np.float32)
    return np.asarray(matrix.toarray(), np.float32)
