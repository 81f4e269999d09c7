"""MovieLens loaders: the shared ML-100K copy, tiny hand-made 1M/CSV folders, download path."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data import movielens
from recforge.data.interactions import Interactions
from recforge.data.movielens import (
    DATASETS,
    default_cache_dir,
    known_checksums,
    load_movielens,
)
from recforge.errors import DataError


@pytest.fixture(scope="module")
def ml100k(ml100k_dir: Path) -> Interactions:
    return load_movielens("movielens-100k", data_dir=ml100k_dir)


def test_ml100k_sizes(ml100k: Interactions) -> None:
    assert (ml100k.n_users, ml100k.n_items, len(ml100k)) == (943, 1682, 100_000)
    assert ml100k.ratings is not None and set(np.unique(ml100k.ratings)) == {1, 2, 3, 4, 5}
    assert ml100k.timestamps is not None and ml100k.timestamps.min() == 874724710


def test_ml100k_items(ml100k: Interactions) -> None:
    items = ml100k.item_features
    assert items is not None
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["year"] == 1995
    assert toy["release_date"] == pd.Timestamp("1995-01-01")
    assert toy["genres"] == "Animation|Children's|Comedy"
    assert toy["genre_Animation"] == 1 and toy["genre_Action"] == 0
    assert items["genre_Comedy"].dtype == np.int8
    assert sum(c.startswith("genre_") for c in items.columns) == 19
    assert np.isnan(items.loc["267", "year"])  # the one movie without a release date


def test_ml100k_accents_decode(ml100k: Interactions) -> None:
    titles = ml100k.item_titles()
    assert titles["543"] == "Misérables, Les (1995)"
    assert any("é" in t for t in titles.values())
    assert not any("\ufffd" in t or "Ã" in t for t in titles.values())


def test_ml100k_users(ml100k: Interactions) -> None:
    users = ml100k.user_features
    assert users is not None and len(users) == 943
    assert users.loc["1"].tolist() == [24, "M", "technician", "85711"]


def test_fast_path_equals_from_frame(ml100k_dir: Path, ml100k: Interactions) -> None:
    frame = pd.read_csv(ml100k_dir / "u.data", sep="\t", header=None,
                        names=["user_id", "item_id", "rating", "timestamp"])
    assert Interactions.from_frame(frame).fingerprint() == ml100k.fingerprint()


def test_parent_folder_and_alias(ml100k_dir: Path) -> None:
    inter = load_movielens("ml-100k", data_dir=ml100k_dir.parent)
    assert len(inter) == 100_000


def test_data_dir_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u\.data"):
        load_movielens("movielens-100k", data_dir=tmp_path)


def test_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown MovieLens dataset"):
        load_movielens("movielens-5k")


def test_offline_error_names_url_and_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(movielens.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as info:
        load_movielens("movielens-1m", cache_dir=tmp_path)
    message = str(info.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert "--data-dir" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


def _tiny_ml100k_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t4\t100\n2\t10\t5\t200\n2\t20\t3\t300\n")
        flags = "|".join(["0"] * 18)
        zf.writestr("ml-100k/u.item", (
            f"10|Misérables, Les (1995)|01-Jan-1995||http://x|1|{flags}\n"
            f"20|Heat (1995)|15-Dec-1995||http://y|0|{flags}\n").encode("latin-1"))
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    return buf.getvalue()


def test_download_verify_unpack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = _tiny_ml100k_zip()
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(movielens, "known_checksums", lambda: {"ml-100k.zip": {"sha256": digest}})
    calls: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> io.BytesIO:
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(movielens.urllib.request, "urlopen", fake_urlopen)
    inter = load_movielens("movielens-100k", cache_dir=tmp_path)
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 3)
    assert inter.item_titles()["10"] == "Misérables, Les (1995)"
    assert inter.item_features is not None and inter.item_features.loc["20", "year"] == 1995
    load_movielens("movielens-100k", cache_dir=tmp_path)  # cached: no second download
    assert calls == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k", "ml-100k.zip"]


def test_checksum_mismatch_names_both_digests(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.zip").write_bytes(_tiny_ml100k_zip())
    with pytest.raises(DataError) as info:
        load_movielens("movielens-100k", cache_dir=tmp_path)
    message = str(info.value)
    assert "checksum mismatch" in message
    assert known_checksums()["ml-100k.zip"]["sha256"] in message
    assert hashlib.sha256(_tiny_ml100k_zip()).hexdigest() in message


def test_every_dataset_has_a_checksum() -> None:
    sums = known_checksums()
    for spec in DATASETS.values():
        assert sums.get(spec.archive), spec.archive
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{spec.archive}"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert default_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("RECFORGE_DATA_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "recforge"


def test_ml1m_format(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::10::3::978302109\n"
                                          "2::30::4::978301968\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Misérables, Les (1995)::Drama|Musical\n30::Heat (1995)::Action\n"
        "40::Never Rated (1999)::Comedy\n".encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    inter = load_movielens("movielens-1m", data_dir=tmp_path)
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 3)
    items, users = inter.item_features, inter.user_features
    assert items is not None and users is not None
    assert items.loc["10", "title"] == "Misérables, Les (1995)"
    assert items.loc["10", "genres"] == "Drama|Musical"
    assert items.loc["10", ["genre_Drama", "genre_Musical", "genre_Action"]].tolist() == [1, 1, 0]
    assert items.loc["30", "year"] == 1995
    assert users.loc["2"].tolist() == [56, "M", "self-employed", "70072"]
    assert users.loc["1", "occupation"] == "K-12 student"


def test_csv_format(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
        "2,1,2.5,964982224\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
        '3,"American President, The (1995)",(no genres listed)\n')
    inter = load_movielens("movielens-latest-small", data_dir=tmp_path)
    assert inter.ratings is not None and sorted(inter.ratings.tolist()) == [2.5, 4.0, 4.5]
    items = inter.item_features
    assert items is not None
    assert items.loc["3", "title"] == "American President, The (1995)"
    assert items.loc["3", "genres"] == "" and items.loc["3", "year"] == 1995
    assert items.loc["1", ["genre_Adventure", "genre_Animation"]].tolist() == [1, 1]
