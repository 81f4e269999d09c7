"""Splits: disjoint, complete, seeded, per-user guarantees, time order; files; ML-100K folds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.splitting import (
    carve_validation,
    leave_last_out,
    movielens_folds,
    random_split,
    split,
    temporal_split,
    user_ratio_split,
    write_split,
)
from recforge.data.synthetic import make_synthetic
from recforge.errors import ConfigError, DataError

Splitter = Callable[[Interactions], tuple[Interactions, Interactions]]
SPLITTERS: dict[str, Splitter] = {
    "random": lambda d: random_split(d, 0.2, seed=1),
    "user-ratio": lambda d: user_ratio_split(d, 0.2, seed=1),
    "temporal": lambda d: temporal_split(d, 0.2),
    "leave-last": lambda d: leave_last_out(d, n=2),
}


@pytest.fixture(scope="module")
def data() -> Interactions:
    return make_synthetic(400, 200, 6000, seed=7)


def _keys(inter: Interactions) -> np.ndarray:
    return inter.user_idx.astype(np.int64) * inter.n_items + inter.item_idx


@pytest.mark.parametrize("name", list(SPLITTERS))
def test_disjoint_and_complete(data: Interactions, name: str) -> None:
    train, test = SPLITTERS[name](data)
    assert train.user_map is data.user_map and test.item_map is data.item_map
    assert len(np.intersect1d(_keys(train), _keys(test))) == 0
    assert np.array_equal(np.sort(np.concatenate([_keys(train), _keys(test)])),
                          np.sort(_keys(data)))
    assert 0 < len(test) < len(data)


@pytest.mark.parametrize("name", list(SPLITTERS))
def test_deterministic(data: Interactions, name: str) -> None:
    a, b = SPLITTERS[name](data), SPLITTERS[name](data)
    assert a[1].fingerprint() == b[1].fingerprint()


def test_seed_changes_random_splits(data: Interactions) -> None:
    assert (random_split(data, 0.2, seed=1)[1].fingerprint()
            != random_split(data, 0.2, seed=2)[1].fingerprint())
    assert (user_ratio_split(data, 0.2, seed=1)[1].fingerprint()
            != user_ratio_split(data, 0.2, seed=2)[1].fingerprint())


def test_random_split_size(data: Interactions) -> None:
    assert len(random_split(data, 0.25)[1]) == round(0.25 * len(data))


def test_user_ratio_per_user(data: Interactions) -> None:
    train, test = user_ratio_split(data, 0.2, seed=0)
    counts, n_test, n_train = data.user_counts(), test.user_counts(), train.user_counts()
    assert (n_train >= 1).all()
    many = counts >= 2
    assert (n_test[many] == np.minimum(np.maximum(1, np.rint(0.2 * counts[many])),
                                       counts[many] - 1)).all()
    assert (n_test[~many] == 0).all()


def test_user_ratio_tiny() -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "c", "c", "c", "c", "c"],
                          "item_id": ["1", "2", "1", "1", "2", "3", "4", "5"]})
    train, test = user_ratio_split(Interactions.from_frame(frame), 0.2, seed=0)
    assert test.user_counts().tolist() == [1, 0, 1]  # a: 1 of 2, b: none of 1, c: 1 of 5
    assert train.user_counts().tolist() == [1, 1, 4]


def test_temporal_cut(data: Interactions) -> None:
    train, test = temporal_split(data, 0.2)
    assert train.timestamps is not None and test.timestamps is not None
    assert train.timestamps.max() < test.timestamps.min()
    assert abs(len(test) - 0.2 * len(data)) <= 2


def test_leave_last_out_takes_latest(data: Interactions) -> None:
    train, test = leave_last_out(data, n=1)
    assert train.timestamps is not None and test.timestamps is not None
    last_train = np.full(data.n_users, -1, np.int64)
    np.maximum.at(last_train, train.user_idx, train.timestamps)
    assert (test.timestamps >= last_train[test.user_idx]).all()
    counts = data.user_counts()
    assert np.array_equal(test.user_counts(), (counts > 1).astype(int))


def test_carve_validation_is_user_ratio(data: Interactions) -> None:
    fit, val = carve_validation(data, 0.1, seed=3)
    assert val.fingerprint() == user_ratio_split(data, 0.1, seed=3)[1].fingerprint()
    assert (fit.user_counts() >= 1).all()


def test_bad_arguments(data: Interactions) -> None:
    with pytest.raises(ConfigError):
        random_split(data, 1.5)
    with pytest.raises(ConfigError, match="unknown split method"):
        split(data, "shuffle")
    no_time = Interactions.from_frame(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
    with pytest.raises(DataError, match="timestamps"):
        temporal_split(no_time, 0.5)


def test_write_split(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": ["1", "1", "2"], "item_id": ["5", "6", "5"],
                          "rating": [4.0, 3.0, 5.0], "timestamp": [10, 20, 30]})
    inter = Interactions.from_frame(frame)
    train, test = inter.subset(np.array([0, 2])), inter.subset(np.array([1]))
    paths = write_split(train, test, tmp_path / "out")
    assert paths[0].read_text() == "user_id\titem_id\trating\ttimestamp\n1\t5\t4\t10\n2\t5\t5\t30\n"
    assert paths[1].read_text() == "user_id\titem_id\trating\ttimestamp\n1\t6\t3\t20\n"
    half = Interactions.from_frame(frame.assign(rating=[4.5, 3.0, 5.0]))
    write_split(half, half, tmp_path / "half")
    assert "1\t5\t4.5\t10" in (tmp_path / "half" / "train.tsv").read_text()


def test_movielens_folds_byte_identical(ml100k_dir: Path, bench_dir: Path,
                                        tmp_path: Path) -> None:
    written = movielens_folds(ml100k_dir, tmp_path)
    assert [p.name for p in written] == [f"u{k}.{s}" for k in range(1, 6) for s in ("base", "test")]
    for path in written:
        assert path.read_bytes() == (bench_dir / path.name).read_bytes(), path.name


def test_movielens_folds_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("1\t1\t5\t1\n")
    with pytest.raises(DataError, match="expected 100000 lines"):
        movielens_folds(path, tmp_path / "out")
    with pytest.raises(DataError, match="no such file"):
        movielens_folds(tmp_path / "missing", tmp_path / "out")
