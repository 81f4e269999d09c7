"""Small dense/sparse matrix helpers shared by models and metrics."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["dense", "unit_rows"]


def unit_rows(matrix: np.ndarray | sp.spmatrix, dtype: type = np.float32) -> np.ndarray | sp.csr_matrix:
    """Rows scaled to unit L2 norm (zero rows stay zero), as `dtype`; sparse in, sparse out.

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    if sp.issparse(matrix):
        m = sp.csr_matrix(matrix, dtype=dtype)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=dtype)
    m = np.asarray(matrix, dtype)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return m / norms


def dense(matrix: np.ndarray | sp.spmatrix) -> np.ndarray:
    """A float32 ndarray of a dense or sparse matrix."""
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, np.float32)
