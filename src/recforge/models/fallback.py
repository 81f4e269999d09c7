"""The unknown-user chain: how a model ranks users it was not trained on.

One function, used by `Recommender.rank_users` / `recommend` (``unknown="fallback"``), by the
cold-start benchmark and by the service. Per user, the first that applies:

1. ``features`` — the user has a feature row and the model can rank users from features
   (`Capability.COLD_USERS`, trained with user features): `score_cold_users`, with the
   user's request-time items as history;
2. ``fold_in`` — the user has items (events stored since training, a session): the model's
   fold-in of them (`rank_histories`);
3. ``popularity`` — neither: the most popular items (`popular_idx`; the score is the share
   of training users who interacted with the item).

With `exclude_seen` the user's own items are never returned. Every list is ranked by
`recforge.ranking.top_k`. Only the public `Recommender` API is used here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recforge.models.base import Recommender, candidate_mask, check_k, history_indices
from recforge.models.capabilities import Capability
from recforge.ranking import RankedLists, top_k

__all__ = ["feature_rows", "rank_unknown"]


def rank_unknown(
    model: Recommender,
    histories: Sequence[np.ndarray],
    k: int = 10,
    exclude_seen: bool = True,
    candidates: np.ndarray | None = None,
    user_features: pd.DataFrame | Mapping[str, Any] | None = None,
    ids: Sequence[str] | None = None,
) -> RankedLists:
    """Top-`k` lists of users unknown to `model`, one row per history, with their fallback labels.

    `histories`: item indices per user. `ids` name the users (rows of a `user_features` frame
    are matched by them; a mapping is one feature row shared by all); by default they are
    anonymous. `candidates`: item indices the lists may hold.
    """
    check_k(k)
    ordered = model.supports(Capability.SEQUENCES)
    given = [history_indices(h, model.n_items, ordered=ordered) for h in histories]
    names = [str(i) for i in ids] if ids is not None else [f"anonymous-{i}" for i in range(len(given))]
    out = RankedLists.empty(len(given), k)
    frame = feature_rows(model, names, user_features)
    has_features = np.array([frame is not None and u in frame.index for u in names], bool)
    by_features = np.flatnonzero(has_features)
    if frame is not None and len(by_features):
        hist = [given[r] for r in by_features]
        scores = model.score_cold_users(frame.loc[[names[r] for r in by_features]], hist)
        out.items[by_features], out.scores[by_features] = top_k(
            scores, k, exclude=hist if exclude_seen else None, candidates=candidate_mask(candidates, model.n_items))
        out.fallback[by_features] = "features"
    has_events = np.array([len(h) > 0 for h in given], bool)
    folded = np.flatnonzero(~has_features & has_events)
    if len(folded):
        out.items[folded], out.scores[folded] = model.rank_histories([given[r] for r in folded], k,
                                                                      exclude_seen, candidates)
        out.fallback[folded] = "fold_in"
    popular = np.flatnonzero(~has_features & ~has_events)
    if len(popular):
        out.items[popular], out.scores[popular] = model.popular_idx(k, candidates)
        out.fallback[popular] = "popularity"
    return out


def feature_rows(model: Recommender, ids: Sequence[str],
                 user_features: pd.DataFrame | Mapping[str, Any] | None) -> pd.DataFrame | None:
    """Feature rows of unknown users indexed by user ID; None when `model` cannot use them.

    A frame is matched by its index; a mapping is one row of features shared by every user
    in `ids` (a request's features).
    """
    if user_features is None or not ids or model.user_features_ is None \
            or not model.supports(Capability.COLD_USERS):
        return None
    if isinstance(user_features, pd.DataFrame):
        frame = user_features.copy()
        frame.index = frame.index.astype(str)
        return frame[~frame.index.duplicated()]
    if not user_features:
        return None
    unique = list(dict.fromkeys(ids))
    return pd.DataFrame([dict(user_features)] * len(unique), index=pd.Index(unique, dtype=object))
