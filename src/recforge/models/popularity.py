"""Most-popular baseline: ranks items by training interaction count.

For the rating task it predicts the global mean plus the item's damped mean offset, the
classic non-personalized baseline. With `dp_epsilon` (top-N) the counts are released under
ε-differential privacy with the user as the unit (`recforge.privacy.laplace_counts`): each
user counts on at most `dp_max_items` items and Laplace noise of scale
``dp_max_items / dp_epsilon`` is added per item; the rankings and the popularity fallback of
this model use the noisy counts.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.privacy.report import PrivacyReport, laplace_counts


class PopularityConfig(ModelConfig):
    """`damping`: shrinks each item's mean rating towards the global mean (rating task).

    `dp_epsilon`: release the top-N counts under ε-DP (None: exact counts);
    `dp_max_items`: the most items one user counts on under DP (the sensitivity).
    """

    damping: float = Field(5.0, ge=0.0)
    dp_epsilon: float | None = Field(None, gt=0)
    dp_max_items: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _check_dp(self) -> PopularityConfig:
        if self.dp_epsilon is not None and self.task != "topn":
            raise ValueError("dp_epsilon applies to the topn task (private counts)")
        return self


class Popularity(Recommender):
    """Scores every user's items by how many training users interacted with them."""

    name = "popularity"
    config_class = PopularityConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn", "rating"})
    personalized: ClassVar[bool] = False
    parallelism = "counting is one pass over the data"
    config: PopularityConfig
    #: the guarantee of private counts (`dp_epsilon`), else None
    privacy_: PrivacyReport | None = None

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        counts = interactions.item_counts().astype(np.float32)
        cfg = self.config
        self.privacy_ = None
        if cfg.dp_epsilon is not None:
            eps, m = float(cfg.dp_epsilon), int(cfg.dp_max_items)
            rng = np.random.default_rng(cfg.seed)
            self.item_scores_ = laplace_counts(interactions.csr(binary=True), eps, m, rng).astype(np.float32)
            self.privacy_ = PrivacyReport(
                mechanism="Laplace noise on clipped item counts", unit=f"user (at most {m} items)",
                epsilon=eps, delta=0.0, target_epsilon=eps, accountant="laplace", noise_multiplier=m / eps,
                max_grad_norm=float(m), sample_rate=1.0, steps=1)
        elif self.config.task == "rating":
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

    def popularity_scores(self) -> np.ndarray:
        """The fallback's popularity: the private counts' share of users under `dp_epsilon`."""
        if self.config.dp_epsilon is None:
            return super().popularity_scores()
        return (np.maximum(self.item_scores_, 0.0) / max(self.n_users, 1)).astype(np.float32)

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
