"""EASE: conformance, the closed form against a direct inverse, ML-100K floor."""

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.models.ease import EASE

# 4 users × 3 items; 0 = no interaction
RATINGS = np.array([
    [5, 3, 0],
    [4, 0, 1],
    [0, 2, 5],
    [3, 4, 4],
], dtype=float)


def _data() -> Interactions:
    users, items = np.nonzero(RATINGS)
    return Interactions.from_frame(pd.DataFrame({
        "user_id": users.astype(str), "item_id": items.astype(str),
        "rating": RATINGS[users, items]}))


def _closed_form(X: np.ndarray, lam: float) -> np.ndarray:
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    return np.eye(X.shape[1]) - P / np.diag(P)[None, :]


@pytest.mark.parametrize("implicit", [True, False])
def test_weights_equal_the_closed_form(implicit):
    X = (RATINGS > 0).astype(float) if implicit else RATINGS
    model = EASE(regularization=2.0, implicit=implicit).fit(_data())
    B = model.weights_
    np.testing.assert_array_equal(np.diag(B), 0.0)
    np.testing.assert_allclose(B, _closed_form(X, 2.0), rtol=1e-5, atol=1e-6)
    # stationarity of ‖X − XB‖² + λ‖B‖² off the constrained diagonal
    G = X.T @ X
    grad = (G + 2.0 * np.eye(3)) @ B - G
    np.testing.assert_allclose(grad[~np.eye(3, dtype=bool)], 0.0, atol=1e-4)
    np.testing.assert_allclose(model.score(np.arange(4)), X @ B, rtol=1e-5, atol=1e-6)


def test_pair_scores_and_similar_items_use_the_weights():
    model = EASE(regularization=1.0).fit(_data())
    users, items = np.array([0, 1, 3, 2]), np.array([2, 1, 0, 0])
    full = model.score(np.arange(4))
    np.testing.assert_allclose(model.score(users, items), full[users, items], rtol=1e-6)
    np.testing.assert_array_equal(model.similar_idx(np.array([1])), model.weights_[:, [1]].T)
