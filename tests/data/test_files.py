"""Reading user files: delimiter/header sniffing, aliases, mappings, Parquet, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data import files
from recforge.data.files import load_file, load_item_metadata, read_interactions_frame, sniff_delimiter
from recforge.data.interactions import Interactions
from recforge.errors import DataError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _pairs(inter) -> list[tuple[str, str]]:
    frame = inter.to_frame()
    return list(zip(frame["user_id"], frame["item_id"], strict=True))


def test_headerless_tsv_like_u1_base(tmp_path: Path) -> None:
    path = _write(tmp_path, "u1.base", "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t1\n")
    inter = load_file(path)
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 3)
    assert inter.ratings is not None and inter.ratings.tolist() == [5, 3, 4]
    assert inter.timestamps is not None and inter.timestamps.tolist() == [874965758, 876893171, 1]


def test_bench_base_file(bench_dir: Path) -> None:
    inter = load_file(bench_dir / "u1.base")
    assert len(inter) == 80_000 and inter.n_users == 943


def test_headerless_two_columns(tmp_path: Path) -> None:
    inter = load_file(_write(tmp_path, "log.txt", "a,x\nb,y\na,y\n"))
    assert inter.ratings is None and inter.timestamps is None
    assert _pairs(inter) == [("a", "x"), ("b", "y"), ("a", "y")]


@pytest.mark.parametrize(
    ("sep", "header"),
    [(",", "userId,movieId,rating,timestamp"), (";", "user;item;score;time"),
     ("|", "uid|iid|rating|ts"), ("::", "user_id::item_id::rating::timestamp"),
     ("\t", "UserID\tItemID\tRating\tTimestamp")],
)
def test_delimiters_and_aliases(tmp_path: Path, sep: str, header: str) -> None:
    rows = [header, sep.join(["1", "10", "4.5", "100"]), sep.join(["2", "20", "3", "200"])]
    inter = load_file(_write(tmp_path, "data.csv", "\n".join(rows) + "\n"))
    assert _pairs(inter) == [("1", "10"), ("2", "20")]
    assert inter.ratings is not None and inter.ratings.tolist() == [4.5, 3.0]
    assert inter.timestamps is not None and inter.timestamps.tolist() == [100, 200]


def test_ids_are_strings(tmp_path: Path) -> None:
    inter = load_file(_write(tmp_path, "ids.csv", "user,item\n007,NA\n7,null\n"))
    assert set(inter.user_map.ids) == {"007", "7"}
    assert set(inter.item_map.ids) == {"NA", "null"}


def test_quoted_fields(tmp_path: Path) -> None:
    text = 'user,item,rating,note\n1,"a, b",4,"x"\n2,c,5,"y, z"\n'
    inter = load_file(_write(tmp_path, "q.csv", text))
    assert set(inter.item_map.ids) == {"a, b", "c"}


def test_column_mapping_by_name_and_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "who,what,stars,when\nu1,i1,4,10\nu2,i2,2,20\n")
    with pytest.raises(DataError, match=r"missing column 'user_id' .*columns: who, what"):
        load_file(path)
    by_name = load_file(path, columns={"user": "who", "item": "what", "rating": "stars",
                                       "timestamp": "when"})
    by_pos = load_file(path, columns={"user_id": 0, "item_id": "1", "rating": 2})
    assert _pairs(by_name) == _pairs(by_pos) == [("u1", "i1"), ("u2", "i2")]
    assert by_pos.timestamps is None and by_name.timestamps is not None


def test_duplicates_keep_latest(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.tsv", "1\t1\t5\t300\n1\t1\t2\t100\n1\t2\t3\t50\n")
    inter = load_file(path)
    assert len(inter) == 2
    frame = inter.to_frame().set_index("item_id")
    assert frame.loc["1", "rating"] == 5


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"userId": [1, 2, 2], "movieId": [5.0, 6.0, 5.0],
                  "rating": [1.0, 2.0, 3.0]}).to_parquet(path)
    inter = load_file(path)
    assert set(inter.item_map.ids) == {"5", "6"} and len(inter) == 3


def test_bad_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        load_file(path)


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [("empty.csv", "", "empty"),
     ("blank.csv", "\n\n", "empty"),
     ("header.csv", "user,item,rating\n", "no interactions"),
     ("nonnum.csv", "user,item,rating\n1,2,good\n", "non-numeric.*'good'"),
     ("nanid.csv", "user,item,rating\n1,,4\n", "empty item_id"),
     ("nocol.csv", "user,thing\n1,2\n", r"missing column 'item_id' \(columns: user, thing\)")],
)
def test_errors_are_one_line(tmp_path: Path, name: str, text: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as info:
        load_file(_write(tmp_path, name, text))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_file(tmp_path / "nope.csv")


def test_sniff_rejects_ragged() -> None:
    assert sniff_delimiter(["a\tb\tc", "d\te\tf"]) == "\t"
    with pytest.raises(DataError, match="delimiter"):
        sniff_delimiter(["abc", "def"])


def test_item_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path, "movies.csv",
                  'movieId,title,genres,budget\n1,Heat (1995),Action|Crime,60\n'
                  '2,"Up, Up (2009)",Comedy,\n')
    meta = load_item_metadata(path)
    assert list(meta.index) == ["1", "2"]
    assert meta.loc["2", "title"] == "Up, Up (2009)" and meta.loc["1", "year"] == 1995
    assert meta.loc["1", ["genre_Action", "genre_Crime", "genre_Comedy"]].tolist() == [1, 1, 0]
    assert meta["genre_Action"].dtype == np.int8
    assert meta.loc["1", "budget"] == 60 and np.isnan(meta.loc["2", "budget"])


def test_item_metadata_duplicate_ids(tmp_path: Path) -> None:
    path = _write(tmp_path, "items.tsv", "item_id\ttitle\n1\tA\n1\tB\n")
    with pytest.raises(DataError, match="more than once"):
        load_item_metadata(path)


def test_latin1_fallback(tmp_path: Path) -> None:
    path = tmp_path / "old.dat"
    path.write_bytes("1::Misérables::4\n2::Heat::5\n".encode("latin-1"))
    inter = load_file(path)
    assert set(inter.item_map.ids) == {"Misérables", "Heat"}


# ------------------------------------------------------------------ the typed fast path
def _general(path: Path, **options) -> Interactions:
    """The straightforward reader: every value as text, then `Interactions.from_frame`."""
    return Interactions.from_frame(read_interactions_frame(path, **options))


def _assert_identical(a: Interactions, b: Interactions) -> None:
    assert a.user_map == b.user_map and a.item_map == b.item_map
    for name in ("user_idx", "item_idx", "ratings", "timestamps"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.fingerprint() == b.fingerprint()


def _log(rng: np.random.Generator, n: int, users: list[str], items: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": rng.choice(users, n), "item_id": rng.choice(items, n),
        "rating": rng.integers(1, 11, n) / 2, "timestamp": rng.integers(0, 50, n),  # duplicates, tied times
    })


@pytest.mark.parametrize("case", ["tsv", "csv-headerless", "text-ids", "zero-padded", "sparse-ids", "huge-ids",
                                  "spaces", "no-rating", "parquet", "parquet-text"])
def test_fast_path_equals_the_general_reader(tmp_path: Path, case: str) -> None:
    rng = np.random.default_rng(len(case))
    users = [str(u) for u in rng.permutation(60) + 1]
    items = [str(i) for i in rng.permutation(40) - 5]  # negative IDs too
    if case == "text-ids":
        users = [f"u{u}" for u in users] + ["10", "9", "Zed", "ä"]
    elif case == "zero-padded":
        items = [*items, "007", "7", "+8"]
    elif case == "sparse-ids":
        users = [str(u * 1_000_003) for u in range(1, 30)]
    elif case == "huge-ids":
        users = ["123456789012345678", "1234567890123456789", "-9223372036854775808", "5"]
    frame = _log(rng, 400, users, items)
    if case == "parquet-text":
        frame["user_id"] = "user-" + frame["user_id"]
    path = tmp_path / ("log.parquet" if case.startswith("parquet") else "log.txt")
    if case.startswith("parquet"):
        frame.assign(item_id=frame["item_id"].astype(np.int64)).to_parquet(path)
    elif case == "csv-headerless":
        frame.to_csv(path, header=False, index=False)
    elif case == "spaces":
        path.write_text("user\titem\tscore\n" + "".join(f" {u}\t{i} \t{r}\n" for u, i, r in
                                                        zip(frame.user_id, frame.item_id, frame.rating, strict=True)))
    elif case == "no-rating":
        frame[["user_id", "item_id"]].to_csv(path, sep=";", index=False)
    else:
        frame.to_csv(path, sep="\t", index=False)
    assert files._read_typed(path, None, None, None) is not None, "the fast path declined"
    _assert_identical(load_file(path), _general(path))


@pytest.mark.parametrize("text", [
    "user,item,rating\n1,2,good\n3,4,5\n",       # non-numeric rating
    "user,item,rating\n1,2,\n3,4,5\n",           # empty rating
    "user,item,rating\n1,2,nan\n",               # non-finite rating
    "user,item,rating\n1,,4\n",                  # empty ID
    "user,item,rating\n" + "1,2,4\n" * 60 + "3,4\n",  # a ragged row past the sniffed lines
    "user::item::rating\n1::2::4\n",             # two-character delimiter
    "\ufeffuser,item\n1,2\n",                    # byte-order mark
])
def test_fast_path_leaves_what_it_does_not_handle_to_the_general_reader(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "odd.csv", text)
    assert files._read_typed(path, None, None, None) is None
