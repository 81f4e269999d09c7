"""One entry point from a dataset name or a file path to `Interactions`.

The CLI (``data``, ``train``...) and scripts accept the same DATASET argument: a built-in
name (``movielens-100k``, ``movielens-1m``, ``movielens-20m``, ``movielens-latest-small``),
``synthetic``, an interaction file (CSV/TSV/Parquet), or an unpacked MovieLens folder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data import movielens
from recforge.data.files import ColumnMap, load_file, load_item_metadata
from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_synthetic
from recforge.errors import DataError


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and seed of the ``synthetic`` dataset (see `make_synthetic`)."""

    n_users: int = 1000
    n_items: int = 500
    n_interactions: int = 20_000
    seed: int = 0


BUILTIN_DATASETS = (*movielens.DATASETS, "synthetic")


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    columns: ColumnMap | None = None,
    items_file: str | Path | None = None,
    *,
    sep: str | None = None,
    header: bool | None = None,
    cache_dir: str | Path | None = None,
    synthetic: SyntheticSpec | None = None,
) -> Interactions:
    """Load a built-in dataset, a MovieLens folder or an interaction file.

    `data_dir` points a built-in MovieLens name at a local unpacked copy; `columns`, `sep`
    and `header` describe a file (see `load_file`); `items_file` adds item metadata
    (titles, genres...) from a CSV/TSV keyed by item ID, overriding same-named columns.
    """
    text = str(name_or_path).strip()
    key = text.lower()
    file_only = [flag for flag, value in (("--columns", columns or None), ("--sep", sep),
                                          ("--header/--no-header", header)) if value is not None]
    if key == "synthetic" or key in movielens.DATASETS:
        if file_only:
            raise DataError(f"{file_only[0]} applies to data files, not to built-in datasets")
        if key == "synthetic":
            spec = synthetic or SyntheticSpec()
            inter = make_synthetic(spec.n_users, spec.n_items, spec.n_interactions, seed=spec.seed)
        else:
            inter = movielens.load_movielens(key, data_dir=data_dir, cache_dir=cache_dir)
    else:
        inter = _load_path(text, data_dir, cache_dir, columns=columns, sep=sep, header=header)
    if items_file is not None:
        inter = attach_item_metadata(inter, load_item_metadata(items_file), items_file)
    return inter


def _load_path(
    text: str, data_dir: str | Path | None, cache_dir: str | Path | None, **file_options: Any,
) -> Interactions:
    path = Path(text).expanduser()
    if not path.exists():
        if text.lower().startswith("ml-"):
            return movielens.load_movielens(text, data_dir=data_dir, cache_dir=cache_dir)
        raise DataError(
            f"unknown dataset {text!r}: no such file, and not a built-in "
            f"({', '.join(BUILTIN_DATASETS)})"
        )
    if data_dir is not None:
        raise DataError("--data-dir applies to built-in datasets, not to files")
    if path.is_dir():
        for spec in movielens.DATASETS.values():
            if (path / spec.marker).is_file():
                return spec.reader(path)
        raise DataError(f"{path} is a folder with no MovieLens files; give an interaction file")
    return load_file(path, **file_options)


def attach_item_metadata(
    inter: Interactions, metadata: pd.DataFrame, source: str | Path = "item metadata"
) -> Interactions:
    """`inter` with `metadata` (indexed by item ID) merged into its item features."""
    if not metadata.index.isin(inter.item_map.ids).any():
        raise DataError(f"{source}: none of its item IDs occur in the interactions")
    old = inter.item_features
    if old is None:
        merged = metadata
    else:
        merged = old.drop(columns=[c for c in metadata.columns if c in old.columns])
        merged = merged.join(metadata, how="outer")
    return replace(inter, item_features=merged)


def describe(inter: Interactions) -> dict[str, Any]:
    """Summary facts for ``recforge data info``: sizes, density, histograms, quantiles, span."""
    n = len(inter)
    cells = inter.n_users * inter.n_items
    out: dict[str, Any] = {
        "users": inter.n_users,
        "items": inter.n_items,
        "interactions": n,
        "density": n / cells if cells else 0.0,
        "fingerprint": inter.fingerprint(),
    }
    if inter.ratings is not None:
        values, counts = np.unique(inter.ratings, return_counts=True)
        out["ratings"] = {_number(v): int(c) for v, c in zip(values, counts, strict=True)}
    else:
        out["ratings"] = None
    out["per_user"] = _quantiles(inter.user_counts())
    out["per_item"] = _quantiles(inter.item_counts())
    if inter.timestamps is not None and n:
        out["time_span"] = {"start": _iso(int(inter.timestamps.min())),
                            "end": _iso(int(inter.timestamps.max()))}
    else:
        out["time_span"] = None
    return out


def _quantiles(counts: np.ndarray) -> dict[str, float]:
    if len(counts) == 0:
        return {}
    q = np.percentile(counts, [0, 25, 50, 75, 100])
    return {name: float(v) for name, v in zip(("min", "25%", "50%", "75%", "max"), q, strict=True)}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(float(value))


def _iso(ts: int) -> str:
    """A Unix timestamp as an ISO date; the number itself when no calendar date fits it."""
    try:
        return datetime.fromtimestamp(ts, tz=UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):  # e.g. milliseconds, or not Unix time at all
        return str(ts)
