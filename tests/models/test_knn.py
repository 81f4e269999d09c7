"""ItemKNN / UserKNN: conformance, similarities and predictions by hand, ML-100K floors."""

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.knn import ItemKNN, ItemKNNConfig, UserKNN, UserKNNConfig
from recforge.registry import create_model

# 6 users × 3 items; 0 = no rating. Raters: item 0 {0,1,3,4,5}, item 1 {0,2,3,5},
# item 2 {0,1,2,3,4}; co-raters: (0,1) {0,3,5}, (0,2) {0,1,3,4}, (1,2) {0,2,3}
RATINGS = np.array([
    [5, 3, 4],
    [4, 0, 4],
    [0, 2, 5],
    [3, 4, 1],
    [1, 0, 2],
    [2, 5, 0],
], dtype=float)
N_USERS = RATINGS.shape[0]
PLAIN = dict(similarity="cosine", asymmetry=0.5, weighting="none", shrinkage=0.0)


def _frame(matrix: np.ndarray, transpose: bool = False) -> pd.DataFrame:
    users, items = np.nonzero(matrix)
    if transpose:
        users, items = items, users
    return pd.DataFrame({"user_id": users.astype(str), "item_id": items.astype(str),
                         "rating": matrix[np.nonzero(matrix)]})


DATA = Interactions.from_frame(_frame(RATINGS))
BINARY = (RATINGS > 0).astype(float)


def test_cosine_by_hand():
    model = ItemKNN(**PLAIN).fit(DATA)
    w = model.weights_.toarray()
    # items 0 and 1: 3 co-raters, 5 and 4 raters; items 0 and 2: 4 co-raters, 5 and 5
    assert w[0, 1] == pytest.approx(3 / np.sqrt(5 * 4))
    assert w[0, 2] == pytest.approx(4 / np.sqrt(5 * 5))
    assert np.all(np.diag(w) == 0)


def test_asymmetric_cosine_by_hand():
    w = ItemKNN(**{**PLAIN, "asymmetry": 0.8}).fit(DATA).weights_.toarray()
    # w[j, i] = dot / (n_j^2α · n_i^2(1−α)) with squared norms n = counts
    assert w[0, 1] == pytest.approx(3 / (5**0.8 * 4**0.2))
    assert w[1, 0] == pytest.approx(3 / (4**0.8 * 5**0.2))


def test_idf_weighting_by_hand():
    w = ItemKNN(**{**PLAIN, "weighting": "idf"}).fit(DATA).weights_.toarray()
    idf = np.log(3 / BINARY.sum(axis=1))
    cols = BINARY * idf[:, None]
    expected = cols[:, 0] @ cols[:, 2] / np.linalg.norm(cols[:, 0]) / np.linalg.norm(cols[:, 2])
    assert w[0, 2] == pytest.approx(expected, rel=1e-5)


def test_neighbors_keep_top_k_per_column_and_scores_sum_similarities():
    full = ItemKNN(**PLAIN).fit(DATA).weights_.toarray()
    model = ItemKNN(**{**PLAIN, "neighbors": 1}).fit(DATA)
    w = model.weights_.toarray()
    assert (np.count_nonzero(w, axis=0) == 1).all()
    np.testing.assert_allclose(w.max(axis=0), full.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.score(np.arange(N_USERS)), BINARY @ w, rtol=1e-6)
    np.testing.assert_array_equal(model.similar_idx(np.array([2])), w[:, [2]].T)


def test_shrinkage_and_min_support():
    plain = ItemKNN(**PLAIN).fit(DATA).weights_.toarray()
    shrunk = ItemKNN(**{**PLAIN, "shrinkage": 2.0}).fit(DATA).weights_.toarray()
    assert shrunk[0, 1] == pytest.approx(plain[0, 1] * 3 / (3 + 2))
    supported = ItemKNN(**{**PLAIN, "min_support": 4}).fit(DATA).weights_
    assert sorted(zip(*supported.nonzero(), strict=True)) == [(0, 2), (2, 0)]


def test_userknn_is_itemknn_on_the_transpose():
    settings = dict(neighbors=2, similarity="cosine", asymmetry=0.7, weighting="idf")
    user = UserKNN(**settings).fit(DATA)
    item_t = ItemKNN(**settings).fit(Interactions.from_frame(_frame(RATINGS, transpose=True)))
    np.testing.assert_allclose(user.weights_.toarray(), item_t.weights_.toarray(), rtol=1e-6)
    np.testing.assert_allclose(user.score(np.arange(N_USERS)), item_t.score(np.arange(3)).T, rtol=1e-6)


def test_pearson_over_co_raters_by_hand():
    model = ItemKNN(task="rating", similarity="pearson", shrinkage=0.0).fit(DATA)
    common = (RATINGS[:, 0] > 0) & (RATINGS[:, 2] > 0)
    expected = np.corrcoef(RATINGS[common, 0], RATINGS[common, 2])[0, 1]
    assert expected > 0
    assert model.weights_[0, 2] == pytest.approx(expected, rel=1e-5)


def test_baselines_by_hand():
    model = ItemKNN(task="rating", baseline_iterations=1, user_bias_regularization=2.0,
                    item_bias_regularization=3.0).fit(DATA)
    mu = RATINGS[RATINGS > 0].mean()
    mask = RATINGS > 0
    b_i = ((RATINGS - mu) * mask).sum(axis=0) / (3.0 + mask.sum(axis=0))
    b_u = ((RATINGS - mu - b_i) * mask).sum(axis=1) / (2.0 + mask.sum(axis=1))
    np.testing.assert_allclose(model.item_bias_, b_i, rtol=1e-5)
    np.testing.assert_allclose(model.user_bias_, b_u, rtol=1e-5)


def test_knn_baseline_prediction_by_hand():
    model = ItemKNN(task="rating", shrinkage=0.0).fit(DATA)
    mu, b_u, b_i = model.global_mean_, model.user_bias_, model.item_bias_
    w = model.weights_.toarray()
    residual = RATINGS - mu - b_u[:, None] - b_i[None, :]
    # pearson_baseline: cosine of the residuals over co-raters
    common = (RATINGS[:, 0] > 0) & (RATINGS[:, 1] > 0)
    e0, e1 = residual[common, 0], residual[common, 1]
    sim = e0 @ e1 / np.sqrt((e0 @ e0) * (e1 @ e1))
    assert w[0, 1] == pytest.approx(max(sim, 0.0), abs=1e-5)
    expected = np.empty_like(RATINGS)
    for u in range(N_USERS):
        for i in range(3):
            nbrs = [j for j in range(3) if RATINGS[u, j] > 0 and w[j, i] > 0]
            num = sum(w[j, i] * residual[u, j] for j in nbrs)
            den = sum(w[j, i] for j in nbrs)
            expected[u, i] = mu + b_u[u] + b_i[i] + (num / den if den > 0 else 0.0)
    np.testing.assert_allclose(model.score(np.arange(N_USERS)), expected, rtol=1e-5)
    users, items = np.meshgrid(np.arange(N_USERS), np.arange(3), indexing="ij")
    np.testing.assert_allclose(model.score(users.ravel(), items.ravel()), expected.ravel(),
                               rtol=1e-5)


def test_cold_prediction_uses_baselines():
    model = ItemKNN(task="rating").fit(DATA)
    pred = model.predict_idx(np.array([-1, 2]), np.array([1, -1]))
    np.testing.assert_allclose(pred, [model.global_mean_ + model.item_bias_[1],
                                      model.global_mean_ + model.user_bias_[2]], rtol=1e-6)


def test_defaults_depend_on_task_and_model():
    topn, rating = ItemKNNConfig(), ItemKNNConfig(task="rating")
    assert (topn.similarity, rating.similarity) == ("cosine", "pearson_baseline")
    assert (topn.neighbors, UserKNNConfig().neighbors, UserKNNConfig(task="rating").neighbors) == (150, 100, 400)
    assert ItemKNNConfig(neighbors=7).neighbors == 7
    assert (topn.asymmetry, ItemKNNConfig(similarity="jaccard").asymmetry) == (0.7, 0.5)
    assert rating.asymmetry == 0.5


@pytest.mark.parametrize("bad", [
    {"similarity": "pearson_baseline"},                # needs task rating
    {"similarity": "jaccard", "asymmetry": 0.7},       # asymmetry only for norm-based sims
    {"neighbors": 0},
    {"no_such_setting": 1},
])
def test_bad_configs_raise(bad):
    with pytest.raises(ConfigError):
        create_model("itemknn", **bad)
