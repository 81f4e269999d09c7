"""Train/test splits, their TSV files, and the canonical MovieLens-100K rating folds.

Every split returns ``(train, test)`` over the same ID maps as the input, so indices line up
between the two. All of them are vectorized (sorting and grouping with numpy) and seeded:
the same data and seed give the same split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError

Split = tuple[Interactions, Interactions]
ML100K_LINES = 100_000
ML100K_FOLD = 20_000


def random_split(inter: Interactions, test_ratio: float = 0.2, seed: int = 42) -> Split:
    """A uniformly random `test_ratio` share of all interactions goes to test."""
    _check_ratio(test_ratio)
    rng = np.random.default_rng(seed)
    n_test = int(np.rint(len(inter) * test_ratio))
    test = np.zeros(len(inter), dtype=bool)
    test[rng.permutation(len(inter))[:n_test]] = True
    return _by_mask(inter, test)


def user_ratio_split(
    inter: Interactions, test_ratio: float = 0.2, seed: int = 42, min_test: int = 1
) -> Split:
    """Per user, a random ``round(test_ratio × count)`` (at least `min_test`) goes to test.

    Users with fewer than two interactions stay in train, and every user keeps at least one
    training interaction. This is the protocol's top-N split (PROTOCOL.md).
    """
    _check_ratio(test_ratio)
    rng = np.random.default_rng(seed)
    counts = inter.user_counts()
    n_test = np.maximum(min_test, np.rint(counts * test_ratio)).astype(np.int64)
    n_test = np.where(counts >= 2, np.minimum(n_test, counts - 1), 0)
    shuffle = rng.integers(0, 1 << 32, size=len(inter), dtype=np.int64)
    order = np.argsort((inter.user_idx.astype(np.int64) << 32) | shuffle)  # by user, shuffled
    return _by_mask(inter, _first_per_user(inter, order, n_test))


def temporal_split(inter: Interactions, test_ratio: float = 0.2) -> Split:
    """One global time cut: the latest `test_ratio` share of interactions goes to test.

    Rows sharing the cut timestamp all go to test, so every training row is strictly older
    than every test row (the test share can exceed `test_ratio` slightly).
    """
    _check_ratio(test_ratio)
    if inter.timestamps is None:
        raise DataError("a temporal split needs timestamps, and this data has none")
    n_test = int(np.rint(len(inter) * test_ratio))
    if n_test == 0:
        return _by_mask(inter, np.zeros(len(inter), dtype=bool))
    cut = np.sort(inter.timestamps)[len(inter) - n_test]
    return _by_mask(inter, inter.timestamps >= cut)


def leave_last_out(inter: Interactions, n: int = 1) -> Split:
    """Each user's last `n` interactions by time (file order breaks ties) go to test.

    Users with `n` or fewer interactions stay wholly in train, so everyone keeps history.
    Without timestamps, "last" means last in file order.
    """
    if n < 1:
        raise ConfigError(f"leave_last_out needs n >= 1, got {n}")
    counts = inter.user_counts()
    ts = inter.timestamps if inter.timestamps is not None else np.zeros(len(inter), np.int64)
    newest_first = np.lexsort((-np.arange(len(inter)), -ts, inter.user_idx))
    n_test = np.where(counts > n, n, 0)
    return _by_mask(inter, _first_per_user(inter, newest_first, n_test))


def carve_validation(inter: Interactions, ratio: float = 0.1, seed: int = 0) -> Split:
    """``(fit, validation)`` carved out of training data for early stopping and tuning.

    The same per-user holdout as `user_ratio_split`, so the test set is never touched.
    """
    return user_ratio_split(inter, test_ratio=ratio, seed=seed)


SPLIT_METHODS = ("ratio", "user-ratio", "temporal", "leave-last")


def split(
    inter: Interactions, method: str, test_ratio: float = 0.2, n: int = 1, seed: int = 42
) -> Split:
    """Dispatch by name: ``ratio``, ``user-ratio``, ``temporal`` or ``leave-last``."""
    if method == "ratio":
        return random_split(inter, test_ratio, seed)
    if method == "user-ratio":
        return user_ratio_split(inter, test_ratio, seed)
    if method == "temporal":
        return temporal_split(inter, test_ratio)
    if method == "leave-last":
        return leave_last_out(inter, n)
    raise ConfigError(f"unknown split method {method!r} (use {', '.join(SPLIT_METHODS)})")


# ------------------------------------------------------------------------------------ files
def write_split(train: Interactions, test: Interactions, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``train.tsv`` and ``test.tsv`` (header ``user_id item_id rating timestamp``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "train.tsv", out / "test.tsv")
    write_tsv(train, paths[0])
    write_tsv(test, paths[1])
    return paths


def write_tsv(inter: Interactions, path: str | Path) -> Path:
    """One interaction per line, tab-separated, with a header; columns absent in the data
    (ratings, timestamps) are left out. Integral ratings are written as integers."""
    frame = inter.to_frame()
    if inter.ratings is not None:
        r = inter.ratings
        frame["rating"] = r.astype(np.int64) if np.all(r == np.round(r)) else r.astype(str)
    path = Path(path)
    frame.to_csv(path, sep="\t", index=False, lineterminator="\n")
    return path


def movielens_folds(source: str | Path, out_dir: str | Path) -> list[Path]:
    """The five ML-100K rating folds ``u1..u5.base/.test``, byte for byte as GroupLens' mku.sh.

    Fold k tests on lines ``20000·(k−1)+1 … 20000·k`` of u.data and trains on the other
    lines; each file is sorted like ``sort -t<TAB> -k 1,1n -k 2,2n`` (user, then item,
    numerically; whole line last) and keeps the original line text. `source` is u.data or
    the folder that holds it.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "u.data"
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    lines = path.read_bytes().splitlines()
    if len(lines) != ML100K_LINES:
        raise DataError(
            f"{path}: expected {ML100K_LINES} lines of ML-100K u.data, found {len(lines)}"
        )
    try:
        keys = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1], dtype=np.int64)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not ML-100K u.data ({str(exc).splitlines()[0]})") from None
    users, items = keys[0].to_numpy(), keys[1].to_numpy()
    text = np.array(lines, dtype=bytes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(1, 6):
        in_test = np.zeros(ML100K_LINES, dtype=bool)
        in_test[ML100K_FOLD * (k - 1): ML100K_FOLD * k] = True
        for suffix, rows in (("base", np.flatnonzero(~in_test)), ("test", np.flatnonzero(in_test))):
            order = rows[np.lexsort((text[rows], items[rows], users[rows]))]
            target = out / f"u{k}.{suffix}"
            target.write_bytes(b"\n".join(text[order].tolist()) + b"\n")
            written.append(target)
    return written


# ---------------------------------------------------------------------------------- helpers
def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"test ratio must be between 0 and 1 (exclusive), got {ratio}")


def _first_per_user(inter: Interactions, order: np.ndarray, n_per_user: np.ndarray) -> np.ndarray:
    """Mask of the first ``n_per_user[u]`` rows of each user in `order` (grouped by user)."""
    counts = inter.user_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    users = inter.user_idx[order]
    rank = np.arange(len(order)) - starts[users]
    mask = np.zeros(len(inter), dtype=bool)
    mask[order[rank < n_per_user[users]]] = True
    return mask


def _by_mask(inter: Interactions, test: np.ndarray) -> Split:
    return inter.subset(~test), inter.subset(test)
