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

import numpy as np
import pandas as pd

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
    frame = read_interactions_frame(path, columns=columns, sep=sep, header=header)
    try:
        return Interactions.from_frame(
            frame, user_features=user_features, item_features=item_features
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


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
