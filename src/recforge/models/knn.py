"""Neighbourhood collaborative filtering: item-based and user-based k-NN, one implementation.

Both models learn a sparse similarity matrix between *entities* (items for `ItemKNN`, users for
`UserKNN`) that keeps, for every entity, its `neighbors` most similar entities. Scores are then
sparse products with the training matrix:

- task ``topn`` sums the similarities of a user's items to each candidate (item-based) or the
  similarities of the users who interacted with each candidate (user-based), as in Deshpande &
  Karypis (2004), "Item-based top-N recommendation algorithms", ACM TOIS 22(1); optional
  asymmetric cosine (Aiolli 2013, "Efficient top-N recommendation for very large scale binary
  rated datasets", RecSys) and inverse-frequency weighting (Breese, Heckerman & Kadie 1998).
- task ``rating`` predicts ``b_ui + Σ s·(r − b) / Σ s`` over the neighbours the user rated
  (item-based) or the neighbours who rated the item (user-based), with baselines ``b_ui = μ +
  b_u + b_i`` learned by regularized alternating least squares — KNNBaseline of Koren (2010),
  "Factor in the neighbors: scalable and accurate collaborative filtering", ACM TKDD 4(1).

Similarities are computed in column blocks of dense arrays from sparse products, and the top
`neighbors` per column are kept, so training never loops over interactions.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from recforge.config import DefaultRule, ModelConfig
from recforge.data.interactions import Interactions
from recforge.models.base import Recommender, history_matrix
from recforge.ranking import top_k

Similarity = Literal["cosine", "pearson", "pearson_baseline", "euclidean", "jaccard"]

#: dense similarity blocks stay under this many float64 cells (32 MiB)
_SIM_BLOCK_CELLS = 1 << 22
_NORM_BASED = ("cosine", "pearson", "pearson_baseline")


class KNNConfig(ModelConfig):
    """Settings of the k-NN models; a field left at None takes its default for the task.

    ``similarity``: cosine, pearson, pearson_baseline (rating task only: cosine of baseline
    residuals), euclidean (``1 / (1 + distance)``) or jaccard (of the interaction patterns).
    For task ``topn`` they compare whole columns of the binary matrix; for task ``rating``
    they are computed over the co-rating users (items) only, as in classic neighbourhood CF.
    """

    similarity: Similarity | None = None
    """Similarity measure; None: cosine (topn) or pearson_baseline (rating)."""
    neighbors: int | None = Field(None, ge=1)
    """k: neighbours kept per item (ItemKNN) or user (UserKNN); None: task default."""
    shrinkage: float | None = Field(None, ge=0.0)
    """Support shrinkage: similarity × n / (n + shrinkage), n co-raters; None: task default."""
    min_support: int = Field(1, ge=1)
    """Pairs with fewer co-raters than this get no similarity."""
    asymmetry: float | None = Field(None, ge=0.0, le=1.0)
    """Asymmetric cosine α: dot / (‖neighbour‖^2α ‖target‖^2(1−α)); None: 0.7 topn cosine, else 0.5."""
    weighting: Literal["none", "idf"] | None = None
    """Weight each rater by log(n / its count) before comparing (inverse user frequency)."""
    baseline_iterations: int = Field(10, ge=1)
    """Rating task: alternating least-squares sweeps that fit the baselines b_u, b_i."""
    user_bias_regularization: float = Field(5.0, ge=0.0)
    """Rating task: λ of the L2 penalty on the user baselines b_u."""
    item_bias_regularization: float = Field(5.0, ge=0.0)
    """Rating task: λ of the L2 penalty on the item baselines b_i."""

    #: defaults of the None fields per task, chosen on validation splits of ML-100K; the
    #: asymmetry default holds for cosine, other similarities are symmetric (0.5)
    default_rules: ClassVar[tuple[DefaultRule, ...]] = (
        DefaultRule({"task": "topn"}, {"similarity": "cosine", "neighbors": 150,
                                       "shrinkage": 0.0, "weighting": "idf"}),
        DefaultRule({"task": "rating"}, {"similarity": "pearson_baseline", "neighbors": 400,
                                         "shrinkage": 100.0, "weighting": "none"}),
        DefaultRule({"task": "topn", "similarity": "cosine"}, {"asymmetry": 0.7}),
        DefaultRule({}, {"asymmetry": 0.5}),
    )

    @model_validator(mode="after")
    def _check(self) -> KNNConfig:
        if self.similarity == "pearson_baseline" and self.task != "rating":
            raise ValueError("similarity 'pearson_baseline' needs task 'rating' (it uses baselines)")
        if self.asymmetry != 0.5 and self.similarity not in _NORM_BASED:
            raise ValueError(f"asymmetry applies to {', '.join(_NORM_BASED)}, not {self.similarity!r}")
        return self


class ItemKNNConfig(KNNConfig):
    """`KNNConfig` with item-based defaults."""


class UserKNNConfig(KNNConfig):
    """`KNNConfig` with user-based defaults."""

    default_rules = (DefaultRule({"task": "topn"}, {"neighbors": 100}),)


class _KNN(Recommender):
    """The shared neighbourhood model; subclasses choose the entity (item or user)."""

    tasks: ClassVar[frozenset[str]] = frozenset({"topn", "rating"})
    by_item: ClassVar[bool] = True
    parallelism = "similarities are blocked sparse and dense matrix products, multi-threaded by BLAS"
    config: KNNConfig

    # ------------------------------------------------------------------ training
    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config
        rating = cfg.task == "rating"
        if rating:
            assert self._train_ratings is not None  # `fit` refuses task rating without ratings
            self.user_bias_, self.item_bias_ = _fit_baselines(
                self._train_user_idx(), self._train_item_idx(), self._train_ratings,
                self.global_mean_, interactions.n_users, interactions.n_items,
                cfg.user_bias_regularization, cfg.item_bias_regularization,
                cfg.baseline_iterations)
        self._prepare_values()
        if not rating:
            values = self._pattern
        elif cfg.similarity == "pearson_baseline":
            values = self._residuals
        else:
            values = self._ratings
        # raters × entities: the columns are compared
        X = (values if self.by_item else values.T).astype(np.float64).tocsc()
        self.weights_ = _neighbour_weights(X, cfg, over_support=rating)
        self._prepare_operands()

    def _prepare_values(self) -> None:
        """Training matrices on `seen_`'s layout: pattern, and ratings/residuals when rating."""
        self._pattern = self.seen_.astype(np.float32)
        if self.config.task != "rating":
            return
        self._ratings = self._pattern.copy()
        self._ratings.data = np.asarray(self._train_ratings, np.float32)
        self._residuals = self._ratings.copy()
        self._residuals.data = (self._ratings.data - self.global_mean_
                                - self.user_bias_[self._train_user_idx()]
                                - self.item_bias_[self._train_item_idx()]).astype(np.float32)

    def _prepare_operands(self) -> None:
        """(left, right) CSR pairs with score = left[users] @ right.T for numerator/denominator.

        Item-based: left = training matrix (users × items), right = Wᵀ (row i = item i's
        neighbours). User-based: left = Wᵀ (row u = user u's neighbours), right = training
        matrixᵀ (items × users).
        """
        wt = self.weights_.T.tocsr()
        if self.config.task == "rating":
            mats = [self._residuals, self._pattern]  # Σ s·(r − b) and Σ s
        else:
            mats = [self._pattern]  # Σ s over the user's items (neighbours)
        if self.by_item:
            self._operands = [(m, wt) for m in mats]
        else:
            self._operands = [(wt, m.T.tocsr()) for m in mats]

    # ------------------------------------------------------------------ scoring
    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        if item_idx is None:
            parts = [(left[user_idx] @ right.T).toarray() for left, right in self._operands]
        else:
            item_idx = np.asarray(item_idx, np.int64)
            parts = [np.asarray(left[user_idx].multiply(right[item_idx]).sum(axis=1)).ravel()
                     for left, right in self._operands]
        if self.config.task != "rating":
            return parts[0].astype(np.float32)
        num, den = parts
        offset = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        if item_idx is None:
            base = self.user_bias_[user_idx, None] + self.item_bias_[None, :]
        else:
            base = self.user_bias_[user_idx] + self.item_bias_[item_idx]
        return (self.global_mean_ + base + offset).astype(np.float32)

    def _history_contributions(self, user_idx: int, item_idx: np.ndarray) -> np.ndarray | None:
        """Item-based top-N scores are Σ_j x_uj w_ji: each history item's share is exact."""
        if not self.by_item or self.config.task == "rating":
            return None
        left, right = self._operands[0]
        x = left[[user_idx]].toarray()[0]
        return (x[None, :] * right[np.asarray(item_idx, np.int64)].toarray()).astype(np.float32)

    def _predict_cold(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        if self.config.task != "rating":
            return super()._predict_cold(user_idx, item_idx)
        out = np.full(len(user_idx), self.global_mean_, np.float32)
        out[user_idx >= 0] += self.user_bias_[user_idx[user_idx >= 0]]
        out[item_idx >= 0] += self.item_bias_[item_idx[item_idx >= 0]]
        return out

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        w = self.weights_
        state = {"w_data": w.data, "w_indices": w.indices, "w_indptr": w.indptr}
        if self.config.task == "rating":
            state |= {"user_bias": self.user_bias_, "item_bias": self.item_bias_}
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        # n_users / n_items raise here: the base marks the model fitted only after _set_state
        n = self.seen_.shape[1 if self.by_item else 0]
        self.weights_ = sp.csc_matrix(
            (state["w_data"], state["w_indices"], state["w_indptr"]), shape=(n, n))
        if self.config.task == "rating":
            self.user_bias_, self.item_bias_ = state["user_bias"], state["item_bias"]
        self._prepare_values()
        self._prepare_operands()


class ItemKNN(_KNN):
    """Item-based k-NN (Sarwar et al. 2001; Deshpande & Karypis 2004; KNNBaseline, Koren 2010).

    `similar_idx` returns each item's learned neighbour weights.

    >>> from recforge.testing import tiny_interactions
    >>> model = ItemKNN(neighbors=5).fit(tiny_interactions()[0])
    >>> model.weights_.shape
    (20, 20)
    """

    name = "itemknn"
    config_class = ItemKNNConfig
    by_item = True

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Σ_j x_j w_ji over the history's items: `score` of a top-N user with that history.

        For the rating task histories carry no ratings, so they rank by the same summed
        neighbour weights (no baselines or residuals).
        """
        return (history_matrix(histories, self.n_items) @ self.weights_).toarray().astype(np.float32)

    def similar_idx(self, item_idx: np.ndarray) -> np.ndarray:
        """(len(item_idx), n_items): column i of the learned similarity (i's neighbours)."""
        return self.weights_[:, np.asarray(item_idx, np.int64)].T.toarray().astype(np.float32)


class UserKNN(_KNN):
    """User-based k-NN (Herlocker et al. 1999; KNNBaseline of Koren 2010 for ratings).

    It learns user-user weights (``weights_``, n_users × n_users), so `similar_idx` keeps the
    base class's cosine of the items' training columns.
    """

    name = "userknn"
    config_class = UserKNNConfig
    by_item = False


# ---------------------------------------------------------------------- helpers
def _fit_baselines(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, mean: float,
    n_users: int, n_items: int, reg_user: float, reg_item: float, iterations: int,
) -> tuple[np.ndarray, np.ndarray]:
    """User and item biases of ``r ≈ μ + b_u + b_i`` by regularized ALS (Koren 2010, §2.1)."""
    r = np.asarray(ratings, np.float64) - mean
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    b_u = np.zeros(n_users)
    b_i = np.zeros(n_items)
    for _ in range(iterations):
        b_i = np.bincount(items, r - b_u[users], n_items) / (reg_item + n_i + 1e-12)
        b_u = np.bincount(users, r - b_i[items], n_users) / (reg_user + n_u + 1e-12)
    return b_u.astype(np.float32), b_i.astype(np.float32)


def _neighbour_weights(X: sp.csc_matrix, cfg: KNNConfig, over_support: bool) -> sp.csc_matrix:
    """(n × n) CSC: column c keeps the `neighbors` highest positive similarities to entity c.

    `X` is raters × entities; its columns are compared. With `over_support`, the statistics
    of a pair use only the raters both have (rating task); otherwise whole columns.
    """
    assert cfg.neighbors is not None and cfg.shrinkage is not None  # a resolved config
    n = X.shape[1]
    pattern = X.copy()
    pattern.data[:] = 1.0
    if cfg.weighting == "idf":
        counts = np.diff(X.tocsr().indptr)
        idf = np.log(n / np.maximum(counts, 1))
        X = sp.csc_matrix(sp.diags(idf) @ X)
    mats = _Mats(X, pattern)
    # co-rater counts matter where they enter the value, the shrinkage or the cut-off; cosine
    # and pearson over whole columns are ≤ 0 for pairs without co-raters anyway
    need_support = (over_support or cfg.similarity in ("jaccard", "euclidean")
                    or cfg.min_support > 1 or cfg.shrinkage > 0)
    k = min(cfg.neighbors, n - 1)
    rows, cols, vals = [], [], []
    block = max(1, _SIM_BLOCK_CELLS // max(n, 1))
    for start in range(0, n, block):
        c = np.arange(start, min(n, start + block))
        support = (mats.BT @ mats.B[:, c]).toarray() if need_support else None
        sim = _similarity_block(mats, c, cfg, over_support, support)
        sim[~np.isfinite(sim)] = 0.0
        if support is not None:
            sim[support < cfg.min_support] = 0.0
            if cfg.shrinkage:
                sim *= support / (support + cfg.shrinkage)
        sim[c, np.arange(len(c))] = 0.0
        if k < n:
            top, top_sim = (m.T for m in top_k(sim.T, k))  # per column, ties to the lower index
        else:
            top = np.broadcast_to(np.arange(n)[:, None], sim.shape)
            top_sim = np.take_along_axis(sim, top, axis=0)
        keep = top_sim > 0
        rows.append(top[keep])
        cols.append(np.broadcast_to(c[None, :], top.shape)[keep])
        vals.append(top_sim[keep].astype(np.float32))
    w = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n), dtype=np.float32)
    w.sort_indices()
    return w


class _Mats:
    """X, its pattern B and squares, in the orientations the block products need."""

    def __init__(self, X: sp.csc_matrix, pattern: sp.csc_matrix) -> None:
        self.n_raters = X.shape[0]
        self.X, self.B = X, pattern
        self.XT, self.BT = X.T.tocsr(), pattern.T.tocsr()
        self.X2 = X.multiply(X).tocsc()
        self.X2T = self.X2.T.tocsr()
        self.counts = np.diff(pattern.indptr).astype(np.float64)
        self.sums = np.asarray(X.sum(axis=0)).ravel()
        self.sq = np.asarray(self.X2.sum(axis=0)).ravel()


def _similarity_block(
    m: _Mats, c: np.ndarray, cfg: KNNConfig, over_support: bool, support: np.ndarray | None,
) -> np.ndarray:
    """Dense (n × len(c)) similarities of every entity (rows) to the entities `c` (columns).

    `support` (co-rater counts) is given for jaccard and with `over_support`.
    """
    assert cfg.asymmetry is not None  # a resolved config
    if cfg.similarity == "jaccard":
        assert support is not None
        union = m.counts[:, None] + m.counts[None, c] - support
        return np.divide(support, union, out=np.zeros_like(support), where=union > 0)
    Xc = m.X[:, c]
    dot = (m.XT @ Xc).toarray()
    if not over_support:  # whole columns: the per-entity statistics are vectors
        sq = m.sq
        if cfg.similarity == "pearson":  # centre whole columns (absent entries count as 0)
            mean = m.sums / m.n_raters
            dot -= m.n_raters * np.outer(mean, mean[c])
            sq = sq - m.n_raters * mean**2
        if cfg.similarity == "euclidean":
            dist2 = np.maximum(sq[:, None] + sq[None, c] - 2.0 * dot, 0.0)
            return 1.0 / (1.0 + np.sqrt(dist2))
        sq = np.maximum(sq, 0.0)
        denom = np.outer(sq**cfg.asymmetry, sq[c] ** (1.0 - cfg.asymmetry))
        return np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 1e-8)
    # over co-raters only: Σ of squares on the neighbour side (rows) and target side (columns)
    assert support is not None
    Bc = m.B[:, c]
    sq_n = (m.X2T @ Bc).toarray()
    sq_t = (m.BT @ m.X2[:, c]).toarray()
    if cfg.similarity == "pearson":  # centre each pair on its own co-rated means
        s_n = (m.XT @ Bc).toarray()
        s_t = (m.BT @ Xc).toarray()
        inv = 1.0 / np.maximum(support, 1.0)
        dot -= s_n * s_t * inv
        sq_n -= s_n * s_n * inv
        sq_t -= s_t * s_t * inv
    if cfg.similarity == "euclidean":  # root mean squared difference over co-raters
        msd = np.maximum(sq_n + sq_t - 2.0 * dot, 0.0) / np.maximum(support, 1.0)
        return 1.0 / (1.0 + np.sqrt(msd))
    sq_n, sq_t = np.maximum(sq_n, 0.0), np.maximum(sq_t, 0.0)
    if cfg.asymmetry == 0.5:
        denom = np.sqrt(sq_n * sq_t)
    else:
        denom = sq_n**cfg.asymmetry * sq_t ** (1.0 - cfg.asymmetry)
    return np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 1e-8)
