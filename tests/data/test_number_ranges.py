"""Non-finite or out-of-range ratings and timestamps are refused at load, in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.files import load_file
from recforge.data.interactions import IdMap, Interactions
from recforge.errors import DataError


def _frame(rating: list[object], timestamp: list[object] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"user_id": ["1", "1", "2", "2"], "item_id": ["a", "b", "a", "c"],
                          "rating": rating})
    if timestamp is not None:
        frame["timestamp"] = timestamp
    return frame


@pytest.mark.parametrize(
    ("rating", "pattern"),
    [([4, "1e308", 3, "1e308"], r"'rating' has 2 .*first: row 2, 1e\+308"),
     ([4, 3, "inf", 1], r"'rating' has 1 .*first: row 3, inf"),
     ([4, 3, 2, "-3.5e38"], r"'rating' has 1 .*first: row 4, -3\.5e\+38"),
     ([np.nan, 3.0, np.inf, 1.0], "1 empty values")],
)
def test_ratings_that_float32_cannot_hold_are_refused(rating: list[object], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as info:
        Interactions.from_frame(_frame(rating))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("stamps", "pattern"),
    [([1, 2, "1e30", 4], r"'timestamp' has 1 .*first: row 3, 1e\+30"),
     ([1, "9223372036854775808", 3, 4], r"'timestamp' has 1 .*first: row 2"),
     (["-inf", 2, 3, 4], r"'timestamp' has 1 .*first: row 1, -inf")],
)
def test_timestamps_outside_int64_are_refused(stamps: list[object], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        Interactions.from_frame(_frame([1, 2, 3, 4], stamps))


def test_extreme_but_representable_values_are_kept() -> None:
    edge = float(np.finfo(np.float32).max)
    inter = Interactions.from_frame(_frame([edge, -edge, 0.5, 1], [-(2**63), 2**63 - 1, 0, 1]))
    assert inter.ratings is not None and np.isfinite(inter.ratings).all()
    assert inter.timestamps is not None and inter.timestamps.dtype == np.int64
    assert sorted(inter.timestamps.tolist()) == [-(2**63), 0, 1, 2**63 - 1]


def test_arrays_built_directly_are_checked() -> None:
    maps = {"user_map": IdMap(["1"]), "item_map": IdMap(["a", "b"]),
            "user_idx": np.zeros(2, np.int32), "item_idx": np.arange(2, dtype=np.int32)}
    with pytest.raises(DataError, match=r"'rating' has 1 .*row 2, nan"):
        Interactions(**maps, ratings=np.array([1.0, np.nan], np.float32))
    with pytest.raises(DataError, match=r"'timestamp' has 1 .*row 1, 1e\+20"):
        Interactions(**maps, timestamps=np.array([1e20, 0.0]))


def test_load_file_names_the_file_column_row_and_count(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("user_id\titem_id\trating\n1\t10\t4\n1\t11\t1e308\n2\t10\t1e309\n")
    with pytest.raises(DataError) as info:
        load_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: column 'rating' has 2 non-finite or out-of-range values")
    assert "first: row 2, 1e+308" in message and "\n" not in message


def test_describe_shows_timestamps_without_a_calendar_date_as_numbers() -> None:
    from recforge.data.datasets import describe

    inter = Interactions.from_frame(_frame([1, 2, 3, 4], [86_400, 2, 3, 10**15]))
    assert describe(inter)["time_span"] == {"start": "1970-01-01", "end": str(10**15)}
