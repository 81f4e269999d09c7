"""The built-in MovieLens datasets: download once, verify, unpack, parse everything.

GroupLens' license forbids redistribution, so recforge never ships the files: it downloads
the official archive into a cache, checks it against `checksums.json`, or reads a copy the
user already has (``data_dir``). Ratings become `Interactions`; titles, dates, genres and
demographics become its feature frames.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.files import genre_columns, year_from_title
from recforge.data.interactions import IdMap, Interactions, check_numbers
from recforge.errors import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MovieLensSpec:
    """One published MovieLens release: its archive, folder, marker file and parser."""

    name: str
    folder: str
    marker: str
    reader: Callable[[Path], Interactions]

    @property
    def archive(self) -> str:
        return f"{self.folder}.zip"

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.archive}"


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where downloads go: `cache_dir`, else ``$RECFORGE_DATA_DIR``, else ~/.cache/recforge.

    The one place recforge reads the environment for data; everything below takes a path.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("RECFORGE_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recforge"


def load_movielens(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> Interactions:
    """Load a built-in MovieLens dataset (``movielens-100k``, ``-1m``, ``-20m``, ``-latest-small``).

    With `data_dir`, read that unpacked copy (the folder holding ``u.data`` / ``ratings.*``,
    or its parent); otherwise use, or download into, the cache (see `default_cache_dir`).
    """
    spec = movielens_spec(name)
    return spec.reader(movielens_path(name, data_dir=data_dir, cache_dir=cache_dir))


def movielens_spec(name: str) -> MovieLensSpec:
    """The spec of a built-in dataset; ``ml-100k`` works as well as ``movielens-100k``."""
    key = name.strip().lower()
    if key.startswith("ml-"):
        key = "movielens-" + key[3:]
    if key not in DATASETS:
        raise DataError(f"unknown MovieLens dataset {name!r} (known: {', '.join(DATASETS)})")
    return DATASETS[key]


def movielens_path(
    name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """The unpacked folder of a built-in dataset, downloading and verifying it if needed."""
    spec = movielens_spec(name)
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        for folder in (root, root / spec.folder):
            if (folder / spec.marker).is_file():
                return folder
        raise DataError(
            f"no {spec.name} files in {root} (expected {spec.marker} there or in "
            f"{root / spec.folder})"
        )
    cache = default_cache_dir(cache_dir)
    folder = cache / spec.folder
    if (folder / spec.marker).is_file():
        return folder
    archive = cache / spec.archive
    if not archive.is_file():
        download(spec.url, archive)
    verify_checksum(archive)
    _unpack(archive, spec.folder, cache)
    if not (folder / spec.marker).is_file():
        raise DataError(f"{archive} holds no {spec.folder}/{spec.marker}")
    return folder


def download(url: str, dest: Path) -> None:
    """Fetch `url` to `dest` through a temporary file, so that no half file is ever left."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, fh, _CHUNK)
        verify_checksum(tmp, archive_name=dest.name)
        tmp.replace(dest)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"cannot download {url} ({reason}); offline? download and unpack it yourself, "
            "then pass --data-dir DIR"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def verify_checksum(path: Path, archive_name: str | None = None) -> None:
    """Check an archive against the known digests in `checksums.json`; mismatch raises."""
    archive_name = archive_name or path.name
    expected = known_checksums().get(archive_name)
    if not expected:
        raise DataError(f"no known checksum for {archive_name}")
    hashers = {algo: hashlib.new(algo) for algo in expected}
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            for h in hashers.values():
                h.update(block)
    for algo, digest in expected.items():
        actual = hashers[algo].hexdigest()
        if actual != digest.lower():
            raise DataError(
                f"checksum mismatch for {archive_name}: expected {algo} {digest}, got {actual} "
                f"({path}); delete it to download again, or pass --data-dir with an unpacked copy"
            )


def known_checksums() -> dict[str, dict[str, str]]:
    """Archive name -> {algorithm: hex digest}, as shipped in recforge/data/checksums.json."""
    text = resources.files("recforge.data").joinpath("checksums.json").read_text("utf-8")
    return json.loads(text)


def _unpack(archive: Path, folder: str, cache: Path) -> None:
    """Extract `folder` from the archive into the cache through a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f".{folder}.", dir=cache) as tmp:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot unpack {archive}: {exc}") from None
        src = Path(tmp) / folder
        if not src.is_dir():
            raise DataError(f"{archive} holds no folder {folder}/")
        target = cache / folder
        if not target.exists():
            src.replace(target)


# ---------------------------------------------------------------------------------- readers
def read_ml100k(folder: Path) -> Interactions:
    """ML-100K: u.data ratings, u.item movies (Latin-1), u.user demographics."""
    ratings = _read_csv(folder / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    items = _read_csv(folder / "u.item", sep="|", dtype=str, encoding="latin-1",
                      keep_default_na=False, quoting=csv.QUOTE_NONE)
    genre_file = folder / "u.genre"
    genres = ML100K_GENRES
    if genre_file.is_file():
        table = _read_csv(genre_file, sep="|", dtype=str, encoding="latin-1")
        genres = tuple(table.iloc[:, 0])
    if items.shape[1] != 5 + len(genres):
        raise DataError(
            f"{folder / 'u.item'}: expected {5 + len(genres)} fields, found {items.shape[1]}"
        )
    items.columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url",
                     *genres]
    flags = items[list(genres)].apply(pd.to_numeric, errors="coerce").fillna(0).astype(np.int8)
    item_features = _movie_frame(items["item_id"], items["title"], flags, genres)
    released = _parse_release_dates(items["release_date"])
    item_features.insert(1, "release_date", released.to_numpy())
    years = pd.Series(released.dt.year.to_numpy(dtype=np.float64), index=item_features.index)
    item_features["year"] = years.fillna(item_features["year"])
    item_features["imdb_url"] = items["imdb_url"].to_numpy()

    users = _read_csv(folder / "u.user", sep="|", dtype=str, encoding="latin-1",
                      keep_default_na=False,
                      names=["user_id", "age", "gender", "occupation", "zip"])
    user_features = users.set_index("user_id")
    user_features["age"] = pd.to_numeric(user_features["age"]).astype(np.int64)
    return _from_int_ids(ratings, user_features=user_features, item_features=item_features)


def read_ml1m(folder: Path) -> Interactions:
    """ML-1M: ``::``-separated ratings.dat, movies.dat and users.dat (Latin-1).

    Age is the ML-1M bucket code (1 = under 18, 18, 25, 35, 45, 50, 56); occupations are
    decoded from their 0-20 codes into names.
    """
    ratings = _read_double_colon(folder / "ratings.dat", ["user", "item", "rating", "ts"])
    movies = _read_double_colon(folder / "movies.dat", ["item_id", "title", "genres"], str)
    item_features = _movie_frame(movies["item_id"], movies["title"], None, None,
                                 movies["genres"])
    users_path = folder / "users.dat"
    user_features = None
    if users_path.is_file():
        users = _read_double_colon(
            users_path, ["user_id", "gender", "age", "occupation", "zip"], str)
        user_features = users.set_index("user_id")
        user_features["age"] = pd.to_numeric(user_features["age"]).astype(np.int64)
        codes = pd.to_numeric(user_features["occupation"], errors="coerce")
        names = pd.Series(ML1M_OCCUPATIONS)
        user_features["occupation"] = codes.map(names).fillna("other").to_numpy()
        user_features = user_features[["age", "gender", "occupation", "zip"]]
    return _from_int_ids(ratings, user_features=user_features, item_features=item_features)


def read_ml_csv(folder: Path) -> Interactions:
    """ML-20M / ml-latest-small: ratings.csv and movies.csv (UTF-8, genres as ``A|B``)."""
    ratings = _read_csv(folder / "ratings.csv", header=0, names=["user", "item", "rating", "ts"])
    movies = _read_csv(folder / "movies.csv", header=0, dtype=str, keep_default_na=False)
    missing = {"movieId", "title", "genres"} - set(movies.columns)
    if missing:
        raise DataError(f"{folder / 'movies.csv'}: missing columns {', '.join(sorted(missing))}")
    item_features = _movie_frame(movies["movieId"], movies["title"], None, None,
                                 movies["genres"])
    return _from_int_ids(ratings, item_features=item_features)


DATASETS: dict[str, MovieLensSpec] = {
    "movielens-100k": MovieLensSpec("movielens-100k", "ml-100k", "u.data", read_ml100k),
    "movielens-1m": MovieLensSpec("movielens-1m", "ml-1m", "ratings.dat", read_ml1m),
    "movielens-20m": MovieLensSpec("movielens-20m", "ml-20m", "ratings.csv", read_ml_csv),
    "movielens-latest-small": MovieLensSpec(
        "movielens-latest-small", "ml-latest-small", "ratings.csv", read_ml_csv),
}


# ---------------------------------------------------------------------------------- helpers
def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv with a missing or malformed file turned into one DataError line."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    kwargs.setdefault("header", None)
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from None


def _read_double_colon(path: Path, names: list[str], dtype: type | None = None) -> pd.DataFrame:
    """ML-1M's ``::`` files: swap the separator for one pandas' C parser reads fast."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    text = path.read_bytes().decode("latin-1").replace("::", "\x1f")
    return _read_csv_text(text, path, names, dtype)


def _read_csv_text(text: str, path: Path, names: list[str], dtype: type | None) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), sep="\x1f", header=None, names=names,
                           dtype=dtype, keep_default_na=False, quoting=csv.QUOTE_NONE)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from None


def _movie_frame(
    item_ids: pd.Series,
    titles: pd.Series,
    flags: pd.DataFrame | None,
    genre_names: tuple[str, ...] | None,
    genre_strings: pd.Series | None = None,
) -> pd.DataFrame:
    """Item features: title, year, ``genres`` ("A|B") and multi-hot ``genre_<Name>`` int8."""
    index = pd.Index(item_ids.astype(str).str.strip().to_numpy(), dtype=object, name="item_id")
    if flags is not None and genre_names is not None:
        multi_hot = flags.set_axis([f"genre_{g}" for g in genre_names], axis=1)
        as_bool = flags.to_numpy().astype(bool)
        names = np.asarray(genre_names, dtype=object)
        joined = ["|".join(names[row]) for row in as_bool]
    else:
        strings = genre_strings if genre_strings is not None else pd.Series([""] * len(index))
        multi_hot = genre_columns(strings.reset_index(drop=True))
        joined = strings.replace("(no genres listed)", "").tolist()
    out = pd.DataFrame(
        {"title": titles.to_numpy(), "year": year_from_title(titles).to_numpy(),
         "genres": joined},
        index=index,
    )
    multi_hot.index = index
    return pd.concat([out, multi_hot], axis=1)


def _parse_release_dates(values: pd.Series) -> pd.Series:
    """``01-Jan-1995`` -> datetime64 (NaT when empty); months parsed without the locale."""
    parts = values.str.extract(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4})\s*$")
    frame = pd.DataFrame({
        "year": pd.to_numeric(parts[2], errors="coerce"),
        "month": parts[1].str.title().map(_MONTHS),
        "day": pd.to_numeric(parts[0], errors="coerce"),
    })
    return pd.to_datetime(frame, errors="coerce")


def _from_int_ids(
    ratings: pd.DataFrame,
    user_features: pd.DataFrame | None = None,
    item_features: pd.DataFrame | None = None,
) -> Interactions:
    """Interactions from integer user/item IDs without a per-row string round trip.

    Equivalent to `Interactions.from_frame` (maps in numeric order, latest duplicate kept)
    but fast on ML-20M: the maps come from `np.unique` over the integers.
    """
    try:
        users = ratings["user"].to_numpy(dtype=np.int64)
        items = ratings["item"].to_numpy(dtype=np.int64)
        values = ratings["rating"].to_numpy(dtype=np.float64)
        stamps = ratings["ts"].to_numpy()
    except (ValueError, TypeError) as exc:
        raise DataError(f"MovieLens ratings hold non-numeric values ({exc})") from None
    # checked before the casts, which would turn 1e308 into inf and 1e30 into -2**63
    check_numbers("rating", values, "ratings")
    if stamps.dtype.kind not in "iuf":
        raise DataError("MovieLens ratings hold non-numeric timestamps")
    check_numbers("timestamp", stamps, "timestamps")
    values, stamps = values.astype(np.float32), stamps.astype(np.int64)
    user_ids, user_idx = _dense_codes(users)
    item_ids, item_idx = _dense_codes(items)
    for frame in (user_features, item_features):
        if frame is not None:
            frame.index = frame.index.astype(str)
    inter = Interactions(
        user_map=IdMap(user_ids.astype(str)),
        item_map=IdMap(item_ids.astype(str)),
        user_idx=user_idx,
        item_idx=item_idx,
        ratings=values,
        timestamps=stamps,
        user_features=user_features,
        item_features=item_features,
    )
    key = user_idx.astype(np.int64) * len(item_ids) + item_idx
    if len(key) > 1 and (np.diff(key) > 0).all():
        return inter  # sorted by (user, item) as GroupLens ships ML-20M: no duplicates
    return inter.deduplicate()


def _dense_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct IDs, int32 index of each row); O(n) for the small IDs MovieLens uses."""
    if len(ids) and ids.min() >= 0 and ids.max() < 1 << 26:
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        uniq = np.flatnonzero(present)
        position = np.cumsum(present, dtype=np.int64) - 1
        return uniq, position[ids].astype(np.int32)
    uniq, codes = np.unique(ids, return_inverse=True)
    return uniq, codes.astype(np.int32)
