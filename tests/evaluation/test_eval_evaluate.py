"""Evaluation through the model API: protocol details, the seen-item check, shared code path."""

from math import log2

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.errors import DataError, RecforgeError
from recforge.evaluation.evaluate import (
    SeenItemError,
    check_no_seen,
    evaluate_lists,
    evaluate_rating,
    evaluate_sampled,
    evaluate_topn,
    lookup_cells,
    sample_negatives,
)
from recforge.models.popularity import Popularity
from recforge.registry import create_model
from recforge.testing import tiny_interactions

# Item popularity in TRAIN: i1 3 users, i2 2, i3 2, i4 1, i5 1 -> popularity order i1 i2 i3 i4 i5
TRAIN = pd.DataFrame({
    "user_id": ["a", "a", "b", "b", "c", "c", "d", "d", "e"],
    "item_id": ["i1", "i2", "i1", "i3", "i1", "i4", "i2", "i3", "i5"],
    "rating": [5, 4, 3, 5, 2, 4, 5, 1, 3],
})
TEST = pd.DataFrame({
    "user_id": ["a", "a", "b", "c", "c", "c", "zz"],   # zz is not a training user
    "item_id": ["i3", "i9", "i5", "i2", "i3", "i5", "i1"],   # i9 is not a training item
    "rating": [4, 5, 2, 4, 3, 5, 4],
})


@pytest.fixture(scope="module")
def pop_model():
    return create_model("popularity").fit(Interactions.from_frame(TRAIN))


def test_topn_by_hand(pop_model):
    res = evaluate_topn(pop_model, TEST, ks=(2,))
    # lists (popularity order minus own training items), top 2:
    #   a (has i1 i2): i3 i4 -> test {i3, i9}: hit at 1
    #   b (has i1 i3): i2 i4 -> test {i5}: no hit
    #   c (has i1 i4): i2 i3 -> test {i2, i3, i5}: hits at 1, 2
    #   zz unknown user: no list, zero hits
    assert list(res.user_ids) == ["a", "b", "c", "zz"]
    assert res.users == 4 and res.info["unknown_users"] == 1
    assert res.info["unknown_test_items"] == 1              # i9 stays in a's denominator
    np.testing.assert_allclose(res.per_user["recall@2"], [1 / 2, 0, 2 / 3, 0])
    np.testing.assert_allclose(res.per_user["precision@2"], [1 / 2, 0, 1, 0])
    np.testing.assert_allclose(res.per_user["ndcg@2"], [1 / (1 + 1 / log2(3)), 0, 1, 0])
    np.testing.assert_allclose(res.per_user["mrr@2"], [1, 0, 1, 0])
    assert res.metrics["recall@2"] == pytest.approx((1 / 2 + 2 / 3) / 4)
    assert res.metrics["hr@2"] == pytest.approx(2 / 4)
    assert res.metrics["coverage@2"] == pytest.approx(3 / 5)   # i2 i3 i4 of 5 training items
    assert set(res.metrics) >= {"ndcg@2", "map@2", "f1@2", "novelty@2", "diversity@2",
                                "popularity@2", "gini@2"}
    assert res.to_dict()["metrics"]["ndcg@2"] == pytest.approx(res.metrics["ndcg@2"])


def test_topn_matches_reference_metrics_for_all_k():
    data, held = tiny_interactions()
    model = create_model("popularity").fit(data)
    test = pd.DataFrame({"user_id": data.user_map.ids, "item_id": data.item_map.ids[held]})
    res = evaluate_topn(model, test, ks=(1, 5, 10), batch_size=7, depth=12)
    assert res.hits.shape == (24, 12)
    for k in (1, 5, 10):
        assert res.metrics[f"recall@{k}"] == pytest.approx(res.curve("recall", 12)[k - 1])
        assert res.metrics[f"ndcg@{k}"] == pytest.approx(res.curve("ndcg", 12)[k - 1])


def test_evaluate_lists_agrees_with_evaluate_topn():
    data, held = tiny_interactions()
    train_frame = data.to_frame()
    # a test set with several items per user, some users with fewer than K
    rng = np.random.default_rng(0)
    rows = [(u, data.item_map.ids[i]) for u, h in zip(data.user_map.ids, held, strict=True)
            for i in {h, *rng.integers(0, data.n_items, rng.integers(0, 3))}]
    test = pd.DataFrame(rows, columns=["user_id", "item_id"])
    test = test.merge(train_frame[["user_id", "item_id"]], how="left", indicator=True)
    test = test[test["_merge"] == "left_only"].drop(columns="_merge")
    model = create_model("popularity").fit(Interactions.from_frame(train_frame))
    direct = evaluate_topn(model, test, ks=(3, 8))
    recs = model.recommend(model.user_map_.ids, k=8)
    from_lists = evaluate_lists(recs, train_frame, test, ks=(3, 8))
    assert direct.metrics.keys() == from_lists.metrics.keys()
    for name, value in direct.metrics.items():
        assert from_lists.metrics[name] == pytest.approx(value, nan_ok=True), name
    for name, values in direct.per_user.items():
        np.testing.assert_allclose(from_lists.per_user[name], values, err_msg=name)
    # lists without a rank column: file order is the rank
    unranked = recs.drop(columns=["rank", "score"])
    again = evaluate_lists(unranked, Interactions.from_frame(train_frame), test, ks=(3, 8))
    assert again.metrics["ndcg@8"] == pytest.approx(direct.metrics["ndcg@8"])


def test_check_no_seen_is_a_pure_function():
    seen = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 0]], np.float32))
    check_no_seen(np.array([[1, 3, -1], [0, 2, 1]]), seen)          # fine
    with pytest.raises(SeenItemError, match=r"user u0, item i2 at rank 2"):
        check_no_seen(np.array([[1, 2, -1], [0, 2, 1]]), seen, ["u0", "u1"],
                      ["i0", "i1", "i2", "i3"])
    np.testing.assert_array_equal(lookup_cells(seen, np.array([[2, 0, -1], [3, 1, 0]])),
                                  [[True, True, False], [False, False, False]])


class LeakyPopularity(Popularity):
    """A buggy model whose lists include the user's training items."""

    def recommend_idx(self, user_idx, k=10, exclude_seen=True, candidates=None):
        return super().recommend_idx(user_idx, k, exclude_seen=False, candidates=candidates)


def test_evaluator_refuses_lists_with_training_items():
    model = LeakyPopularity().fit(Interactions.from_frame(TRAIN))
    with pytest.raises(RecforgeError, match="training items of their user"):
        evaluate_topn(model, TEST, ks=(2,))
    recs = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i3", "i1"], "rank": [1, 2]})
    with pytest.raises(SeenItemError, match="user a, item i1 at rank 2"):
        evaluate_lists(recs, TRAIN, TEST, ks=(2,))


def test_evaluate_lists_rejects_malformed_lists():
    dup = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i3", "i3"], "rank": [1, 2]})
    with pytest.raises(DataError, match="twice"):
        evaluate_lists(dup, TRAIN, TEST, ks=(2,))
    outside = pd.DataFrame({"user_id": ["a"], "item_id": ["i9"], "rank": [1]})
    with pytest.raises(DataError, match="not training items"):
        evaluate_lists(outside, TRAIN, TEST, ks=(2,))
    same_rank = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i3", "i4"], "rank": [1, 1]})
    with pytest.raises(DataError, match="two items at rank 1"):
        evaluate_lists(same_rank, TRAIN, TEST, ks=(2,))


def test_evaluate_rating_known_values():
    model = create_model("popularity", task="rating", damping=0.0).fit(Interactions.from_frame(TRAIN))
    res = evaluate_rating(model, TEST)
    # damping 0: prediction = the item's mean training rating; unknown user/item -> fallback
    item_mean = TRAIN.groupby("item_id")["rating"].mean()
    mean = TRAIN["rating"].mean()
    pred = np.array([item_mean.get(i, mean) for i in TEST["item_id"]])
    err = pred - TEST["rating"].to_numpy()
    assert res.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-6)
    assert res.metrics["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-6)
    liked, guess = TEST["rating"].to_numpy() >= 4, pred >= 4
    assert res.metrics["accuracy"] == pytest.approx(np.mean(liked == guess))
    assert "log_loss" not in res.metrics                 # ratings are not probabilities
    assert res.info["unknown_pairs"] == 2                # zz and i9
    assert res.per_user["rmse"].shape == (4,)
    assert res.task == "rating"


def test_sampled_protocol_is_labelled_and_seeded():
    data, held = tiny_interactions()
    model = create_model("popularity").fit(data)
    test = pd.DataFrame({"user_id": data.user_map.ids, "item_id": data.item_map.ids[held]})
    a = evaluate_sampled(model, test, ks=(1, 5), n_negatives=5, seed=3)
    b = evaluate_sampled(model, test, ks=(1, 5), n_negatives=5, seed=3)
    assert a.task == "sampled"
    assert set(a.metrics) == {f"sampled_{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (1, 5)}
    assert a.metrics == b.metrics
    assert 0 <= a.metrics["sampled_hr@1"] <= a.metrics["sampled_hr@5"] <= 1


def test_sample_negatives_avoid_forbidden_items_and_repeat_none():
    forbidden = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]], np.float32))
    neg = sample_negatives(forbidden, np.array([0, 1, 1]), 3, seed=0)
    assert set(neg[0]) <= {2, 3, 4, 5}
    assert set(neg[1]) == {0, 1, 2} and set(neg[2]) == {0, 1, 2}
    assert all(len(set(row)) == 3 for row in neg)
    with pytest.raises(DataError, match="fewer than n_negatives"):
        sample_negatives(forbidden, np.array([1]), 4)
