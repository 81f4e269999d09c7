"""Metrics against values computed by hand on tiny examples."""

from math import log, log2, sqrt

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.evaluation import metrics as mx

# Four users, lists of K = 4, in rank order:
#   u0: hits at ranks 1 and 3, 3 test items
#   u1: hit at rank 2, 1 test item (fewer test items than K)
#   u2: no hit, 2 test items
#   u3: hit at rank 4, 6 test items (more test items than K)
HITS = np.array([
    [1, 0, 1, 0],
    [0, 1, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
], dtype=bool)
N_REL = np.array([3, 1, 2, 6])


def test_precision_recall_f1_hr():
    np.testing.assert_allclose(mx.precision_at_k(HITS, N_REL), [2 / 4, 1 / 4, 0, 1 / 4])
    np.testing.assert_allclose(mx.recall_at_k(HITS, N_REL), [2 / 3, 1 / 1, 0, 1 / 6])
    # F1 = 2PR / (P + R)
    f1 = [2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 2 * 0.25 * 1 / 1.25, 0.0,
          2 * 0.25 * (1 / 6) / (0.25 + 1 / 6)]
    np.testing.assert_allclose(mx.f1_at_k(HITS, N_REL), f1)
    np.testing.assert_allclose(f1, [4 / 7, 0.4, 0.0, 0.2])
    np.testing.assert_array_equal(mx.hit_rate_at_k(HITS, N_REL), [1, 1, 0, 1])


def test_ndcg_idcg_over_min_k_and_test_items():
    dcg0 = 1 / log2(2) + 1 / log2(4)
    idcg0 = 1 / log2(2) + 1 / log2(3) + 1 / log2(4)          # min(4, 3) = 3 ideal hits
    dcg1, idcg1 = 1 / log2(3), 1.0                           # min(4, 1) = 1
    dcg3 = 1 / log2(5)
    idcg3 = sum(1 / log2(r + 1) for r in range(1, 5))        # min(4, 6) = 4
    expected = [dcg0 / idcg0, dcg1 / idcg1, 0.0, dcg3 / idcg3]
    np.testing.assert_allclose(mx.ndcg_at_k(HITS, N_REL), expected)
    np.testing.assert_allclose(expected, [0.703918, 0.630930, 0.0, 0.168127], atol=1e-6)


def test_map_normalized_by_min_k_and_test_items():
    ap0 = (1 / 1 + 2 / 3) / 3   # precision at the hits (ranks 1, 3) / min(4, 3)
    ap1 = (1 / 2) / 1           # / min(4, 1)
    ap3 = (1 / 4) / 4           # / min(4, 6)
    np.testing.assert_allclose(mx.average_precision_at_k(HITS, N_REL), [ap0, ap1, 0.0, ap3])


def test_mrr():
    np.testing.assert_allclose(mx.reciprocal_rank_at_k(HITS, N_REL), [1.0, 0.5, 0.0, 0.25])


def test_metrics_at_smaller_k_use_the_list_prefix():
    at2 = mx.ranking_metrics(HITS, N_REL, 2)
    np.testing.assert_allclose(at2["precision"], [0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(at2["recall"], [1 / 3, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(at2["ndcg"], [1 / (1 + 1 / log2(3)), 1 / log2(3), 0.0, 0.0])
    np.testing.assert_allclose(at2["map"], [(1 / 1) / 2, (1 / 2) / 1, 0.0, 0.0])
    np.testing.assert_allclose(at2["mrr"], [1.0, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError):
        mx.ranking_metrics(HITS, N_REL, 5)


def test_user_without_test_items_scores_zero_not_nan():
    hits = np.zeros((1, 3), bool)
    for fn in mx.RANKING_METRICS.values():
        assert fn(hits, np.array([0]))[0] == 0.0


def test_rating_metrics():
    assert mx.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(sqrt(4 / 3))
    assert mx.mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert mx.rmse([4.0], [4.0]) == 0.0
    assert np.isnan(mx.mae([], []))


def test_classification_metrics():
    truth = np.array([1, 1, 0, 0, 1], bool)
    guess = np.array([1, 0, 0, 1, 1], bool)      # tp 2, fp 1, fn 1, tn 1
    assert mx.confusion(truth, guess) == (2, 1, 1, 1)
    assert mx.accuracy(truth, guess) == pytest.approx(3 / 5)
    assert mx.precision(truth, guess) == pytest.approx(2 / 3)
    assert mx.recall(truth, guess) == pytest.approx(2 / 3)
    assert mx.f1_score(truth, guess) == pytest.approx(2 / 3)
    assert mx.precision(truth, np.zeros(5, bool)) == 0.0


def test_auc_by_hand_with_a_tie():
    labels = np.array([1, 0, 1, 0], bool)
    scores = np.array([0.9, 0.8, 0.3, 0.3])
    # pairs (pos, neg): 0.9>0.8 1, 0.9>0.3 1, 0.3<0.8 0, 0.3=0.3 half -> 2.5 / 4
    assert mx.auc_roc(labels, scores) == pytest.approx(0.625)
    assert mx.auc_roc(labels, -scores) == pytest.approx(1 - 0.625)
    assert np.isnan(mx.auc_roc(np.ones(3, bool), [1, 2, 3]))


def test_auc_matches_pairwise_count():
    rng = np.random.default_rng(1)
    labels = rng.random(60) < 0.4
    scores = rng.integers(0, 5, 60).astype(float)   # many ties
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert mx.auc_roc(labels, scores) == pytest.approx(pairwise)


def test_user_auc_ignores_ineligible_items():
    scores = np.array([[0.9, 0.8, 5.0, 0.3, 0.3],
                       [0.1, 0.2, 0.3, 0.4, 0.5]])
    relevant = np.array([[1, 0, 0, 1, 0],
                         [0, 0, 0, 0, 0]], bool)
    eligible = np.array([[1, 1, 0, 1, 1],            # item 2 (a training item) is not ranked
                         [1, 1, 1, 1, 1]], bool)
    auc = mx.user_auc(scores, relevant, eligible)
    assert auc[0] == pytest.approx(0.625)
    assert np.isnan(auc[1])


def test_log_loss():
    expected = -(log(0.8) + log(1 - 0.3)) / 2
    assert mx.log_loss(np.array([1, 0], bool), np.array([0.8, 0.3])) == pytest.approx(expected)


ITEMS = np.array([[0, 1, -1],
                  [1, 2, 3]])


def test_coverage_and_gini():
    assert mx.catalog_coverage(ITEMS, 5) == pytest.approx(4 / 5)
    np.testing.assert_array_equal(mx.exposure(ITEMS, 5), [1, 2, 1, 1, 0])
    # sorted exposure [0, 1, 1, 1, 2]; Σ(2i − n − 1)x = -2 + 0 + 2 + 8 = 8; / (n Σx) = 8 / 25
    assert mx.gini_exposure(ITEMS, 5) == pytest.approx(8 / 25)
    assert mx.gini_exposure(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)


def test_novelty_and_average_popularity():
    pop = np.array([10, 5, 1, 0, 2])
    nov = mx.novelty(ITEMS, pop, n_users=10)
    # −log2(pop/10): item0 0, item1 1, item2 log2(10), item3 (pop clipped to 1) log2(10)
    np.testing.assert_allclose(nov, [(0 + 1) / 2, (1 + 2 * log2(10)) / 3])
    np.testing.assert_allclose(mx.average_popularity(ITEMS, pop), [7.5, 2.0])
    assert np.isnan(mx.novelty(np.array([[-1, -1]]), pop, 10)[0])


@pytest.mark.parametrize("sparse", [False, True])
def test_intra_list_diversity(sparse):
    vectors = np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 0]], float)
    if sparse:
        vectors = sp.csr_matrix(vectors)
    ild = mx.intra_list_diversity(ITEMS, vectors, max_block=3)   # small blocks on purpose
    # u0: cos(item0, item1) = 0; u1: cos(1,2) = cos(2,3) = 1/√2, cos(1,3) = 0
    np.testing.assert_allclose(ild, [1.0, 1 - (2 / sqrt(2)) / 3])
    assert np.isnan(mx.intra_list_diversity(np.array([[0, -1]]), vectors)[0])
