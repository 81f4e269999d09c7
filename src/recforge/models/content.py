"""Content-based filtering, demographic popularity, and the shared cold-start API.

`ContentBased` (``content``): each item's profile is its encoded features (`FeaturePipeline`
with per-field L2 normalisation), or optionally the code of a small autoencoder trained on
them (Wang, Wang & Yeung, "Collaborative Deep Learning", KDD 2015 — the "content
representation learning" idea, without the CF coupling). A user's profile is the mean of
the profiles of the items they liked; the score is the cosine of user and item profiles
(Lops, de Gemmis & Semeraro, "Content-based Recommender Systems", RS Handbook 2011).
A user with no history gets a profile predicted from their own features by ridge regression
fitted on the training users (features → profile). Without item features the item profile
falls back to the item's column of the interaction matrix (item-based cosine), so the model
still works on ID-only data.

`DemographicPopularity` (``demographic_popularity``): the most popular items within the
user's demographic group (age bucket × gender by default), smoothed towards global
popularity — the cold-user baseline.

`ColdStartMixin` gives feature-aware models one cold-start API: `recommend_cold` (users
unknown to the model, from their feature rows, optionally with a few request-time items),
`score_new_items` and `similar_new_items` (items unknown to the model, from their features).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.features import FeaturePipeline, entity_features
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import EXPLAIN_COLUMNS, Recommender, as_list, history_matrix

__all__ = ["ColdStartMixin", "ContentBased", "ContentConfig", "DemographicPopularity",
           "DemographicPopularityConfig"]

_ITEM_PIPE, _USER_PIPE = "item_pipeline.", "user_pipeline."


# ---------------------------------------------------------------------------------- helpers
def as_feature_frame(features: pd.DataFrame | pd.Series | dict[str, Any]) -> pd.DataFrame:
    """Feature rows as a frame indexed by string IDs (a Series or dict is one row)."""
    if isinstance(features, pd.Series):
        frame = features.to_frame().T
        if features.name is None:
            frame.index = ["cold"]
    elif isinstance(features, dict):
        frame = pd.DataFrame([features], index=[str(features.get("id", "cold"))])
    else:
        frame = features.copy()
    frame.index = frame.index.astype(str)
    return frame


def _histories(seen_items: Any, ids: pd.Index, model: Recommender) -> list[np.ndarray]:
    """Per row of `ids`, the known item indices given at request time (unknown IDs dropped).

    `seen_items`: None, one list of item IDs for every row, or ``{row id: [item IDs]}``.
    """
    if seen_items is None:
        return [np.zeros(0, np.int64) for _ in ids]
    if isinstance(seen_items, dict):
        lists = [seen_items.get(i, seen_items.get(str(i), [])) for i in ids]
    else:
        lists = [list(seen_items)] * len(ids)
    out = []
    for items in lists:
        idx = model.item_map_.lookup([str(x) for x in items])
        out.append(np.unique(idx[idx >= 0]))
    return out


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first (items, scores) per row; -inf cells become item -1 (padding)."""
    k_eff = min(k, scores.shape[1])
    items = np.full((scores.shape[0], k), -1, np.int64)
    out = np.full((scores.shape[0], k), -np.inf, np.float32)
    if k_eff == 0:
        return items, out
    top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    vals = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -vals), axis=1)
    top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
    top[~np.isfinite(vals)] = -1
    items[:, :k_eff], out[:, :k_eff] = top, vals
    return items, out


def unit_rows(matrix: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    if sp.issparse(matrix):
        m = sp.csr_matrix(matrix, dtype=np.float32)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=np.float32)
    m = np.asarray(matrix, np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return m / norms


def _dense(m: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(m.toarray() if sp.issparse(m) else m, np.float32)


class PipelineStateMixin:
    """Fits `item_pipeline_` / `user_pipeline_` before training and saves them with the weights.

    The model's config needs `use_item_features`, `use_user_features`, `text_buckets` and
    `zip_prefix`.
    """

    item_pipeline_: FeaturePipeline | None
    user_pipeline_: FeaturePipeline | None

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config  # type: ignore[attr-defined]
        self.user_pipeline_ = self.item_pipeline_ = None
        if cfg.use_item_features:
            self.item_pipeline_, _ = entity_features(interactions.item_features, self.item_map_.ids,  # type: ignore[attr-defined]
                                                     text_buckets=cfg.text_buckets)
        if cfg.use_user_features:
            self.user_pipeline_, _ = entity_features(interactions.user_features, self.user_map_.ids,  # type: ignore[attr-defined]
                                                     zip_prefix=cfg.zip_prefix)
        super()._fit(interactions, validation)  # type: ignore[misc]

    def _get_state(self) -> dict[str, np.ndarray]:
        state = super()._get_state()  # type: ignore[misc]
        if self.item_pipeline_ is not None:
            state.update(self.item_pipeline_.to_arrays("item_pipeline."))
        if self.user_pipeline_ is not None:
            state.update(self.user_pipeline_.to_arrays("user_pipeline."))
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_pipeline_ = FeaturePipeline.from_arrays(state, "item_pipeline.")
        self.user_pipeline_ = FeaturePipeline.from_arrays(state, "user_pipeline.")
        super()._set_state(state)  # type: ignore[misc]


class ColdStartMixin:
    """Cold-start inference for models that read user/item features.

    A model sets `user_pipeline_` / `item_pipeline_` (fitted `FeaturePipeline` or None) and
    implements `_score_cold_users` (and, for new items, `_new_item_scores` and
    `_new_item_vectors`).
    """

    user_pipeline_: FeaturePipeline | None
    item_pipeline_: FeaturePipeline | None

    def _score_cold_users(self, frame: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        """(len(frame), n_items) scores of unknown users from their features and histories."""
        raise NotImplementedError(f"{type(self).__name__} cannot score users unknown to it")

    def _fold_in_cold(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in for models whose cold path reads request-time items (`content`, `two_tower`):
        a user with unknown features and this history. They use it as `_score_histories`."""
        frame = pd.DataFrame(index=pd.Index([f"history-{i}" for i in range(len(histories))], dtype=object))
        return self._score_cold_users(frame, histories)

    def _new_item_scores(self, frame: pd.DataFrame, user_idx: np.ndarray) -> np.ndarray:
        """(len(user_idx), len(frame)) scores of known users for items unknown to the model."""
        raise NotImplementedError(f"{type(self).__name__} cannot score items unknown to it")

    def _new_item_vectors(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(vectors of the new items, vectors of the known items) in one space, for similarity."""
        raise NotImplementedError(f"{type(self).__name__} has no vectors for new items")

    def recommend_cold(
        self,
        user_features: pd.DataFrame | pd.Series | dict[str, Any],
        k: int = 10,
        seen_items: Any = None,
        candidates: Any = None,
    ) -> pd.DataFrame:
        """Top-`k` items for users the model has not seen in training, from their features.

        Args:
            user_features: one row per new user (index = the user's ID), with the columns of
                the training user features (``age``, ``gender``…); a Series or dict is one user.
                Missing columns and unseen categories are treated as unknown.
            k: items per user.
            seen_items: items the user interacted with at request time — one list of item IDs
                for every row, or ``{user_id: [item IDs]}``. They personalise the list (when
                the model can use them) and are never recommended.
            candidates: restrict ranking to these item IDs.

        Returns:
            A frame ``user_id, item_id, rank, score`` like `recommend`.
        """
        self._check_fitted()  # type: ignore[attr-defined]
        frame = as_feature_frame(user_features)
        histories = _histories(seen_items, frame.index, self)  # type: ignore[arg-type]
        scores = np.array(self._score_cold_users(frame, histories), np.float32, copy=True)
        scores[~np.isfinite(scores)] = np.finfo(np.float32).min
        for row, hist in enumerate(histories):
            scores[row, hist] = -np.inf
        if candidates is not None:
            allowed = np.zeros(scores.shape[1], bool)
            allowed[self.item_map_.to_idx([str(c) for c in candidates], what="item")] = True  # type: ignore[attr-defined]
            scores[:, ~allowed] = -np.inf
        items, top = top_k(scores, k)
        return self._frame(frame.index.to_numpy(dtype=object), items, top, "user_id", "item_id")  # type: ignore[attr-defined]

    def score_new_items(
        self, item_features: pd.DataFrame | pd.Series | dict[str, Any], user_ids: Any = None
    ) -> pd.DataFrame:
        """Scores of known users (rows; all users by default) for new items (columns).

        `item_features` has one row per new item (index = its ID) with the training item
        feature columns (``title``, ``year``, ``genre_*``…).
        """
        self._check_fitted()  # type: ignore[attr-defined]
        frame = as_feature_frame(item_features)
        users = self.user_map_.ids if user_ids is None else [str(u) for u in user_ids]  # type: ignore[attr-defined]
        uidx = self.user_map_.to_idx(users, what="user")  # type: ignore[attr-defined]
        scores = self._new_item_scores(frame, uidx)
        return pd.DataFrame(scores, index=pd.Index(users, name="user_id"), columns=frame.index)

    def similar_new_items(
        self, item_features: pd.DataFrame | pd.Series | dict[str, Any], k: int = 10
    ) -> pd.DataFrame:
        """The `k` known items most similar (cosine) to each new item: item_id, similar_item_id, rank, score."""
        self._check_fitted()  # type: ignore[attr-defined]
        frame = as_feature_frame(item_features)
        new, known = self._new_item_vectors(frame)
        sims = unit_rows(new) @ unit_rows(known).T
        items, top = top_k(_dense(sims), k)
        return self._frame(frame.index.to_numpy(dtype=object), items, top, "item_id", "similar_item_id")  # type: ignore[attr-defined]

    def _user_feature_rows(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix | None:
        pipe = self.user_pipeline_
        return None if pipe is None else pipe.transform(frame, index=list(ids))

    def _item_feature_rows(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix | None:
        pipe = self.item_pipeline_
        return None if pipe is None else pipe.transform(frame, index=list(ids))


# ---------------------------------------------------------------------------------- content
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


class ContentBased(ColdStartMixin, Recommender):
    """Cosine between a user's mean liked-item profile and each item's feature profile.

    Learned attributes: `item_pipeline_`, `user_pipeline_`, `profiles_` ((n_items, F) unit
    rows, sparse or dense), `liked_` ((n_users, n_items) binary), `user_map_weights_`
    ((F_user, F) ridge map or None), `encoder_` (autoencoder weights or None).
    """

    name = "content"
    config_class = ContentConfig
    _score_histories = ColdStartMixin._fold_in_cold
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
        if cfg.autoencoder_dim is not None and self.item_pipeline_ is not None:
            raw = self._item_feature_rows(self.item_features_, self.item_map_.ids)
            self.encoder_ = train_autoencoder(_dense(raw), cfg.autoencoder_hidden_dim, cfg.autoencoder_dim,
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
        if self.item_pipeline_ is None:
            if frame is not None and len(ids) and not np.array_equal(np.asarray(ids), self.item_map_.ids):
                raise ConfigError("this content model was trained without item features")
            return unit_rows(self.seen_.T.tocsr())
        raw = self._item_feature_rows(frame, ids)
        if self.encoder_ is not None:
            return unit_rows(encode(self.encoder_, _dense(raw)))
        return unit_rows(raw)

    def _fit_user_map(self) -> np.ndarray | None:
        """Ridge map W, (F_user, F): user features → the user's profile (for cold users)."""
        if self.user_pipeline_ is None or self.item_pipeline_ is None:
            return None
        X = _dense(self._user_feature_rows(self.user_features_, self.user_map_.ids)).astype(np.float64)
        Y = _dense(self._user_profiles(self.liked_)).astype(np.float64)
        gram = X.T @ X + self.config.regularization * np.eye(X.shape[1])
        return np.linalg.solve(gram, X.T @ Y).astype(np.float32)

    def _user_profiles(self, history: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        """Mean profile of each row's items: (n_rows, F)."""
        counts = np.asarray(history.sum(axis=1)).ravel()
        counts[counts == 0] = 1.0
        mean = sp.diags(1.0 / counts) @ history
        out = mean @ self.profiles_
        return sp.csr_matrix(out) if sp.issparse(out) else np.asarray(out, np.float32)

    def _cosine(self, user_profiles: np.ndarray | sp.spmatrix, items: np.ndarray | sp.spmatrix) -> np.ndarray:
        return _dense(unit_rows(user_profiles) @ items.T)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        profiles = self._user_profiles(self.liked_[user_idx])
        if item_idx is None:
            return self._cosine(profiles, self.profiles_) + self._tiebreak[None, :]
        item_idx = np.asarray(item_idx, np.int64)
        user_unit = unit_rows(profiles)
        items = self.profiles_[item_idx]
        prod = user_unit.multiply(items) if sp.issparse(user_unit) else np.multiply(user_unit, _dense(items))
        return (np.asarray(prod.sum(axis=1)).ravel() + self._tiebreak[item_idx]).astype(np.float32)

    def similar_idx(self, item_idx: np.ndarray) -> np.ndarray:
        return self._cosine(self.profiles_[np.asarray(item_idx, np.int64)], self.profiles_)

    # ------------------------------------------------------------------ cold start
    def _score_cold_users(self, frame: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        """Profile = mean of the request-time items when given, else predicted from features."""
        hist = history_matrix(histories, self.n_items)
        profiles = _dense(self._user_profiles(hist))
        has_history = np.array([len(h) > 0 for h in histories])
        if self.user_map_weights_ is not None and (~has_history).any():
            X = _dense(self._user_feature_rows(frame, frame.index))
            profiles[~has_history] = X[~has_history] @ self.user_map_weights_
        return self._cosine(profiles, self.profiles_) + self._tiebreak[None, :]

    def _new_item_scores(self, frame: pd.DataFrame, user_idx: np.ndarray) -> np.ndarray:
        new = self._profiles(frame, frame.index)
        return self._cosine(self._user_profiles(self.liked_[user_idx]), new)

    def _new_item_vectors(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return _dense(self._profiles(frame, frame.index)), _dense(self.profiles_)

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
        P_liked = _dense(P[liked])
        total = P_liked.sum(axis=0)
        names = self.item_pipeline_.feature_names() if (
            self.item_pipeline_ is not None and self.encoder_ is None) else None
        titles = self.item_titles()
        rows: list[dict[str, Any]] = []
        for i in items:
            p_i = _dense(P[[i]])[0]
            full = _cos(total, p_i)
            without = total[None, :] - P_liked
            loo = np.array([_cos(w, p_i) for w in without]) if len(liked) > 1 else np.zeros(len(liked))
            delta = full - loo
            for rank, j in enumerate(np.argsort(-delta, kind="stable")[:n], 1):
                jid = str(self.item_map_.ids[liked[j]])
                rows.append({"item_id": str(self.item_map_.ids[i]), "kind": "item", "source": jid,
                             "title": titles.get(jid, ""), "contribution": float(delta[j]), "rank": rank})
            if names is not None:
                norm = float(np.linalg.norm(total)) or 1.0
                terms = total * p_i / norm
                for rank, f in enumerate(np.argsort(-terms, kind="stable")[:n], 1):
                    if terms[f] <= 0:
                        break
                    rows.append({"item_id": str(self.item_map_.ids[i]), "kind": "feature", "source": names[f],
                                 "title": "", "contribution": float(terms[f]), "rank": rank})
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        if self.item_pipeline_ is not None:
            state.update(self.item_pipeline_.to_arrays(_ITEM_PIPE))
        if self.user_pipeline_ is not None:
            state.update(self.user_pipeline_.to_arrays(_USER_PIPE))
        if self.user_map_weights_ is not None:
            state["user_map_weights"] = self.user_map_weights_
        for key, value in (self.encoder_ or {}).items():
            state[f"encoder.{key}"] = value
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_pipeline_ = FeaturePipeline.from_arrays(state, _ITEM_PIPE)
        self.user_pipeline_ = FeaturePipeline.from_arrays(state, _USER_PIPE)
        self.user_map_weights_ = state.get("user_map_weights")
        enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        self.encoder_ = enc or None
        self._prepare()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return 0.0 if na == 0 or nb == 0 else float(a @ b) / (na * nb)


# ---------------------------------------------------------------------- demographic popularity
class DemographicPopularityConfig(ModelConfig):
    """`group_by`: user feature columns forming the group (``age`` is bucketed, ``zip``
    cut to `zip_prefix` characters). `smoothing`: pseudo-interactions of global popularity
    mixed into each group's counts (small groups lean on the global ranking)."""

    group_by: list[str] = Field(default_factory=lambda: ["age", "gender"])
    smoothing: float = Field(50.0, ge=0)
    zip_prefix: int = Field(1, ge=1)


class DemographicPopularity(ColdStartMixin, Recommender):
    """Popularity within the user's demographic group: ``(c_gi + m·p_i) / (n_g + m)``.

    ``c_gi``: training interactions of group g with item i; ``n_g``: all of group g's
    interactions; ``p_i``: item i's global share; m: `smoothing`. Users whose group is unknown
    (or data without user features) get global popularity.
    """

    name = "demographic_popularity"
    config_class = DemographicPopularityConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
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

    def _score_cold_users(self, frame: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        labels = self._group_labels(frame, frame.index)
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


# ---------------------------------------------------------------------------------- autoencoder
def train_autoencoder(
    X: np.ndarray, hidden: int, dim: int, epochs: int, learning_rate: float, seed: int,
    threads: int | None,
) -> dict[str, np.ndarray]:
    """Fit ``x → tanh(W1 x + b1) → W2 · + b2 = code → decoder → x̂`` (MSE) with the shared Trainer.

    X: (n_items, F) encoded features. Returns the encoder weights as numpy arrays
    (``w1`` (hidden, F), ``b1``, ``w2`` (dim, hidden), ``b2``) so `encode` needs no torch.
    """
    import torch
    from torch import nn

    from recforge.nn.layers import mlp
    from recforge.training.config import TrainingConfig
    from recforge.training.sampling import batch_indices
    from recforge.training.trainer import Trainer, seeded, torch_threads

    cfg = TrainingConfig(epochs=epochs, batch_size=128, learning_rate=learning_rate, device="cpu",
                         seed=seed, threads=threads)
    with torch_threads(threads), seeded(seed) as rng:
        encoder = mlp([X.shape[1], hidden, dim], activation="tanh")
        net = nn.Sequential(encoder, nn.Tanh(), mlp([dim, hidden, X.shape[1]], activation="tanh"))
        data = torch.from_numpy(np.ascontiguousarray(X, np.float32))

        def batches(epoch: int, gen: np.random.Generator):
            for idx in batch_indices(len(data), cfg.batch_size, gen):
                yield data[torch.from_numpy(idx)]

        def step(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            return ((network(batch) - batch) ** 2).sum(dim=1).mean()

        Trainer(cfg).fit(net, step, batches, rng=rng)
    first, last = encoder[0], encoder[-1]
    return {k: v.detach().numpy().astype(np.float32) for k, v in
            (("w1", first.weight), ("b1", first.bias), ("w2", last.weight), ("b2", last.bias))}


def encode(weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """The autoencoder code of rows X: (n, F) → (n, dim), in numpy."""
    hidden = np.tanh(X @ weights["w1"].T + weights["b1"])
    return np.tanh(hidden @ weights["w2"].T + weights["b2"]).astype(np.float32)
