"""Implicit alternating least squares with confidence weights (Hu, Koren & Volinsky 2008).

Y. Hu, Y. Koren, C. Volinsky, "Collaborative Filtering for Implicit Feedback Datasets",
ICDM 2008. Every user × item cell is a preference ``p_ui`` (1 if observed, else 0) with
confidence ``c_ui = 1 + α r_ui``; ALS minimizes ``Σ c_ui (p_ui − x_uᵀ y_i)² + reg`` by solving,
in turn for all users and all items, ``(YᵀY + Yᵀ(C_u − I)Y + λ_u I) x_u = Yᵀ C_u p_u``.

Two solvers, both batched over users (no Python loop per user):

- ``exact``: builds each user's d × d system with batched matrix products over blocks of users
  of similar activity and solves them with one batched `numpy.linalg.solve`.
- ``cg``: a few warm-started conjugate-gradient steps for all users at once (Takács, Pilászy &
  Tikk 2011, "Applications of the conjugate gradient method for implicit feedback
  collaborative filtering", RecSys), with ``A p`` as ``p YᵀY + ((C − I) ∘ p Yᵀ) Y`` on the
  non-zeros only.

Penalties are frequency-scaled, ``λ_u = λ w_u^ν`` with ``w_u = Σ_i c_ui`` the row's total
confidence, after Rendle, Krichene, Zhang & Koren (2022), "Revisiting the performance of iALS
on item recommendation benchmarks", RecSys; with ν = 1 (the default) λ is relative to each
row's weight, and the default α scales with the data's density, so the defaults carry over
between data sets of different sizes. ν = 0 gives the plain λ of Hu et al.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import Recommender, history_matrix

#: with ``alpha=None``, the observed cells' extra confidence Σ α r is this share of all cells
CONFIDENCE_SHARE = 0.2
#: batched work arrays (gathered factors, stacked d × d systems) stay under this many cells
_BLOCK_CELLS = 1 << 22


class IALSConfig(ModelConfig):
    """Settings of `ImplicitALS`."""

    embedding_dim: int = Field(64, ge=1)
    """d: dimension of the user and item factors."""
    regularization: float = Field(0.025, gt=0.0)
    """λ: a row's L2 penalty is λ·w^ν, w = its total confidence Σ c (n_cols + α Σ r)."""
    regularization_exponent: float = Field(1.0, ge=0.0)
    """ν: 1 scales penalties with each row's weight (Rendle et al.); 0 is plain λ (Hu et al.)."""
    alpha: float | None = Field(None, gt=0.0)
    """Confidence slope, c = 1 + α r; None: α = CONFIDENCE_SHARE · n_users · n_items / Σ r."""
    implicit: bool = True
    """True: r = 1 for every interaction; False: r = the rating value (when present)."""
    epochs: int = Field(15, ge=1)
    """ALS sweeps (each solves all users, then all items)."""
    solver: Literal["cg", "exact"] = "cg"
    """cg: warm-started conjugate gradient; exact: batched direct solves."""
    cg_steps: int = Field(3, ge=1)
    """Conjugate-gradient steps per sweep (solver cg)."""
    init_std: float = Field(0.01, gt=0.0)
    """Standard deviation of the random normal initial factors."""


class ImplicitALS(Recommender):
    """Weighted matrix factorization for implicit feedback, trained by ALS (Hu et al. 2008).

    Learned ``user_factors_`` (n_users × d) and ``item_factors_`` (n_items × d), float32, and
    the confidence slope ``alpha_`` used; ``score = user_factors_[u] @ item_factors_.T``.

    >>> from recforge.testing import tiny_interactions
    >>> model = ImplicitALS(embedding_dim=4, epochs=5).fit(tiny_interactions()[0])
    >>> model.item_embeddings().shape
    (20, 4)
    """

    name = "ials"
    config_class = IALSConfig
    config: IALSConfig

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config
        weights = self.seen_.astype(np.float32)  # C − I on the observed cells
        if not cfg.implicit and self._train_ratings is not None:
            weights.data = np.asarray(self._train_ratings, np.float32)
        self.alpha_ = _confidence_slope(weights, cfg.alpha)
        weights.data *= np.float32(self.alpha_)
        weights_t = weights.T.tocsr()
        rng = np.random.default_rng(cfg.seed)
        n_users, n_items = weights.shape
        users = rng.normal(0.0, cfg.init_std, (n_users, cfg.embedding_dim)).astype(np.float32)
        items = rng.normal(0.0, cfg.init_std, (n_items, cfg.embedding_dim)).astype(np.float32)
        reg_users = _row_regularization(weights, cfg.regularization, cfg.regularization_exponent)
        reg_items = _row_regularization(weights_t, cfg.regularization, cfg.regularization_exponent)
        for _ in range(cfg.epochs):
            users = als_step(weights, items, users, reg_users, cfg.solver, cfg.cg_steps)
            items = als_step(weights_t, users, items, reg_items, cfg.solver, cfg.cg_steps)
        self.user_factors_ = users
        self.item_factors_ = items

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        x = self.user_factors_[np.asarray(user_idx, np.int64)]
        if item_idx is None:
            return x @ self.item_factors_.T
        y = self.item_factors_[np.asarray(item_idx, np.int64)]
        return np.einsum("nd,nd->n", x, y)

    def item_embeddings(self) -> np.ndarray:
        return self.item_factors_

    def fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """(len(histories), d) user factors solved against the fixed item factors.

        The exact user step of training for a new row (what implicit's ``recalculate_user``
        does): ``(YᵀY + Yᵀ(C_u − I)Y + λ_u I) x_u = Yᵀ C_u p_u`` with c = 1 + α on the history
        items and the same frequency-scaled penalty λ_u as in training.
        """
        weights = history_matrix(histories, self.n_items)
        weights.data *= np.float32(self.alpha_)
        reg = _row_regularization(weights, self.config.regularization, self.config.regularization_exponent)
        Y = self.item_factors_
        return _solve_exact(weights, Y, Y.T @ Y, reg)

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.fold_in(histories) @ self.item_factors_.T

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "alpha": np.array(self.alpha_, np.float64)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state["user_factors"]
        self.item_factors_ = state["item_factors"]
        self.alpha_ = float(state["alpha"])


# ---------------------------------------------------------------------- solvers
def als_step(
    weights: sp.csr_matrix, Y: np.ndarray, X: np.ndarray, reg: np.ndarray,
    solver: str = "cg", cg_steps: int = 3,
) -> np.ndarray:
    """New row factors X (n_rows × d) given the other side's factors Y (n_cols × d).

    `weights` holds ``c − 1 = α r`` on the observed cells of the n_rows × n_cols matrix, and
    `reg` the per-row penalties λ_u; `X` is the warm start of the CG solver.
    """
    gram = Y.T @ Y
    if solver == "exact":
        return _solve_exact(weights, Y, gram, reg)
    out = np.empty_like(X)
    for rows in _row_blocks(weights, Y.shape[1], exact=False):
        out[rows] = _solve_cg(weights[rows], Y, gram, X[rows], reg[rows], cg_steps)
    return out


def _solve_exact(weights: sp.csr_matrix, Y: np.ndarray, gram: np.ndarray,
                 reg: np.ndarray) -> np.ndarray:
    """Batched direct solves over blocks of rows with similar counts (little padding)."""
    n, d = weights.shape[0], Y.shape[1]
    out = np.zeros((n, d), np.float32)
    for rows in _row_blocks(weights, d, exact=True):
        block = weights[rows]
        counts = np.diff(block.indptr)
        width = max(int(counts.max()), 1)
        # padded (rows × width) item indices and weights; padding has weight and mask 0
        slot = np.arange(block.nnz) - np.repeat(block.indptr[:-1], counts)
        owner = np.repeat(np.arange(len(rows)), counts)
        idx = np.zeros((len(rows), width), np.int64)
        wts = np.zeros((len(rows), width), np.float32)
        mask = np.zeros((len(rows), width), np.float32)
        idx[owner, slot] = block.indices
        wts[owner, slot] = block.data
        mask[owner, slot] = 1.0
        Yg = Y[idx]  # rows × width × d
        A = np.matmul((Yg * wts[..., None]).transpose(0, 2, 1), Yg)
        A += gram
        A[:, np.arange(d), np.arange(d)] += reg[rows, None]
        b = np.einsum("bwd,bw->bd", Yg, mask + wts)
        out[rows] = np.linalg.solve(A, b[..., None])[..., 0]
    return out


def _solve_cg(weights: sp.csr_matrix, Y: np.ndarray, gram: np.ndarray, X: np.ndarray,
              reg: np.ndarray, steps: int) -> np.ndarray:
    """`steps` conjugate-gradient steps on all rows' systems at once, from the start X."""
    rows = np.repeat(np.arange(weights.shape[0]), np.diff(weights.indptr))
    Yn = Y[weights.indices]  # nnz × d: the item factor of each observed cell

    def matvec(P: np.ndarray) -> np.ndarray:
        t = np.einsum("nd,nd->n", P[rows], Yn) * weights.data
        sparse_part = sp.csr_matrix((t, weights.indices, weights.indptr), shape=weights.shape) @ Y
        return P @ gram + sparse_part + reg[:, None] * P

    confidence = sp.csr_matrix((weights.data + 1.0, weights.indices, weights.indptr),
                               shape=weights.shape)
    X = X.copy()
    r = confidence @ Y - matvec(X)
    p = r.copy()
    rs = np.einsum("nd,nd->n", r, r)
    for _ in range(steps):
        Ap = matvec(p)
        pAp = np.einsum("nd,nd->n", p, Ap)
        step = np.divide(rs, pAp, out=np.zeros_like(rs), where=pAp > 0)
        X += step[:, None] * p
        r -= step[:, None] * Ap
        rs_new = np.einsum("nd,nd->n", r, r)
        beta = np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 0)
        p = r + beta[:, None] * p
        rs = rs_new
    return X


def _confidence_slope(values: sp.csr_matrix, alpha: float | None) -> float:
    """α as configured, or (None) CONFIDENCE_SHARE · n_rows · n_cols / Σ r of `values`."""
    if alpha is not None:
        return alpha
    n_rows, n_cols = values.shape
    return CONFIDENCE_SHARE * n_rows * n_cols / max(float(values.sum()), 1e-12)


def _row_regularization(weights: sp.csr_matrix, reg: float, exponent: float) -> np.ndarray:
    """λ_u = λ w_u^ν with w_u = Σ_i c_ui = n_cols + Σ_i α r_ui, the row's total confidence."""
    total = weights.shape[1] + np.asarray(weights.sum(axis=1), np.float64).ravel()
    return (reg * total**exponent).astype(np.float32)


def _row_blocks(weights: sp.csr_matrix, d: int, exact: bool) -> Iterator[np.ndarray]:
    """Blocks of row indices whose batched work arrays stay within `_BLOCK_CELLS`.

    Exact: rows sorted by count (little padding), rows × (max count + d) × d cells. CG:
    contiguous rows, (their non-zeros + rows) × d cells.
    """
    counts = np.diff(weights.indptr)
    order = np.argsort(counts, kind="stable") if exact else np.arange(len(counts))
    start, n = 0, len(order)
    while start < n:
        size = n - start
        while size > 1:
            block = counts[order[start:start + size]]
            cells = size * (block.max() + d) * d if exact else (block.sum() + size) * d
            if cells <= _BLOCK_CELLS:
                break
            size = (size + 1) // 2
        yield order[start:start + size]
        start += size
