"""Interaction logs and item metadata from user files: CSV, TSV, `::`-separated or Parquet.

Users hand us whatever their export looks like, so the reader sniffs the delimiter and the
header, accepts the usual column names (``userId``, ``movieId``, ``score``...) and turns every
problem into one `DataError` line that names the file and what is wrong with it.
``.parquet``/``.pq`` files (or any file starting with Parquet's magic bytes) are read as
Parquet; everything else (``.csv``, ``.tsv``, ``.txt``, ``.dat``, ``.data``, ``.base``,
``.test``...) as delimited text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no types
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from recforge.data.interactions import Interactions
from recforge.errors import DataError

CANONICAL = ("user_id", "item_id", "rating", "timestamp")
ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userid", "user", "uid"),
    "item_id": ("item_id", "itemid", "item", "iid", "movieid", "movie_id"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}
ITEM_ID_ALIASES = (*ALIASES["item_id"], "id")
PARQUET_SUFFIXES = (".parquet", ".pq")
_DELIMITERS = ("\t", "::", ",", ";", "|")
_INNER_SEP = "\x1f"  # stands in for "::" so that pandas' fast C parser can read the file
_SAMPLE_LINES = 50
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")

ColumnMap = Mapping[str, str | int]


def load_file(
    path: str | Path,
    columns: ColumnMap | None = None,
    sep: str | None = None,
    header: bool | None = None,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
) -> Interactions:
    """Load an interaction log into `Interactions`; duplicated pairs keep the latest row.

    `columns` maps our names (``user_id``, ``item_id``, ``rating``, ``timestamp``; the short
    forms ``user``/``item`` work too) to the file's column names or 0-based positions; names
    not mapped are found through the usual aliases. `sep` and `header` are sniffed when None.
    A headerless file's columns are, in order, user_id, item_id[, rating[, timestamp]].
    """
    path = Path(path)
    arrays = _read_typed(path, columns=columns, sep=sep, header=header)
    try:
        if arrays is not None:
            return Interactions.from_arrays(**arrays, user_features=user_features, item_features=item_features)
        frame = read_interactions_frame(path, columns=columns, sep=sep, header=header)
        return Interactions.from_frame(
            frame, user_features=user_features, item_features=item_features
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _read_typed(
    path: Path, columns: ColumnMap | None, sep: str | None, header: bool | None
) -> dict[str, Any] | None:
    """The fast path of `load_file`: typed columns straight from pyarrow, or None.

    IDs come back as int64 numbers (when every ID is a canonical integer) or trimmed
    strings, ratings as float64, timestamps as int64. Whatever this path does not handle
    plainly — a multi-character or whitespace delimiter, a byte-order mark, an empty or
    non-numeric value, a non-finite rating, a ragged row, another encoding — returns None, and
    the general reader takes the file and words any error exactly as it always has.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    if path.suffix.lower() in PARQUET_SUFFIXES or _is_parquet(path):
        return _read_parquet_typed(path, columns)
    with path.open("rb") as fh:
        if fh.read(3) == b"\xef\xbb\xbf":
            return None
    lines = _head_lines(path)
    if not lines:
        return None
    sep = sep or sniff_delimiter(lines, path)
    if len(sep) != 1 or sep in "\"\r\n ":
        return None
    if header is None:
        header = _has_header(lines, sep, (0, 1))
    fields = [f.strip() for f in _split(lines[0], sep)]
    if header:
        names = fields
    else:
        names = list(CANONICAL[:len(fields)]) + [f"column_{i}" for i in range(len(CANONICAL), len(fields))]
    if len(set(names)) != len(names) or any(not n for n in names):
        return None
    mapping = resolve_columns(names, columns, path)
    types = {"user_id": pa.string(), "item_id": pa.string(), "rating": pa.float64(), "timestamp": pa.int64()}
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(mapping.values()),
                column_types={theirs: types[ours] for ours, theirs in mapping.items()},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    return _table_arrays(table, mapping)


def _table_arrays(table: pa.Table, mapping: dict[str, str]) -> dict[str, Any] | None:
    """The typed read's arrays (user_ids, item_ids, ratings, timestamps) from an Arrow table;
    None when a column is empty, null, or of a type the general reader must word an error for."""
    if table.num_rows == 0:
        return None
    out: dict[str, Any] = {}
    for ours, theirs in mapping.items():
        col = table.column(theirs)
        if col.null_count:
            return None
        if ours in ("user_id", "item_id"):
            ids = _typed_ids(col)
            if ids is None:
                return None
            out[ours.replace("_id", "_ids")] = ids
        elif ours == "rating":
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                return None
            values = np.asarray(col.to_numpy(), np.float64)
            if not _plain_ratings(values):
                return None
            out["ratings"] = values
        else:
            if not pa.types.is_integer(col.type):
                return None
            out["timestamps"] = np.asarray(col.to_numpy(), np.int64)
    return out


def _typed_ids(col: Any) -> Any:
    """IDs as int64 numbers when all are canonical integers, else trimmed strings; None when
    one is empty."""
    if pa.types.is_integer(col.type):
        return np.asarray(col.to_numpy(), np.int64)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return None
    from recforge.data.interactions import _canonical_integers

    numbers = _canonical_integers(col)
    if numbers is not None:
        return numbers
    text = pc.utf8_trim_whitespace(col)
    if pc.any(pc.equal(pc.utf8_length(text), 0)).as_py():
        return None
    return text


def _plain_ratings(values: np.ndarray) -> bool:
    """Finite ratings that float32 holds (anything else goes to the general reader's errors)."""
    limit = float(np.finfo(np.float32).max)
    return bool(len(values) and values.max() <= limit and values.min() >= -limit)  # NaN fails both


def _read_parquet_typed(path: Path, columns: ColumnMap | None) -> dict[str, Any] | None:
    """`_read_typed` for Parquet: integer or string IDs, numeric ratings, integer timestamps."""
    try:
        names = [str(c) for c in pq.read_schema(path).names]
    except Exception:  # a damaged file: the general reader words the error
        return None
    if len(set(names)) != len(names):
        return None
    mapping = resolve_columns(names, columns, path)
    try:
        table = pq.read_table(path, columns=list(mapping.values()))
    except Exception:  # pyarrow raises many types for a damaged file
        return None
    return _table_arrays(table, mapping)


def read_interactions_frame(
    path: str | Path,
    columns: ColumnMap | None = None,
    sep: str | None = None,
    header: bool | None = None,
) -> pd.DataFrame:
    """The file's interactions as a frame with our column names, IDs as strings."""
    path = Path(path)
    raw = _read_table(path, sep=sep, header=header, id_positions=(0, 1))
    mapping = resolve_columns(list(raw.columns), columns, path)
    frame = pd.DataFrame({ours: raw[theirs] for ours, theirs in mapping.items()})
    if frame.empty:
        raise DataError(f"{path}: no interactions (only a header?)")
    for col in ("user_id", "item_id"):
        frame[col] = _id_strings(frame[col], col, path)
    return frame


def resolve_columns(
    available: list[str], columns: ColumnMap | None, path: str | Path
) -> dict[str, str]:
    """Our column name -> the file's column name, from `columns` first, then by alias."""
    given = normalize_column_map(columns)
    lowered = {str(c).strip().lower(): str(c) for c in available}
    out: dict[str, str] = {}
    for ours in CANONICAL:
        if ours in given:
            theirs = given[ours]
            if isinstance(theirs, int):
                if not 0 <= theirs < len(available):
                    raise DataError(
                        f"{path}: column position {theirs} for {ours} is out of range "
                        f"(the file has {len(available)} columns)"
                    )
                out[ours] = str(available[theirs])
            elif str(theirs) in available:
                out[ours] = str(theirs)
            elif str(theirs).strip().lower() in lowered:
                out[ours] = lowered[str(theirs).strip().lower()]
            else:
                raise DataError(
                    f"{path}: missing column {theirs!r} for {ours} "
                    f"(columns: {', '.join(map(str, available))})"
                )
            continue
        found = next((lowered[a] for a in ALIASES[ours] if a in lowered), None)
        if found is not None:
            out[ours] = found
        elif ours in ("user_id", "item_id"):
            short = ours.split("_")[0]
            raise DataError(
                f"{path}: missing column {ours!r} (columns: {', '.join(map(str, available))}); "
                f"name it with --columns {short}=NAME"
            )
    return out


def normalize_column_map(columns: ColumnMap | None) -> dict[str, str | int]:
    """Accept ``user``/``item``/``score``/``time``... as keys; digits become positions."""
    if not columns:
        return {}
    out: dict[str, str | int] = {}
    for key, value in columns.items():
        ours = next((c for c, names in ALIASES.items() if key.strip().lower() in names), None)
        if ours is None:
            raise DataError(
                f"unknown column role {key!r} (use user, item, rating or timestamp)"
            )
        if isinstance(value, str) and value.strip().isdigit():
            out[ours] = int(value)
        else:
            out[ours] = value
    return out


def load_item_metadata(path: str | Path, sep: str | None = None) -> pd.DataFrame:
    """Item metadata (titles, genres, text...) indexed by item ID string, for ``--items``.

    The ID column is found by name (``item_id``, ``movieId``, ``id``...) or is the first
    column. A headerless file reads as item_id, title[, genres, ...]. A ``genres`` column of
    ``A|B`` strings gains multi-hot ``genre_<Name>`` int8 columns, as the built-in sets have.
    """
    path = Path(path)
    frame = _read_table(path, sep=sep, header=None, id_positions=(0,),
                        headerless_names=("item_id", "title", "genres"))
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    id_col = next((lowered[a] for a in ITEM_ID_ALIASES if a in lowered), frame.columns[0])
    ids = _id_strings(frame[id_col], str(id_col), path)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].iloc[0]
        raise DataError(f"{path}: item {dup!r} appears more than once")
    out = frame.drop(columns=[id_col])
    out.index = pd.Index(ids.to_numpy(), dtype=object, name="item_id")
    for col in out.columns:
        numbers = pd.to_numeric(out[col], errors="coerce")
        if numbers.notna().sum() == out[col].notna().sum() > 0:
            out[col] = numbers  # a numeric column (year, price...) read as text
    if "genres" in out.columns and not any(str(c).startswith("genre_") for c in out.columns):
        out = pd.concat([out, genre_columns(out["genres"])], axis=1)
    if "title" in out.columns and "year" not in out.columns:
        out["year"] = year_from_title(out["title"])
    return out


def genre_columns(genres: pd.Series, sep: str = "|") -> pd.DataFrame:
    """Multi-hot ``genre_<Name>`` int8 columns from ``"Action|Comedy"`` strings."""
    filled = genres.fillna("").astype(str).replace("(no genres listed)", "")
    dummies = filled.str.get_dummies(sep=sep)
    dummies.columns = [f"genre_{c}" for c in dummies.columns]
    return dummies.astype(np.int8).set_index(genres.index)


def year_from_title(titles: pd.Series) -> pd.Series:
    """The release year that MovieLens titles end with, ``"Heat (1995)"`` -> 1995.0 (else NaN)."""
    years = titles.astype(str).str.extract(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$", expand=False)
    return pd.to_numeric(years, errors="coerce").astype(np.float64)


# ---------------------------------------------------------------------------------- reading
def _read_table(
    path: Path,
    *,
    sep: str | None,
    header: bool | None,
    id_positions: tuple[int, ...],
    headerless_names: tuple[str, ...] = CANONICAL,
) -> pd.DataFrame:
    """Read a text or Parquet table; every value of a text file is kept as a string."""
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if path.suffix.lower() in PARQUET_SUFFIXES or _is_parquet(path):
        return _read_parquet(path)
    lines = _head_lines(path)
    if not lines:
        raise DataError(f"{path}: the file is empty")
    sep = sep or sniff_delimiter(lines, path)
    if header is None:
        header = _has_header(lines, sep, id_positions)
    frame = _read_delimited(path, sep, header)
    if not header:
        names = list(headerless_names[: frame.shape[1]])
        names += [f"column_{i}" for i in range(len(names), frame.shape[1])]
        frame.columns = names
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def sniff_delimiter(lines: list[str], path: str | Path = "input") -> str:
    """The delimiter that splits every sample line into the same number (>= 2) of fields."""
    for cand in _DELIMITERS:
        counts = {len(_split(ln, cand)) for ln in lines}
        if len(counts) == 1 and counts.pop() >= 2:
            return cand
    counts = {len(ln.split()) for ln in lines}
    if len(counts) == 1 and counts.pop() >= 2:
        return r"\s+"
    raise DataError(
        f"{path}: cannot tell the delimiter (tried tab, '::', ',', ';', '|', spaces); "
        "pass it with --sep"
    )


def _split(line: str, sep: str) -> list[str]:
    """Split one line; quotes are honoured for single-character delimiters."""
    if len(sep) > 1:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep))


def _has_header(lines: list[str], sep: str, id_positions: tuple[int, ...]) -> bool:
    """Does the first sample line name the columns rather than hold data?

    Yes when it holds a known column name, or words above numbers. When every field is text
    (string IDs, no ratings), it is data if one of its values recurs in its column below,
    as IDs do and column names do not.
    """
    splitter = (lambda s: s.split()) if sep == r"\s+" else (lambda s: _split(s, sep))
    rows = [[f.strip() for f in splitter(ln)] for ln in lines]
    first = rows[0]
    known = {a for names in ALIASES.values() for a in names} | {"id"}
    if any(f.lower() in known for f in first):
        return True
    if all(_is_number(f) for f in first):
        return False
    if len(rows) < 2:
        return not any(_is_number(first[i]) for i in id_positions if i < len(first))
    if any(not _is_number(a) and _is_number(b) for a, b in zip(first, rows[1], strict=False)):
        return True
    if any(_is_number(f) for f in first):
        return False
    return not any(
        first[c] in {row[c] for row in rows[1:] if c < len(row)} for c in range(len(first))
    )


def _is_number(value: str) -> bool:
    return bool(_NUMBER.fullmatch(value))


def _head_lines(path: Path, n_bytes: int = 1 << 16) -> list[str]:
    """The first non-blank lines (up to 64 KiB, whole lines only), for sniffing."""
    with path.open("rb") as fh:
        head = fh.read(n_bytes)
        complete = not fh.read(1)
    text = head.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    return [ln for ln in lines if ln.strip()][:_SAMPLE_LINES]


def _read_delimited(path: Path, sep: str, header: bool) -> pd.DataFrame:
    """All columns as strings; UTF-8, falling back to Latin-1 as old MovieLens files need."""
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            source: Path | io.StringIO = path
            if sep == "::":
                text = path.read_bytes().decode(encoding).replace("::", _INNER_SEP)
                source = io.StringIO(text)
            return pd.read_csv(
                source, sep=_INNER_SEP if sep == "::" else sep, header=0 if header else None,
                dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=True,
                skipinitialspace=True, encoding=encoding,
            )
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"{path}: cannot parse as {_sep_name(sep)}-separated text: {first}"
            ) from None
    raise DataError(f"{path}: cannot decode the text")


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as Parquet: {first}") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _id_strings(values: pd.Series, name: str, path: Path) -> pd.Series:
    """IDs as strings; integral floats (Parquet NaN-able ints) lose their ``.0``."""
    if values.isna().any():
        raise DataError(f"{path}: {int(values.isna().sum())} rows have an empty {name}")
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
        values = values.astype(np.int64)
    return values.astype(str).str.strip()


def _sep_name(sep: str) -> str:
    return {"\t": "tab", r"\s+": "space"}.get(sep, repr(sep))
