"""The `Interactions` container: who interacted with what, plus optional features.

One orientation everywhere: users are rows, items are columns. External IDs are strings at
the edges; inside, dense `user_idx` / `item_idx` integers index every array and matrix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no types
import pyarrow.compute as pc  # type: ignore[import-untyped]
import scipy.sparse as sp

from recforge.errors import DataError, UnknownIdError


def _sorted_unique(values: Iterable[str]) -> np.ndarray:
    """Unique IDs in a stable order: numerically when all are integers, else lexically."""
    uniq = pd.unique(pd.Series(list(values) if not isinstance(values, pd.Series) else values,
                               dtype=object))
    uniq = np.asarray(uniq, dtype=object)
    if len(uniq) == 0:
        return uniq
    as_str = pd.Series(uniq, dtype=object).astype(str)
    if as_str.str.fullmatch(r"-?\d{1,18}").all():
        order = np.argsort(as_str.astype(np.int64).to_numpy(), kind="stable")
    else:
        order = np.argsort(as_str.to_numpy(dtype=str), kind="stable")
    return as_str.to_numpy(dtype=object)[order]


class IdMap:
    """Two-way map between external string IDs and dense indices ``0..n-1``."""

    def __init__(self, ids: Sequence[str] | np.ndarray) -> None:
        arr = np.asarray([str(x) for x in ids], dtype=object)
        self._index = pd.Index(arr, dtype=object)
        if not self._index.is_unique:
            raise DataError("ID map has duplicate IDs")
        self.ids: np.ndarray = arr

    @classmethod
    def from_values(cls, values: Iterable[str]) -> IdMap:
        """Build a map over the distinct values, in numeric-aware sorted order."""
        return cls(_sorted_unique(values))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.ids, other.ids)

    __hash__ = None  # type: ignore[assignment]

    def lookup(self, ids: Iterable[object]) -> np.ndarray:
        """Indices of `ids`, with -1 where an ID is unknown."""
        return self._index.get_indexer(_as_str_index(ids)).astype(np.int64)

    def to_idx(self, ids: Iterable[object], what: str = "ID") -> np.ndarray:
        """Indices of `ids`; raises UnknownIdError naming the first unknown ones."""
        ids = list(ids)
        idx = self.lookup(ids)
        if (idx < 0).any():
            bad = [str(ids[i]) for i in np.flatnonzero(idx < 0)[:5]]
            raise UnknownIdError(f"unknown {what}: {', '.join(bad)}")
        return idx

    def to_ids(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """External IDs of indices `idx`."""
        return self.ids[np.asarray(idx, dtype=np.int64)]


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interaction log with ID maps, optional ratings/timestamps and feature tables.

    Arrays are aligned per interaction: ``user_idx[i]`` interacted with ``item_idx[i]``,
    with ``ratings[i]`` and ``timestamps[i]`` when present. `user_features` / `item_features`
    are pandas frames indexed by external ID (strings), e.g. titles, genres, demographics.
    """

    user_map: IdMap
    item_map: IdMap
    user_idx: np.ndarray
    item_idx: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        if len(self.item_idx) != n:
            raise DataError("user_idx and item_idx differ in length")
        for name in ("ratings", "timestamps"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} length differs from the interactions")
        # arrays built without from_frame (readers, models) pass the same check
        if self.ratings is not None:
            check_numbers("rating", np.asarray(self.ratings), "ratings")
        if self.timestamps is not None:
            check_numbers("timestamp", np.asarray(self.timestamps), "timestamps")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
        unknown: Literal["error", "drop"] = "error",
        deduplicate: bool = True,
    ) -> Interactions:
        """Build from a frame of (user, item[, rating][, timestamp]) rows.

        Duplicated (user, item) pairs keep the latest row: the largest timestamp, or the last
        row in file order when there are no timestamps. Given maps fix the index space (to
        align a test set with its training set); rows with IDs outside them raise, or are
        dropped with ``unknown="drop"``.
        """
        for col in (user_col, item_col):
            if col not in frame.columns:
                raise DataError(f"missing column {col!r} (columns: {', '.join(map(str, frame.columns))})")
        users = frame[user_col]
        items = frame[item_col]
        if users.isna().any() or items.isna().any():
            n_bad = int(users.isna().sum() + items.isna().sum())
            raise DataError(f"empty {user_col}/{item_col} values in {n_bad} rows")
        users = users.astype(str)
        items = items.astype(str)

        ratings = _numeric_column(frame, rating_col, np.float32)
        timestamps = _numeric_column(frame, timestamp_col, np.int64)

        umap, uidx = _encode(users, user_map)
        imap, iidx = _encode(items, item_map)
        bad = (uidx < 0) | (iidx < 0)
        if bad.any():
            if unknown == "error":
                first = int(np.flatnonzero(bad)[0])
                raise UnknownIdError(
                    f"{int(bad.sum())} rows have IDs unknown to the map "
                    f"(first: user {users.iloc[first]!r}, item {items.iloc[first]!r})"
                )
            keep = ~bad
            uidx, iidx = uidx[keep], iidx[keep]
            ratings = ratings[keep] if ratings is not None else None
            timestamps = timestamps[keep] if timestamps is not None else None

        out = cls(
            user_map=umap,
            item_map=imap,
            user_idx=uidx.astype(np.int32),
            item_idx=iidx.astype(np.int32),
            ratings=ratings,
            timestamps=timestamps,
            user_features=_index_features(user_features),
            item_features=_index_features(item_features),
        )
        return out.deduplicate() if deduplicate else out

    @classmethod
    def from_arrays(
        cls,
        user_ids: object,
        item_ids: object,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        *,
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        deduplicate: bool = True,
    ) -> Interactions:
        """Build from aligned raw-ID arrays: the vectorized twin of `from_frame` for typed columns.

        IDs are int64 numbers or strings (NumPy, pandas or pyarrow arrays) and become the same
        maps as `from_frame` builds from their text; ratings become float32, timestamps int64,
        and duplicated pairs keep the latest row, as there.
        """
        n = len(user_ids)  # type: ignore[arg-type]
        if len(item_ids) != n:  # type: ignore[arg-type]
            raise DataError("user and item ID arrays differ in length")
        values = None if ratings is None else np.asarray(ratings)
        times = None if timestamps is None else np.asarray(timestamps)
        if values is not None:
            check_numbers("rating", values, "ratings")
        if times is not None and times.dtype.kind == "f":
            check_numbers("timestamp", times, "timestamps")
        umap, uidx = encode_ids(user_ids)
        imap, iidx = encode_ids(item_ids)
        out = cls(
            user_map=umap,
            item_map=imap,
            user_idx=uidx.astype(np.int32, copy=False),
            item_idx=iidx.astype(np.int32, copy=False),
            ratings=None if values is None else values.astype(np.float32, copy=False),
            timestamps=None if times is None else times.astype(np.int64, copy=False),
            user_features=_index_features(user_features),
            item_features=_index_features(item_features),
        )
        return out.deduplicate() if deduplicate else out

    # ------------------------------------------------------------------ basic facts
    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def has_ratings(self) -> bool:
        return self.ratings is not None

    @property
    def has_timestamps(self) -> bool:
        return self.timestamps is not None

    # ------------------------------------------------------------------ conversions
    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_idx, item_idx, values) with ratings as values, or ones when implicit."""
        values = self.ratings if self.ratings is not None else np.ones(len(self), np.float32)
        return self.user_idx, self.item_idx, values

    def csr(self, binary: bool = False) -> sp.csr_matrix:
        """users × items CSR matrix of ratings (or 1.0 with `binary` / implicit data)."""
        u, i, v = self.coo()
        if binary:
            v = np.ones(len(self), np.float32)
        m = sp.csr_matrix((v.astype(np.float32), (u, i)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        m.sort_indices()
        return m

    def to_frame(self) -> pd.DataFrame:
        """Rows with external IDs: user_id, item_id[, rating][, timestamp]."""
        data: dict[str, np.ndarray] = {
            "user_id": self.user_map.to_ids(self.user_idx),
            "item_id": self.item_map.to_ids(self.item_idx),
        }
        if self.ratings is not None:
            data["rating"] = self.ratings
        if self.timestamps is not None:
            data["timestamp"] = self.timestamps
        return pd.DataFrame(data)

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-user item sequences ordered by time, as CSR-style (indptr, item_idx).

        User ``u``'s items are ``items[indptr[u]:indptr[u+1]]``, oldest first; equal
        timestamps are ordered by item index (by item ID for numeric IDs, as PROTOCOL.md's
        next-item split orders them); without timestamps, file order is the order.
        """
        if self.timestamps is not None:
            order = np.lexsort((self.item_idx, self.timestamps, self.user_idx))
        else:
            order = np.lexsort((np.arange(len(self)), self.user_idx))
        counts = np.bincount(self.user_idx, minlength=self.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return indptr, self.item_idx[order]

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.user_idx, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item_idx, minlength=self.n_items)

    # ------------------------------------------------------------------ derived sets
    def subset(self, mask_or_index: np.ndarray) -> Interactions:
        """The interactions selected by a boolean mask or index array; maps are kept."""
        sel = np.asarray(mask_or_index)
        return replace(
            self,
            user_idx=self.user_idx[sel],
            item_idx=self.item_idx[sel],
            ratings=None if self.ratings is None else self.ratings[sel],
            timestamps=None if self.timestamps is None else self.timestamps[sel],
        )

    def deduplicate(self) -> Interactions:
        """Keep one row per (user, item): the latest timestamp, else the last in order."""
        if len(self) == 0:
            return self
        from recforge.data._kernels import has_repeated_pairs

        if not has_repeated_pairs(self.user_idx.astype(np.int32, copy=False),
                                  self.item_idx.astype(np.int32, copy=False), self.n_users, self.n_items):
            return self
        key = self.user_idx.astype(np.int64) * max(self.n_items, 1) + self.item_idx
        # two stable sorts: by time, then by pair — equal pairs end oldest → latest
        order = np.argsort(self.timestamps, kind="stable") if self.timestamps is not None \
            else np.arange(len(self))
        order = order[np.argsort(key[order], kind="stable")]
        last = np.ones(len(order), bool)
        last[:-1] = key[order][1:] != key[order][:-1]
        keep = np.sort(order[last])
        if len(keep) == len(self):
            return self
        return self.subset(keep)

    def compact(self) -> Interactions:
        """Drop users and items with no interactions and re-index densely."""
        return Interactions.from_frame(
            self.to_frame(),
            user_features=self.user_features,
            item_features=self.item_features,
            rating_col="rating" if self.has_ratings else None,
            timestamp_col="timestamp" if self.has_timestamps else None,
            deduplicate=False,
        )

    def reindex(
        self, user_map: IdMap, item_map: IdMap, unknown: Literal["error", "drop"] = "drop"
    ) -> Interactions:
        """The same rows in another index space (e.g. a test set on its training maps)."""
        return Interactions.from_frame(
            self.to_frame(),
            user_map=user_map,
            item_map=item_map,
            unknown=unknown,
            user_features=self.user_features,
            item_features=self.item_features,
            rating_col="rating" if self.has_ratings else None,
            timestamp_col="timestamp" if self.has_timestamps else None,
            deduplicate=False,
        )

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """A stable SHA-256 over IDs and interactions (not features): same data, same hash."""
        h = hashlib.sha256()
        for ids in (self.user_map.ids, self.item_map.ids):
            h.update("\x1f".join(ids.tolist()).encode())
            h.update(b"\x1e")
        for arr in (self.user_idx, self.item_idx, self.ratings, self.timestamps):
            if arr is None:
                h.update(b"none")
            else:
                h.update(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())
        return h.hexdigest()[:16]

    def item_titles(self) -> dict[str, str]:
        """Item ID → title where the item features carry a ``title`` column."""
        return feature_titles(self.item_features)


def _as_str_index(ids: Iterable[object]) -> pd.Index:
    """IDs as an object Index of strings (vectorized for arrays, Series and Indexes)."""
    if isinstance(ids, pd.Series | pd.Index | np.ndarray):
        arr = np.asarray(ids)
        if arr.dtype != object or not all(isinstance(x, str) for x in arr[:64]):
            arr = arr.astype(str)
        return pd.Index(arr.astype(object), dtype=object)
    return pd.Index([str(x) for x in ids], dtype=object)


def _encode(values: pd.Series, given: IdMap | None) -> tuple[IdMap, np.ndarray]:
    """(map, indices) of string IDs: factorize once, then sort only the distinct values."""
    if given is not None:
        return given, given.lookup(values)
    return encode_ids(values)


#: integers of up to 18 digits sort numerically as IDs (`_sorted_unique`), larger ones as text
_NUMERIC_ID_BOUND = 10**18


def encode_ids(values: object) -> tuple[IdMap, np.ndarray]:
    """(map, integer indices) of raw IDs: int64 numbers or strings (NumPy, pandas or pyarrow).

    The map is the one `IdMap.from_values` builds from the IDs' text. Numbers are hashed as
    numbers (no string per row); strings that are all canonical integers ("7", not "07") are
    turned into numbers first; other strings are dictionary-encoded in C++.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return _encode_numbers(values.astype(np.int64, copy=False))
    text = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(
        values.array if isinstance(values, pd.Series) else np.asarray(values, dtype=object), from_pandas=True)
    if text.null_count:
        raise DataError(f"{text.null_count} IDs are empty")
    numbers = _canonical_integers(text)
    if numbers is not None:
        return _encode_numbers(numbers)
    encoded = pc.dictionary_encode(text)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    if not chunks:
        return IdMap([]), np.zeros(0, np.int64)
    unified = pa.chunked_array(chunks).unify_dictionaries()
    dictionary = unified.chunk(0).dictionary.to_numpy(zero_copy_only=False)
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in unified.chunks])
    idmap = IdMap.from_values(dictionary)
    return idmap, idmap.lookup(dictionary)[codes.astype(np.int64)]


def _encode_numbers(numbers: np.ndarray) -> tuple[IdMap, np.ndarray]:
    """`encode_ids` of int64 IDs: sorted distinct values (a bitmap over a dense range, else a
    hash), ranked as their text sorts."""
    if len(numbers) and numbers.min() > -_NUMERIC_ID_BOUND and numbers.max() < _NUMERIC_ID_BOUND:
        low = int(numbers.min())
        span = int(numbers.max()) - low + 1
        if span <= 4 * len(numbers) + 1024:  # typical logs number their users and items densely
            from recforge.data._kernels import dense_codes

            uniques, codes = dense_codes(numbers, low, span)
            return IdMap(uniques.astype(str)), codes
    codes, uniques = pd.factorize(numbers)
    if len(uniques) and ((uniques >= _NUMERIC_ID_BOUND) | (uniques <= -_NUMERIC_ID_BOUND)).any():
        text = uniques.astype(str)  # beyond 18 digits IDs sort as text
        idmap = IdMap.from_values(text)
        return idmap, idmap.lookup(text)[codes]
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(uniques), np.int64)
    rank[order] = np.arange(len(uniques))
    return IdMap(uniques[order].astype(str)), rank[codes]


def _canonical_integers(text: Any) -> np.ndarray | None:
    """The IDs as int64 when every one is the canonical text of an integer of at most 18
    digits (how `_sorted_unique` tells numeric IDs), else None; one compiled pass."""
    from recforge.data._kernels import parse_canonical_ints

    chunks: list[Any] = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    out = np.empty(sum(len(c) for c in chunks), np.int64)
    at = 0
    for chunk in chunks:
        if chunk.null_count or not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return None
        _, offsets, data = chunk.buffers()
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(offsets, width)[chunk.offset:chunk.offset + len(chunk) + 1]
        data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        if not parse_canonical_ints(offsets, data, out[at:at + len(chunk)]):
            return None
        at += len(chunk)
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_BOUND = 2.0**63  # int64 holds [-2**63, 2**63); both bounds are exact as floats


def _numeric_column(frame: pd.DataFrame, col: str | None, dtype: type) -> np.ndarray | None:
    """A column as numbers, or None when absent; bad values raise one DataError line.

    Non-numeric and empty values are refused, and so is every number the stored dtype
    cannot hold: NaN/inf, ratings beyond float32 (they would turn into inf), timestamps
    outside int64 (they would wrap around). Rows are counted from 1, header excluded.
    """
    if col is None or col not in frame.columns:
        return None
    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        first = raw[bad].iloc[0]
        raise DataError(f"column {col!r} has non-numeric values ({int(bad.sum())} rows, e.g. {first!r})")
    if values.isna().any():
        raise DataError(f"column {col!r} has {int(values.isna().sum())} empty values")
    numbers = values.to_numpy()
    if np.issubdtype(np.dtype(dtype), np.integer):
        if numbers.dtype.kind in "fu":  # int64 itself cannot be out of range
            check_numbers(col, numbers.astype(np.float64), "timestamps")
    else:
        check_numbers(col, numbers, "ratings")
    return numbers.astype(dtype)


def check_numbers(col: str, numbers: np.ndarray, kind: Literal["ratings", "timestamps"]) -> None:
    """Refuse NaN, inf and values the stored dtype cannot hold, in one DataError line.

    Ratings are stored as float32 (beyond ±3.4e38 they would become inf), timestamps as
    int64 (outside [-2**63, 2**63) they would wrap around). The message names the column,
    the count and the first bad row (counted from 1) and value.
    """
    if numbers.dtype.kind not in "fu":
        return
    low_ok, high_ok = (-_FLOAT32_MAX, _FLOAT32_MAX) if kind == "ratings" else (-_INT64_BOUND, _INT64_BOUND)
    if not len(numbers) or (numbers.min() >= low_ok and numbers.max() < high_ok):  # NaN fails: no pass
        return
    if kind == "ratings":
        low, high = -_FLOAT32_MAX, _FLOAT32_MAX
        bad = ~np.isfinite(numbers) | (numbers < low) | (numbers > high)
        bounds = f"[{low:.4g}, {high:.4g}]"
    else:
        low, high = -_INT64_BOUND, _INT64_BOUND
        bad = ~np.isfinite(numbers) | (numbers < low) | (numbers >= high)
        bounds = "[-2**63, 2**63)"
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"column {col!r} has {len(rows)} non-finite or out-of-range values (first: row "
            f"{rows[0] + 1}, {float(numbers[rows[0]])!r}); {kind} must be finite and within {bounds}"
        )


def _index_features(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Feature tables are indexed by string IDs."""
    if frame is None:
        return None
    out = frame.copy()
    out.index = out.index.astype(str)
    return out


def feature_titles(item_features: pd.DataFrame | None) -> dict[str, str]:
    """Item ID → title from an item feature frame (empty without a ``title`` column)."""
    if item_features is None or "title" not in item_features.columns:
        return {}
    titles = item_features["title"].dropna().astype(str)
    return dict(zip(titles.index.astype(str), titles, strict=True))
