"""Bayesian personalized ranking MF, trained by a compiled lock-free SGD kernel.

S. Rendle, C. Freudenthaler, Z. Gantner, L. Schmidt-Thieme, "BPR: Bayesian Personalized
Ranking from Implicit Feedback", UAI 2009. For a sampled triple (user u, item i the user
interacted with, item j the user did not) BPR raises ``ln σ(x_ui − x_uj)`` with
``x_ui = p_u · q_i + b_i`` by one SGD step on ``p_u``, ``q_i``, ``q_j``, ``b_i`` and ``b_j``,
each with its L2 penalty (LearnBPR, the paper's Fig. 4).

One epoch draws one triple per training interaction: every interaction is the positive
once, in a random order, and its negative is a uniform item outside the user's training
items (rejection against the CSR). The kernel (numba, `parallel=True`) splits the shuffled
interactions into fixed chunks and runs them on `threads` threads that update the shared
factors without locks ("Hogwild!", Niu, Recht, Ré & Wright, NIPS 2011): two threads rarely
touch the same row, and an occasional lost update does not hurt SGD. Each chunk draws its
order and its negatives from its own random stream (seeded by the config's seed, the epoch
and the chunk), so the triples do not depend on the number of threads; with ``threads=1``
the same seed gives the same factors bit for bit, with more threads the interleaving of
the updates (and so the last bits of the factors) varies from run to run.

The torch path of BPR (minibatch Adam, several negatives per positive, GPU) is
``mf`` with ``loss: bpr``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import ClassVar, Literal

import numba
import numpy as np
from numba import njit, prange
from pydantic import Field, field_validator

from recforge.config import DefaultRule, ModelConfig, SameAs
from recforge.data.interactions import Interactions
from recforge.data.splitting import carve_validation
from recforge.models.base import Recommender, history_matrix
from recforge.models.fold_in import softmax_fold_in
from recforge.training.config import parse_metric
from recforge.training.history import EpochRecord, History
from recforge.training.validation import make_validator

__all__ = ["BPR", "BPRConfig", "bpr_epoch", "kernel_threads"]

#: interactions per chunk of the kernel: the unit of shuffling, seeding and thread work
CHUNK = 4096
#: uniform draws per triple before its negative is given up (only for users who have seen
#: nearly every item)
MAX_NEGATIVE_TRIES = 64
#: fold-in penalty per history item (`softmax_fold_in`)
FOLD_IN_REGULARIZATION = 0.05

#: the weights of a `bpr` artifact saved by the torch MF that `bpr` was before this kernel
_TORCH_USERS, _TORCH_ITEMS = "network.users.weight", "network.items.weight"

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


class BPRConfig(ModelConfig):
    """Settings of `BPR`."""

    task: Literal["topn"] = "topn"
    """BPR ranks implicit feedback only."""
    embedding_dim: int = Field(64, ge=1)
    """d: dimension of the user and item factors."""
    epochs: int = Field(150, ge=1)
    """Passes over the interactions, one sampled (user, positive, negative) triple each."""
    learning_rate: float = Field(0.05, gt=0)
    """SGD step size (of the first epoch with a schedule)."""
    lr_schedule: Literal["none", "cosine"] = "cosine"
    """none: a constant step; cosine: annealed from `learning_rate` towards 0 over `epochs`."""
    regularization: float = Field(0.02, ge=0)
    """λ of the L2 penalty on the user, positive and negative factor rows, per update."""
    bias_regularization: float | None = Field(None, ge=0)
    """λ of the L2 penalty on the positive and negative item biases, per update (None: `regularization`)."""
    use_bias: bool = True
    """Learn an item bias (a user bias cancels out of BPR's differences)."""
    init_std: float = Field(0.01, gt=0)
    """Standard deviation of the random normal initial factors."""
    validation_ratio: float = Field(0.0, ge=0, lt=1)
    """> 0: hold out this share of every user's interactions and stop early on it."""
    validation_metric: str = "ndcg@10"
    """Early-stopping metric: ndcg@K or recall@K (full ranking minus training items)."""
    patience: int | None = Field(5, ge=1)
    """Epochs without improvement before stopping (None: never; the best epoch is kept)."""
    min_delta: float = Field(0.0, ge=0)
    """Smallest improvement of the metric that counts."""
    threads: int | None = Field(None, ge=1)
    """Kernel threads (None: every core numba sees); 1 makes training bit-for-bit repeatable."""

    default_rules = (DefaultRule({}, {"bias_regularization": SameAs("regularization")}),)

    @field_validator("validation_metric")
    @classmethod
    def _ranking_metric(cls, value: str) -> str:
        kind, _ = parse_metric(value)
        if kind == "rmse":
            raise ValueError("BPR validates a ranking metric (ndcg@K or recall@K), not rmse")
        return value


class BPR(Recommender):
    """BPR matrix factorization (Rendle et al. 2009) with a compiled Hogwild SGD kernel.

    Learned ``user_factors_`` (n_users × d), ``item_factors_`` (n_items × d) and
    ``item_bias_`` (n_items,), float32; ``score = user_factors_ @ item_factors_.T + item_bias_``.
    `history_` records the training (`History`: mean loss ``−ln σ(x_ui − x_uj)`` per epoch,
    the validation metric, and the epoch kept when validating). Unknown users fold in by the softmax
    fold-in of the item side (`recforge.models.fold_in`); explanations and `similar_items`
    use the cosine of the item factors.

    >>> from recforge.testing import tiny_interactions
    >>> model = BPR(embedding_dim=4, epochs=5, threads=1).fit(tiny_interactions()[0])
    >>> model.item_embeddings().shape
    (20, 4)
    """

    name = "bpr"
    config_class = BPRConfig
    config: BPRConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        train = interactions
        if validation is None and cfg.validation_ratio > 0:
            train, validation = carve_validation(interactions, cfg.validation_ratio, seed=cfg.seed)
        seen = self.seen_ if train is interactions else train.csr(binary=True)  # rows sorted
        indptr, indices = seen.indptr.astype(np.int64), np.asarray(seen.indices, np.int32)
        # the interactions in one random order; the kernel reshuffles within chunks every epoch
        order = rng.permutation(len(train))
        users = np.ascontiguousarray(train.user_idx[order], np.int32)
        items = np.ascontiguousarray(train.item_idx[order], np.int32)
        d = cfg.embedding_dim
        self.user_factors_ = rng.normal(0.0, cfg.init_std, (self.n_users, d)).astype(np.float32)
        self.item_factors_ = rng.normal(0.0, cfg.init_std, (self.n_items, d)).astype(np.float32)
        self.item_bias_ = np.zeros(self.n_items, np.float32)
        validate = None
        if validation is not None and len(validation) > 0:
            validate, _ = make_validator(self.score, seen, validation, cfg.validation_metric)
        history = History(metric_name=cfg.validation_metric if validate else None, epochs_planned=cfg.epochs)
        best: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        best_value, stale = -np.inf, 0
        n_chunks = -(-len(users) // CHUNK)
        reg_bias = cfg.regularization if cfg.bias_regularization is None else cfg.bias_regularization
        with kernel_threads(cfg.threads):
            for epoch in range(1, cfg.epochs + 1):
                start = time.perf_counter()
                chunk_order = rng.permutation(n_chunks)
                epoch_seed = np.uint64(rng.integers(0, 2**63))
                lr = cfg.learning_rate
                if cfg.lr_schedule == "cosine":
                    lr *= 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / cfg.epochs))
                loss, _ = bpr_epoch(users, items, indptr, indices, self.user_factors_, self.item_factors_,
                                    self.item_bias_, lr, cfg.regularization,
                                    reg_bias, cfg.use_bias, epoch_seed, CHUNK, chunk_order)
                metric = validate() if validate is not None else None
                history.records.append(EpochRecord(epoch, loss / max(len(users), 1), metric, lr,
                                                   time.perf_counter() - start))
                if metric is None:
                    continue
                if best is None or metric > best_value + cfg.min_delta:
                    best_value, stale, history.best_epoch = metric, 0, epoch
                    best = (self.user_factors_.copy(), self.item_factors_.copy(), self.item_bias_.copy())
                else:
                    stale += 1
                    if cfg.patience is not None and stale >= cfg.patience:
                        break
        if best is not None:  # the best validated epoch's factors
            self.user_factors_, self.item_factors_, self.item_bias_ = best
        self.history_ = history

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        x = self.user_factors_[np.asarray(user_idx, np.int64)]
        if item_idx is None:
            out: np.ndarray = x @ self.item_factors_.T
            out += self.item_bias_
            return out
        items = np.asarray(item_idx, np.int64)
        return np.einsum("nd,nd->n", x, self.item_factors_[items]) + self.item_bias_[items]

    def item_embeddings(self) -> np.ndarray:
        return self.item_factors_

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in: the user vector maximising the softmax likelihood of the history items.

        `softmax_fold_in` with the item factors and biases fixed and the penalty
        ``FOLD_IN_REGULARIZATION`` · |history|; scores are ``p · q_i + b_i``.
        """
        Q = self.item_factors_.astype(np.float64)
        b = self.item_bias_.astype(np.float64)
        P = softmax_fold_in(Q, b, history_matrix(histories, self.n_items), FOLD_IN_REGULARIZATION)
        return (P @ Q.T + b).astype(np.float32)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "item_bias": self.item_bias_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        if _TORCH_ITEMS in state:
            state = _from_torch_bpr(state, self.config.embedding_dim, self.config.use_bias)
        self.user_factors_ = np.ascontiguousarray(state["user_factors"], np.float32)
        self.item_factors_ = np.ascontiguousarray(state["item_factors"], np.float32)
        self.item_bias_ = np.ascontiguousarray(state["item_bias"], np.float32)
        shapes = (self.user_factors_.shape[0], self.item_factors_.shape[0], len(self.item_bias_))
        if shapes != (self.n_users, self.n_items, self.n_items):
            raise ValueError(f"factor shapes {shapes} do not fit {self.n_users} users and {self.n_items} items")


def _from_torch_bpr(state: dict[str, np.ndarray], dim: int, use_bias: bool) -> dict[str, np.ndarray]:
    """The factors of a `bpr` artifact saved when `bpr` was the torch MF (``MFNetwork`` weights).

    Its tables hold ``[p_u, b_u]`` and ``[q_i, b_i]``; the user bias is a constant per user
    (rankings do not change without it, `predict` moves by it) and is left out.
    """
    users, items = state[_TORCH_USERS], state[_TORCH_ITEMS]
    bias = items[:, dim] if use_bias else np.zeros(len(items), np.float32)
    return {"user_factors": users[:, :dim], "item_factors": items[:, :dim], "item_bias": bias}


@contextlib.contextmanager
def kernel_threads(threads: int | None) -> Iterator[None]:
    """Run numba's parallel kernels on `threads` threads (None: unchanged), restoring it after.

    More threads than numba started with (``NUMBA_NUM_THREADS``, the core count) are capped.
    """
    if threads is None:
        yield
        return
    previous = numba.get_num_threads()
    started = int(vars(numba.config)["NUMBA_NUM_THREADS"])  # set at import, from the environment
    numba.set_num_threads(min(threads, started))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


# ---------------------------------------------------------------------- the kernel
@njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """SplitMix64's finalizer: a well-mixed 64-bit value from any 64-bit input."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _below(state: np.uint64, n: int) -> tuple[np.uint64, np.int64]:  # pragma: no cover - compiled
    """Advance a SplitMix64 stream; return it and a uniform integer in [0, n) (n < 2³²)."""
    state = state + _GOLDEN
    r = _mix(state)
    return state, np.int64(((r >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(inline="always")
def _contains(indices: np.ndarray, lo: int, hi: int, j: np.int64) -> bool:  # pragma: no cover - compiled
    """Whether the sorted `indices[lo:hi]` contain `j` (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v < j:
            lo = mid + 1
        elif v > j:
            hi = mid
        else:
            return True
    return False


@njit(fastmath=True, nogil=True, cache=True)
def _bpr_chunk(users: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
               U: np.ndarray, V: np.ndarray, bias: np.ndarray, lr: np.float32, reg: np.float32,
               reg_bias: np.float32, use_bias: bool, state: np.uint64, start: int,
               stop: int) -> tuple[float, int]:  # pragma: no cover - compiled
    """Shuffle ``[start, stop)`` of the interactions in place, then one SGD step per triple.

    Returns the summed loss ``−ln σ(x)`` of the triples and how many had no negative.
    """
    n_items = V.shape[0]
    d = U.shape[1]
    for k in range(stop - 1, start, -1):  # Fisher–Yates
        state, r = _below(state, k - start + 1)
        j = start + r
        users[k], users[j] = users[j], users[k]
        items[k], items[j] = items[j], items[k]
    one = np.float32(1.0)
    total = 0.0
    skipped = 0
    for k in range(start, stop):
        u = users[k]
        i = items[k]
        lo, hi = indptr[u], indptr[u + 1]
        neg = np.int64(-1)
        for _ in range(MAX_NEGATIVE_TRIES):
            state, j = _below(state, n_items)
            if not _contains(indices, lo, hi, j):
                neg = j
                break
        if neg < 0:
            skipped += 1
            continue
        x = bias[i] - bias[neg] if use_bias else np.float32(0.0)
        for f in range(d):
            x += U[u, f] * (V[i, f] - V[neg, f])
        # z = σ(−x), the loss's gradient scale; loss = ln(1 + e^−x), both without overflow
        if x > 0:
            e = np.exp(-x)
            z = e / (one + e)
            total += np.log1p(e)
        else:
            e = np.exp(x)
            z = one / (one + e)
            total += np.log1p(e) - x
        for f in range(d):
            uf, vi, vj = U[u, f], V[i, f], V[neg, f]
            U[u, f] = uf + lr * (z * (vi - vj) - reg * uf)
            V[i, f] = vi + lr * (z * uf - reg * vi)
            V[neg, f] = vj - lr * (z * uf + reg * vj)
        if use_bias:
            bias[i] += lr * (z - reg_bias * bias[i])
            bias[neg] -= lr * (z + reg_bias * bias[neg])
    return total, skipped


@njit(parallel=True, nogil=True, cache=True)
def bpr_epoch(users: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
              U: np.ndarray, V: np.ndarray, bias: np.ndarray, learning_rate: float, regularization: float,
              bias_regularization: float, use_bias: bool, seed: np.uint64, chunk: int,
              chunk_order: np.ndarray) -> tuple[float, int]:  # pragma: no cover - compiled
    """One BPR epoch over the interactions (`users`, `items`, int32, reshuffled in place).

    Chunk ``c`` is ``[c·chunk, (c+1)·chunk)``, shuffled and sampled from its own stream
    seeded by `seed` and ``c``; `chunk_order` (a permutation of the chunks) is the order
    they are handed to the threads. `indptr`/`indices` are the users × items
    training CSR with sorted rows; `U` (n_users, d), `V` (n_items, d) and `bias` (n_items,)
    are float32 and updated in place (`bias` only with `use_bias`). Returns (summed loss, triples without a negative).
    """
    n = len(users)
    n_chunks = len(chunk_order)
    lr = np.float32(learning_rate)
    reg = np.float32(regularization)
    reg_bias = np.float32(bias_regularization)
    losses = np.zeros(n_chunks)
    skipped = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        block = chunk_order[c]
        state = _mix(seed ^ (np.uint64(block) * _MIX2))
        start = block * chunk
        losses[c], skipped[c] = _bpr_chunk(users, items, indptr, indices, U, V, bias, lr, reg, reg_bias,
                                           use_bias, state, start, min(start + chunk, n))
    return losses.sum(), skipped.sum()
