"""Demographic popularity (``demographic_popularity``): the cold-user baseline.

The most popular items within the user's demographic group (age bucket × gender by default),
smoothed towards global popularity. Users unknown to the model are ranked from their feature
rows (`Capability.COLD_USERS`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.features import FeaturePipeline
from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.capabilities import Capability

__all__ = ["DemographicPopularity", "DemographicPopularityConfig"]


class DemographicPopularityConfig(ModelConfig):
    """`group_by`: user feature columns forming the group (``age`` is bucketed, ``zip``
    cut to `zip_prefix` characters). `smoothing`: pseudo-interactions of global popularity
    mixed into each group's counts (small groups lean on the global ranking)."""

    group_by: list[str] = Field(default_factory=lambda: ["age", "gender"])
    smoothing: float = Field(50.0, ge=0)
    zip_prefix: int = Field(1, ge=1)


class DemographicPopularity(Recommender):
    """Popularity within the user's demographic group: ``(c_gi + m·p_i) / (n_g + m)``.

    ``c_gi``: training interactions of group g with item i; ``n_g``: all of group g's
    interactions; ``p_i``: item i's global share; m: `smoothing`. Users whose group is unknown
    (or data without user features) get global popularity.
    """

    name = "demographic_popularity"
    parallelism = "counting per group is one pass over the data"
    config_class = DemographicPopularityConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    capabilities: ClassVar[frozenset[Capability]] = Recommender.capabilities | {Capability.COLD_USERS}
    personalized: ClassVar[bool] = False
    config: DemographicPopularityConfig

    def _group_labels(self, frame: pd.DataFrame | None, ids: Any) -> np.ndarray:
        cols = {c: ("age" if c == "age" else "zip" if c == "zip" else "categorical")
                for c in self.config.group_by}
        if frame is None or not any(c in frame.columns for c in cols):
            return np.full(len(ids), "", dtype=object)
        frame = frame.copy()
        frame.index = frame.index.astype(str)
        rows = frame.reindex(pd.Index([str(i) for i in ids], dtype=object))
        pipe = FeaturePipeline(zip_prefix=self.config.zip_prefix)
        parts = [pd.Series(pipe._labels(rows[c], kind, self.config.zip_prefix)).astype(str).to_numpy(dtype=object)
                 if c in rows.columns else np.full(len(rows), "<unknown>", dtype=object)
                 for c, kind in cols.items()]
        out = parts[0]
        for p in parts[1:]:
            out = out + "|" + p
        return out

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        labels = self._group_labels(interactions.user_features, self.user_map_.ids)
        self.groups_ = sorted(set(labels.tolist()))
        code = pd.Index(self.groups_, dtype=object).get_indexer(pd.Index(labels, dtype=object))
        counts = sp.csr_matrix(
            (np.ones(len(interactions), np.float64), (code[interactions.user_idx], interactions.item_idx)),
            shape=(len(self.groups_), self.n_items)).toarray()
        self.group_counts_ = counts.astype(np.float32)
        self._prepare(code)

    def _prepare(self, user_group: np.ndarray | None = None) -> None:
        pop = np.asarray(self.item_popularity_, np.float64)
        share = pop / max(pop.sum(), 1.0)
        m = self.config.smoothing
        counts = self.group_counts_.astype(np.float64)
        self.group_scores_ = ((counts + m * share) / (counts.sum(axis=1, keepdims=True) + m)).astype(np.float32)
        self.global_scores_ = share.astype(np.float32)
        if user_group is None:
            labels = self._group_labels(self.user_features_, self.user_map_.ids)
            user_group = pd.Index(self.groups_, dtype=object).get_indexer(pd.Index(labels, dtype=object))
        self.user_group_ = np.asarray(user_group, np.int64)

    def _rows(self, groups: np.ndarray) -> np.ndarray:
        out = np.empty((len(groups), self.n_items), np.float32)
        known = groups >= 0
        out[known] = self.group_scores_[groups[known]]
        out[~known] = self.global_scores_
        return out

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        groups = self.user_group_[np.asarray(user_idx, np.int64)]
        if item_idx is None:
            return self._rows(groups)
        item_idx = np.asarray(item_idx, np.int64)
        return self._rows(groups)[np.arange(len(groups)), item_idx]

    def score_cold_users(self, features: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        labels = self._group_labels(features, features.index)
        groups = pd.Index(self.groups_, dtype=object).get_indexer(pd.Index(labels, dtype=object))
        return self._rows(groups.astype(np.int64))

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"group_counts": self.group_counts_,
                "groups": np.frombuffer("\x1f".join(self.groups_).encode("utf-8"), np.uint8).copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.group_counts_ = state["group_counts"]
        text = bytes(np.asarray(state["groups"], np.uint8)).decode("utf-8")
        self.groups_ = text.split("\x1f")
        self._prepare()


