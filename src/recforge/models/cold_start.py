"""Shared machinery of the models that read user and item features (cold start).

`FeatureColdStart` is the mixin of feature models (content, two-tower, DeepFM): it declares
the `COLD_USERS` and `COLD_ITEMS` capabilities, holds the fitted feature pipelines
(`user_pipeline_`, `item_pipeline_`) and encodes feature frames with them. The public
cold-start API (`recommend_cold`, `score_new_items`, `similar_new_items`) lives in the base
class, which checks the capability; a model implements `score_cold_users`,
`score_new_items_idx` and, for similarity, `new_item_vectors`.

`PipelineStateMixin` fits the pipelines before training and saves them with the weights, for
models whose config has `use_item_features`, `use_user_features`, `text_buckets` and
`zip_prefix`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.features import FeaturePipeline, entity_features
from recforge.data.interactions import IdMap, Interactions
from recforge.models.base import Recommender
from recforge.models.capabilities import Capability

__all__ = ["FeatureColdStart", "PipelineStateMixin", "as_feature_frame", "request_histories"]


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


def request_histories(items: Any, ids: Sequence[str], item_map: IdMap) -> list[np.ndarray]:
    """Per ID of `ids`, the known item indices given at request time (unknown item IDs dropped).

    `items`: None, one list of item IDs for every ID, or a mapping ``{id: [item IDs]}``.
    """
    if items is None:
        return [np.zeros(0, np.int64) for _ in ids]
    if isinstance(items, Mapping):
        lists = [items.get(i, items.get(str(i), [])) for i in ids]
    else:
        lists = [list(items)] * len(ids)
    out = []
    for given in lists:
        idx = item_map.lookup([str(x) for x in given]) if len(given) else np.zeros(0, np.int64)
        out.append(np.unique(idx[idx >= 0]).astype(np.int64))
    return out


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

    def _user_feature_rows(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix | None:
        pipe = self.user_pipeline_
        return None if pipe is None else pipe.transform(frame, index=list(ids))

    def _item_feature_rows(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix | None:
        pipe = self.item_pipeline_
        return None if pipe is None else pipe.transform(frame, index=list(ids))


class PipelineStateMixin(FeatureColdStart):
    """Fits `item_pipeline_` / `user_pipeline_` before training and saves them with the weights."""

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg: Any = self.config
        self.user_pipeline_ = self.item_pipeline_ = None
        if cfg.use_item_features:
            self.item_pipeline_, _ = entity_features(interactions.item_features, self.item_map_.ids,
                                                     text_buckets=cfg.text_buckets)
        if cfg.use_user_features:
            self.user_pipeline_, _ = entity_features(interactions.user_features, self.user_map_.ids,
                                                     zip_prefix=cfg.zip_prefix)
        super()._fit(interactions, validation)

    def _get_state(self) -> dict[str, np.ndarray]:
        state = super()._get_state()
        if self.item_pipeline_ is not None:
            state.update(self.item_pipeline_.to_arrays("item_pipeline."))
        if self.user_pipeline_ is not None:
            state.update(self.user_pipeline_.to_arrays("user_pipeline."))
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_pipeline_ = FeaturePipeline.from_arrays(state, "item_pipeline.")
        self.user_pipeline_ = FeaturePipeline.from_arrays(state, "user_pipeline.")
        super()._set_state(state)
