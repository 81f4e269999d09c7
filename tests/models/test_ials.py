"""ImplicitALS: conformance, solver known answers, ALS descent, ML-100K floor."""

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.models._ials_kernels import transpose
from recforge.models.ials import (
    CONFIDENCE_SHARE,
    ImplicitALS,
    _row_regularization,
    als_step,
)
from recforge.testing import tiny_interactions

FAST = dict(embedding_dim=8, epochs=5)


def _problem(seed: int = 0, n_rows: int = 30, n_cols: int = 12, d: int = 4):
    """Random sparse weights (α r on observed cells), factors Y and per-row penalties."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_cols)) < 0.3) * rng.integers(1, 6, (n_rows, n_cols))
    dense[0] = 0  # a row without interactions
    weights = sp.csr_matrix((2.0 * dense).astype(np.float32))
    Y = rng.normal(size=(n_cols, d)).astype(np.float32)
    reg = rng.uniform(0.5, 2.0, n_rows).astype(np.float32)
    return weights, Y, reg


def _normal_equations(weights: sp.csr_matrix, Y: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Each row's solution of (Yᵀ C_u Y + λ_u I) x = Yᵀ C_u p_u, one user at a time."""
    W = weights.toarray().astype(np.float64)
    Y = Y.astype(np.float64)
    out = []
    for u in range(W.shape[0]):
        C = np.diag(1.0 + W[u])
        p = (W[u] > 0).astype(float)
        out.append(np.linalg.solve(Y.T @ C @ Y + reg[u] * np.eye(Y.shape[1]), Y.T @ C @ p))
    return np.array(out)


def test_exact_step_solves_the_normal_equations():
    weights, Y, reg = _problem()
    X = als_step(weights, Y, np.zeros((30, 4), np.float32), reg, solver="exact")
    np.testing.assert_allclose(X, _normal_equations(weights, Y, reg), rtol=1e-3, atol=1e-4)


def test_cg_converges_to_the_exact_solution():
    weights, Y, reg = _problem(seed=1)
    exact = als_step(weights, Y, np.zeros((30, 4), np.float32), reg, solver="exact")
    # d CG steps solve a d-dimensional SPD system (up to rounding)
    cg = als_step(weights, Y, np.zeros((30, 4), np.float32), reg, solver="cg", cg_steps=8)
    np.testing.assert_allclose(cg, exact, rtol=1e-3, atol=1e-4)
    one = als_step(weights, Y, np.zeros((30, 4), np.float32), reg, solver="cg", cg_steps=1)
    assert np.abs(one - exact).max() > 1e-3  # one step is not yet there


def _cg_reference(weights: sp.csr_matrix, Y: np.ndarray, X: np.ndarray, reg: np.ndarray,
                  steps: int) -> np.ndarray:
    """`steps` plain CG steps per row on its dense normal equations, in float64, from X."""
    W = weights.toarray().astype(np.float64)
    Y = Y.astype(np.float64)
    out = X.astype(np.float64)
    for u in range(W.shape[0]):
        A = Y.T @ np.diag(1.0 + W[u]) @ Y + reg[u] * np.eye(Y.shape[1])
        b = Y.T @ ((1.0 + W[u]) * (W[u] > 0))
        x = out[u]
        r = b - A @ x
        p = r.copy()
        for _ in range(steps):
            rs = r @ r
            if rs < 1e-20:
                break
            Ap = A @ p
            step = rs / (p @ Ap)
            x += step * p
            r -= step * Ap
            p = r + (r @ r) / rs * p
    return out


@pytest.mark.parametrize("steps", [1, 3])
def test_cg_kernel_matches_a_dense_reference(steps):
    """The compiled kernel takes exactly CG's steps: same iterate as a float64 reference."""
    rng = np.random.default_rng(7)
    weights, Y, reg = _problem(seed=2, n_rows=60, n_cols=40, d=8)
    X = rng.normal(0.0, 0.1, (60, 8)).astype(np.float32)
    start = X.copy()
    got = als_step(weights, Y, X, reg, solver="cg", cg_steps=steps)
    np.testing.assert_allclose(got, _cg_reference(weights, Y, X, reg, steps), rtol=1e-3, atol=1e-4)
    assert np.abs(got - X).max() > 1e-2  # it moved from the warm start ...
    np.testing.assert_array_equal(X, start)  # ... which is left unchanged


@pytest.mark.parametrize("d", [8, 64])
def test_cg_kernel_does_not_depend_on_threads(d):
    """Bit for bit: rows are independent and the vector loops never fall back (see _ials_kernels.padding)."""
    weights, Y, reg = _problem(seed=3, n_rows=300, n_cols=80, d=d)
    X = np.zeros((300, d), np.float32)
    one = als_step(weights, Y, X, reg, solver="cg", threads=1)
    np.testing.assert_array_equal(one, als_step(weights, Y, X, reg, solver="cg", threads=2))
    np.testing.assert_array_equal(one, als_step(weights, Y, X, reg, solver="cg", threads=3))


def test_transpose_matches_scipy():
    weights, _, _ = _problem(seed=5, n_rows=40, n_cols=25)
    indptr, indices, values = transpose(weights.indptr, weights.indices, weights.data, 25)
    expected = weights.T.tocsr()
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    np.testing.assert_array_equal(values, expected.data)
    one = np.array([3.0], np.float32)  # one value for every cell stays one value
    assert transpose(weights.indptr, weights.indices, one, 25)[2].tolist() == [3.0]


def test_one_shared_weight_equals_per_cell_weights():
    """r = 1 everywhere: the shared-value path (implicit) and the per-cell path agree."""
    data, _ = tiny_interactions()
    ones = replace(data, ratings=np.ones(len(data), np.float32))
    shared = ImplicitALS(**FAST).fit(ones)
    per_cell = ImplicitALS(**FAST, implicit=False).fit(ones)
    np.testing.assert_allclose(shared.user_factors_, per_cell.user_factors_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shared.item_factors_, per_cell.item_factors_, rtol=1e-5, atol=1e-6)


def test_cg_and_exact_models_agree():
    data, _ = tiny_interactions()
    exact = ImplicitALS(embedding_dim=4, epochs=4, solver="exact").fit(data)
    cg = ImplicitALS(embedding_dim=4, epochs=4, solver="cg", cg_steps=8).fit(data)
    np.testing.assert_allclose(cg.score(np.arange(data.n_users)),
                               exact.score(np.arange(data.n_users)), atol=1e-3)


def _objective(model: ImplicitALS, weights: np.ndarray, lam: float, nu: float) -> float:
    """Σ c (p − xᵀy)² + Σ_u λ_u ‖x_u‖² + Σ_i λ_i ‖y_i‖², in float64."""
    X, Y = model.user_factors_.astype(float), model.item_factors_.astype(float)
    err = (weights > 0) - X @ Y.T
    reg_u = _row_regularization(sp.csr_matrix(weights), lam, nu)
    reg_i = _row_regularization(sp.csr_matrix(weights.T), lam, nu)
    return float(((1.0 + weights) * err**2).sum() + reg_u @ (X**2).sum(axis=1)
                 + reg_i @ (Y**2).sum(axis=1))


@pytest.mark.parametrize(("lam", "nu"), [(0.5, 0.0), (0.02, 1.0)])
def test_each_exact_sweep_lowers_the_objective(lam, nu):
    data, _ = tiny_interactions()
    weights = 3.0 * data.csr(binary=True).toarray()
    losses = [
        _objective(ImplicitALS(embedding_dim=3, epochs=n, alpha=3.0, regularization=lam,
                               regularization_exponent=nu, solver="exact").fit(data), weights, lam, nu)
        for n in (1, 2, 4, 8)
    ]
    assert (np.diff(losses) < 0).all(), losses


def test_frequency_scaled_regularization():
    weights = sp.csr_matrix(np.array([[0, 5.0, 0], [5.0, 5.0, 5.0]], np.float32))
    np.testing.assert_allclose(_row_regularization(weights, 2.0, 0.0), [2.0, 2.0])
    # λ · (n_cols + Σ α r): the rows' total confidence
    np.testing.assert_allclose(_row_regularization(weights, 2.0, 1.0), [2.0 * 8, 2.0 * 18])


def test_default_alpha_scales_with_density():
    data, _ = tiny_interactions()
    expected = CONFIDENCE_SHARE * data.n_users * data.n_items / len(data)
    assert ImplicitALS(**FAST).fit(data).alpha_ == pytest.approx(expected)
    assert ImplicitALS(**FAST, alpha=3.0).fit(data).alpha_ == 3.0


def test_ratings_as_confidence_change_the_model():
    data, _ = tiny_interactions()
    binary = ImplicitALS(**FAST).fit(data)
    rated = ImplicitALS(**FAST, implicit=False).fit(data)
    assert not np.allclose(binary.item_factors_, rated.item_factors_)
    assert binary.item_embeddings() is binary.item_factors_
