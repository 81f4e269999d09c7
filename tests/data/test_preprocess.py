"""Filters: implicit threshold, k-core, time window; results are compacted by default."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.preprocess import implicit_threshold, kcore, time_window, to_epoch_seconds
from recforge.data.synthetic import make_synthetic
from recforge.errors import DataError


def _tiny() -> Interactions:
    frame = pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "b", "c"],
        "item_id": ["x", "y", "z", "x", "y", "z"],
        "rating": [5, 2, 4, 4, 1, 3],
        "timestamp": [10, 20, 30, 40, 50, 60],
    })
    return Interactions.from_frame(frame)


def test_implicit_threshold() -> None:
    out = implicit_threshold(_tiny(), 4)
    assert out.ratings is None
    assert sorted(zip(out.to_frame().user_id, out.to_frame().item_id, strict=True)) == [
        ("a", "x"), ("a", "z"), ("b", "x")]
    assert list(out.user_map.ids) == ["a", "b"] and list(out.item_map.ids) == ["x", "z"]
    kept = implicit_threshold(_tiny(), 4, compact=False)
    assert kept.n_users == 3 and len(kept) == 3


def test_kcore_known_answer() -> None:
    out = kcore(_tiny(), user_k=2, item_k=2)
    # c has one row and goes; then z has only a's row and goes; a keeps x, y.
    assert sorted(out.user_map.ids) == ["a", "b"] and sorted(out.item_map.ids) == ["x", "y"]
    assert len(out) == 4


def test_kcore_property_on_synthetic() -> None:
    inter = make_synthetic(500, 300, 5000, seed=2)
    out = kcore(inter, user_k=5, item_k=8)
    assert 0 < len(out) < len(inter)
    assert out.user_counts().min() >= 5 and out.item_counts().min() >= 8
    again = kcore(out, user_k=5, item_k=8)
    assert again.fingerprint() == out.fingerprint()  # a core is a fixed point


def test_time_window() -> None:
    out = time_window(_tiny(), start=20, end=50)
    assert out.timestamps is not None and out.timestamps.tolist() == [20, 30, 40]
    assert sorted(out.user_map.ids) == ["a", "b"]
    assert len(time_window(_tiny(), end="1970-01-01T00:00:31")) == 3
    assert to_epoch_seconds("1998-01-01") == 883612800


def test_requirements() -> None:
    implicit = implicit_threshold(_tiny(), 1)
    with pytest.raises(DataError, match="ratings"):
        implicit_threshold(implicit, 3)
    no_time = Interactions.from_frame(pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}))
    with pytest.raises(DataError, match="timestamps"):
        time_window(no_time, start=0)
    with pytest.raises(DataError, match="date"):
        to_epoch_seconds("yesterday")


def test_compaction_keeps_alignment() -> None:
    inter = make_synthetic(200, 100, 2000, seed=5)
    out = kcore(inter, 3, 3)
    original = set(zip(inter.to_frame().user_id, inter.to_frame().item_id, strict=True))
    assert set(zip(out.to_frame().user_id, out.to_frame().item_id, strict=True)) <= original
    assert np.array_equal(np.sort(out.user_map.ids.astype(int)), out.user_map.ids.astype(int))
