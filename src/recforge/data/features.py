"""Feature pipelines: user/item side information → sparse numeric matrices.

A `FeaturePipeline` is fitted on the feature rows of the *training* users (or items) and then
encodes any rows — including users and items absent from the training ID maps (cold start)
— into one ``scipy.sparse.csr_matrix`` of shape (n_rows, n_features). Its columns are laid
out in **fields**, one per input column (or column group), each a contiguous slice:

=============  ======================================================  ===================
kind           encoding                                                unknown value
=============  ======================================================  ===================
categorical    one-hot over the training vocabulary (``min_count``)    slot 0, ``<unknown>``
age            one-hot age bucket (ML-1M bins: <18, 18–24, …, 56+)     slot 0
zip            one-hot zip-code prefix (first ``zip_prefix`` chars)    slot 0
multihot       0/1 flags (``genre_*`` columns or ``"A|B"`` strings)    all zero
numeric        z-score with the training mean / std                    0 (the mean)
text           hashing TF-IDF (CRC-32 buckets, training IDF), L2 rows  all zero
=============  ======================================================  ===================

Nothing raises at inference on unseen categories, missing columns or missing rows: they go
to the unknown slot (or zeros). The fitted state is plain JSON (`to_json`) — vocabularies,
means, IDF weights — so a model saves it inside its artifact without pickle (`to_arrays` /
`from_arrays` wrap the JSON in a uint8 array for ``weights.npz``).

`infer_columns` guesses field kinds from a frame (MovieLens: age → age, gender/occupation →
categorical, zip → zip, ``genre_*`` → one multihot field, year → numeric, title → text).

Example::

    >>> import pandas as pd
    >>> users = pd.DataFrame({"age": [23, 41], "gender": ["M", "F"]}, index=["u1", "u2"])
    >>> pipe = FeaturePipeline().fit(users)
    >>> pipe.transform(pd.DataFrame({"age": [70], "gender": ["X"]}, index=["new"])).shape
    (1, 6)
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.errors import ConfigError, DataError

__all__ = [
    "AGE_BINS",
    "FeaturePipeline",
    "Field",
    "entity_features",
    "infer_columns",
    "tokenize",
]

Kind = Literal["categorical", "age", "zip", "multihot", "numeric", "text"]
KINDS: tuple[str, ...] = ("categorical", "age", "zip", "multihot", "numeric", "text")
UNKNOWN = "<unknown>"
#: lower edges of the ML-1M age groups (under 18, 18–24, 25–34, 35–44, 45–49, 50–55, 56+)
AGE_BINS: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
_TOKEN = re.compile(r"[a-z][a-z0-9']+")
_TEXT_NAMES = ("title", "text", "description", "overview", "plot", "summary", "name")
_SKIP_NAMES = ("imdb_url", "url", "release_date", "genres_text")


def tokenize(text: object) -> list[str]:
    """Lower-case word tokens of at least two characters starting with a letter.

    Pure numbers (e.g. the year in ``"Heat (1995)"``) are dropped: years have their own field.
    """
    if not isinstance(text, str):
        return []
    return _TOKEN.findall(text.lower())


def _bucket(token: str, n_buckets: int) -> int:
    """Stable hash bucket (CRC-32, unlike Python's salted ``hash``)."""
    return zlib.crc32(token.encode("utf-8")) % n_buckets


def age_bucket(age: Any) -> str:
    """The age-group label of an age (``"<18"``, ``"18-24"`` … ``"56+"``), or unknown."""
    value = pd.to_numeric(pd.Series([age]), errors="coerce").iloc[0]
    return _age_labels(np.array([value], np.float64))[0]


def _age_labels(values: np.ndarray) -> np.ndarray:
    edges = np.array(AGE_BINS, np.float64)
    names = [f"<{AGE_BINS[0]}"] + [f"{a}-{b - 1}" for a, b in itertools.pairwise(AGE_BINS)] \
        + [f"{AGE_BINS[-1]}+"]
    pos = np.searchsorted(edges, values, side="right")
    out = np.array(names, dtype=object)[np.minimum(pos, len(names) - 1)]
    out[~np.isfinite(values)] = UNKNOWN
    return out


@dataclass
class Field:
    """One fitted field: its kind, source column(s), and its slice of the output columns.

    `vocab` holds category labels (slot 0 is always ``<unknown>`` for categorical kinds),
    or the multihot column names / labels; `stats` holds numeric mean and std; `idf` the
    text IDF weights per bucket.
    """

    name: str
    kind: str
    columns: list[str]
    offset: int = 0
    vocab: list[str] | None = None
    mean: float = 0.0
    std: float = 1.0
    idf: list[float] | None = None
    n_buckets: int = 0
    zip_prefix: int = 0

    @property
    def size(self) -> int:
        if self.kind == "numeric":
            return 1
        if self.kind == "text":
            return self.n_buckets
        return len(self.vocab or [])

    @property
    def stop(self) -> int:
        return self.offset + self.size

    def labels(self) -> list[str]:
        """Readable name of each output column of this field."""
        if self.kind == "numeric":
            return [self.name]
        if self.kind == "text":
            return [f"{self.name}:#{b}" for b in range(self.n_buckets)]
        return [f"{self.name}={v}" for v in (self.vocab or [])]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "columns", "offset", "vocab", "mean",
                                              "std", "idf", "n_buckets", "zip_prefix")}


def infer_columns(frame: pd.DataFrame, max_categories: int = 200) -> dict[str, str]:
    """Guess ``{field name: kind}`` for a feature frame (see the module table).

    ``genre_*`` 0/1 columns form one multihot field named ``genre``; a ``genres`` string
    column (``"A|B"``) is used only when no ``genre_*`` columns exist. URL and date columns,
    and string columns with more than `max_categories` distinct values that are not text, are
    left out. Field names map to the column they read, except ``genre`` (the ``genre_*`` group).
    """
    out: dict[str, str] = {}
    has_flags = any(str(c).startswith("genre_") for c in frame.columns)
    for col in frame.columns:
        name = str(col)
        low = name.lower()
        series = frame[col]
        if low in _SKIP_NAMES or pd.api.types.is_datetime64_any_dtype(series):
            continue
        if low.startswith("genre_"):
            out["genre"] = "multihot"
        elif low == "genres":
            if not has_flags:
                out[name] = "multihot"
        elif low == "age":
            out[name] = "age"
        elif low in ("zip", "zip_code", "zipcode", "postcode"):
            out[name] = "zip"
        elif low in _TEXT_NAMES:
            out[name] = "text"
        elif pd.api.types.is_bool_dtype(series):
            out[name] = "categorical"
        elif pd.api.types.is_numeric_dtype(series):
            values = series.dropna()
            if len(values) and values.isin([0, 1]).all() and values.nunique() <= 2:
                out[name] = "categorical"
            else:
                out[name] = "numeric"
        elif series.nunique(dropna=True) <= max_categories:
            out[name] = "categorical"
    return out


class FeaturePipeline:
    """Encode feature frames (rows = users or items, index = external IDs) as sparse rows.

    Args:
        columns: ``{field name: kind}``; None infers them at `fit` (`infer_columns`). A
            field name is the column it reads, except ``genre`` = all ``genre_*`` columns.
        min_count: categories seen fewer times in the training rows go to the unknown slot.
        zip_prefix: leading characters of a zip code kept (1 = US region digit).
        text_buckets: hashing buckets of each text field.
        normalize_fields: scale each field block of every row to unit L2 norm (so fields
            weigh alike in cosine similarity, whatever their width); numeric fields are
            left as z-scores.
    """

    def __init__(
        self,
        columns: dict[str, str] | None = None,
        *,
        min_count: int = 1,
        zip_prefix: int = 1,
        text_buckets: int = 1024,
        normalize_fields: bool = False,
    ) -> None:
        if columns is not None:
            bad = {k: v for k, v in columns.items() if v not in KINDS}
            if bad:
                raise ConfigError(f"unknown feature kinds {bad} (use {', '.join(KINDS)})")
        if min_count < 1 or zip_prefix < 1 or text_buckets < 1:
            raise ConfigError("min_count, zip_prefix and text_buckets must be at least 1")
        self.columns = dict(columns) if columns is not None else None
        self.min_count = min_count
        self.zip_prefix = zip_prefix
        self.text_buckets = text_buckets
        self.normalize_fields = normalize_fields
        self.fields_: list[Field] = []
        self._fitted = False

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pd.DataFrame) -> FeaturePipeline:
        """Learn vocabularies, means and IDF from the training rows of `frame`."""
        if frame is None:
            raise DataError("cannot fit a feature pipeline without a feature frame")
        columns = self.columns if self.columns is not None else infer_columns(frame)
        fields: list[Field] = []
        offset = 0
        for name, kind in columns.items():
            field = self._fit_field(frame, name, kind)
            if field is None:
                continue
            field.offset = offset
            offset += field.size
            fields.append(field)
        self.fields_ = fields
        self._fitted = True
        return self

    def _fit_field(self, frame: pd.DataFrame, name: str, kind: str) -> Field | None:
        if kind == "multihot":
            cols = _group_columns(frame, name)
            if cols:
                return Field(name, kind, cols, vocab=[c.removeprefix(f"{name}_") for c in cols])
            if name not in frame.columns:
                raise DataError(f"feature column {name!r} not found")
            vocab = sorted({t for v in frame[name].dropna().astype(str) for t in _split_labels(v)})
            return Field(name, kind, [name], vocab=vocab)
        if name not in frame.columns:
            raise DataError(f"feature column {name!r} not found (columns: {', '.join(map(str, frame.columns))})")
        series = frame[name]
        if kind == "numeric":
            values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
            values = values[np.isfinite(values)]
            mean = float(values.mean()) if len(values) else 0.0
            std = float(values.std()) if len(values) > 1 else 1.0
            return Field(name, kind, [name], mean=mean, std=std if std > 0 else 1.0)
        if kind == "text":
            n_docs = len(series)
            df = np.zeros(self.text_buckets, np.float64)
            for text in series:
                buckets = {_bucket(t, self.text_buckets) for t in tokenize(text)}
                df[list(buckets)] += 1
            idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
            return Field(name, kind, [name], idf=idf.round(6).tolist(), n_buckets=self.text_buckets)
        labels = self._labels(series, kind)
        counts = pd.Series(labels).value_counts()
        vocab = sorted(str(v) for v, c in counts.items() if c >= self.min_count and v != UNKNOWN)
        return Field(name, kind, [name], vocab=[UNKNOWN, *vocab], zip_prefix=self.zip_prefix)

    def _labels(self, series: pd.Series, kind: str, zip_prefix: int | None = None) -> np.ndarray:
        """Category label of each value (``<unknown>`` for missing values)."""
        if kind == "age":
            return _age_labels(pd.to_numeric(series, errors="coerce").to_numpy(np.float64))
        missing = series.isna().to_numpy()
        text = series.astype(str).str.strip()
        if kind == "zip":
            text = text.str.upper().str[: zip_prefix or self.zip_prefix]
        out = text.to_numpy(dtype=object)
        out[missing | (text == "").to_numpy()] = UNKNOWN
        return out

    # ------------------------------------------------------------------ transforming
    @property
    def n_features(self) -> int:
        """Width of the encoded rows."""
        self._check()
        return self.fields_[-1].stop if self.fields_ else 0

    def feature_names(self) -> list[str]:
        """A readable name per output column (``gender=F``, ``year``, ``title:#17``…)."""
        self._check()
        return [label for f in self.fields_ for label in f.labels()]

    def field_of_column(self) -> np.ndarray:
        """(n_features,) index of the field each output column belongs to."""
        self._check()
        out = np.empty(self.n_features, np.int64)
        for k, f in enumerate(self.fields_):
            out[f.offset:f.stop] = k
        return out

    def transform(self, frame: pd.DataFrame | None, index: Sequence[str] | None = None) -> sp.csr_matrix:
        """Encode rows as a (n_rows, n_features) float32 CSR matrix.

        With `index`, rows follow these IDs (``frame.reindex``): an ID without a row, or a
        None frame, gives an all-unknown row. Never raises on unseen values.
        """
        self._check()
        if frame is None:
            frame = pd.DataFrame(index=pd.Index([] if index is None else list(index), dtype=object))
        if index is not None:
            frame = frame.copy()
            frame.index = frame.index.astype(str)
            frame = frame[~frame.index.duplicated()].reindex(pd.Index([str(i) for i in index], dtype=object))
        n = len(frame)
        rows, cols, vals = [], [], []
        for field in self.fields_:
            r, c, v = self._encode(frame, field)
            rows.append(r)
            cols.append(c + field.offset)
            vals.append(v)
        if rows:
            r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        else:
            r = c = np.zeros(0, np.int64)
            v = np.zeros(0, np.float32)
        out = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(n, self.n_features))
        out.sum_duplicates()
        out.sort_indices()
        if self.normalize_fields:
            out = self._normalize(out)
        return out

    def _encode(self, frame: pd.DataFrame, field: Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(frame)
        if field.kind == "multihot" and field.columns != [field.name]:  # a genre_* column group
            present = [col for col in field.columns if col in frame.columns]
            block = np.zeros((n, len(field.columns)), np.float32)
            for j, col in enumerate(field.columns):
                if col in present:
                    block[:, j] = pd.to_numeric(frame[col], errors="coerce").fillna(0).to_numpy(np.float32)
            block = (block > 0).astype(np.float32)
            r, c = np.nonzero(block)
            return r, c, block[r, c]
        if field.kind == "multihot":
            index = {v: j for j, v in enumerate(field.vocab or [])}
            r_list, c_list = [], []
            if field.name in frame.columns:
                for row, value in enumerate(frame[field.name]):
                    if isinstance(value, str):
                        for label in _split_labels(value):
                            if label in index:
                                r_list.append(row)
                                c_list.append(index[label])
            return np.array(r_list, np.int64), np.array(c_list, np.int64), np.ones(len(r_list), np.float32)
        if field.kind == "numeric":
            raw = frame[field.name] if field.name in frame.columns else pd.Series(np.nan, index=frame.index)
            values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
            z = np.where(np.isfinite(values), (values - field.mean) / field.std, 0.0)
            keep = np.flatnonzero(z != 0)
            return keep, np.zeros(len(keep), np.int64), z[keep].astype(np.float32)
        if field.kind == "text":
            idf = np.asarray(field.idf, np.float32)
            texts = frame[field.name] if field.name in frame.columns else [None] * n
            r_list, c_list = [], []
            for row, text in enumerate(texts):
                for token in tokenize(text):
                    r_list.append(row)
                    c_list.append(_bucket(token, field.n_buckets))
            r = np.array(r_list, np.int64)
            c = np.array(c_list, np.int64)
            tf: sp.csr_matrix = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, field.n_buckets))
            tf.sum_duplicates()
            tf = sp.csr_matrix(tf.multiply(idf[None, :]))
            norms = np.sqrt(np.asarray(tf.multiply(tf).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            tf = sp.csr_matrix(sp.diags(1.0 / norms) @ tf)
            coo = tf.tocoo()
            return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float32)
        # categorical / age / zip: one slot per row, unknown = slot 0
        raw = frame[field.name] if field.name in frame.columns else pd.Series(None, index=frame.index, dtype=object)
        labels = self._labels(raw, field.kind, field.zip_prefix)
        lookup = pd.Index(field.vocab or [UNKNOWN], dtype=object)
        slots = lookup.get_indexer(pd.Index(labels.astype(str), dtype=object))
        slots[slots < 0] = 0
        return np.arange(n, dtype=np.int64), slots.astype(np.int64), np.ones(n, np.float32)

    def _normalize(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        field_of = self.field_of_column()
        numeric = np.array([f.kind == "numeric" for f in self.fields_])
        coo = matrix.tocoo()
        fid = field_of[coo.col]
        sq = np.zeros((matrix.shape[0], len(self.fields_)), np.float64)
        np.add.at(sq, (coo.row, fid), coo.data.astype(np.float64) ** 2)
        norms = np.sqrt(sq)
        norms[norms == 0] = 1.0
        norms[:, numeric] = 1.0
        data = coo.data / norms[coo.row, fid]
        out = sp.csr_matrix((data.astype(np.float32), (coo.row, coo.col)), shape=matrix.shape)
        out.sort_indices()
        return out

    def fit_transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        return self.fit(frame).transform(frame)

    # ------------------------------------------------------------------ state
    def to_json(self) -> dict[str, Any]:
        """The fitted state as plain JSON-able data."""
        self._check()
        return {
            "min_count": self.min_count, "zip_prefix": self.zip_prefix,
            "text_buckets": self.text_buckets, "normalize_fields": self.normalize_fields,
            "columns": self.columns, "fields": [f.to_dict() for f in self.fields_],
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> FeaturePipeline:
        pipe = cls(state.get("columns"), min_count=int(state["min_count"]),
                   zip_prefix=int(state["zip_prefix"]), text_buckets=int(state["text_buckets"]),
                   normalize_fields=bool(state["normalize_fields"]))
        pipe.fields_ = [Field(**f) for f in state["fields"]]
        pipe._fitted = True
        return pipe

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The JSON state as a uint8 array under ``{prefix}json`` (for ``weights.npz``)."""
        text = json.dumps(self.to_json(), sort_keys=True).encode("utf-8")
        return {f"{prefix}json": np.frombuffer(text, np.uint8).copy()}

    @classmethod
    def from_arrays(cls, state: dict[str, np.ndarray], prefix: str) -> FeaturePipeline | None:
        """Inverse of `to_arrays`; None when the state holds no pipeline under `prefix`."""
        key = f"{prefix}json"
        if key not in state:
            return None
        return cls.from_json(json.loads(bytes(np.asarray(state[key], np.uint8)).decode("utf-8")))

    def _check(self) -> None:
        if not self._fitted:
            raise ConfigError("the feature pipeline is not fitted; call fit() first")


def _group_columns(frame: pd.DataFrame, name: str) -> list[str]:
    return [str(c) for c in frame.columns if str(c).startswith(f"{name}_")]


def _split_labels(value: str) -> list[str]:
    return [t.strip() for t in re.split(r"[|,]", value) if t.strip()]


def entity_features(
    frame: pd.DataFrame | None,
    ids: Iterable[str],
    pipeline: FeaturePipeline | None = None,
    **options: Any,
) -> tuple[FeaturePipeline | None, sp.csr_matrix | None]:
    """Fit (unless given) a pipeline on the rows of `ids` and encode them in `ids` order.

    Returns (None, None) when there is no frame, or when it encodes no field at all — the
    caller then falls back to ID-only behaviour.
    """
    ids = [str(i) for i in ids]
    if frame is None or len(frame.columns) == 0:
        return None, None
    if pipeline is None:
        index = pd.Index(ids, dtype=object)
        rows = frame.loc[frame.index.astype(str).isin(index)]
        if len(rows) == 0:
            return None, None
        pipeline = FeaturePipeline(**options).fit(rows)
    if pipeline.n_features == 0:
        return None, None
    return pipeline, pipeline.transform(frame, index=ids)
