"""Hybrid blending of a collaborative model and a feature model, by history length.

``score(u, i) = w_u · z_cf(u, i) + (1 − w_u) · z_feat(u, i)`` with ``w_u = n_u / (n_u + s)``:
`n_u` is the user's number of training interactions and `s` the `shrinkage` (the history at
which both parts weigh alike). Each part's scores are standardised per user (z-scores over
the items) so their scales match. The feature part ``z_feat`` may be a product of experts
of the learned feature model and a count-based prior (`prior_model`, demographic
popularity by default): ``(z_model + λ · z_log prior) / (1 + λ)``. The two err differently —
the learned model generalises across feature values, the prior is an unbiased group
average — so their blend beats each one alone on cold users (see the README's cold-start
table). A user with no history (a cold user, `recommend_cold`) gets the feature part
alone; new items (`score_new_items`) are scored by the feature model, since a CF model
cannot score an item it never saw. The weighting is the "switching / weighted hybrid" of
Burke, "Hybrid Recommender Systems: Survey and Experiments", UMUAI 2002, with a smooth
switch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import EXPLAIN_COLUMNS, Recommender, as_list
from recforge.models.capabilities import Capability

__all__ = ["Hybrid", "HybridConfig"]

class HybridConfig(ModelConfig):
    """`cf_model` / `feature_model`: registered model names, with their configs
    (`cf_config`, `feature_config`; the hybrid's seed is used unless they set one).
    `prior_model`: a count-based feature model blended into the feature part with weight
    `prior_weight` (λ) on its log scores (`prior_config` its settings; None: no prior).
    `shrinkage`: history length at which CF and features weigh alike.
    `normalize`: ``zscore`` per user before blending, or ``none``."""

    cf_model: str = "ease"
    cf_config: dict[str, Any] = Field(default_factory=dict)
    feature_model: str = "two_tower"
    feature_config: dict[str, Any] = Field(default_factory=dict)
    prior_model: str | None = "demographic_popularity"
    prior_config: dict[str, Any] = Field(default_factory=dict)
    prior_weight: float = Field(1.0, ge=0)
    shrinkage: float = Field(20.0, gt=0)
    normalize: Literal["zscore", "none"] = "zscore"


class Hybrid(Recommender):
    """Blend of `cf_` and `feature_` (see the module docstring).

    The parts are held and used through the public `Recommender` API only, and saved as
    nested artifacts (``parts/cf``, ``parts/feature``, ``parts/prior``).
    """

    name = "hybrid"
    parallelism = "its parts train one after the other in one process"
    config_class = HybridConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    capabilities: ClassVar[frozenset[Capability]] = Recommender.capabilities | {
        Capability.COLD_USERS, Capability.COLD_ITEMS}
    config: HybridConfig

    cf_: Recommender
    feature_: Recommender
    prior_: Recommender | None

    def _has_prior(self) -> bool:
        return self.config.prior_model is not None and self.config.prior_weight > 0

    def _make(self, which: str) -> Recommender:
        from recforge.registry import create_model

        cfg = self.config
        name, sub = {"cf": (cfg.cf_model, cfg.cf_config), "feature": (cfg.feature_model, cfg.feature_config),
                     "prior": (cfg.prior_model, cfg.prior_config)}[which]
        return create_model(str(name), {"seed": cfg.seed, **sub})

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        self.cf_ = self._make("cf").fit(interactions, validation)
        self.feature_ = self._make("feature").fit(interactions, validation)
        self.prior_ = self._make("prior").fit(interactions, validation) if self._has_prior() else None
        self._prepare()

    def _prepare(self) -> None:
        counts = np.diff(self.seen_.indptr).astype(np.float32)
        self.cf_weight_ = counts / (counts + self.config.shrinkage)

    def supports(self, capability: Capability | str) -> bool:
        """Cold users and items only as far as the feature model (and prior) can do them."""
        cap = Capability(capability)
        if not super().supports(cap):
            return False
        if cap in (Capability.COLD_USERS, Capability.COLD_ITEMS) and self._fitted:
            parts = [self.feature_] + ([self.prior_] if cap == Capability.COLD_USERS and self.prior_ else [])
            return all(p.supports(cap) for p in parts)
        return True

    def _norm(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, np.float32)
        if self.config.normalize == "none":
            return scores
        finite = np.where(np.isfinite(scores), scores, np.nan)
        mean = np.nanmean(finite, axis=1, keepdims=True)
        std = np.nanstd(finite, axis=1, keepdims=True)
        std[~(std > 0)] = 1.0
        return np.nan_to_num((scores - np.nan_to_num(mean)) / std, nan=0.0, posinf=0.0, neginf=0.0)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        if item_idx is not None:
            return self._score_pairs_via_rows(user_idx, np.asarray(item_idx, np.int64))
        w = self.cf_weight_[user_idx][:, None]
        feature = self._feature_part(self.feature_.score(user_idx),
                                     None if self.prior_ is None else self.prior_.score(user_idx))
        return (w * self._norm(self.cf_.score(user_idx)) + (1.0 - w) * feature).astype(np.float32)

    def _feature_part(self, model_scores: np.ndarray, prior_scores: np.ndarray | None) -> np.ndarray:
        """Standardised feature-model scores, blended with the log prior when there is one."""
        z = self._norm(model_scores)
        if prior_scores is None:
            return z
        lam = self.config.prior_weight
        with np.errstate(divide="ignore"):
            log_prior = np.log(np.maximum(np.asarray(prior_scores, np.float64), 1e-12))
        return (z + lam * self._norm(log_prior)) / (1.0 + lam)

    def similar_idx(self, item_idx: np.ndarray) -> np.ndarray:
        return self.cf_.similar_idx(item_idx)

    # ------------------------------------------------------------------ cold start
    def score_cold_users(self, features: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        """Users unknown to the model: the feature part, blended with the CF model's fold-in of
        their request-time items by the same history-length weight as known users."""
        self.require(Capability.COLD_USERS)
        feature = self._cold_feature_part(features, histories)
        counts = np.array([len(h) for h in histories], np.float32)[:, None]
        if not counts.any():
            return feature
        w = counts / (counts + self.config.shrinkage)
        feature = feature if self.prior_ is not None else self._norm(feature)
        return (w * self._norm(self.cf_.score_histories(histories)) + (1.0 - w) * feature).astype(np.float32)

    def _cold_feature_part(self, features: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        """The feature model's cold scores, blended with the prior when there is one."""
        model_scores = self.feature_.score_cold_users(features, histories)
        if self.prior_ is None:
            return model_scores
        return self._feature_part(model_scores, self.prior_.score_cold_users(features, histories))

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in: a cold user with unknown features and this history."""
        frame = pd.DataFrame(index=pd.Index([f"history-{i}" for i in range(len(histories))], dtype=object))
        return self.score_cold_users(frame, histories)

    def score_new_items_idx(self, features: pd.DataFrame, user_idx: np.ndarray) -> np.ndarray:
        return self.feature_.score_new_items_idx(features, user_idx)

    def new_item_vectors(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.feature_.new_item_vectors(features)

    def explain(self, user_id: Any, item_ids: Any, n: int = 3) -> pd.DataFrame:
        """Both parts' explanations, each on the hybrid's scale, the strongest `n` per item.

        A part's contributions are multiplied by its blend weight over the standard deviation
        of its scores for this user (the z-scoring of `score`): EASE's history items weigh
        heavily for a long history, the feature model's fields for a short one. Frame of
        `EXPLAIN_COLUMNS` plus ``part`` (``cf`` or ``feature``).
        """
        self._check_fitted()
        u = int(self.user_map_.to_idx([str(user_id)], what="user")[0])
        w = float(self.cf_weight_[u])
        frames = []
        for part, model, weight in (("cf", self.cf_, w), ("feature", self.feature_, 1.0 - w)):
            frame = model.explain(user_id, item_ids, n)
            if self.config.normalize == "zscore":
                row = np.asarray(model.score(np.array([u])), np.float64)[0]
                spread = float(np.nanstd(np.where(np.isfinite(row), row, np.nan))) or 1.0
                weight /= spread
            frame["contribution"] = frame["contribution"] * weight
            frame["part"] = part
            frames.append(frame)
        both = pd.concat(frames, ignore_index=True)
        both = both[both["contribution"] > 0].sort_values(["item_id", "contribution"], ascending=[True, False],
                                                         kind="stable")
        both = both.groupby("item_id", sort=False).head(n).copy()
        both["rank"] = both.groupby("item_id", sort=False).cumcount() + 1
        order = {str(i): k for k, i in enumerate(as_list(item_ids))}
        both = both.sort_values(["item_id", "rank"], key=lambda c: c.map(order) if c.name == "item_id" else c,
                                kind="stable")
        return both.reset_index(drop=True)[[*EXPLAIN_COLUMNS, "part"]]

    # ------------------------------------------------------------------ persistence
    def parts(self) -> dict[str, Recommender]:
        parts = {"cf": self.cf_, "feature": self.feature_}
        if self.prior_ is not None:
            parts["prior"] = self.prior_
        return parts

    def _set_parts(self, parts: dict[str, Recommender]) -> None:
        expected = {"cf", "feature"} | ({"prior"} if self._has_prior() else set())
        if set(parts) != expected:
            raise ValueError(f"hybrid parts are {sorted(parts)}, expected {sorted(expected)}")
        self.cf_, self.feature_, self.prior_ = parts["cf"], parts["feature"], parts.get("prior")

    def _get_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._prepare()
