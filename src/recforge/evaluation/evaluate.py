"""Evaluation through the public model API, by the benchmark protocol (``shared/PROTOCOL.md``).

* `evaluate_topn`: full ranking. Every user of the test set is evaluated; the model ranks
  every training item minus the user's training items (``recommend_idx(..., exclude_seen=
  True)``). Users unknown to the model cannot be ranked and count with zero hits; test items
  unknown to the model stay in the denominator. Lists are checked: a list holding a training
  item of its user raises `SeenItemError` (a bug, not a result).
* `evaluate_lists`: the same scoring for top-K lists given as a frame (user_id, item_id,
  rank), e.g. the output of ``recforge recommend``; after the model call both share one code
  path (`score_topn`), so both give the same figures for the same lists.
* `evaluate_rating`: RMSE/MAE of ``model.predict`` on every test pair, plus "liked"
  (rating >= threshold) classification metrics.
* `evaluate_sampled`: the sampled protocol of NCF (He et al. 2017): each test pair is ranked
  against `n_negatives` sampled items the user has not interacted with. Its figures are named
  ``sampled_*`` and are not comparable with full-ranking figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.interactions import IdMap, Interactions
from recforge.errors import ConfigError, DataError, RecforgeError
from recforge.evaluation import metrics as mx
from recforge.linalg import Matrix
from recforge.ranking import top_k

if TYPE_CHECKING:
    from recforge.models.base import Recommender

#: lower is better for these metric names (the part before ``@``)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "popularity", "gini"})


class SeenItemError(RecforgeError):
    """A recommendation list contains a training item of its user: a bug, not a result."""


@dataclass
class EvalResult:
    """Figures of one evaluation.

    `metrics` maps lowercase names (``"ndcg@10"``, ``"coverage@20"``, ``"rmse"``,
    ``"sampled_hr@10"``) to means; `per_user` maps the per-user metric names to vectors
    aligned with `user_ids` (for paired tests); `hits` (users × depth, rank order) and
    `n_relevant` allow metric curves over K; `samples` keeps per-pair errors (rating task).
    """

    task: str
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: int
    user_ids: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    hits: np.ndarray | None = None
    n_relevant: np.ndarray | None = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)

    def curve(self, metric: str, max_k: int) -> np.ndarray:
        """Mean of ranking `metric` (``"recall"``, ``"ndcg"``...) at K = 1..max_k."""
        if self.hits is None or self.n_relevant is None:
            raise ConfigError(f"a {self.task} evaluation has no ranking lists for a curve")
        if metric not in mx.RANKING_METRICS:
            known = ", ".join(mx.RANKING_METRICS)
            raise ConfigError(f"unknown ranking metric {metric!r} (known: {known})")
        if max_k > self.hits.shape[1]:
            raise ConfigError(
                f"lists are {self.hits.shape[1]} deep, a curve to K={max_k} needs deeper lists")
        fn = mx.RANKING_METRICS[metric]
        return np.array([fn(self.hits[:, :k], self.n_relevant).mean() for k in range(1, max_k + 1)])

    def to_dict(self) -> dict[str, Any]:
        """``{"task", "users", "metrics", **info}`` with plain floats (NaN -> None)."""
        return {
            "task": self.task,
            "users": self.users,
            "metrics": {k: _plain(v) for k, v in self.metrics.items()},
            **{k: _plain(v) for k, v in self.info.items()},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ----------------------------------------------------------------------------- pure helpers


def lookup_cells(matrix: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """Bool (n, k): is ``matrix[r, items[r, j]]`` stored, for rows aligned with `items`.

    Padding (-1) is False. Vectorized by searching row-major linear keys.
    """
    items = np.asarray(items, np.int64)
    m = sp.csr_matrix(matrix)
    if m.shape[0] != items.shape[0]:
        raise ValueError(f"matrix has {m.shape[0]} rows, lists have {items.shape[0]}")
    m.sort_indices()
    n_cols = max(m.shape[1], 1)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    keys = rows * n_cols + m.indices.astype(np.int64)
    valid = (items >= 0) & (items < m.shape[1])
    query = np.arange(items.shape[0], dtype=np.int64)[:, None] * n_cols + np.where(valid, items, 0)
    pos = np.searchsorted(keys, query)
    found = np.zeros(items.shape, bool)
    inside = pos < len(keys)
    found[inside] = keys[pos[inside]] == query[inside]
    return found & valid


def check_no_seen(
    items: np.ndarray,
    seen: sp.csr_matrix,
    user_labels: Sequence[Any] | np.ndarray | None = None,
    item_labels: Sequence[Any] | np.ndarray | None = None,
) -> None:
    """Raise `SeenItemError` if any list holds a training item of its user.

    `items` (n, k) are item indices (-1 padding); `seen` is the (n, n_items) training matrix
    whose row r belongs to the user of ``items[r]`` (e.g. ``model.seen_[user_idx]``). The
    optional labels (raw IDs) only make the message readable.
    """
    bad = lookup_cells(seen, items)
    if not bad.any():
        return
    rows, cols = np.nonzero(bad)
    r, c = int(rows[0]), int(cols[0])
    user = user_labels[r] if user_labels is not None else r
    item = item_labels[int(items[r, c])] if item_labels is not None else int(items[r, c])
    raise SeenItemError(
        f"{int(bad.sum())} recommendations in {len(np.unique(rows))} lists are training items of "
        f"their user (first: user {user!s}, item {item!s} at rank {c + 1}); a list must exclude "
        "the user's training items — this is a bug in the recommender, not a result"
    )


def _as_frame(
    data: Interactions | pd.DataFrame, what: str, need_rating: bool = False
) -> pd.DataFrame:
    if isinstance(data, Interactions):
        frame = data.to_frame()
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        raise DataError(f"{what} must be Interactions or a DataFrame, got {type(data).__name__}")
    needed = ("user_id", "item_id", "rating") if need_rating else ("user_id", "item_id")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        columns = ", ".join(map(str, frame.columns))
        raise DataError(f"{what} lacks column(s) {', '.join(missing)} (columns: {columns})")
    if len(frame) == 0:
        raise DataError(f"{what} is empty")
    out = frame.copy()
    out["user_id"] = out["user_id"].astype(str)
    out["item_id"] = out["item_id"].astype(str)
    return out


@dataclass
class _TestSet:
    user_ids: np.ndarray        # raw IDs of the test users (sorted, the row order)
    user_idx: np.ndarray        # their index in the training space, -1 if unknown
    relevant: sp.csr_matrix     # (n_test_users, n_items) test items known to training
    n_relevant: np.ndarray      # distinct test items per user, known or not
    unknown_items: int          # test pairs whose item is not a training item


def _test_set(test: Interactions | pd.DataFrame, user_map: IdMap, item_map: IdMap) -> _TestSet:
    frame = _as_frame(test, "test data").drop_duplicates(["user_id", "item_id"])
    test_users = IdMap.from_values(frame["user_id"])
    rows = test_users.lookup(frame["user_id"].to_numpy())
    items = item_map.lookup(frame["item_id"].to_numpy())
    known = items >= 0
    relevant = sp.csr_matrix(
        (np.ones(int(known.sum()), np.float32), (rows[known], items[known])),
        shape=(len(test_users), len(item_map)),
    )
    relevant.sort_indices()
    return _TestSet(
        user_ids=test_users.ids,
        user_idx=user_map.lookup(test_users.ids),
        relevant=relevant,
        n_relevant=np.bincount(rows, minlength=len(test_users)),
        unknown_items=int((~known).sum()),
    )


def _rows(matrix: sp.csr_matrix, idx: np.ndarray) -> sp.csr_matrix:
    """Rows of `matrix` at `idx`; -1 gives an empty row."""
    idx = np.asarray(idx, np.int64)
    out = sp.csr_matrix(matrix)[np.where(idx >= 0, idx, 0)]
    if (idx < 0).any():
        keep = sp.diags((idx >= 0).astype(np.float32))
        out = sp.csr_matrix(keep @ out)
        out.eliminate_zeros()
    return out


def _ks(ks: Iterable[int]) -> list[int]:
    out = sorted({int(k) for k in ks})
    if not out or out[0] < 1:
        raise ConfigError(f"every K must be a positive integer, got {list(ks)}")
    return out


# ----------------------------------------------------------------------------- top-N


def score_topn(
    items: np.ndarray,
    test: _TestSet,
    seen: sp.csr_matrix,
    item_popularity: np.ndarray,
    ks: Iterable[int],
    *,
    item_ids: np.ndarray | None = None,
    beyond_accuracy: bool = True,
    item_vectors: Matrix | None = None,
    exclude_seen: bool = True,
) -> EvalResult:
    """Score top-K lists (rows aligned with the test users) against a test set.

    `seen` is the training users × items matrix and `item_popularity` the training users per
    item; both define the catalog (the training items). Lists holding a training item of
    their user are refused (`SeenItemError`) unless ``exclude_seen=False`` (re-consumption
    data, where a user's own items may come again). The shared path of `evaluate_topn` and
    `evaluate_lists`.
    """
    ks = _ks(ks)
    items = np.asarray(items, np.int64)
    if items.shape[1] < ks[-1]:
        raise ConfigError(f"lists are {items.shape[1]} deep, K={ks[-1]} needs deeper lists")
    if exclude_seen:
        check_no_seen(items, _rows(seen, test.user_idx), test.user_ids, item_ids)
    hits = lookup_cells(test.relevant, items)
    n_items = seen.shape[1]
    n_train_users = seen.shape[0]
    metrics: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    if beyond_accuracy and item_vectors is None:
        item_vectors = sp.csr_matrix(seen).T.tocsr()
    for k in ks:
        for name, values in mx.ranking_metrics(hits, test.n_relevant, k).items():
            per_user[f"{name}@{k}"] = values
        top = items[:, :k]
        metrics[f"coverage@{k}"] = mx.catalog_coverage(top, n_items)
        if beyond_accuracy:
            assert item_vectors is not None  # defaulted above
            per_user[f"novelty@{k}"] = mx.novelty(top, item_popularity, n_train_users)
            per_user[f"popularity@{k}"] = mx.average_popularity(top, item_popularity)
            per_user[f"diversity@{k}"] = mx.intra_list_diversity(top, item_vectors)
            metrics[f"gini@{k}"] = mx.gini_exposure(top, n_items)
    for name, values in per_user.items():
        metrics[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    metrics = {name: metrics[name] for name in sorted(metrics, key=_metric_order)}
    known = test.user_idx >= 0
    return EvalResult(
        task="topn",
        metrics=metrics,
        per_user=per_user,
        users=len(test.user_ids),
        user_ids=test.user_ids,
        info={
            "unknown_users": int((~known).sum()),
            "unknown_test_items": test.unknown_items,
            "test_pairs": int(test.n_relevant.sum()),
            "catalog_items": int(n_items),
            "depth": int(items.shape[1]),
        },
        hits=hits,
        n_relevant=test.n_relevant,
    )


_ORDER = ["precision", "recall", "f1", "ndcg", "hr", "map", "mrr", "coverage", "novelty",
          "diversity", "popularity", "gini"]


def _metric_order(name: str) -> tuple[int, int, str]:
    base, _, k = name.partition("@")
    base = base.removeprefix("sampled_")
    return (int(k) if k.isdigit() else 0, _ORDER.index(base) if base in _ORDER else 99, name)


def evaluate_topn(
    model: Recommender,
    test: Interactions | pd.DataFrame,
    ks: Iterable[int] = (10, 20),
    batch_size: int = 1024,
    *,
    depth: int | None = None,
    beyond_accuracy: bool = True,
    exclude_seen: bool = True,
) -> EvalResult:
    """Full-ranking top-N evaluation of a fitted model on a test set (raw IDs).

    Lists are ``max(ks)`` deep, or `depth` (for curves over K). Each user's training items
    are left out of the ranking, unless ``exclude_seen=False`` (re-consumption data: a
    user's own items may be the next ones). ``info`` reports
    ``unknown_users`` (zero hits), ``unknown_test_items`` (in the denominator) and
    ``recommend_seconds`` (wall time of the `recommend_idx` calls).
    """
    ks = _ks(ks)
    depth = max(ks[-1], depth or 0)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    n_items = model.n_items  # raises NotFittedError first
    ts = _test_set(test, model.user_map_, model.item_map_)
    items = np.full((len(ts.user_ids), depth), -1, np.int64)
    rows = np.flatnonzero(ts.user_idx >= 0)
    start_time = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        sel = rows[start:start + batch_size]
        rec, _ = model.recommend_idx(ts.user_idx[sel], k=depth, exclude_seen=exclude_seen)
        rec = np.asarray(rec, np.int64)
        if rec.shape != (len(sel), depth) or rec.max(initial=-1) >= n_items:
            raise RecforgeError(f"{type(model).__name__}.recommend_idx returned malformed lists "
                                f"(shape {rec.shape}, expected {(len(sel), depth)})")
        items[sel] = rec
    seconds = time.perf_counter() - start_time
    result = score_topn(items, ts, model.seen_, model.item_popularity_, ks,
                        item_ids=model.item_map_.ids, beyond_accuracy=beyond_accuracy, exclude_seen=exclude_seen)
    result.info["recommend_seconds"] = seconds
    return result


def evaluate_lists(
    recs: pd.DataFrame,
    train: Interactions | pd.DataFrame,
    test: Interactions | pd.DataFrame,
    ks: Iterable[int] = (10, 20),
    *,
    depth: int | None = None,
    beyond_accuracy: bool = True,
) -> EvalResult:
    """Score top-K lists given as a frame (user_id, item_id[, rank]) against train/test data.

    A row's ``rank`` (1-based) is its position in the list; without a rank column, file order
    per user is the rank. Ranks beyond the depth are ignored. Lists of users absent from the
    training data are ignored (those users count with zero hits, as in `evaluate_topn`);
    an item absent from the training data, or one listed twice, raises DataError.
    """
    ks = _ks(ks)
    depth = max(ks[-1], depth or 0)
    train_i = train if isinstance(train, Interactions) else Interactions.from_frame(
        _as_frame(train, "training data"), rating_col=None, timestamp_col=None)
    frame = _as_frame(recs, "recommendations")
    if "rank" in frame.columns:
        ranks = pd.to_numeric(frame["rank"], errors="coerce")
        if ranks.isna().any() or (ranks < 1).any() or (ranks % 1 != 0).any():
            raise DataError("recommendations: column 'rank' must hold positive integers")
        frame["rank"] = ranks.astype(np.int64)
    else:
        frame["rank"] = frame.groupby("user_id", sort=False).cumcount() + 1
    if frame.duplicated(["user_id", "rank"]).any():
        first = frame[frame.duplicated(["user_id", "rank"])].iloc[0]
        raise DataError(
            f"recommendations: user {first['user_id']} has two items at rank {first['rank']}")
    if frame.duplicated(["user_id", "item_id"]).any():
        first = frame[frame.duplicated(["user_id", "item_id"])].iloc[0]
        raise DataError(
            f"recommendations: user {first['user_id']} lists item {first['item_id']} twice")
    ts = _test_set(test, train_i.user_map, train_i.item_map)
    frame = frame[frame["rank"] <= depth]
    rows = IdMap(ts.user_ids).lookup(frame["user_id"].to_numpy())
    frame, rows = frame[rows >= 0], rows[rows >= 0]
    item_idx = train_i.item_map.lookup(frame["item_id"].to_numpy())
    if (item_idx < 0).any():
        bad = frame["item_id"].to_numpy()[item_idx < 0]
        raise DataError(f"recommendations hold {len(bad)} items that are not training items "
                        f"(first: {bad[0]}); the protocol ranks training items only")
    keep = ts.user_idx[rows] >= 0
    items = np.full((len(ts.user_ids), depth), -1, np.int64)
    items[rows[keep], frame["rank"].to_numpy()[keep] - 1] = item_idx[keep]
    return score_topn(items, ts, train_i.csr(binary=True), train_i.item_counts(), ks,
                      item_ids=train_i.item_map.ids, beyond_accuracy=beyond_accuracy)


def read_recommendations(path: str | Path) -> pd.DataFrame:
    """A recommendations table (``recforge recommend --out``): user_id, item_id[, rank, score].

    Tab-separated with a header (comma-separated for ``.csv``, Parquet for ``.parquet``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            sep = "," if path.suffix.lower() == ".csv" else "\t"
            frame = pd.read_csv(path, sep=sep, dtype={"user_id": str, "item_id": str})
    except Exception as exc:  # parsers raise many types for a malformed file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read recommendations: {first}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in ("user_id", "item_id"):
        if col not in frame.columns:
            raise DataError(f"{path}: missing column {col!r} (columns: {', '.join(frame.columns)})")
    return frame


# ----------------------------------------------------------------------------- rating


def _per_user_mean(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n)
    sums = np.bincount(codes, weights=values, minlength=n)
    return np.divide(sums, counts, out=np.full(n, np.nan), where=counts > 0)


def rating_scores(
    y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 4.0, probabilities: bool = False
) -> dict[str, float]:
    """RMSE, MAE and "liked" (>= threshold) classification metrics of predictions.

    ``log_loss`` only when `probabilities` (predictions are P(liked)); then the predicted
    class is ``pred >= 0.5`` instead of ``pred >= threshold``.
    """
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    liked = y_true >= threshold
    guess = y_pred >= (0.5 if probabilities else threshold)
    out = {
        "rmse": mx.rmse(y_true, y_pred),
        "mae": mx.mae(y_true, y_pred),
        "accuracy": mx.accuracy(liked, guess),
        "precision": mx.precision(liked, guess),
        "recall": mx.recall(liked, guess),
        "f1": mx.f1_score(liked, guess),
        "auc": mx.auc_roc(liked, y_pred),
    }
    if probabilities:
        out["log_loss"] = mx.log_loss(liked, y_pred)
    return out


def evaluate_rating(
    model: Recommender, test: Interactions | pd.DataFrame, threshold: float = 4.0
) -> EvalResult:
    """Rating prediction on every test pair via ``model.predict`` (clipped to the scale).

    Pairs with a user or item unknown to the model get the model's fallback prediction and
    are counted in ``info["unknown_pairs"]``. Per-user RMSE and MAE are kept for paired tests.
    """
    model.n_items  # noqa: B018 - raises NotFittedError before any work
    frame = _as_frame(test, "test data", need_rating=True)
    y_true = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(np.float64)
    if np.isnan(y_true).any():
        raise DataError("test data: column 'rating' has empty or non-numeric values")
    users, items = frame["user_id"].to_numpy(), frame["item_id"].to_numpy()
    start = time.perf_counter()
    y_pred = np.asarray(model.predict(users, items), np.float64)
    seconds = time.perf_counter() - start
    scale = getattr(model, "rating_scale_", None)
    probabilities = bool(((y_pred >= 0) & (y_pred <= 1)).all()) and (
        scale is None or (scale[0] >= 0 and scale[1] <= 1))
    metrics = rating_scores(y_true, y_pred, threshold, probabilities)
    test_users = IdMap.from_values(users)
    codes = test_users.lookup(users)
    err = y_pred - y_true
    per_user = {
        "rmse": np.sqrt(_per_user_mean(codes, err**2, len(test_users))),
        "mae": _per_user_mean(codes, np.abs(err), len(test_users)),
    }
    unknown = (model.user_map_.lookup(users) < 0) | (model.item_map_.lookup(items) < 0)
    return EvalResult(
        task="rating",
        metrics=metrics,
        per_user=per_user,
        users=len(test_users),
        user_ids=test_users.ids,
        info={"pairs": len(frame), "unknown_pairs": int(unknown.sum()), "threshold": threshold,
              "predict_seconds": seconds},
        samples={"sq_error": err**2, "abs_error": np.abs(err)},
    )


# ----------------------------------------------------------------------------- sampled


def _row_duplicates(a: np.ndarray) -> np.ndarray:
    """Bool mask of entries equal to an earlier entry (in sorted order) of the same row."""
    order = np.argsort(a, axis=1, kind="stable")
    s = np.take_along_axis(a, order, axis=1)
    dup_sorted = np.zeros(a.shape, bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    dup = np.zeros(a.shape, bool)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def sample_negatives(
    forbidden: sp.csr_matrix, rows: np.ndarray, n_negatives: int, seed: int = 0,
    max_rounds: int = 1000,
) -> np.ndarray:
    """(len(rows), n_negatives) distinct item indices, none stored in ``forbidden[row]``."""
    forbidden = sp.csr_matrix(forbidden)
    n_items = forbidden.shape[1]
    allowed = n_items - np.diff(forbidden.indptr)[rows]
    if len(rows) and allowed.min() < n_negatives:
        raise DataError(f"a user has only {int(allowed.min())} items to sample negatives from, "
                        f"fewer than n_negatives={n_negatives}")
    rng = np.random.default_rng(seed)
    neg = rng.integers(0, n_items, (len(rows), n_negatives))
    sub = forbidden[rows]
    todo = np.arange(len(rows))  # rows still to check; only rows with a redraw are rechecked
    for _ in range(max_rounds):
        part = neg[todo]
        bad = lookup_cells(sub[todo], part) | _row_duplicates(part)
        redo = bad.any(axis=1)
        if not redo.any():
            return neg
        part[bad] = rng.integers(0, n_items, int(bad.sum()))
        neg[todo] = part
        todo = todo[redo]
    raise DataError("could not sample distinct negatives (catalog too small for n_negatives)")


def evaluate_sampled(
    model: Recommender,
    test: Interactions | pd.DataFrame,
    ks: Iterable[int] = (10,),
    n_negatives: int = 100,
    seed: int = 0,
    batch_size: int = 4096,
) -> EvalResult:
    """Sampled ranking (NCF protocol): each test pair vs `n_negatives` unseen sampled items.

    Negatives are distinct training items that the user has neither in training nor in the
    test set. The test item and its negatives are ranked by `recforge.ranking.top_k` (ties:
    lower item index first, as in `recommend_idx`). Per case there is one relevant item; a user's figure is the
    mean over the user's cases. Cases with a user or item unknown to the model are misses.
    Metric names: ``sampled_hr@K``, ``sampled_ndcg@K``, ``sampled_mrr@K``.
    """
    ks = _ks(ks)
    if n_negatives < 1:
        raise ConfigError(f"n_negatives must be at least 1, got {n_negatives}")
    n_items = model.n_items
    ts = _test_set(test, model.user_map_, model.item_map_)
    # cases with a known user and item come from the relevance matrix; the rest are misses
    rel = ts.relevant
    k_rows = np.repeat(np.arange(rel.shape[0]), np.diff(rel.indptr))
    k_items = rel.indices.astype(np.int64)
    ok = ts.user_idx[k_rows] >= 0
    k_rows, k_items = k_rows[ok], k_items[ok]
    forbidden = _rows(model.seen_, ts.user_idx) + rel
    neg = sample_negatives(forbidden, k_rows, n_negatives, seed)
    depth = ks[-1]
    hits = np.zeros((len(k_rows), depth), bool)
    per_batch = max(1, batch_size // (n_negatives + 1))
    for start in range(0, len(k_rows), per_batch):
        sl = slice(start, start + per_batch)
        cand = np.concatenate([k_items[sl, None], neg[sl]], axis=1)
        users = np.repeat(ts.user_idx[k_rows[sl]], n_negatives + 1)
        scores = np.asarray(model.score(users, cand.ravel())).reshape(cand.shape)
        # column 0 is the test item; ties go to the lower item index, as in every ranking
        top, _ = top_k(scores, depth, tiebreak=-cand)
        hits[sl] = top == 0
    n_cases = int(ts.n_relevant.sum())
    per_case: dict[str, np.ndarray] = {}
    for k in ks:
        found = mx.ranking_metrics(hits, np.ones(len(k_rows), np.int64), k)
        for name in ("hr", "ndcg", "mrr"):
            per_case[f"sampled_{name}@{k}"] = found[name]
    metrics, per_user = {}, {}
    for name, values in per_case.items():
        user_sum = np.bincount(k_rows, weights=values, minlength=len(ts.user_ids))
        per_user[name] = user_sum / np.maximum(ts.n_relevant, 1)
        metrics[name] = float(values.sum() / n_cases) if n_cases else float("nan")
    metrics = {name: metrics[name] for name in sorted(metrics, key=_metric_order)}
    return EvalResult(
        task="sampled",
        metrics=metrics,
        per_user=per_user,
        users=len(ts.user_ids),
        user_ids=ts.user_ids,
        info={"cases": int(n_cases), "unranked_cases": int(n_cases - len(k_rows)),
              "unknown_users": int((ts.user_idx < 0).sum()),
              "n_negatives": n_negatives, "seed": seed, "catalog_items": int(n_items)},
    )
