"""Most-popular baseline: ranks items by training interaction count.

For the rating task it predicts the global mean plus the item's damped mean offset, the
classic non-personalized baseline.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import Recommender


class PopularityConfig(ModelConfig):
    """`damping`: shrinks each item's mean rating towards the global mean (rating task)."""

    damping: float = Field(5.0, ge=0.0)


class Popularity(Recommender):
    """Scores every user's items by how many training users interacted with them."""

    name = "popularity"
    config_class = PopularityConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn", "rating"})
    personalized: ClassVar[bool] = False
    parallelism = "counting is one pass over the data"
    config: PopularityConfig

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        counts = interactions.item_counts().astype(np.float32)
        if self.config.task == "rating":
            sums = np.bincount(interactions.item_idx, weights=interactions.ratings,
                               minlength=interactions.n_items)
            offset = (sums - counts * self.global_mean_) / (counts + self.config.damping)
            self.item_scores_ = (self.global_mean_ + offset).astype(np.float32)
        else:
            self.item_scores_ = counts

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        if item_idx is None:
            return np.broadcast_to(self.item_scores_, (len(user_idx), self.n_items)).copy()
        return self.item_scores_[np.asarray(item_idx, np.int64)]

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Not personalized: every history gets the item scores."""
        return np.broadcast_to(self.item_scores_, (len(histories), self.n_items)).copy()

    def _predict_cold(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        out = np.full(len(item_idx), self.global_mean_ if self.config.task == "rating" else 0.0,
                      np.float32)
        known = item_idx >= 0
        out[known] = self.item_scores_[item_idx[known]]
        return out

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores_ = state["item_scores"]
