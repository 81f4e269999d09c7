"""Cold-user and cold-item splits."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.cold import (
    cold_item_folds,
    cold_split,
    cold_user_folds,
    cold_user_split,
    held_out_ids,
)
from recforge.errors import ConfigError
from recforge.testing.conformance import tiny_interactions


def test_cold_users_hold_out_whole_users():
    data, _ = tiny_interactions()
    train, test = cold_user_split(data, 0.25, seed=3)
    assert len(train) + len(test) == len(data)
    test_users, train_users = set(test.user_idx), set(train.user_idx)
    assert not test_users & train_users
    assert len(test_users) == 6  # 25 % of 24
    assert train.user_map == data.user_map  # same maps, like every split
    assert set(held_out_ids(train, test, "user")) == {data.user_map.ids[u] for u in test_users}
    again = cold_user_split(data, 0.25, seed=3)[1]
    np.testing.assert_array_equal(again.user_idx, test.user_idx)
    assert set(cold_user_split(data, 0.25, seed=4)[1].user_idx) != test_users


def test_cold_items_hold_out_whole_items():
    data, _ = tiny_interactions()
    train, test = cold_split(data, "cold-items", 0.2, seed=1)
    assert not set(test.item_idx) & set(train.item_idx)
    assert len(set(test.item_idx)) == 4
    compact = train.compact()
    assert compact.n_items == 16 and not set(held_out_ids(train, test, "item")) & set(compact.item_map.ids)


def test_folds_partition():
    data, _ = tiny_interactions()
    folds = cold_user_folds(data, 4, seed=0)
    held = [set(test.user_idx) for _, test in folds]
    assert sum(len(h) for h in held) == data.n_users and len(set().union(*held)) == data.n_users
    item_folds = cold_item_folds(data, 5, seed=0)
    assert sum(len(set(t.item_idx)) for _, t in item_folds) == data.n_items


def test_bad_arguments():
    data, _ = tiny_interactions()
    with pytest.raises(ConfigError):
        cold_user_split(data, 1.5)
    with pytest.raises(ConfigError):
        cold_split(data, "warm")
    with pytest.raises(ConfigError):
        cold_user_folds(data, 1)
