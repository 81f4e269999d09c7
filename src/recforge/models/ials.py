"""Implicit alternating least squares with confidence weights (Hu, Koren & Volinsky 2008).

Y. Hu, Y. Koren, C. Volinsky, "Collaborative Filtering for Implicit Feedback Datasets",
ICDM 2008. Every user × item cell is a preference ``p_ui`` (1 if observed, else 0) with
confidence ``c_ui = 1 + α r_ui``; ALS minimizes ``Σ c_ui (p_ui − x_uᵀ y_i)² + reg`` by solving,
in turn for all users and all items, ``(YᵀY + Yᵀ(C_u − I)Y + λ_u I) x_u = Yᵀ C_u p_u``.

Two solvers, neither with a Python loop per user:

- ``cg`` (default): a few warm-started conjugate-gradient steps per user (Takács, Pilászy &
  Tikk 2011, "Applications of the conjugate gradient method for implicit feedback
  collaborative filtering", RecSys), with ``A p = YᵀY p + λ_u p + Σ_i (c_ui − 1)(y_iᵀp) y_i``
  over the user's non-zeros only, never forming A. A numba kernel (`_ials_kernels`, imported
  on the first fit) runs it user by user over threads (each user's d-vectors stay in cache,
  float32 throughout, factors updated in place), the scheme of `implicit`'s CPU solver; rows
  are split into chunks of equal work.
- ``exact``: builds each user's d × d system with batched matrix products over blocks of users
  of similar activity and solves them with one batched `numpy.linalg.solve`.

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
#: batched work arrays of the exact solver (gathered factors, d × d systems) stay under this many cells
_BLOCK_CELLS = 1 << 22
#: the CG kernel splits rows into about this many chunks of equal work per thread
_CHUNKS_PER_THREAD = 16


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
    threads: int | None = Field(None, ge=1)
    """Threads of the CG sweeps; None: numba's default (all cores). The result does not depend on it."""


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
    parallelism = ("alternating least squares: a compiled kernel solves every user's (then item's) system "
                   "by conjugate gradient on the CPU's threads")
    config: IALSConfig

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        from recforge.models import _ials_kernels as kernels

        cfg = self.config
        seen = self.seen_
        n_users, n_items = seen.shape
        ratings = None
        if not cfg.implicit and self._train_ratings is not None:
            ratings = np.asarray(self._train_ratings, np.float32)
        total = float(seen.nnz) if ratings is None else float(ratings.sum(dtype=np.float64))
        self.alpha_ = _confidence_slope(seen.shape, total, cfg.alpha)
        # c − 1 = α r on the observed cells: a single value when every r is 1 (no nnz array);
        # the user side shares seen_'s index arrays, the item side is their transpose
        values = (np.full(1, self.alpha_, np.float32) if ratings is None
                  else ratings * np.float32(self.alpha_))
        by_user = (seen.indptr, seen.indices, values)
        by_item = kernels.transpose(seen.indptr, seen.indices, values, n_items)
        lam, nu = cfg.regularization, cfg.regularization_exponent
        reg_users = _penalties(kernels.row_sums(by_user[0], by_user[2]), n_items, lam, nu)
        reg_items = _penalties(kernels.row_sums(by_item[0], by_item[2]), n_users, lam, nu)
        rng = np.random.default_rng(cfg.seed)
        users = _normal_float32(rng, cfg.init_std, (n_users, cfg.embedding_dim))
        items = _normal_float32(rng, cfg.init_std, (n_items, cfg.embedding_dim))
        if cfg.solver == "exact":
            weights, weights_t = _csr(by_user, n_items), _csr(by_item, n_users)
            for _ in range(cfg.epochs):
                users = _solve_exact(weights, items, items.T @ items, reg_users)
                items = _solve_exact(weights_t, users, users.T @ users, reg_items)
        else:
            with kernels.numba_threads(cfg.threads) as threads:
                user_chunks = _chunks(by_user[0], cfg.embedding_dim, threads)
                item_chunks = _chunks(by_item[0], cfg.embedding_dim, threads)
                for _ in range(cfg.epochs):
                    kernels.cg_sweep(*by_user, items, kernels.gram(items), users, reg_users,
                                     cfg.cg_steps, user_chunks)
                    kernels.cg_sweep(*by_item, users, kernels.gram(users), items, reg_items,
                                     cfg.cg_steps, item_chunks)
        self.user_factors_ = users
        self.item_factors_ = items

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        x = self.user_factors_[np.asarray(user_idx, np.int64)]
        if item_idx is None:
            return x @ self.item_factors_.T
        y = self.item_factors_[np.asarray(item_idx, np.int64)]
        return np.einsum("nd,nd->n", x, y)

    def score_factors(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user factors, item factors): all-user ranking multiplies them piece by piece itself."""
        return self.user_factors_[np.asarray(user_idx, np.int64)], self.item_factors_

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


def _normal_float32(rng: np.random.Generator, std: float, shape: tuple[int, int]) -> np.ndarray:
    """``rng.normal(0, std, shape).astype(float32)`` drawn in row blocks: the same numbers
    without the full float64 temporary (70 MB for 138k users × 64)."""
    out = np.empty(shape, np.float32)
    step = max(1, (1 << 16) // max(shape[1], 1))
    for start in range(0, shape[0], step):
        rows = out[start:start + step]
        rows[:] = rng.normal(0.0, std, rows.shape)
    return out


# ---------------------------------------------------------------------- solvers
def als_step(
    weights: sp.csr_matrix, Y: np.ndarray, X: np.ndarray, reg: np.ndarray,
    solver: str = "cg", cg_steps: int = 3, threads: int | None = None,
) -> np.ndarray:
    """New row factors X (n_rows × d) given the other side's factors Y (n_cols × d).

    `weights` holds ``c − 1 = α r`` on the observed cells of the n_rows × n_cols matrix, and
    `reg` the per-row penalties λ_u; `X` is the warm start of the CG solver (left unchanged).
    """
    from recforge.models import _ials_kernels as kernels

    Y = np.ascontiguousarray(Y, np.float32)
    gram = Y.T @ Y
    if solver == "exact":
        return _solve_exact(weights, Y, gram, reg)
    weights = sp.csr_matrix(weights, dtype=np.float32)
    out = np.array(X, np.float32, order="C")
    with kernels.numba_threads(threads) as n_threads:
        kernels.cg_sweep(weights.indptr, weights.indices, weights.data, Y, gram, out,
                         np.asarray(reg, np.float32), cg_steps, _chunks(weights.indptr, Y.shape[1], n_threads))
    return out


def _chunks(indptr: np.ndarray, d: int, threads: int) -> np.ndarray:
    """Row boundaries (int64) cutting the rows into chunks of about equal CG work.

    A row costs about d (its YᵀY product) + 2 per non-zero (a dot and an axpy), in d-vectors.
    """
    n = len(indptr) - 1
    cost = np.cumsum(2 * np.diff(indptr).astype(np.int64) + d)
    n_chunks = max(1, min(n, threads * _CHUNKS_PER_THREAD))
    cuts = np.searchsorted(cost, np.linspace(0, cost[-1] if n else 0, n_chunks + 1)[1:-1])
    return np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)


def _csr(rows: tuple[np.ndarray, np.ndarray, np.ndarray], n_cols: int) -> sp.csr_matrix:
    """A float32 CSR matrix of (indptr, indices, values), values broadcast when of length 1."""
    indptr, indices, values = rows
    data = np.broadcast_to(values, indices.shape).astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, n_cols))


def _solve_exact(weights: sp.csr_matrix, Y: np.ndarray, gram: np.ndarray,
                 reg: np.ndarray) -> np.ndarray:
    """Batched direct solves over blocks of rows with similar counts (little padding)."""
    n, d = weights.shape[0], Y.shape[1]
    out = np.zeros((n, d), np.float32)
    for rows in _row_blocks(weights, d):
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


def _confidence_slope(shape: tuple[int, int], total: float, alpha: float | None) -> float:
    """α as configured, or (None) CONFIDENCE_SHARE · n_rows · n_cols / Σ r (`total`)."""
    if alpha is not None:
        return alpha
    n_rows, n_cols = shape
    return CONFIDENCE_SHARE * n_rows * n_cols / max(total, 1e-12)


def _row_regularization(weights: sp.csr_matrix, reg: float, exponent: float) -> np.ndarray:
    """λ_u = λ w_u^ν with w_u = Σ_i c_ui = n_cols + Σ_i α r_ui, the row's total confidence."""
    return _penalties(np.asarray(weights.sum(axis=1), np.float64).ravel(), weights.shape[1], reg, exponent)


def _penalties(row_sums: np.ndarray, n_cols: int, reg: float, exponent: float) -> np.ndarray:
    """λ (n_cols + Σ_i α r_ui)^ν per row, from the rows' sums Σ_i α r_ui; float32."""
    return (reg * (n_cols + row_sums) ** exponent).astype(np.float32)


def _row_blocks(weights: sp.csr_matrix, d: int) -> Iterator[np.ndarray]:
    """Blocks of row indices, sorted by count (little padding), of the exact solver.

    A block's batched work arrays, rows × (max count + d) × d cells, stay within `_BLOCK_CELLS`.
    """
    counts = np.diff(weights.indptr)
    order = np.argsort(counts, kind="stable")
    start, n = 0, len(order)
    while start < n:
        size = n - start
        while size > 1:
            block = counts[order[start:start + size]]
            cells = size * (block.max() + d) * d
            if cells <= _BLOCK_CELLS:
                break
            size = (size + 1) // 2
        yield order[start:start + size]
        start += size
