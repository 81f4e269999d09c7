"""Synthetic data: seeded, about the size asked, structured, with features."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.synthetic import make_synthetic
from recforge.errors import ConfigError


def test_seeded_and_identical() -> None:
    a = make_synthetic(300, 120, 4000, seed=3)
    b = make_synthetic(300, 120, 4000, seed=3)
    c = make_synthetic(300, 120, 4000, seed=4)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.item_features is not None and b.item_features is not None
    assert a.item_features.equals(b.item_features)
    assert a.user_features is not None and a.user_features.equals(b.user_features)


@pytest.mark.parametrize(("users", "items", "n"), [(50, 40, 500), (1000, 300, 20_000),
                                                   (10, 5, 50)])
def test_size_and_shape(users: int, items: int, n: int) -> None:
    inter = make_synthetic(users, items, n)
    assert abs(len(inter) - n) <= 0.02 * n
    assert (inter.n_users, inter.n_items) == (users, items)
    assert (inter.user_counts() >= 1).all()  # everyone has history when n >= users
    pairs = inter.user_idx.astype(np.int64) * items + inter.item_idx
    assert len(np.unique(pairs)) == len(inter)
    assert inter.ratings is not None and set(np.unique(inter.ratings)) <= {1, 2, 3, 4, 5}
    assert inter.timestamps is not None and inter.timestamps.dtype == np.int64


def test_popularity_is_skewed_and_ratings_spread() -> None:
    inter = make_synthetic(2000, 1000, 40_000, seed=1)
    counts = np.sort(inter.item_counts())[::-1]
    assert counts[:100].sum() > 0.3 * len(inter)  # top 10 % of items: far above 10 %
    assert inter.ratings is not None
    shares = np.bincount(inter.ratings.astype(int), minlength=6)[1:] / len(inter)
    assert shares.min() > 0.03 and shares.argmax() == 3  # 4 stars most common


def test_features() -> None:
    inter = make_synthetic(100, 60, 1000)
    items, users = inter.item_features, inter.user_features
    assert items is not None and users is not None
    assert list(items.index[:3]) == ["1", "2", "3"] and len(items) == 60
    genre_cols = [c for c in items.columns if c.startswith("genre_")]
    assert items[genre_cols].to_numpy().sum(axis=1).min() >= 1
    assert items[genre_cols].dtypes.eq(np.int8).all()
    assert items["text"].str.contains(" with ").all()
    assert items["title"].str.match(r".+ \(\d{4}\)$").all()
    assert set(users.columns) == {"age", "gender", "occupation"} and len(users) == 100
    assert make_synthetic(10, 10, 20, with_features=False).item_features is None


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        make_synthetic(0, 10, 10)
    with pytest.raises(ConfigError, match="distinct"):
        make_synthetic(3, 3, 10)
