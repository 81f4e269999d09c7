"""Transition: the counts and smoothed scores on hand-made sequences, order, fold-in, explain."""

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.transition import Transition

# sequences a: 0 1 2, b: 1 2 0 (items 2 and 1 share a timestamp: by item, 1 comes first), c: 2
FRAME = pd.DataFrame({
    "user_id": ["a", "a", "a", "b", "b", "b", "c"],
    "item_id": ["0", "1", "2", "2", "1", "0", "2"],
    "timestamp": [1, 2, 3, 10, 10, 11, 5],
})
PRIOR = np.array([2, 2, 3]) / 7  # training counts of items 0, 1, 2 over 7 interactions


def _model(smoothing: float = 1.0) -> Transition:
    return Transition(smoothing=smoothing).fit(Interactions.from_frame(FRAME))


def test_counts_follow_the_protocol_order_and_scores_are_smoothed_by_popularity():
    model = _model()
    np.testing.assert_array_equal(model.counts_.toarray(), [[0, 1, 0], [0, 0, 2], [1, 0, 0]])
    after_2 = (np.array([1, 0, 0]) + PRIOR) / 2   # (c(2, j) + β p(j)) / (c(2) + β), β = 1
    after_0 = (np.array([0, 1, 0]) + PRIOR) / 2
    np.testing.assert_allclose(model.score(np.arange(3)), [after_2, after_0, after_2], rtol=1e-6)
    np.testing.assert_allclose(model.score_histories([[]])[0], PRIOR, rtol=1e-6)


def test_a_larger_smoothing_moves_scores_towards_popularity():
    far = _model(smoothing=1e6).score(np.array([0]))[0]
    np.testing.assert_allclose(far, PRIOR, atol=1e-5)
    assert np.argmax(_model(smoothing=1.0).score(np.array([0]))[0]) == 0  # the count wins


def test_a_history_is_read_in_order_and_only_its_last_item_counts():
    model = _model()
    one_then_two, two_then_one = model.score_histories([[0, 1], [1, 0]])
    np.testing.assert_allclose(one_then_two, model.next_item_scores(np.array([1]))[0])
    np.testing.assert_allclose(two_then_one, model.next_item_scores(np.array([0]))[0])
    assert np.argmax(one_then_two) == 2 and np.argmax(two_then_one) == 1
    np.testing.assert_array_equal(model.score_histories([[2, 0, 1]]), model.score_histories([[1]]))


def test_events_continue_a_known_users_sequence():
    model = _model()
    assert model.recommend("c", k=1)["item_id"].tolist() == ["0"]          # after 2 comes 0
    moved = model.recommend("c", k=1, events={"c": ["0"]})                  # now after 0 comes 1
    assert moved["item_id"].tolist() == ["1"]
    assert moved["score"].iloc[0] == pytest.approx((1 + PRIOR[1]) / 2)


def test_explain_names_the_last_item_and_removing_it_changes_the_score_by_its_contribution():
    model = _model()
    for user in ("a", "b", "c"):
        u = int(model.user_map_.lookup([user])[0])
        history = model.user_history(u)
        frame = model.explain(user, ["0", "1", "2"])
        assert frame["source"].tolist() == [str(history[-1])] * 3 and set(frame["kind"]) == {"item"}
        without_last = model.score_histories([history[:-1]])[0]
        np.testing.assert_allclose(frame["contribution"], model.score(np.array([u]))[0] - without_last,
                                   rtol=1e-6, atol=1e-7)
    # user a: after 2, item 0 has (1 + 2/7) / 2; without 2 the last item is 1: (0 + 2/7) / 3
    a = model.explain("a", ["0"])
    assert a["contribution"].iloc[0] == pytest.approx(9 / 14 - 2 / 21)


def test_the_smoothing_must_be_positive():
    with pytest.raises(ConfigError, match="smoothing"):
        Transition(smoothing=0.0)
