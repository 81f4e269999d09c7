"""Bayesian personalized ranking MF, trained by a compiled lock-free SGD kernel.

S. Rendle, C. Freudenthaler, Z. Gantner, L. Schmidt-Thieme, "BPR: Bayesian Personalized
Ranking from Implicit Feedback", UAI 2009. For a sampled triple (user u, item i the user
interacted with, item j the user did not) BPR raises ``ln σ(x_ui − x_uj)`` with
``x_ui = p_u · q_i + b_i`` by one SGD step on ``p_u``, ``q_i``, ``q_j``, ``b_i`` and ``b_j``,
each with its L2 penalty (LearnBPR, the paper's Fig. 4).

One epoch draws one triple per training interaction: every interaction is the positive
once, in a random order, and its negative is a uniform item outside the user's training
items (rejection against the CSR). The kernel (numba, `parallel=True`) cuts the interactions
(shuffled once) into fixed chunks; each (epoch, chunk) is a task that visits its chunk in a
fresh random order and draws its negatives from its own random stream, seeded by the
config's seed, the epoch and the chunk, so the triples do not depend on the number of
threads. `threads` threads take the tasks one at a time and update the shared factors
without locks ("Hogwild!", Niu, Recht, Ré & Wright, NIPS 2011): two threads rarely touch
the same row, and an occasional lost update does not hurt SGD. Without validation, many
epochs run in one parallel loop, so threads do not wait for each other after every epoch
(on a busy machine such waits cost whole time slices). With ``threads=1`` the same seed
gives the same factors bit for bit; with more threads the interleaving of the updates
(and so the last bits of the factors) varies from run to run.

The torch path of BPR (minibatch Adam, several negatives per positive, GPU) is
``mf`` with ``loss: bpr``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import ClassVar, Literal

import numba
import numpy as np
from numba import njit, prange
from pydantic import Field, field_validator

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.data.splitting import carve_validation
from recforge.models.base import Recommender, history_matrix
from recforge.models.fold_in import softmax_fold_in
from recforge.training.config import parse_metric
from recforge.training.history import EpochRecord, History
from recforge.training.validation import make_validator

__all__ = ["BPR", "BPRConfig", "bpr_epochs", "kernel_threads"]

#: interactions per chunk of the kernel: the unit of ordering, seeding and thread work
CHUNK = 4096
#: without validation, one kernel call runs this many triples' worth of whole epochs (at least
#: one): threads wait for each other once per call, which on a busy machine costs time slices
EPOCH_GROUP_TRIPLES = 1 << 21
#: uniform draws per triple before its negative is given up (only for users who have seen
#: nearly every item)
MAX_NEGATIVE_TRIES = 64
#: fold-in penalty per history item (`softmax_fold_in`): folded-in training histories keep
#: 87 % of the trained top-20 on ML-100K (0.02: 77 %, 0.1: 85 %)
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
    bias_regularization: float = Field(0.005, ge=0)
    """λ of the L2 penalty on the positive and negative item biases, per update."""
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
    parallelism = "a compiled SGD kernel updates the shared factors lock-free on `threads` threads (Hogwild)"

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        train = interactions
        if validation is None and cfg.validation_ratio > 0:
            train, validation = carve_validation(interactions, cfg.validation_ratio, seed=cfg.seed)
        seen = self.seen_ if train is interactions else train.csr(binary=True)  # rows sorted
        indptr, indices = seen.indptr.astype(np.int64), np.asarray(seen.indices, np.int32)
        # the interactions in one random order; the kernel visits each chunk in another order every epoch
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
        epochs = np.arange(cfg.epochs)
        rates = np.full(cfg.epochs, cfg.learning_rate)
        if cfg.lr_schedule == "cosine":
            rates *= 0.5 * (1.0 + np.cos(np.pi * epochs / cfg.epochs))
        seeds = rng.integers(0, 2**63, cfg.epochs).astype(np.uint64)
        chunk_orders = np.argsort(rng.random((cfg.epochs, n_chunks)), axis=1)
        # epochs per kernel call: one when validating, else enough for ~EPOCH_GROUP_TRIPLES
        group = 1 if validate is not None else max(1, EPOCH_GROUP_TRIPLES // max(len(users), 1))
        with kernel_threads(cfg.threads):
            for first in range(0, cfg.epochs, group):
                part = slice(first, min(first + group, cfg.epochs))
                start = time.perf_counter()
                losses, _ = bpr_epochs(users, items, indptr, indices, self.user_factors_, self.item_factors_,
                                       self.item_bias_, rates[part], cfg.regularization, cfg.bias_regularization,
                                       cfg.use_bias, seeds[part], CHUNK, chunk_orders[part])
                metric = validate() if validate is not None else None
                seconds = (time.perf_counter() - start) / len(losses)
                history.records += [EpochRecord(int(e) + 1, loss / max(len(users), 1), metric, float(lr), seconds)
                                    for e, loss, lr in zip(epochs[part], losses, rates[part], strict=True)]
                if metric is None:
                    continue
                if best is None or metric > best_value + cfg.min_delta:
                    best_value, stale, history.best_epoch = metric, 0, first + 1
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
    Inside, parallel loops hand out their iterations one at a time (numba's chunk size 1), so
    a thread that the operating system holds back delays one task, not a fixed share.
    """
    previous = numba.get_num_threads()
    started = int(vars(numba.config)["NUMBA_NUM_THREADS"])  # set at import, from the environment
    numba.set_num_threads(previous if threads is None else min(threads, started))
    try:
        with numba.parallel_chunksize(1):
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
    """One SGD step per interaction of ``[start, stop)``, visited in a random order.

    The order is a Fisher–Yates shuffle of the chunk's positions in a private array: the
    shared interaction arrays are only read, so epochs may overlap on threads.
    Returns the summed loss ``−ln σ(x)`` of the triples and how many had no negative.
    """
    n_items = V.shape[0]
    d = U.shape[1]
    order = np.arange(start, stop)
    for t in range(stop - start - 1, 0, -1):
        state, r = _below(state, t + 1)
        order[t], order[r] = order[r], order[t]
    one = np.float32(1.0)
    total = 0.0
    skipped = 0
    for k in order:
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
def bpr_epochs(users: np.ndarray, items: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
               U: np.ndarray, V: np.ndarray, bias: np.ndarray, learning_rates: np.ndarray,
               regularization: float, bias_regularization: float, use_bias: bool, seeds: np.ndarray,
               chunk: int, chunk_orders: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """BPR epochs over the interactions `users`, `items` (int32, read only), in one parallel loop.

    Epoch e visits the chunks ``[c·chunk, (c+1)·chunk)`` in the order ``chunk_orders[e]``,
    each chunk with its own random stream seeded by ``seeds[e]`` and c (visiting order and
    negatives), at step size ``learning_rates[e]``. The (epoch, chunk) tasks are handed to
    the threads one at a time in that order, so a thread never waits for another between
    epochs; an epoch may start before the previous one has ended (Hogwild; with one thread
    the tasks run strictly in order). `indptr`/`indices`: the users × items training CSR
    with sorted rows. `U` (n_users, d), `V` (n_items, d) and `bias` (n_items,) are float32,
    updated in place (`bias` only with `use_bias`). Returns (summed loss per epoch, triples
    that found no negative).
    """
    n = len(users)
    n_epochs, n_chunks = chunk_orders.shape
    reg = np.float32(regularization)
    reg_bias = np.float32(bias_regularization)
    losses = np.zeros((n_epochs, n_chunks))
    skipped = np.zeros((n_epochs, n_chunks), np.int64)
    for task in prange(n_epochs * n_chunks):
        e, c = task // n_chunks, task % n_chunks
        block = chunk_orders[e, c]
        state = _mix(seeds[e] ^ (np.uint64(block) * _MIX2))
        start = block * chunk
        losses[e, c], skipped[e, c] = _bpr_chunk(users, items, indptr, indices, U, V, bias,
                                                 np.float32(learning_rates[e]), reg, reg_bias, use_bias, state,
                                                 start, min(start + chunk, n))
    return losses.sum(axis=1), skipped.sum()
