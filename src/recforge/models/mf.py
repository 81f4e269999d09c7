"""Biased matrix factorization, for ratings (MSE) or implicit feedback (BPR, BCE, softmax).

``score(u, i) = μ + b_u + b_i + p_u · q_i`` — the biased MF of Koren, Bell & Volinsky,
"Matrix Factorization Techniques for Recommender Systems", IEEE Computer 42(8), 2009.
With ``task="rating"`` it minimises the squared error on observed ratings plus an L2
penalty on the parameters each example touches; with ``task="topn"`` it ranks observed
items above sampled negatives with a pairwise (BPR, Rendle et al., UAI 2009), pointwise
(binary cross-entropy) or listwise (sampled softmax with optional logQ correction) loss.
The `bpr` model (`recforge.models.bpr`) is BPR by a compiled SGD kernel instead.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from recforge.config import DefaultRule, SameAs
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import bias_column, history_matrix
from recforge.models.fold_in import softmax_fold_in
from recforge.models.private import PrivateTorchRecommender
from recforge.nn import losses
from recforge.nn.layers import embedding
from recforge.privacy.dp import PrivateTrainingConfig, UserStep
from recforge.training.sampling import NegativeSampler, batch_indices
from recforge.training.trainer import TrainingPlan

__all__ = ["MFConfig", "MFNetwork", "MatrixFactorization", "softmax_fold_in"]

#: fold-in penalty per history item for losses other than softmax (softmax uses its own
#: `regularization`): with it a BPR model's folded-in training histories keep 89 % of the
#: trained top-20 on ML-100K (softmax MF: 92 %, Spearman 0.995 over all items)
FOLD_IN_REGULARIZATION = 0.05
class MFConfig(PrivateTrainingConfig):
    """Hyperparameters of `MatrixFactorization`; None means "the default for the task".

    `loss`: ``mse`` (rating task) or ``bpr`` / ``bce`` / ``softmax`` (topn task).
    `embedding_dim`: size of the user and item vectors. `regularization`: λ of the L2
    penalty on the vectors and biases used by each example (the classic SGD-MF weight
    decay; `weight_decay` is the optimizer's, applied to all parameters every step);
    `bias_regularization`: its λ for the biases (ratings: 0.01; else as `regularization`).
    `n_negatives`: sampled negatives per positive; `negative_sampling`: ``uniform`` or
    ``popularity`` (∝ count^`negative_alpha`), seen items always rejected.
    `logq_correction`: subtract log sampling probabilities in the softmax loss.
    `init_std`: standard deviation of the initial vectors. `use_bias`: learn user and
    item biases (plus the global mean for ratings).

    Differential privacy (`dp_epsilon` and the other ``dp_`` settings of
    `PrivateTrainingConfig`): user-level DP-SGD on the sampled softmax objective (top-N);
    each sampled user's step loss covers at most `dp_max_items` of their items (a random
    subset each step) against `n_negatives` sampled items.

    Left at None, `loss` is ``softmax`` for top-N and ``mse`` for ratings, and
    `embedding_dim`, `epochs`, `batch_size`, `learning_rate`, `lr_schedule`,
    `regularization`, `bias_regularization`, `n_negatives`, `init_std` take the defaults
    tuned for that loss.
    """

    embedding_dim: int | None = Field(None, ge=1)
    loss: Literal["mse", "bpr", "bce", "softmax"] | None = None
    regularization: float | None = Field(None, ge=0)
    bias_regularization: float | None = Field(None, ge=0)
    n_negatives: int | None = Field(None, ge=1)
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    negative_alpha: float = Field(0.75, ge=0)
    logq_correction: bool = True
    init_std: float | None = Field(None, gt=0)
    use_bias: bool = True
    dp_max_items: int = Field(64, ge=1)
    epochs: int | None = Field(None, ge=1)  # type: ignore[assignment]
    batch_size: int | None = Field(None, ge=1)  # type: ignore[assignment]
    learning_rate: float | None = Field(None, gt=0)  # type: ignore[assignment]
    lr_schedule: Literal["none", "cosine", "step"] | None = None  # type: ignore[assignment]

    #: the loss per task, then the defaults tuned for each loss on validation splits carved
    #: from the ML-100K training data (configs/ml100k/mf.yaml and mf-rating.yaml record the
    #: evidence); `bias_regularization` is `regularization` unless the loss's rule sets it
    default_rules = (
        DefaultRule({"task": "topn"}, {"loss": "softmax"}),
        DefaultRule({"task": "rating"}, {"loss": "mse"}),
        DefaultRule({"loss": "mse"}, {
            "embedding_dim": 128, "epochs": 30, "batch_size": 1024, "learning_rate": 5e-3,
            "lr_schedule": "cosine", "regularization": 0.1, "bias_regularization": 0.01,
            "init_std": 0.1, "n_negatives": 1}),
        DefaultRule({"loss": "softmax"}, {
            "embedding_dim": 64, "epochs": 35, "batch_size": 2048, "learning_rate": 5e-3,
            "lr_schedule": "none", "regularization": 0.05, "init_std": 0.01, "n_negatives": 16}),
        DefaultRule({"loss": "bpr"}, {
            "embedding_dim": 64, "epochs": 50, "batch_size": 2048, "learning_rate": 1e-2,
            "lr_schedule": "none", "regularization": 0.01, "init_std": 0.01, "n_negatives": 8}),
        DefaultRule({"loss": "bce"}, {
            "embedding_dim": 64, "epochs": 40, "batch_size": 2048, "learning_rate": 1e-2,
            "lr_schedule": "none", "regularization": 0.01, "init_std": 0.01, "n_negatives": 8}),
        DefaultRule({}, {"bias_regularization": SameAs("regularization")}),
    )

    @model_validator(mode="after")
    def _check_loss(self) -> MFConfig:
        if (self.task == "rating") != (self.loss == "mse"):
            raise ValueError(f"loss {self.loss!r} does not fit task {self.task!r} "
                             "(rating needs mse; topn needs bpr, bce or softmax)")
        if self.dp_epsilon is not None and self.loss != "softmax":
            raise ValueError("dp_epsilon trains the softmax loss of the topn task only")
        return self


class MFNetwork(nn.Module):
    """User/item vectors and biases: ``score = μ + b_u + b_i + p_u · q_i``.

    Each table stores a row's vector and its bias side by side — `users.weight` is
    (n_users, d + 1) with ``[p_u, b_u]`` (d columns without biases) — so a batch does one
    lookup and one backward scatter per table.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: embedding dimension d.
        use_bias: learn a bias per user and per item (initialised at zero).
        global_bias: μ, a fixed buffer (the training mean rating, or 0).
        init_std: standard deviation of the normal initialisation of the vectors.

    Example::

        >>> net = MFNetwork(4, 6, 3)
        >>> net(torch.tensor([0, 1]), torch.tensor([2, 5])).shape
        torch.Size([2])
        >>> net(torch.tensor([0, 1]), torch.tensor([[1, 2, 3], [0, 4, 5]])).shape
        torch.Size([2, 3])
        >>> net.score_all(torch.tensor([0, 1, 2])).shape
        torch.Size([3, 6])
    """

    global_bias: torch.Tensor  # a buffer (registered in __init__)

    def __init__(self, n_users: int, n_items: int, dim: int, *, use_bias: bool = True,
                 global_bias: float = 0.0, init_std: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.use_bias = use_bias
        self.users = embedding(n_users, dim + use_bias, std=init_std)
        self.items = embedding(n_items, dim + use_bias, std=init_std)
        if use_bias:
            with torch.no_grad():
                self.users.weight[:, dim] = 0.0
                self.items.weight[:, dim] = 0.0
        self.register_buffer("global_bias", torch.tensor(float(global_bias)))

    @property
    def user_vectors(self) -> torch.Tensor:
        """(n_users, d) user factors (a view of the parameter)."""
        return self.users.weight[:, :self.dim]

    @property
    def item_vectors(self) -> torch.Tensor:
        """(n_items, d) item factors (a view of the parameter)."""
        return self.items.weight[:, :self.dim]

    @property
    def user_bias(self) -> torch.Tensor | None:
        """(n_users,) user biases, or None without biases."""
        return self.users.weight[:, self.dim] if self.use_bias else None

    @property
    def item_bias(self) -> torch.Tensor | None:
        """(n_items,) item biases, or None without biases."""
        return self.items.weight[:, self.dim] if self.use_bias else None

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) for items (B,) → (B,), or for items (B, N) → (B, N)."""
        return self.forward_with_penalty(users, items)[0]

    def forward_with_penalty(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        item_weights: torch.Tensor | None = None,
        vector_weight: float = 1.0,
        bias_weight: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores as `forward`, plus the weighted batch L2 penalty of the parameters used.

        The penalty is the batch mean of ``a‖p_u‖² + c·b_u² + Σ_k w_k (a‖q_k‖² + c·b_k²)``
        over the K items of each row (`item_weights`: (K,), default 1; a = `vector_weight`,
        c = `bias_weight`).
        """
        u = self.users(users)
        v = self.items(items)
        d = self.dim
        p, q = u[:, :d], v[..., :d]
        flat = items.dim() == 1
        # an elementwise product beats bmm for many tiny (K × d)·(d) products on CPU
        scores = (p * q).sum(dim=1) if flat else (q * p.unsqueeze(1)).sum(dim=2)
        if self.use_bias:
            bu = u[:, d]
            scores = scores + v[..., d] + (bu if flat else bu.unsqueeze(1))
        # a·(all squares) + (c - a)·(bias squares): no reweighting of the full tensors
        user_sq = vector_weight * u.pow(2).sum(dim=1)
        item_sq = vector_weight * v.pow(2).sum(dim=-1)
        if self.use_bias and bias_weight != vector_weight:
            user_sq = user_sq + (bias_weight - vector_weight) * u[:, d].pow(2)
            item_sq = item_sq + (bias_weight - vector_weight) * v[..., d].pow(2)
        if not flat:
            item_sq = (item_sq * item_weights).sum(dim=1) if item_weights is not None \
                else item_sq.sum(dim=1)
        return scores + self.global_bias, (user_sq + item_sq).mean()

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) for every item → (B, n_items)."""
        u = self.users(users)
        out = u[:, :self.dim] @ self.item_vectors.T
        if self.use_bias:
            out = out + u[:, self.dim:] + self.item_bias
        return out + self.global_bias


class MatrixFactorization(PrivateTorchRecommender[MFNetwork]):
    """Biased matrix factorization (Koren, Bell & Volinsky 2009) trained by the shared Trainer.

    ``task="rating"``: MSE on observed ratings around the global mean. ``task="topn"``:
    sampled softmax (default), BPR or BCE against sampled unseen items. See
    `MFConfig` for the hyperparameters.
    """

    name = "mf"
    config_class = MFConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn", "rating"})
    config: MFConfig
    def _private_step(self, train: Interactions, rng: np.random.Generator) -> UserStep:
        """User-level DP loss: per sampled user, the sampled softmax of up to `dp_max_items` of
        their items against `n_negatives` sampled unseen items, plus the L2 penalty."""
        cfg, device = self.config, self.device_
        rows = train.csr(binary=True)
        sampler = NegativeSampler(rows, distribution=cfg.negative_sampling, alpha=cfg.negative_alpha)
        n_pos, n_neg = int(cfg.dp_max_items), int(cfg.n_negatives or 16)
        lam = float(cfg.regularization or 0.0)
        if n_pos < 1:
            raise ConfigError("dp_max_items must be at least 1")

        def step(net: MFNetwork, users: np.ndarray) -> torch.Tensor:
            pos = np.zeros((len(users), n_pos), np.int64)
            mask = np.zeros((len(users), n_pos), np.float32)
            for r, u in enumerate(users):
                items = rows.indices[rows.indptr[u]:rows.indptr[u + 1]]
                if len(items) > n_pos:
                    items = rng.choice(items, n_pos, replace=False)
                pos[r, :len(items)], mask[r, :len(items)] = items, 1.0
            neg = sampler.sample(users.astype(np.int64), n_neg, rng)
            u = net.users(torch.from_numpy(users.astype(np.int64)).to(device))
            v = net.items(torch.from_numpy(np.concatenate([pos, neg], 1)).to(device))
            m = torch.from_numpy(mask).to(device)
            d = net.dim
            scores = (v[..., :d] * u[:, None, :d]).sum(-1)
            if net.use_bias:
                scores = scores + v[..., d]
            pos_s, neg_s = scores[:, :n_pos], scores[:, n_pos:]
            nll = torch.logaddexp(pos_s, torch.logsumexp(neg_s, 1, keepdim=True)) - pos_s
            count = m.sum(1)
            sq = v.pow(2).sum(-1)
            penalty = u.pow(2).sum(1) + (sq[:, :n_pos] * m).sum(1) / count + sq[:, n_pos:].mean(1)
            return ((nll * m).sum(1) / count + lam * penalty).mean()

        return step

    def build_network(self, n_users: int, n_items: int) -> MFNetwork:
        cfg = self.config
        mu = self.global_mean_ if cfg.task == "rating" else 0.0
        assert cfg.embedding_dim is not None and cfg.init_std is not None  # resolved by MFConfig
        return MFNetwork(n_users, n_items, int(cfg.embedding_dim), use_bias=cfg.use_bias,
                         global_bias=mu, init_std=cfg.init_std)

    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[MFNetwork]:
        cfg, device = self.config, self.device_
        assert cfg.batch_size is not None and cfg.regularization is not None  # resolved by MFConfig
        users_np = train.user_idx.astype(np.int64)
        users = torch.from_numpy(users_np).to(device)
        items = torch.from_numpy(train.item_idx.astype(np.int64)).to(device)
        n, batch_size, lam = len(users_np), int(cfg.batch_size), float(cfg.regularization)
        lam_bias = lam if cfg.bias_regularization is None else float(cfg.bias_regularization)

        if cfg.loss == "mse":
            ratings = torch.from_numpy(np.asarray(train.ratings, np.float32)).to(device)

            def rating_batches(epoch: int, gen: np.random.Generator):
                for idx in batch_indices(n, batch_size, gen):
                    b = torch.from_numpy(idx).to(device)
                    yield users[b], items[b], ratings[b]

            def rating_step(net: MFNetwork, batch) -> torch.Tensor:
                u, i, r = batch
                pred, penalty = net.forward_with_penalty(u, i, None, lam, lam_bias)
                return losses.mse(pred, r) + penalty

            return TrainingPlan(rating_step, rating_batches)

        sampler = NegativeSampler(train.csr(binary=True), distribution=cfg.negative_sampling,
                                  alpha=cfg.negative_alpha)
        log_q = torch.from_numpy(sampler.log_prob).to(device)
        assert cfg.n_negatives is not None  # resolved by MFConfig
        n_neg, loss_name = int(cfg.n_negatives), cfg.loss
        use_logq = cfg.logq_correction and cfg.negative_sampling != "uniform"

        def implicit_batches(epoch: int, gen: np.random.Generator):
            negatives = torch.from_numpy(sampler.sample(users_np, n_neg, gen)).to(device)
            for idx in batch_indices(n, batch_size, gen):
                b = torch.from_numpy(idx).to(device)
                yield users[b], items[b], negatives[b]

        # penalty weights: the positive counts once, the negatives as their mean
        weights = torch.full((1 + n_neg,), 1.0 / n_neg, device=device)
        weights[0] = 1.0

        def implicit_step(net: MFNetwork, batch) -> torch.Tensor:
            u, pos, neg = batch
            both = torch.cat([pos.unsqueeze(1), neg], 1)
            scores, penalty = net.forward_with_penalty(u, both, weights, lam, lam_bias)
            pos_s, neg_s = scores[:, 0], scores[:, 1:]
            if loss_name == "bpr":
                loss = losses.bpr(pos_s, neg_s)
            elif loss_name == "bce":
                targets = torch.zeros_like(scores)
                targets[:, 0] = 1.0
                loss = losses.bce(scores, targets)
            else:
                loss = losses.sampled_softmax(
                    pos_s, neg_s,
                    pos_logq=log_q[pos] if use_logq else None,
                    neg_logq=log_q[neg] if use_logq else None,
                )
            return loss + penalty

        return TrainingPlan(implicit_step, implicit_batches)

    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        net = self.network_
        return net.score_all(users) if items is None else net(users, items)

    def item_embeddings(self) -> np.ndarray | None:
        return self.network_.item_vectors.detach().cpu().numpy()

    def mips_item_vectors(self) -> np.ndarray:
        """Item factors, with the item bias as one more component when the model has biases
        (the global and user biases are constants per user and leave the ranking alone)."""
        net = self.network_
        with torch.no_grad():
            vecs = net.item_vectors.float().cpu().numpy()
            bias = net.item_bias
            return vecs if bias is None else bias_column(vecs, bias.float().cpu().numpy())

    def mips_user_vectors(self, user_idx: np.ndarray) -> np.ndarray:
        net = self.network_
        with torch.no_grad():
            x = net.user_vectors[torch.from_numpy(np.asarray(user_idx, np.int64))].float().cpu().numpy()
        return x if net.item_bias is None else bias_column(x, np.ones(len(x), np.float32))

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in: the user vector maximising the softmax likelihood of the history items.

        `softmax_fold_in` with the item vectors and biases fixed and the penalty λ·|history|
        (λ = `regularization` for the softmax loss when positive, else `FOLD_IN_REGULARIZATION`);
        scores are ``μ + b_i + p · q_i`` (the user bias is a constant per user and left out).
        """
        cfg = self.config
        net = self.network_
        Q = net.item_vectors.detach().cpu().numpy().astype(np.float64)
        bias = net.item_bias
        b = bias.detach().cpu().numpy().astype(np.float64) if bias is not None else np.zeros(len(Q))
        own = float(cfg.regularization or 0.0)
        reg = own if cfg.loss == "softmax" and own > 0 else FOLD_IN_REGULARIZATION  # λ > 0: a bounded optimum
        P = softmax_fold_in(Q, b, history_matrix(histories, len(Q)), reg)
        return (P @ Q.T + b + float(net.global_bias)).astype(np.float32)

    def _predict_cold(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Unknown user or item: μ plus whichever bias is known (rating task)."""
        out = super()._predict_cold(user_idx, item_idx)
        net = self.network_
        if self.config.task != "rating" or net.user_bias is None or net.item_bias is None:
            return out  # no biases (``use_bias=False``) or no rating task
        user_bias = net.user_bias.detach().cpu().numpy()
        item_bias = net.item_bias.detach().cpu().numpy()
        known_u, known_i = user_idx >= 0, item_idx >= 0
        out[known_u] += user_bias[user_idx[known_u]]
        out[known_i] += item_bias[item_idx[known_i]]
        return out
