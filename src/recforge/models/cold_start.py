"""Shared machinery of the models that read user and item features (cold start).

`FeatureColdStart` is the base of feature models (content, two-tower, DeepFM): it declares
the `COLD_USERS` and `COLD_ITEMS` capabilities, holds the fitted feature pipelines
(`user_pipeline_`, `item_pipeline_`) and encodes feature frames with them. A model
implements `score_cold_users`, `score_new_items_idx` and, for similarity,
`new_item_vectors`; the public cold-start API of every `Recommender` (`recommend_cold`,
`score_new_items`, `similar_new_items`) is the functions here, which check the capability
and rank through `recforge.ranking`.

Torch feature models build on `recforge.models.torch_base.FeatureTorchRecommender`, which
fits the pipelines before training and saves them with the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.features import FeaturePipeline, entity_features
from recforge.data.interactions import Interactions
from recforge.linalg import unit_rows
from recforge.models.base import Recommender, as_list, candidate_mask, check_k, ranked_frame, request_items
from recforge.models.capabilities import Capability
from recforge.ranking import top_k

__all__ = ["FeatureColdStart", "as_feature_frame", "recommend_cold", "score_new_items", "similar_new_items"]

_ITEM_PIPE, _USER_PIPE = "item_pipeline.", "user_pipeline."


def as_feature_frame(features: pd.DataFrame | pd.Series | Mapping[str, Any]) -> pd.DataFrame:
    """Feature rows as a frame indexed by string IDs (a Series or mapping is one row).

    >>> as_feature_frame({"id": "u9", "age": 30}).index.tolist()
    ['u9']
    """
    if isinstance(features, pd.Series):
        frame = features.to_frame().T
        if features.name is None:
            frame.index = pd.Index(["cold"])
    elif isinstance(features, Mapping):
        frame = pd.DataFrame([dict(features)], index=[str(features.get("id", "cold"))])
    else:
        frame = features.copy()
    frame.index = frame.index.astype(str)
    return frame


def recommend_cold(
    model: Recommender,
    user_features: pd.DataFrame | pd.Series | Mapping[str, Any],
    k: int = 10,
    seen_items: Mapping[str, Sequence[Any]] | Sequence[Any] | None = None,
    candidates: Any = None,
) -> pd.DataFrame:
    """`Recommender.recommend_cold`: rank users unknown to `model` from their feature rows."""
    model.require(Capability.COLD_USERS)
    check_k(k)
    frame = as_feature_frame(user_features)
    ids = [str(i) for i in frame.index]
    histories = request_items(seen_items, ids, model.item_map_)
    cand = None if candidates is None else model.item_map_.to_idx([str(c) for c in as_list(candidates)],
                                                                   what="item")
    items, scores = top_k(model.score_cold_users(frame, histories), k, exclude=histories,
                          candidates=candidate_mask(cand, model.n_items))
    return ranked_frame(model, np.asarray(ids, dtype=object), items, scores, "user_id", "item_id")


def score_new_items(model: Recommender, item_features: pd.DataFrame | pd.Series | Mapping[str, Any],
                    user_ids: Any = None) -> pd.DataFrame:
    """`Recommender.score_new_items`: known users (rows) × items unknown to `model` (columns)."""
    model.require(Capability.COLD_ITEMS)
    frame = as_feature_frame(item_features)
    users = model.user_map_.ids if user_ids is None else [str(u) for u in as_list(user_ids)]
    scores = model.score_new_items_idx(frame, model.user_map_.to_idx(users, what="user"))
    return pd.DataFrame(scores, index=pd.Index(users, name="user_id"), columns=frame.index)


def similar_new_items(model: Recommender, item_features: pd.DataFrame | pd.Series | Mapping[str, Any],
                      k: int = 10) -> pd.DataFrame:
    """`Recommender.similar_new_items`: the known items nearest (cosine) to each new item."""
    model.require(Capability.COLD_ITEMS)
    check_k(k)
    frame = as_feature_frame(item_features)
    new, known = model.new_item_vectors(frame)
    items, scores = top_k(np.asarray(unit_rows(new)) @ np.asarray(unit_rows(known)).T, k)
    return ranked_frame(model, frame.index.to_numpy(dtype=object), items, scores, "item_id", "similar_item_id")


class FeatureColdStart(Recommender):
    """Base of feature models: cold users and cold items, through fitted feature pipelines."""

    capabilities: ClassVar[frozenset[Capability]] = Recommender.capabilities | {
        Capability.COLD_USERS, Capability.COLD_ITEMS}

    user_pipeline_: FeaturePipeline | None
    item_pipeline_: FeaturePipeline | None

    def _fold_in_by_features(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in for models whose cold path reads request-time items (content, two_tower):
        users with unknown features and these histories. Such models use it as `_score_histories`."""
        frame = pd.DataFrame(index=pd.Index([f"history-{i}" for i in range(len(histories))], dtype=object))
        return self.score_cold_users(frame, histories)

    def _fit_feature_pipelines(self, interactions: Interactions) -> None:
        """Fit `item_pipeline_` / `user_pipeline_` as the config says (`use_item_features`,
        `use_user_features`, `text_buckets`, `zip_prefix`)."""
        cfg: Any = self.config
        self.user_pipeline_ = self.item_pipeline_ = None
        if cfg.use_item_features:
            self.item_pipeline_, _ = entity_features(interactions.item_features, self.item_map_.ids,
                                                     text_buckets=cfg.text_buckets)
        if cfg.use_user_features:
            self.user_pipeline_, _ = entity_features(interactions.user_features, self.user_map_.ids,
                                                     zip_prefix=cfg.zip_prefix)

    def _pipeline_arrays(self) -> dict[str, np.ndarray]:
        """The fitted pipelines as arrays for the artifact's weights."""
        state: dict[str, np.ndarray] = {}
        if self.item_pipeline_ is not None:
            state.update(self.item_pipeline_.to_arrays(_ITEM_PIPE))
        if self.user_pipeline_ is not None:
            state.update(self.user_pipeline_.to_arrays(_USER_PIPE))
        return state

    def _restore_pipelines(self, state: dict[str, np.ndarray]) -> None:
        """The pipelines back from `_pipeline_arrays` (None where none was saved)."""
        self.item_pipeline_ = FeaturePipeline.from_arrays(state, _ITEM_PIPE)
        self.user_pipeline_ = FeaturePipeline.from_arrays(state, _USER_PIPE)

    def _user_feature_rows(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix | None:
        pipe = self.user_pipeline_
        return None if pipe is None else pipe.transform(frame, index=list(ids))

    def _item_feature_rows(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix | None:
        pipe = self.item_pipeline_
        return None if pipe is None else pipe.transform(frame, index=list(ids))
