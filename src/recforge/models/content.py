"""Content-based filtering (``content``).

Each item's profile is its encoded features (`FeaturePipeline` with per-field L2
normalisation), or optionally the code of a small autoencoder trained on them (Wang, Wang &
Yeung, "Collaborative Deep Learning", KDD 2015 — the "content representation learning" idea,
without the CF coupling). A user's profile is the mean of the profiles of the items they
liked; the score is the cosine of user and item profiles (Lops, de Gemmis & Semeraro,
"Content-based Recommender Systems", RS Handbook 2011). A user with no history gets a profile
predicted from their own features by ridge regression fitted on the training users
(features → profile). Without item features the item profile falls back to the item's column
of the interaction matrix (item-based cosine), so the model still works on ID-only data.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.features import entity_features
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.linalg import dense, unit_rows
from recforge.models.base import EXPLAIN_COLUMNS, as_list, history_matrix
from recforge.models.cold_start import FeatureColdStart
from recforge.nn.autoencoder import encode, train_autoencoder
from recforge.ranking import top_k_row

__all__ = ["ContentBased", "ContentConfig"]

class ContentConfig(ModelConfig):
    """Settings of `ContentBased`.

    `liked_threshold`: with ratings, the items rated at least this form the user profile
    (all of a user's items when none qualifies); ignored for implicit data.
    `text_buckets`: hashing buckets of text fields. `zip_prefix`: zip characters kept.
    `regularization`: λ of the ridge map from user features to profiles (cold users).
    `autoencoder_dim`: when set, compress the item features with an autoencoder and use the
    code (this many dims) as the item profile; `autoencoder_hidden_dim`, `autoencoder_epochs`,
    `learning_rate` and `threads` drive its training (the shared `Trainer`).
    `popularity_tiebreak`: tiny popularity bonus so equal content scores rank popular first.
    """

    liked_threshold: float = 4.0
    text_buckets: int = Field(1024, ge=1)
    zip_prefix: int = Field(1, ge=1)
    regularization: float = Field(10.0, gt=0)
    autoencoder_dim: int | None = Field(None, ge=1)
    autoencoder_hidden_dim: int = Field(128, ge=1)
    autoencoder_epochs: int = Field(30, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    threads: int | None = Field(None, ge=1)
    popularity_tiebreak: float = Field(1e-4, ge=0)


class ContentBased(FeatureColdStart):
    """Cosine between a user's mean liked-item profile and each item's feature profile.

    Learned attributes: `item_pipeline_`, `user_pipeline_`, `profiles_` ((n_items, F) unit
    rows, sparse or dense), `liked_` ((n_users, n_items) binary), `user_map_weights_`
    ((F_user, F) ridge map or None), `encoder_` (autoencoder weights or None).
    """

    name = "content"
    parallelism = "profiles are sparse matrix products; its optional feature autoencoder uses torch's threads"
    config_class = ContentConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    config: ContentConfig

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config
        self.item_pipeline_, _ = entity_features(
            interactions.item_features, self.item_map_.ids, text_buckets=cfg.text_buckets,
            normalize_fields=True)
        self.user_pipeline_, _ = entity_features(
            interactions.user_features, self.user_map_.ids, zip_prefix=cfg.zip_prefix)
        self.encoder_: dict[str, np.ndarray] | None = None
        if cfg.autoencoder_dim is not None:
            raw = self._item_feature_rows(self.item_features_, self.item_map_.ids)
            if raw is not None:  # None: no item features, nothing to compress
                self.encoder_ = train_autoencoder(dense(raw), cfg.autoencoder_hidden_dim, cfg.autoencoder_dim,
                                                  cfg.autoencoder_epochs, cfg.learning_rate, cfg.seed, cfg.threads)
        self._prepare()
        self.user_map_weights_ = self._fit_user_map()

    def _prepare(self) -> None:
        """Item profiles and liked sets from the fitted state (after fit and after load)."""
        self.profiles_ = self._profiles(self.item_features_, self.item_map_.ids)
        liked = self.seen_.copy()
        if self._train_ratings is not None:
            keep = np.asarray(self._train_ratings) >= self.config.liked_threshold
            liked.data = keep.astype(np.float32)
            liked.eliminate_zeros()
            empty = np.diff(liked.indptr) == 0
            if empty.any():
                fallback = sp.diags(empty.astype(np.float32)) @ self.seen_
                liked = sp.csr_matrix(liked + fallback)
        self.liked_ = sp.csr_matrix(liked, dtype=np.float32)
        pop = np.asarray(self.item_popularity_, np.float32)
        self._tiebreak = self.config.popularity_tiebreak * pop / max(float(pop.max()), 1.0)

    def _profiles(self, frame: pd.DataFrame | None, ids: Any) -> np.ndarray | sp.csr_matrix:
        """Unit item profiles of `ids` from features (or the autoencoder code of them)."""
        raw = self._item_feature_rows(frame, ids)
        if raw is None:  # no item pipeline: the items' interaction columns
            if frame is not None and len(ids) and not np.array_equal(np.asarray(ids), self.item_map_.ids):
                raise ConfigError("this content model was trained without item features")
            return unit_rows(self.seen_.T.tocsr())
        if self.encoder_ is not None:
            return unit_rows(encode(self.encoder_, dense(raw)))
        return unit_rows(raw)

    def _fit_user_map(self) -> np.ndarray | None:
        """Ridge map W, (F_user, F): user features → the user's profile (for cold users)."""
        if self.item_pipeline_ is None:
            return None
        rows = self._user_feature_rows(self.user_features_, self.user_map_.ids)
        if rows is None:  # no user features
            return None
        X = dense(rows).astype(np.float64)
        Y = dense(self._user_profiles(self.liked_)).astype(np.float64)
        gram = X.T @ X + self.config.regularization * np.eye(X.shape[1])
        return np.linalg.solve(gram, X.T @ Y).astype(np.float32)

    def _user_profiles(self, history: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        """Mean profile of each row's items: (n_rows, F)."""
        counts = np.asarray(history.sum(axis=1)).ravel()
        counts[counts == 0] = 1.0
        mean = sp.diags(1.0 / counts) @ history
        out = mean @ self.profiles_
        return np.asarray(out, np.float32) if isinstance(out, np.ndarray) else sp.csr_matrix(out)

    def _cosine(self, user_profiles: np.ndarray | sp.csr_matrix, items: np.ndarray | sp.csr_matrix) -> np.ndarray:
        scores = unit_rows(user_profiles) @ items.T  # an ndarray, or a csr_matrix when both are sparse
        return dense(scores if isinstance(scores, np.ndarray) else sp.csr_matrix(scores))

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        profiles = self._user_profiles(self.liked_[user_idx])
        if item_idx is None:
            return self._cosine(profiles, self.profiles_) + self._tiebreak[None, :]
        item_idx = np.asarray(item_idx, np.int64)
        user_unit = unit_rows(profiles)
        items = self.profiles_[item_idx]
        prod = user_unit.multiply(items) if sp.issparse(user_unit) else np.multiply(user_unit, dense(items))
        return (np.asarray(prod.sum(axis=1)).ravel() + self._tiebreak[item_idx]).astype(np.float32)

    def similar_idx(self, item_idx: np.ndarray) -> np.ndarray:
        return self._cosine(self.profiles_[np.asarray(item_idx, np.int64)], self.profiles_)

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        return self._fold_in_by_features(histories)

    # ------------------------------------------------------------------ cold start
    def score_cold_users(self, features: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        """Profile = mean of the request-time items when given, else predicted from features."""
        hist = history_matrix(histories, self.n_items)
        profiles = dense(self._user_profiles(hist))
        has_history = np.array([len(h) > 0 for h in histories])
        if self.user_map_weights_ is not None and (~has_history).any():
            rows = self._user_feature_rows(features, features.index)
            assert rows is not None  # a ridge map is fitted (and saved) only with a user pipeline
            profiles[~has_history] = dense(rows)[~has_history] @ self.user_map_weights_
        return self._cosine(profiles, self.profiles_) + self._tiebreak[None, :]

    def score_new_items_idx(self, features: pd.DataFrame, user_idx: np.ndarray) -> np.ndarray:
        new = self._profiles(features, features.index)
        return self._cosine(self._user_profiles(self.liked_[user_idx]), new)

    def new_item_vectors(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return dense(self._profiles(features, features.index)), dense(self.profiles_)

    # ------------------------------------------------------------------ explanations
    def explain(self, user_id: Any, item_ids: Any, n: int = 3) -> pd.DataFrame:
        """Why `user_id` gets each of `item_ids`: the liked items and features that count most.

        ``kind="item"`` rows give, per liked item j, the exact change of the score if j were
        removed from the user's profile (``score − score without j``): removing a named item
        with a positive contribution lowers the score by that amount. ``kind="feature"`` rows
        split the cosine into its additive per-feature terms ``û_f · p̂_if``.

        Returns a frame: item_id, kind, source (liked item ID or feature name), title,
        contribution, rank (within item_id and kind).
        """
        self._check_fitted()
        u = int(self.user_map_.to_idx([str(user_id)], what="user")[0])
        items = self.item_map_.to_idx([str(i) for i in as_list(item_ids)], what="item")
        liked = self.liked_[u].indices
        P = self.profiles_
        P_liked = dense(P[liked])
        total = P_liked.sum(axis=0)
        names = self.item_pipeline_.feature_names() if (
            self.item_pipeline_ is not None and self.encoder_ is None) else None
        titles = self.item_titles()
        rows: list[dict[str, Any]] = []
        for i in items:
            p_i = dense(P[[i]])[0]
            full = _cos(total, p_i)
            without = total[None, :] - P_liked
            loo = np.array([_cos(w, p_i) for w in without]) if len(liked) > 1 else np.zeros(len(liked))
            delta = full - loo
            for rank, j in enumerate(top_k_row(delta, n)[0], 1):
                jid = str(self.item_map_.ids[liked[j]])
                rows.append({"item_id": str(self.item_map_.ids[i]), "kind": "item", "source": jid,
                             "title": titles.get(jid, ""), "contribution": float(delta[j]), "rank": rank})
            if names is not None:
                norm = float(np.linalg.norm(total)) or 1.0
                terms = total * p_i / norm
                for rank, f in enumerate(top_k_row(terms, n)[0], 1):
                    if terms[f] <= 0:
                        break
                    rows.append({"item_id": str(self.item_map_.ids[i]), "kind": "feature", "source": names[f],
                                 "title": "", "contribution": float(terms[f]), "rank": rank})
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        state = self._pipeline_arrays()
        if self.user_map_weights_ is not None:
            state["user_map_weights"] = self.user_map_weights_
        for key, value in (self.encoder_ or {}).items():
            state[f"encoder.{key}"] = value
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._restore_pipelines(state)
        self.user_map_weights_ = state.get("user_map_weights")
        enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        self.encoder_ = enc or None
        self._prepare()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)


