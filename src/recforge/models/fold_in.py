"""Fold-in of users known only by their items, for models with item vectors and biases.

`softmax_fold_in` solves the user vector that maximises the full-softmax likelihood of a
history under fixed item vectors: the fold-in of the factorization models (`mf`, `bpr`,
`two_tower`), whatever loss trained their item side. NumPy only, so models without torch
use it too.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["softmax_fold_in"]

#: work arrays of the batched Newton steps of `softmax_fold_in` stay under this many cells
_FOLD_IN_CELLS = 1 << 22


def softmax_fold_in(Q: np.ndarray, b: np.ndarray, histories: sp.csr_matrix, reg: float,
                    max_iter: int = 25, tol: float = 1e-6) -> np.ndarray:
    """User vectors p (B, d) maximising ``Σ_{j∈h} log softmax(b + Q p)_j − λ‖p‖²``, λ = reg·|h|.

    The full-softmax likelihood of each binary history row of `histories` (B, n) under fixed
    item vectors `Q` (n, d) and biases `b` (n,): strictly concave, so damped Newton steps
    (batched over users, backtracking on the objective) converge in a handful of iterations.
    Rows with an empty history get p = 0.
    """
    n, d = Q.shape
    out = np.zeros((histories.shape[0], d))
    block = max(1, _FOLD_IN_CELLS // max(n * d, 1))
    for start in range(0, histories.shape[0], block):
        H = histories[start:start + block]
        out[start:start + H.shape[0]] = _newton_block(Q, b, H, reg, max_iter, tol)
    return out


def _newton_block(Q: np.ndarray, b: np.ndarray, H: sp.csr_matrix, reg: float,
                  max_iter: int, tol: float) -> np.ndarray:
    """`softmax_fold_in` for one block of rows (all work arrays B × n × d at most)."""
    d = Q.shape[1]
    count = np.asarray(H.sum(axis=1), np.float64).ravel()
    lam = reg * count
    target = np.asarray(H @ Q)  # (B, d): Σ of the history's item vectors
    target_bias = np.asarray(H @ b).ravel()
    P = np.zeros((H.shape[0], d))

    def objective(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Z = P @ Q.T + b
        top = Z.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(Z - top).sum(axis=1))
        value = count * lse - (np.einsum("bd,bd->b", target, P) + target_bias) + lam * np.einsum("bd,bd->b", P, P)
        return value, np.exp(Z - lse[:, None])

    todo = count > 0
    value, W = objective(P)
    for _ in range(max_iter):
        mean_q = W @ Q
        grad = count[:, None] * mean_q - target + 2.0 * lam[:, None] * P
        todo &= np.linalg.norm(grad, axis=1) > tol * np.maximum(count, 1.0)
        if not todo.any():
            break
        rows = np.flatnonzero(todo)
        Wr, mr = W[rows], mean_q[rows]
        hess = np.matmul((Wr[:, :, None] * Q[None]).transpose(0, 2, 1), Q) - mr[:, :, None] * mr[:, None, :]
        hess = count[rows, None, None] * hess + 2.0 * lam[rows, None, None] * np.eye(d)
        step = np.zeros_like(P)
        step[rows] = np.linalg.solve(hess, grad[rows][..., None])[..., 0]
        slope = np.einsum("bd,bd->b", grad, step)
        t = np.ones(len(P))
        for _ in range(30):  # backtracking: halve each row's step until its objective drops enough
            new_value, new_W = objective(P - t[:, None] * step)
            ok = new_value <= value - 1e-4 * t * slope
            if ok.all():
                break
            t = np.where(ok, t, t / 2.0)
        P = P - t[:, None] * step
        value, W = new_value, new_W
    return P
