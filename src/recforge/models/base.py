"""The one Recommender interface every model implements.

A model writes `_fit` and `score`; this base class gives ranking (`recommend`), rating
prediction (`predict`), `similar_items`, fold-in of users known only by their items
(`score_histories`, which models with a real fold-in override), seen-item exclusion, raw-ID
mapping, and `save`/`load` of artifact directories. Idea after Cornac's recommender template.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge import __version__
from recforge.config import ModelConfig, parse_config, upgrade_saved_config
from recforge.data.interactions import IdMap, Interactions
from recforge.errors import ArtifactError, ConfigError, DataError, NotFittedError
from recforge.models import artifact

UnknownPolicy = Literal["error", "skip", "popular"]
#: columns of every model's `explain` frame
EXPLAIN_COLUMNS = ["item_id", "kind", "source", "title", "contribution", "rank"]

#: scores computed per block stay under this many float32 cells (64 MiB)
_BLOCK_CELLS = 1 << 24


class Recommender(ABC):
    """Base of all models: scikit-learn lifecycle, users × items orientation everywhere.

    The constructor stores a validated config only; `fit` learns attributes ending in ``_``
    and returns ``self``. Subclasses set `name`, `config_class`, `tasks` and implement
    `_fit`, `score`, `_get_state`, `_set_state`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})

    def __init__(self, config: ModelConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if isinstance(config, ModelConfig):
            values = config.model_dump()
        else:
            values = dict(config or {})
        values.update(overrides)
        self.config = parse_config(self.config_class, values)
        if self.config.task not in self.tasks:
            raise ConfigError(
                f"model {self.name!r} does not support task {self.config.task!r} "
                f"(supports: {', '.join(sorted(self.tasks))})"
            )
        self._fitted = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # ------------------------------------------------------------------ training
    def fit(self, interactions: Interactions, validation: Interactions | None = None) -> Self:
        """Learn from `interactions` (users × items); `validation` (same maps) is optional."""
        if len(interactions) == 0:
            raise DataError("cannot fit on an empty interaction set")
        if self.config.task == "rating" and not interactions.has_ratings:
            raise DataError("task 'rating' needs a rating column, but the data has none")
        if validation is not None and (
            validation.user_map != interactions.user_map or validation.item_map != interactions.item_map
        ):
            raise DataError("validation interactions must share the training ID maps (use reindex)")
        self.user_map_: IdMap = interactions.user_map
        self.item_map_: IdMap = interactions.item_map
        self.seen_: sp.csr_matrix = interactions.csr(binary=True)
        self.item_popularity_: np.ndarray = interactions.item_counts().astype(np.float32)
        if interactions.has_ratings:
            r = interactions.ratings
            self.rating_scale_: tuple[float, float] | None = (float(r.min()), float(r.max()))
            self.global_mean_ = float(r.mean())
        else:
            self.rating_scale_ = None
            self.global_mean_ = 0.0
        self.fingerprint_ = interactions.fingerprint()
        self.item_features_ = interactions.item_features
        self.user_features_ = interactions.user_features
        # ratings aligned with seen_'s CSR layout, kept for saving and retraining
        self._train_ratings = interactions.csr().data if interactions.has_ratings else None
        start = time.perf_counter()
        self._fit(interactions, validation)
        self.fit_seconds_ = time.perf_counter() - start
        self._fitted = True
        return self

    @abstractmethod
    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        """Model-specific training on dense indices."""

    @abstractmethod
    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        """Scores of users for items; higher is better.

        With ``item_idx=None``: a float32 array of shape (len(user_idx), n_items).
        With `item_idx` (same length as `user_idx`): the paired scores, shape (len(user_idx),).
        """

    def _score_pairs_via_rows(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Paired scores computed from full score rows of the distinct users (a default)."""
        user_idx = np.asarray(user_idx, np.int64)
        item_idx = np.asarray(item_idx, np.int64)
        out = np.empty(len(user_idx), np.float32)
        uniq, inv = np.unique(user_idx, return_inverse=True)
        block = max(1, _BLOCK_CELLS // max(self.n_items, 1))
        for start in range(0, len(uniq), block):
            users = uniq[start:start + block]
            rows = self.score(users)
            sel = (inv >= start) & (inv < start + len(users))
            out[sel] = rows[inv[sel] - start, item_idx[sel]]
        return out

    # ------------------------------------------------------------------ facts
    @property
    def n_users(self) -> int:
        """Users known to the model (available from `_fit`/`_set_state` on)."""
        if not hasattr(self, "user_map_"):
            self._check_fitted()
        return len(self.user_map_)

    @property
    def n_items(self) -> int:
        """Items known to the model (available from `_fit`/`_set_state` on)."""
        if not hasattr(self, "item_map_"):
            self._check_fitted()
        return len(self.item_map_)

    def _check_fitted(self) -> None:
        if not getattr(self, "_fitted", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load() first")

    def item_embeddings(self) -> np.ndarray | None:
        """(n_items, d) item vectors when the model has them (used by `similar_items`)."""
        return None

    # ------------------------------------------------------------------ ranking
    def recommend_idx(
        self,
        user_idx: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` item indices and scores per user, best first.

        Returns (items, scores), each (len(user_idx), k); rows with fewer than `k` eligible
        items are padded with item -1 and score -inf. Scoring runs in user blocks: one score
        matrix per block, seen items masked to -inf, then `argpartition`.
        """
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        user_idx = np.asarray(user_idx, np.int64)
        n_items = self.n_items
        k_eff = min(k, n_items)
        allowed = None
        if candidates is not None:
            allowed = np.zeros(n_items, bool)
            allowed[np.asarray(candidates, np.int64)] = True
        items_out = np.full((len(user_idx), k), -1, np.int64)
        scores_out = np.full((len(user_idx), k), -np.inf, np.float32)
        block = max(1, _BLOCK_CELLS // max(n_items, 1))
        for start in range(0, len(user_idx), block):
            users = user_idx[start:start + block]
            scores = np.array(self.score(users), dtype=np.float32, copy=True)
            scores[~np.isfinite(scores)] = np.finfo(np.float32).min
            if exclude_seen:
                seen = self.seen_[users]
                rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
                scores[rows, seen.indices] = -np.inf
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            invalid = ~np.isfinite(top_scores)
            top[invalid] = -1
            items_out[start:start + len(users), :k_eff] = top
            scores_out[start:start + len(users), :k_eff] = top_scores
        return items_out, scores_out

    def recommend(
        self,
        user_ids: Any,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Any = None,
        unknown: UnknownPolicy = "error",
    ) -> pd.DataFrame:
        """Top-`k` recommendations for raw user IDs as a frame: user_id, item_id, rank, score.

        `candidates` restricts ranking to these raw item IDs. Users unknown to the model raise
        UnknownIdError (``unknown="error"``), are left out (``"skip"``), or get the most
        popular items (``"popular"``, score = training count).
        """
        self._check_fitted()
        user_ids = [str(u) for u in as_list(user_ids)]
        uidx = self.user_map_.lookup(user_ids)
        if unknown == "error" and (uidx < 0).any():
            self.user_map_.to_idx(user_ids, what="user")
        cand_idx = None
        if candidates is not None:
            cand_idx = self.item_map_.to_idx(as_list(candidates), what="item")
        known = uidx >= 0
        items = np.full((len(user_ids), k), -1, np.int64)
        scores = np.full((len(user_ids), k), -np.inf, np.float32)
        if known.any():
            items[known], scores[known] = self.recommend_idx(uidx[known], k, exclude_seen, cand_idx)
        if unknown == "popular" and (~known).any():
            pop_items, pop_scores = self.popular_idx(k, cand_idx)
            items[~known], scores[~known] = pop_items, pop_scores
        return self._frame(np.asarray(user_ids, dtype=object), items, scores, "user_id", "item_id")

    def popular_idx(self, k: int, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `k` most popular items (training count) — the cold-start fallback."""
        self._check_fitted()
        pop = self.item_popularity_.astype(np.float32).copy()
        if candidates is not None:
            mask = np.ones(len(pop), bool)
            mask[candidates] = False
            pop[mask] = -np.inf
        order = np.lexsort((np.arange(len(pop)), -pop))[:k]
        items = np.full(k, -1, np.int64)
        scores = np.full(k, -np.inf, np.float32)
        items[: len(order)], scores[: len(order)] = order, pop[order]
        bad = ~np.isfinite(scores)
        items[bad] = -1
        return items, scores

    def _frame(self, keys: np.ndarray, items: np.ndarray, scores: np.ndarray,
               key_col: str, item_col: str) -> pd.DataFrame:
        valid = items >= 0
        rows, cols = np.nonzero(valid)
        return pd.DataFrame({
            key_col: keys[rows],
            item_col: self.item_map_.to_ids(items[rows, cols]),
            "rank": (cols + 1).astype(np.int64),
            "score": scores[rows, cols].astype(np.float64),
        })

    # ------------------------------------------------------------------ prediction
    def predict(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Scores for raw (user, item) pairs; for rating models, clipped to the rating scale.

        A pair with an unknown user or item gets the training mean rating (rating task) or
        0.0 (top-N task) — see `predict_idx` for the known-index path.
        """
        self._check_fitted()
        users, items = as_list(user_ids), as_list(item_ids)
        if len(users) != len(items):
            raise DataError(f"predict needs as many users as items ({len(users)} vs {len(items)})")
        uidx = self.user_map_.lookup(users)
        iidx = self.item_map_.lookup(items)
        return self.predict_idx(uidx, iidx)

    def predict_idx(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """`predict` on indices; -1 marks an unknown user or item."""
        user_idx = np.asarray(user_idx, np.int64)
        item_idx = np.asarray(item_idx, np.int64)
        out = np.full(len(user_idx), self.global_mean_ if self.config.task == "rating" else 0.0,
                      np.float32)
        known = (user_idx >= 0) & (item_idx >= 0)
        if known.any():
            out[known] = self.score(user_idx[known], item_idx[known])
        cold = ~known
        if cold.any():
            out[cold] = self._predict_cold(user_idx[cold], item_idx[cold])
        if self.config.task == "rating" and self.rating_scale_ is not None:
            out = np.clip(out, *self.rating_scale_)
        return out

    def _predict_cold(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Prediction where the user or item is unknown (-1); models with biases override."""
        return np.full(len(user_idx), self.global_mean_ if self.config.task == "rating" else 0.0,
                       np.float32)

    # ------------------------------------------------------------------ similarity
    def similar_idx(self, item_idx: np.ndarray) -> np.ndarray:
        """(len(item_idx), n_items) item-item similarity rows.

        Default: cosine of `item_embeddings()`, or of the items' user columns in the
        training matrix for models without item vectors.
        """
        emb = self.item_embeddings()
        if emb is not None:
            emb = np.asarray(emb, np.float32)
            norms = np.linalg.norm(emb, axis=1)
            norms[norms == 0] = 1.0
            unit = emb / norms[:, None]
            return unit[item_idx] @ unit.T
        cols = self.seen_.T.tocsr()
        norms = np.sqrt(np.asarray(cols.multiply(cols).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        sims = (cols[item_idx] @ cols.T).toarray()
        return (sims / norms[item_idx, None] / norms[None, :]).astype(np.float32)

    def similar_items(self, item_ids: Any, k: int = 10) -> pd.DataFrame:
        """The `k` items most similar to each raw item ID: item_id, similar_item_id, rank, score."""
        self._check_fitted()
        ids = [str(i) for i in as_list(item_ids)]
        iidx = self.item_map_.to_idx(ids, what="item")
        sims = np.array(self.similar_idx(iidx), dtype=np.float32, copy=True)
        sims[np.arange(len(iidx)), iidx] = -np.inf
        k_eff = min(k, self.n_items - 1)
        if k_eff < 1:
            return pd.DataFrame(columns=["item_id", "similar_item_id", "rank", "score"])
        top = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff]
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        return self._frame(np.asarray(ids, dtype=object), top, top_scores, "item_id", "similar_item_id")

    # ------------------------------------------------------------------ fold-in
    def score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of users known only by their items: shape (len(histories), n_items), float32.

        Each history is an array of item indices (an anonymous session, or a user whose events
        arrived after training). The model folds it in without retraining: EASE and item-kNN
        score it exactly as `score` scores a training user with that history; iALS, MF/BPR and
        I-AutoRec solve a user vector against the fixed item side; Mult-VAE and U-AutoRec run
        the history row through the network; popularity ignores it. The default sums the
        `similar_idx` rows of the history items. History items are not masked out.
        Histories are binary (every item weighs 1); an empty history scores 0 by default.
        """
        self._check_fitted()
        clean = [_history_indices(h, self.n_items) for h in histories]
        if not clean:
            return np.zeros((0, self.n_items), np.float32)
        scores = np.asarray(self._score_histories(clean), np.float32)
        return np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in scores of checked histories (sorted unique in-range indices); default: Σ similarities."""
        H = history_matrix(histories, self.n_items).tocsc()
        items = np.flatnonzero(np.diff(H.indptr))  # items in at least one history
        out = np.zeros((len(histories), self.n_items), np.float32)
        block = max(1, (_BLOCK_CELLS // 4) // max(self.n_items, 1))
        for start in range(0, len(items), block):
            cols = items[start:start + block]
            sims = np.nan_to_num(np.asarray(self.similar_idx(cols), np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            out += H[:, cols] @ sims
        return out

    # ------------------------------------------------------------------ explanations
    def _history_contributions(self, user_idx: int, item_idx: np.ndarray) -> np.ndarray | None:
        """(len(item_idx), n_items) exact share of each history item in the score, or None.

        Models whose score is a sum over the user's training items (EASE, item-kNN) return
        it, so that removing history item j lowers the score by exactly entry j.
        """
        return None

    def explain(self, user_id: Any, item_ids: Any, n: int = 3) -> pd.DataFrame:
        """Why `user_id` gets each of `item_ids`: the training items of the user that count most.

        ``kind="item"`` (EASE, item-kNN top-N): the history item's exact share of the score,
        so removing it lowers the score by `contribution`. ``kind="similar_item"`` (other
        models): the user's items nearest to the recommended item under `similar_idx`
        (embedding or co-occurrence cosine). Returns the frame of `EXPLAIN_COLUMNS`: item_id,
        kind, source (a history item ID or a feature name), title, contribution, rank.
        """
        self._check_fitted()
        u = int(self.user_map_.to_idx([str(user_id)], what="user")[0])
        items = self.item_map_.to_idx([str(i) for i in as_list(item_ids)], what="item")
        history = self.seen_[u].indices
        exact = self._history_contributions(u, items)
        kind = "item" if exact is not None else "similar_item"
        weights = exact if exact is not None else self.similar_idx(items)
        titles = self.item_titles()
        rows = []
        for r, i in enumerate(items):
            w = np.asarray(weights[r], np.float32)[history]
            order = np.argsort(-w, kind="stable")[:n]
            for rank, j in enumerate(order, 1):
                if w[j] > 0:
                    src = str(self.item_map_.ids[history[j]])
                    rows.append((str(self.item_map_.ids[i]), kind, src, titles.get(src, ""), float(w[j]), rank))
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    def item_titles(self) -> dict[str, str]:
        """Item ID → title, from the training item features (empty without a title column)."""
        feats = self.item_features_
        if feats is None or "title" not in feats.columns:
            return {}
        return feats["title"].dropna().astype(str).to_dict()

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (plain numeric numpy arrays)."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore learned arrays; ID maps, `seen_` and config are already set."""

    def save(self, path: str | Path) -> Path:
        """Write this fitted model as an artifact directory (created or replaced)."""
        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("meta.json", "items.parquet", "users.parquet"):
            (out / stale).unlink(missing_ok=True)
        artifact.write_json(out / "config.json", self.config.model_dump(mode="json"))
        artifact.write_json(out / "user_ids.json", self.user_map_.ids.tolist())
        artifact.write_json(out / "item_ids.json", self.item_map_.ids.tolist())
        artifact.write_npz(out / "weights.npz", self._get_state())
        train: dict[str, np.ndarray] = {
            "indptr": self.seen_.indptr, "indices": self.seen_.indices,
            "item_popularity": self.item_popularity_,
        }
        if self._train_ratings is not None:
            train["ratings"] = self._train_ratings
        artifact.write_npz(out / "train.npz", train)
        for name, frame in (("items.parquet", self.item_features_), ("users.parquet", self.user_features_)):
            if frame is not None:
                frame.rename_axis("id").reset_index().to_parquet(out / name, index=False)
        artifact.finalize(out, {
            "model": self.name,
            "recforge_version": __version__,
            "fingerprint": self.fingerprint_,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "task": self.config.task,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "rating_scale": self.rating_scale_,
            "global_mean": self.global_mean_,
            "fit_seconds": round(getattr(self, "fit_seconds_", 0.0), 3),
        })
        return out

    def _train_user_idx(self) -> np.ndarray:
        return np.repeat(np.arange(self.seen_.shape[0]), np.diff(self.seen_.indptr))

    def _train_item_idx(self) -> np.ndarray:
        return self.seen_.indices

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load an artifact directory saved by `save`; checks format and file checksums."""
        from recforge.registry import get_model_class

        directory = Path(path)
        meta = artifact.open_artifact(directory)
        try:
            model_cls = get_model_class(str(meta["model"]))
        except ConfigError as exc:
            raise ArtifactError(f"{directory}: {exc}") from None
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise ArtifactError(f"{directory} holds a {meta['model']!r} model, not {cls.__name__}")
        config = upgrade_saved_config(str(meta["model"]), artifact.read_json(directory / "config.json"))
        try:
            model = model_cls(config)
        except ConfigError as exc:
            raise ArtifactError(f"{directory}: config.json is invalid: {exc}") from None
        try:
            model._restore(directory, meta)
        except (KeyError, ValueError, IndexError, TypeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{directory} is inconsistent: {exc}") from None
        return model

    def _restore(self, directory: Path, meta: dict[str, Any]) -> None:
        self.user_map_ = IdMap(artifact.read_json(directory / "user_ids.json"))
        self.item_map_ = IdMap(artifact.read_json(directory / "item_ids.json"))
        train = artifact.read_npz(directory / "train.npz")
        shape = (len(self.user_map_), len(self.item_map_))
        if int(meta["n_users"]) != shape[0] or int(meta["n_items"]) != shape[1]:
            raise ValueError("ID maps do not match the recorded sizes")
        self.seen_ = sp.csr_matrix(
            (np.ones(len(train["indices"]), np.float32), train["indices"], train["indptr"]), shape=shape
        )
        self.item_popularity_ = train["item_popularity"]
        self._train_ratings = train.get("ratings")
        scale = meta.get("rating_scale")
        self.rating_scale_ = tuple(scale) if scale else None
        self.global_mean_ = float(meta.get("global_mean", 0.0))
        self.fingerprint_ = meta.get("fingerprint", "")
        self.fit_seconds_ = float(meta.get("fit_seconds", 0.0))
        self.item_features_ = _read_features(directory / "items.parquet")
        self.user_features_ = _read_features(directory / "users.parquet")
        self._set_state(artifact.read_npz(directory / "weights.npz"))
        self._fitted = True

    def training_interactions(self) -> Interactions:
        """The training data kept in the model (IDs, and ratings when explicit)."""
        self._check_fitted()
        return Interactions(
            user_map=self.user_map_, item_map=self.item_map_,
            user_idx=self._train_user_idx().astype(np.int32),
            item_idx=self._train_item_idx().astype(np.int32),
            ratings=self._train_ratings,
            item_features=self.item_features_, user_features=self.user_features_,
        )


def history_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(len(histories), n_items) binary float32 CSR with a 1 at each history item."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate([np.asarray(h, np.int64) for h in histories]) if len(histories) else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(histories), n_items))


def _history_indices(history: Any, n_items: int) -> np.ndarray:
    """A history as sorted unique int64 item indices; DataError when one is out of range."""
    idx = np.unique(np.asarray(history, np.int64).ravel())
    if len(idx) and (idx[0] < 0 or idx[-1] >= n_items):
        raise DataError(f"history item indices must lie in 0..{n_items - 1}")
    return idx


def _read_features(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    return frame.set_index("id")


def as_list(values: Any) -> list[Any]:
    """One ID (str or int) as a one-element list, any iterable of IDs as a list."""
    if isinstance(values, str | int | np.integer):
        return [values]
    return list(values)
