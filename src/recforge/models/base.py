"""The one Recommender interface every model implements.

A model writes `_fit` and `score`; this base class gives ranking (`recommend`), rating
prediction (`predict`), `similar_items`, fold-in of users known only by their items
(`score_histories`, which models with a real fold-in override), seen-item exclusion, raw-ID
mapping, and `save`/`load` of artifact directories. Idea after Cornac's recommender template.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge import ann, ranking, resources
from recforge.config import ModelConfig, parse_config
from recforge.data.interactions import IdMap, Interactions, feature_titles
from recforge.errors import ConfigError, DataError, NotFittedError
from recforge.models.capabilities import Capability
from recforge.models.persistence import ArtifactIO
from recforge.ranking import RankedLists

#: what `recommend` does with users unknown to the model (see its docstring)
UnknownPolicy = Literal["error", "skip", "fallback"]
#: columns of every model's `explain` frame
EXPLAIN_COLUMNS = ["item_id", "kind", "source", "title", "contribution", "rank"]

#: score rows per block of a ranking pipeline at most (the memory setting may ask for fewer):
#: enough rows for the GEMM to run at speed, few enough for the block to stay in cache
_RANK_BLOCK_ROWS = 256


class Recommender(ArtifactIO, ABC):
    """Base of all models: scikit-learn lifecycle, users × items orientation everywhere.

    The constructor stores a validated config only; `fit` learns attributes ending in ``_``
    and returns ``self``. Subclasses set `name`, `config_class`, `tasks` and implement
    `_fit`, `score`, `_get_state`, `_set_state`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    #: what the class can do beyond the contract; ask `supports`, never probe for methods
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.FOLD_IN, Capability.EXPLAIN})
    #: whether rankings depend on the user (False: the same list for everyone, e.g. popularity)
    personalized: ClassVar[bool] = True
    #: trains data-parallel in several processes (``recforge train --nproc N``, torchrun)
    data_parallel: ClassVar[bool] = False
    #: how training uses the machine instead, said when ``--nproc`` asks for processes
    parallelism: ClassVar[str] = "it is not trained by minibatch gradient steps, so there is no work to share out"
    #: whether `score` may run on several user blocks at once, each on one BLAS thread (NumPy
    #: scoring with no shared scratch state); all-user ranking then runs its blocks on threads
    parallel_blocks: ClassVar[bool] = False

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
        # ratings aligned with seen_'s CSR layout, kept for saving and retraining; without
        # duplicate pairs seen_ shares the ratings matrix's index arrays (one conversion, not two)
        self._train_ratings = None
        if interactions.has_ratings:
            rated = interactions.csr()
            self._train_ratings = rated.data
            if rated.nnz == len(interactions):
                self.seen_: sp.csr_matrix = sp.csr_matrix(
                    (np.ones(rated.nnz, np.float32), rated.indices, rated.indptr), shape=rated.shape)
            else:
                self.seen_ = interactions.csr(binary=True)
        else:
            self.seen_ = interactions.csr(binary=True)
        self.item_popularity_: np.ndarray = interactions.item_counts().astype(np.float32)
        r = interactions.ratings
        if r is not None:
            self.rating_scale_: tuple[float, float] | None = (float(r.min()), float(r.max()))
            self.global_mean_ = float(r.mean())
        else:
            self.rating_scale_ = None
            self.global_mean_ = 0.0
        self.fingerprint_ = interactions.fingerprint()
        self.ann_index_ = None  # an index of earlier item vectors would retrieve the wrong items
        self.item_features_ = interactions.item_features
        self.user_features_ = interactions.user_features
        self.fit_processes_ = 1  # data-parallel training sets its number of processes
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

    def score_factors(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(user vectors, item vectors) whose product ``u @ v.T`` is `score(user_idx)`, or None.

        Models that score by one product (iALS, factorization models; biases ride along as
        extra columns) return them: ranking then computes the product itself, piece by piece
        into a reused block (`ranking.top_k_product`), on threads. Default: None.
        """
        return None

    def _score_pairs_via_rows(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Paired scores computed from full score rows of the distinct users (a default)."""
        user_idx = np.asarray(user_idx, np.int64)
        item_idx = np.asarray(item_idx, np.int64)
        out = np.empty(len(user_idx), np.float32)
        uniq, inv = np.unique(user_idx, return_inverse=True)
        block = resources.block_rows(4 * max(self.n_items, 1))
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
        if getattr(self, "user_map_", None) is None:
            self._check_fitted()
        return len(self.user_map_)

    @property
    def n_items(self) -> int:
        """Items known to the model (available from `_fit`/`_set_state` on)."""
        if getattr(self, "item_map_", None) is None:
            self._check_fitted()
        return len(self.item_map_)

    def _check_fitted(self) -> None:
        if not getattr(self, "_fitted", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load() first")

    def user_history(self, user_idx: int) -> np.ndarray:
        """The training items of a known user: in time order for sequence models (which
        override this), else in index order."""
        return self.seen_[user_idx].indices.astype(np.int64)

    def item_embeddings(self) -> np.ndarray | None:
        """(n_items, d) item vectors when the model has them (used by `similar_items`)."""
        return None

    def mips_item_vectors(self) -> np.ndarray | None:
        """(n_items, d') item vectors whose inner product with `mips_user_vectors` ranks every
        user's items exactly as `score` does (a per-user constant aside), or None.

        Factor and two-tower models return them (with the item bias as one more component
        when they have one); they make an approximate retrieval index possible (`build_index`).
        Default: the factor-model convention of iALS and BPR — NumPy ``user_factors_`` and
        ``item_factors_`` with ``score = user_factors_ @ item_factors_.T (+ item_bias_)``.
        """
        items = getattr(self, "item_factors_", None)
        if not isinstance(items, np.ndarray) or not isinstance(getattr(self, "user_factors_", None), np.ndarray):
            return None
        bias = getattr(self, "item_bias_", None)
        return items if bias is None else bias_column(items, bias)

    def mips_user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        """(len(user_idx), d') query vectors matching `mips_item_vectors`."""
        users = getattr(self, "user_factors_", None)
        if not isinstance(users, np.ndarray):
            raise ConfigError(f"model {self.name!r} has no user and item vectors to index")
        x = users[np.asarray(user_idx, np.int64)]
        return x if getattr(self, "item_bias_", None) is None else bias_column(x, np.ones(len(x), np.float32))

    # ------------------------------------------------------------------ ANN retrieval
    def build_index(self, kind: str = "hnsw", **params: int) -> ann.AnnIndex:
        """Build an approximate maximum-inner-product index over the item vectors (faiss).

        Kept with the model and saved in its artifact; `recommend` then retrieves candidates
        from it and re-scores them exactly (see `recforge.ann`). ConfigError for models
        without `mips_item_vectors`. `params`: see `recforge.ann.AnnIndex.build`.
        """
        self._check_fitted()
        vectors = self.mips_item_vectors()
        if vectors is None:
            raise ConfigError(f"model {self.name!r} has no item vectors to index (ANN retrieval needs "
                              "a factor or two-tower model)")
        index = ann.AnnIndex.build(vectors, kind, **params)
        self.ann_index_ = index
        return index

    def drop_index(self) -> None:
        """Forget the ANN index: rankings are exact again (and `save` writes none)."""
        self.ann_index_ = None

    @property
    def ann_index(self) -> ann.AnnIndex | None:
        """The model's ANN index, or None."""
        return getattr(self, "ann_index_", None)

    def _recommend_ann(self, index: ann.AnnIndex, user_idx: np.ndarray, k: int, exclude_seen: bool,
                       extra: Sequence[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` via the index: candidates retrieved, re-scored exactly, exclusions applied.

        Each user fetches k + their number of excluded items + a margin, so exclusions alone
        can never shorten the list; a row that still comes out short (the index returned
        fewer) is fetched again with twice as many, up to the whole catalog.
        """
        n_users = len(user_idx)
        excluded: sp.csr_matrix | None = None
        n_excluded = np.zeros(n_users, np.int64)
        if exclude_seen:
            excluded = self.seen_[user_idx]
            if extra is not None:
                excluded = excluded + history_matrix(extra, self.n_items)
            excluded = sp.csr_matrix(excluded)
            n_excluded = np.diff(excluded.indptr).astype(np.int64)
        queries = np.asarray(self.mips_user_vectors(user_idx), np.float32)
        margin = max(10, k // 2)
        out = RankedLists.empty(n_users, k)
        todo = np.arange(n_users)
        fetch = np.minimum(k + n_excluded + margin, self.n_items)
        while len(todo):
            n = int(fetch[todo].max())
            labels = index.search(queries[todo], n)
            valid = labels >= 0
            labels = np.sort(np.where(valid, labels, self.n_items), axis=1)  # item order: ties as exact
            valid = labels < self.n_items
            safe = np.where(valid, labels, 0)
            users = np.repeat(user_idx[todo], n)
            scores = np.asarray(self.score(users, safe.ravel()), np.float32).reshape(len(todo), n)
            drop = ~valid
            if excluded is not None:
                ptr, seen = excluded.indptr, excluded.indices
                for row, r in enumerate(todo):
                    drop[row] |= np.isin(safe[row], seen[ptr[r]:ptr[r + 1]]) & valid[row]
            exclude = [np.flatnonzero(row) for row in drop]
            pos, out.scores[todo] = ranking.top_k(scores, k, exclude=exclude)
            out.items[todo] = np.where(pos >= 0, np.take_along_axis(safe, np.maximum(pos, 0), axis=1), -1)
            short = (pos < 0).any(axis=1) & (n < self.n_items)
            todo = todo[short]
            fetch[todo] = np.minimum(2 * n, self.n_items)
        return out.items, out.scores

    # ------------------------------------------------------------------ capabilities
    def supports(self, capability: Capability | str) -> bool:
        """Whether this model can do `capability` — the one place capabilities are checked."""
        return Capability(capability) in self.capabilities

    def require(self, capability: Capability | str) -> None:
        """ConfigError (one line) unless the model `supports` `capability`."""
        cap = Capability(capability)
        if not self.supports(cap):
            raise ConfigError(f"model {self.name!r} cannot {cap.describe()}")

    # ------------------------------------------------------------------ ranking
    def recommend_idx(
        self,
        user_idx: np.ndarray,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        extra_seen: Sequence[np.ndarray] | None = None,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` item indices and scores of known users, best first (`recforge.ranking` order).

        Returns (items, scores), each (len(user_idx), k); rows with fewer than `k` eligible
        items are padded with item -1 and score -inf. With `exclude_seen`, each user's training
        items are left out, and so are the items of `extra_seen` (per user, e.g. events stored
        since training). `candidates` (item indices) restricts the ranking. Scoring runs in
        user blocks of bounded memory. When the model has an ANN index (`build_index`) and
        neither `exact` nor `candidates` is given, candidates come from the index and are
        re-scored exactly (`recforge.ann`).
        """
        self._check_fitted()
        check_k(k)
        user_idx = np.asarray(user_idx, np.int64)
        extra = extra_seen if extra_seen is not None and any(len(e) for e in extra_seen) else None
        index = self.ann_index
        if index is not None and not exact and candidates is None and len(user_idx):
            return self._recommend_ann(index, user_idx, k, exclude_seen, extra)
        allowed = candidate_mask(candidates, self.n_items)
        out = RankedLists.empty(len(user_idx), k)
        factored = len(user_idx) > 0 and self.score_factors(user_idx[:1]) is not None
        parallel = (self.parallel_blocks or factored) and resources.threads() > 1
        rows = score_block_rows(self.n_items, resources.threads() if parallel else 1)
        blocks = [slice(start, start + rows) for start in range(0, len(user_idx), rows)]
        buffers = threading.local()  # one score block per thread, reused: no page faults

        def rank_block(block: slice) -> None:
            users = user_idx[block]
            exclude: ranking.Exclusion | None = None
            if exclude_seen:
                exclude = ranking.CsrRows(self.seen_, users)
                if extra is not None:
                    exclude = self.seen_[users] + history_matrix(extra[block], self.n_items)
            factors = self.score_factors(users) if factored else None
            if factors is None:
                out.items[block], out.scores[block] = ranking.top_k(
                    self.score(users), k, exclude=exclude, candidates=allowed, threads=1 if parallel else None)
                return
            buffer = getattr(buffers, "scores", None)
            if buffer is None:
                buffer = buffers.scores = np.empty((min(rows, len(user_idx)), self.n_items), np.float32)
            out.items[block], out.scores[block] = ranking.top_k_product(
                *factors, k, exclude=exclude, candidates=allowed, buffer=buffer)

        if parallel and len(blocks) > 1:
            with blas_threads(1):  # one BLAS thread per block, the blocks on recforge's threads
                resources.parallel_map(rank_block, blocks)
        else:
            for block in blocks:
                rank_block(block)
        return out.items, out.scores

    def rank_histories(
        self,
        histories: Sequence[np.ndarray],
        k: int = 10,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` (items, scores) of users known only by their items (`score_histories`).

        With `exclude_seen`, each history's items are left out; padding as in `recommend_idx`.
        """
        self._check_fitted()
        check_k(k)
        allowed = candidate_mask(candidates, self.n_items)
        ordered = self.supports(Capability.SEQUENCES)
        out = RankedLists.empty(len(histories), k)
        items_out, scores_out = out.items, out.scores
        block = resources.block_rows(4 * max(self.n_items, 1))
        for start in range(0, len(histories), block):
            rows = slice(start, start + block)
            chunk = [history_indices(h, self.n_items, ordered) for h in histories[rows]]
            items_out[rows], scores_out[rows] = ranking.top_k(
                self.score_histories(chunk), k, exclude=chunk if exclude_seen else None, candidates=allowed)
        return items_out, scores_out

    def rank_users(
        self,
        user_ids: Any,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Any = None,
        unknown: UnknownPolicy = "error",
        events: Mapping[str, Sequence[Any]] | None = None,
        user_features: pd.DataFrame | Mapping[str, Any] | None = None,
        exact: bool = False,
    ) -> RankedLists:
        """Top-`k` lists of raw user IDs, with the unknown-user chain; see `recommend`.

        Returns `RankedLists`: item indices and scores (len(user_ids), k), padded with -1 and
        -inf, and per row the fallback that ranked it (None: the model ranked a known user).
        """
        self._check_fitted()
        check_k(k)
        ids = [str(u) for u in as_list(user_ids)]
        uidx = self.user_map_.lookup(ids)
        if unknown == "error" and (uidx < 0).any():
            self.user_map_.to_idx(ids, what="user")
        cand = None if candidates is None else self.item_map_.to_idx([str(c) for c in as_list(candidates)],
                                                                      what="item")
        given = request_items(events, ids, self.item_map_)
        out = RankedLists.empty(len(ids), k)
        known = np.flatnonzero(uidx >= 0)
        if self.supports(Capability.SEQUENCES):  # events continue a known user's sequence
            moved = known[[len(given[i]) > 0 for i in known]]
            if len(moved):
                hist = [np.concatenate([self.user_history(int(uidx[i])), given[i]]) for i in moved]
                out.items[moved], out.scores[moved] = self.rank_histories(hist, k, exclude_seen, cand)
                known = np.setdiff1d(known, moved)
        if len(known):
            out.items[known], out.scores[known] = self.recommend_idx(
                uidx[known], k, exclude_seen, cand, extra_seen=[given[i] for i in known], exact=exact)
        cold = np.flatnonzero(uidx < 0)
        if unknown == "fallback" and len(cold):
            sub = self.rank_unknown([given[r] for r in cold], k, exclude_seen, cand, user_features,
                                    ids=[ids[r] for r in cold])
            out.items[cold], out.scores[cold], out.fallback[cold] = sub.items, sub.scores, sub.fallback
        return out

    def rank_unknown(
        self,
        histories: Sequence[np.ndarray],
        k: int = 10,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        user_features: pd.DataFrame | Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
    ) -> RankedLists:
        """Top-`k` lists of users unknown to the model (or anonymous sessions): the fallback chain.

        Per user, the first that applies: their feature row (`user_features`, models with
        `Capability.COLD_USERS`; fallback ``features``), the fold-in of their `histories`
        (item indices; ``fold_in``), or popularity (``popularity``); see `recforge.models.fallback`.
        """
        from recforge.models.fallback import rank_unknown

        return rank_unknown(self, histories, k, exclude_seen, candidates, user_features, ids)

    def recommend(
        self,
        user_ids: Any,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Any = None,
        unknown: UnknownPolicy = "error",
        events: Mapping[str, Sequence[Any]] | None = None,
        user_features: pd.DataFrame | Mapping[str, Any] | None = None,
        exact: bool = False,
    ) -> pd.DataFrame:
        """Top-`k` recommendations for raw user IDs as a frame: user_id, item_id, rank, score.

        Args:
            user_ids: one raw user ID or a list of them.
            k: list length; never a training item of the user with `exclude_seen`.
            exclude_seen: leave out each user's training items and `events` items.
            candidates: restrict ranking to these raw item IDs.
            unknown: what users unknown to the model get — ``"error"`` raises UnknownIdError,
                ``"skip"`` leaves them out, ``"fallback"`` ranks them by the first that
                applies of: their `user_features` (feature models; fallback ``features``), the
                fold-in of their `events` (``fold_in``), or popularity (``popularity``, score =
                the share of training users who interacted with the item). The frame then
                has a ``fallback`` column (empty for known users).
            events: raw item IDs per user interacted with since training (unknown items are
                ignored): excluded for known users, folded in for unknown ones.
            user_features: feature rows of unknown users (a frame indexed by user ID), or one
                mapping of features shared by every unknown user in the call.
            exact: score the whole catalog even when the model has an ANN index
                (`build_index`); by default the index retrieves candidates that are then
                re-scored exactly.
        """
        lists = self.rank_users(user_ids, k, exclude_seen, candidates, unknown, events, user_features, exact)
        ids = np.asarray([str(u) for u in as_list(user_ids)], dtype=object)
        frame = ranked_frame(self, ids, lists.items, lists.scores, "user_id", "item_id")
        if unknown == "fallback":
            rows = np.nonzero(lists.items >= 0)[0]
            frame["fallback"] = pd.Series(lists.fallback[rows], index=frame.index, dtype=object)
        return frame

    def popularity_scores(self) -> np.ndarray:
        """Per item, the share of training users who interacted with it (the popularity fallback)."""
        return (np.asarray(self.item_popularity_, np.float32) / max(self.n_users, 1)).astype(np.float32)

    def popular_idx(self, k: int, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `k` most popular items and their `popularity_scores` — the cold-start fallback."""
        self._check_fitted()
        items, scores = ranking.top_k(self.popularity_scores()[None, :], k,
                                      candidates=candidate_mask(candidates, self.n_items))
        return items[0], scores[0]

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

    def similar_items_idx(self, item_idx: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` (items, similarities) per item index, the item itself excluded; padded like `recommend_idx`."""
        self._check_fitted()
        check_k(k)
        item_idx = np.asarray(item_idx, np.int64)
        return ranking.top_k(self.similar_idx(item_idx), k, exclude=[np.array([i]) for i in item_idx])

    def similar_items(self, item_ids: Any, k: int = 10) -> pd.DataFrame:
        """The `k` items most similar to each raw item ID: item_id, similar_item_id, rank, score."""
        self._check_fitted()
        ids = [str(i) for i in as_list(item_ids)]
        items, scores = self.similar_items_idx(self.item_map_.to_idx(ids, what="item"), k)
        return ranked_frame(self, np.asarray(ids, dtype=object), items, scores, "item_id", "similar_item_id")

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
        A sequence model (`Capability.SEQUENCES`) reads each history in its given order,
        oldest first, repeats included; the others see the set of items.
        """
        self._check_fitted()
        ordered = self.supports(Capability.SEQUENCES)
        clean = [history_indices(h, self.n_items, ordered=ordered) for h in histories]
        if not clean:
            return np.zeros((0, self.n_items), np.float32)
        scores = np.asarray(self._score_histories(clean), np.float32)
        return np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in scores of checked in-range histories (sorted unique, or as given for sequence
        models); default: Σ similarities."""
        H = history_matrix(histories, self.n_items).tocsc()
        items = np.flatnonzero(np.diff(H.indptr))  # items in at least one history
        out = np.zeros((len(histories), self.n_items), np.float32)
        block = resources.block_rows(4 * max(self.n_items, 1), parts=4)  # similarity rows and their product
        for start in range(0, len(items), block):
            cols = items[start:start + block]
            sims = np.nan_to_num(np.asarray(self.similar_idx(cols), np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            out += H[:, cols] @ sims
        return out

    # ------------------------------------------------------------------ cold start
    def score_cold_users(self, features: pd.DataFrame, histories: list[np.ndarray]) -> np.ndarray:
        """(len(features), n_items) scores of users unknown to the model, from their features.

        `features` has one row per user (index = the user's ID) with training user-feature
        columns; `histories` holds per row the item indices given at request time. Models
        with `Capability.COLD_USERS` implement it.
        """
        raise ConfigError(f"model {self.name!r} cannot {Capability.COLD_USERS.describe()}")

    def score_new_items_idx(self, features: pd.DataFrame, user_idx: np.ndarray) -> np.ndarray:
        """(len(user_idx), len(features)) scores of known users for items unknown to the model.

        Models with `Capability.COLD_ITEMS` implement it.
        """
        raise ConfigError(f"model {self.name!r} cannot {Capability.COLD_ITEMS.describe()}")

    def new_item_vectors(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(vectors of the new items, vectors of the known items) in one space, for similarity."""
        raise ConfigError(f"model {self.name!r} has no vectors for items unknown to it")

    def recommend_cold(
        self,
        user_features: pd.DataFrame | pd.Series | Mapping[str, Any],
        k: int = 10,
        seen_items: Mapping[str, Sequence[Any]] | Sequence[Any] | None = None,
        candidates: Any = None,
    ) -> pd.DataFrame:
        """Top-`k` items for users the model has not seen in training, from their features.

        Args:
            user_features: one row per new user (index = the user's ID), with the columns of
                the training user features (``age``, ``gender``…); a Series or mapping is one
                user. Missing columns and unseen categories are treated as unknown.
            k: items per user.
            seen_items: items the user interacted with at request time — one list of item IDs
                for every row, or ``{user_id: [item IDs]}``. They personalise the list (when
                the model can use them) and are never recommended.
            candidates: restrict ranking to these item IDs.

        Returns:
            A frame ``user_id, item_id, rank, score`` like `recommend`. ConfigError for a
            model without `Capability.COLD_USERS`.
        """
        from recforge.models.cold_start import recommend_cold

        return recommend_cold(self, user_features, k, seen_items, candidates)

    def score_new_items(self, item_features: pd.DataFrame | pd.Series | Mapping[str, Any],
                        user_ids: Any = None) -> pd.DataFrame:
        """Scores of known users (rows; all users by default) for new items (columns).

        `item_features` has one row per new item (index = its ID) with the training item
        feature columns (``title``, ``year``, ``genre_*``…).
        """
        from recforge.models.cold_start import score_new_items

        return score_new_items(self, item_features, user_ids)

    def similar_new_items(self, item_features: pd.DataFrame | pd.Series | Mapping[str, Any],
                          k: int = 10) -> pd.DataFrame:
        """The `k` known items most similar (cosine) to each new item: item_id, similar_item_id, rank, score."""
        from recforge.models.cold_start import similar_new_items

        return similar_new_items(self, item_features, k)

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
            for rank, j in enumerate(ranking.top_k_row(w, n)[0], 1):
                if w[j] > 0:
                    src = str(self.item_map_.ids[history[j]])
                    rows.append((str(self.item_map_.ids[i]), kind, src, titles.get(src, ""), float(w[j]), rank))
        return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)

    def item_titles(self) -> dict[str, str]:
        """Item ID → title, from the training item features (empty without a title column)."""
        return feature_titles(self.item_features_)

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


def ranked_frame(model: Recommender, keys: np.ndarray, items: np.ndarray, scores: np.ndarray,
                 key_col: str, item_col: str) -> pd.DataFrame:
    """Padded (rows, k) lists as a long frame: key_col, item_col (raw IDs), rank, score."""
    valid = items >= 0
    rows, cols = np.nonzero(valid)
    return pd.DataFrame({
        key_col: keys[rows],
        item_col: model.item_map_.to_ids(items[rows, cols]),
        "rank": (cols + 1).astype(np.int64),
        "score": scores[rows, cols].astype(np.float64),
    })


def bias_column(vectors: np.ndarray, column: np.ndarray) -> np.ndarray:
    """float32 `vectors` with `column` appended as one more component (a bias in an inner product)."""
    return np.concatenate([np.asarray(vectors, np.float32), np.asarray(column, np.float32)[:, None]], axis=1)


def score_block_rows(n_items: int, blocks_at_once: int = 1) -> int:
    """Users per score block: `blocks_at_once` float32 blocks fit the memory setting together."""
    return min(_RANK_BLOCK_ROWS, resources.block_rows(4 * max(n_items, 1), blocks_at_once))


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run with BLAS (OpenBLAS/MKL under NumPy) on `n` threads, restored after."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no types

    with threadpool_limits(n, user_api="blas"):
        yield


def check_k(k: int) -> None:
    """ConfigError unless the list length `k` is at least 1."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")


def candidate_mask(candidates: np.ndarray | None, n_items: int) -> np.ndarray | None:
    """A boolean item mask of candidate item indices (None: every item)."""
    if candidates is None:
        return None
    mask = np.zeros(n_items, bool)
    mask[np.asarray(candidates, np.int64)] = True
    return mask


_NO_ITEMS = np.zeros(0, np.int64)
_NO_ITEMS.flags.writeable = False


def request_items(items: Mapping[str, Sequence[Any]] | Sequence[Any] | None, ids: Sequence[str],
                  item_map: IdMap) -> list[np.ndarray]:
    """Per ID of `ids`, the indices of items given at request time, in the given order.

    `items` is None, a mapping ``{id: [raw item IDs]}``, or one list of raw item IDs for every
    ID. Item IDs the model does not know are dropped (they cannot be scored or excluded);
    order and repeats are kept for sequence models (`history_indices` makes sets of them).
    """
    if items is None:
        return [_NO_ITEMS] * len(ids)
    if isinstance(items, Mapping):
        lists = [items.get(i, []) for i in ids]
    else:
        lists = [list(items)] * len(ids)
    out = []
    for given in lists:
        idx = item_map.lookup([str(x) for x in given]) if len(given) else np.zeros(0, np.int64)
        out.append(idx[idx >= 0].astype(np.int64))
    return out


def history_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(len(histories), n_items) binary float32 CSR with a 1 at each history item."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate([np.asarray(h, np.int64) for h in histories]) if len(histories) else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(histories), n_items))


def history_indices(history: Any, n_items: int, ordered: bool = False) -> np.ndarray:
    """A history as int64 item indices: sorted unique, or in its given order with `ordered`.

    DataError when an index is out of range.
    """
    idx = np.asarray(history, np.int64).ravel()
    if len(idx) and (idx.min() < 0 or idx.max() >= n_items):
        raise DataError(f"history item indices must lie in 0..{n_items - 1}")
    return idx if ordered else np.unique(idx)


def as_list(values: Any) -> list[Any]:
    """One ID (str or int) as a one-element list, any iterable of IDs as a list."""
    if isinstance(values, str | int | np.integer):
        return [values]
    return list(values)
