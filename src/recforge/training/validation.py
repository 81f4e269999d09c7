"""Validation during training: the early-stopping metric of the shared epoch loop.

Held-out interactions come from `recforge.data.splitting.carve_validation` (the one per-user
holdout); lists come from `recforge.ranking.top_k` and metrics from
`recforge.evaluation.metrics`, so a validation figure is computed exactly like the
evaluator's, only on fewer metrics and after every epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recforge import resources
from recforge.data.interactions import Interactions
from recforge.evaluation import metrics as mx
from recforge.ranking import top_k
from recforge.training.config import parse_metric

__all__ = ["make_validator"]


ScoreFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def make_validator(
    score: ScoreFn,
    exclude: sp.csr_matrix,
    held_out: Interactions,
    metric: str,
    rating_scale: tuple[float, float] | None = None,
) -> tuple[Callable[[], float], bool]:
    """A zero-argument function computing `metric` on `held_out`, and whether higher is better.

    Args:
        score: the model's ``score(user_idx, item_idx=None)``.
        exclude: users × items matrix of the training items removed from each ranking.
        held_out: the validation interactions (same ID maps).
        metric: ``ndcg@K``, ``recall@K`` or ``rmse`` (needs ratings in `held_out`).
        rating_scale: predictions are clipped to it for ``rmse``.
    """
    kind, k = parse_metric(metric)
    if kind == "rmse":
        if held_out.ratings is None:
            raise ValueError("validation metric rmse needs ratings in the validation data")
        users, items = held_out.user_idx.astype(np.int64), held_out.item_idx.astype(np.int64)
        target = held_out.ratings.astype(np.float64)

        def validate_rmse() -> float:
            pred = np.asarray(score(users, items), np.float64)
            if rating_scale is not None:
                pred = np.clip(pred, *rating_scale)
            return mx.rmse(target, pred)

        return validate_rmse, False

    relevant = held_out.csr(binary=True)
    val_users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    n_relevant = np.diff(relevant.indptr)[val_users]
    n_items = exclude.shape[1]
    keys = np.sort(held_out.user_idx.astype(np.int64) * n_items + held_out.item_idx)
    block = resources.block_rows(4 * max(n_items, 1))
    per_user = mx.RANKING_METRICS[kind]

    def validate_ranking() -> float:
        values = np.empty(len(val_users))
        for start in range(0, len(val_users), block):
            users = val_users[start:start + block]
            top, _ = top_k(score(users, None), k, exclude=exclude[users])
            cand = users[:, None] * n_items + top
            pos = np.minimum(np.searchsorted(keys, cand), len(keys) - 1)
            hits = (keys[pos] == cand) & (top >= 0)
            stop = start + len(users)
            values[start:stop] = per_user(hits, n_relevant[start:stop])
        return float(values.mean()) if len(values) else 0.0

    return validate_ranking, True
