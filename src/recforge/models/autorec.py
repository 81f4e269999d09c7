"""AutoRec: an autoencoder over the rating vectors of items (I-AutoRec) or of users (U-AutoRec).

Sedhain, Menon, Sanner & Xie, "AutoRec: Autoencoders Meet Collaborative Filtering",
WWW 2015. With ``variant="item"`` (I-AutoRec, the paper's better model) every item is the
vector of its ratings by all users, ``r_i ∈ R^{n_users}`` with 0 where unobserved; the
network reconstructs it through one hidden layer::

    h(r) = f(W · g(V r + μ) + b),   g = sigmoid, f = identity

and minimises, over observed entries only, ``Σ_i ‖r_i − h(r_i)‖²_O + λ/2 (‖W‖² + ‖V‖²)``.
The prediction for (u, i) is ``h(r_i)_u``: row i's reconstruction read at user u. With
``variant="user"`` (U-AutoRec) rows are users' rating vectors over items.

``task="rating"`` (the default, the paper's use) learns from explicit ratings. With
``task="topn"`` rows are binary interaction vectors and every entry counts in the loss
(observed 1, unobserved 0), so the reconstruction of an unobserved entry is a score for
ranking. Users or items unknown at training get the base fallback (global mean rating).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from recforge.config import DefaultRule
from recforge.data.interactions import Interactions
from recforge.models.base import history_matrix
from recforge.models.torch_base import TorchRecommender
from recforge.nn.layers import Activation, init_linear, make_activation
from recforge.training.config import TrainingConfig
from recforge.training.sampling import batch_indices
from recforge.training.trainer import TrainingPlan, torch_threads

__all__ = ["AutoRec", "AutoRecConfig", "AutoRecNetwork", "observed_squared_error"]

#: rows densified at once when encoding all rows stay under this many cells
_DENSE_CELLS = 1 << 22


class AutoRecConfig(TrainingConfig):
    """Hyperparameters of `AutoRec`; None means "the default for the task".

    `variant`: ``item`` (I-AutoRec: rows are items, scored at users) or ``user``
    (U-AutoRec). `hidden_dim`: width of the hidden layer. `activation`: the hidden layer's
    nonlinearity g (the paper: sigmoid); the output f is the identity.
    `regularization`: λ of ``λ/2 (‖W‖² + ‖V‖²)`` in the paper's objective (the weight
    penalty is spread over the rows of an epoch, so λ means what it means in the paper).
    `task` defaults to ``rating``; ``topn`` learns binary rows with every entry observed.
    """

    task: Literal["topn", "rating"] = "rating"
    variant: Literal["item", "user"] = "item"
    hidden_dim: int | None = Field(None, ge=1)
    activation: Activation = "sigmoid"
    regularization: float | None = Field(None, ge=0)
    epochs: int | None = Field(None, ge=1)  # type: ignore[assignment]
    batch_size: int | None = Field(None, ge=1)  # type: ignore[assignment]
    learning_rate: float | None = Field(None, gt=0)  # type: ignore[assignment]

    #: per-task defaults of the fields left None (chosen on a validation split of ML-100K;
    #: configs/ml100k/autorec.yaml and autorec-topn.yaml record the evidence)
    default_rules = (
        DefaultRule({"task": "rating"}, {"hidden_dim": 500, "epochs": 40, "batch_size": 128,
                                         "learning_rate": 1e-3, "regularization": 200.0}),
        DefaultRule({"task": "topn"}, {"hidden_dim": 500, "epochs": 50, "batch_size": 128,
                                       "learning_rate": 3e-3, "regularization": 100.0}),
    )


def observed_squared_error(recon: torch.Tensor, target: torch.Tensor,
                           mask: torch.Tensor | None) -> torch.Tensor:
    """``Σ mask·(recon − target)²`` per row, mean over rows: the ``‖r − h(r)‖²_O`` of AutoRec.

    Args:
        recon: reconstructions, shape (B, n).
        target: the input rows (0 where unobserved), shape (B, n).
        mask: 1.0 at observed entries, shape (B, n); None counts every entry.
    """
    err = (recon - target) ** 2
    if mask is not None:
        err = err * mask
    return err.sum(dim=1).mean()


class AutoRecNetwork(nn.Module):
    """One-hidden-layer autoencoder ``h(r) = W · g(V r + μ) + b``.

    Args:
        n_inputs: length of a row (n_users for I-AutoRec, n_items for U-AutoRec).
        hidden_dim: hidden width k. `encoder` is V (k, n) with μ; `decoder` is W (n, k) with b.
        activation: g, by name (see `recforge.nn.layers.Activation`).

    Example::

        >>> net = AutoRecNetwork(6, 3)
        >>> net(torch.zeros(2, 6)).shape
        torch.Size([2, 6])
    """

    def __init__(self, n_inputs: int, hidden_dim: int, activation: str = "sigmoid") -> None:
        super().__init__()
        self.encoder = init_linear(nn.Linear(n_inputs, hidden_dim), "xavier")
        self.decoder = init_linear(nn.Linear(hidden_dim, n_inputs), "xavier")
        self.activation = make_activation(activation)

    def encode(self, rows: torch.Tensor) -> torch.Tensor:
        """Hidden codes (B, k) of rows (B, n)."""
        return self.activation(self.encoder(rows))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, n) of rows (B, n)."""
        return self.decoder(self.encode(rows))

    def penalty(self) -> torch.Tensor:
        """``‖W‖² + ‖V‖²`` (biases are not penalised)."""
        return self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum()


class AutoRec(TorchRecommender[AutoRecNetwork]):
    """AutoRec (Sedhain et al., WWW 2015): I-AutoRec by default, U-AutoRec with
    ``variant="user"``. See the module docstring and `AutoRecConfig`."""

    name = "autorec"
    config_class = AutoRecConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"rating", "topn"})
    config: AutoRecConfig
    #: the network's input rows while fitting; None: rebuilt from `seen_` on first use
    _input_rows: sp.csr_matrix | None

    # ------------------------------------------------------------------ network input
    def _rows_matrix(self, users_by_items: sp.csr_matrix) -> sp.csr_matrix:
        """The autoencoder's rows: items × users (item variant) or users × items."""
        rows = users_by_items.T if self.config.variant == "item" else users_by_items
        rows = sp.csr_matrix(rows, dtype=np.float32)
        rows.sort_indices()
        return rows

    def _input(self) -> sp.csr_matrix:
        """The network's input rows (scipy CSR, float32).

        While fitting: the training part (set by `training_plan`); afterwards: all training
        ratings (or 1s for topn), rebuilt from `seen_` and the kept ratings.
        """
        rows: sp.csr_matrix | None = getattr(self, "_input_rows", None)
        if rows is None:
            values = self._train_ratings if self.config.task == "rating" else None
            if values is None:
                values = np.ones(self.seen_.nnz, np.float32)
            full = sp.csr_matrix((np.asarray(values, np.float32), self.seen_.indices,
                                  self.seen_.indptr), shape=self.seen_.shape)
            rows = self._input_rows = self._rows_matrix(full)
        return rows

    def _dense(self, rows: sp.csr_matrix) -> torch.Tensor:
        return torch.from_numpy(rows.toarray()).to(self.device_)

    def _encode_all(self, net: AutoRecNetwork) -> torch.Tensor:
        """Hidden codes of every input row, (n_rows, k), densifying rows in blocks."""
        rows = self._input()
        block = max(1, _DENSE_CELLS // max(rows.shape[1], 1))
        return torch.cat([net.encode(self._dense(rows[start:start + block]))
                          for start in range(0, rows.shape[0], block)])

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        self._input_rows = None
        try:
            super()._fit(interactions, validation)
        finally:
            self._input_rows = None  # scoring after fit reads all training ratings

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        super()._set_state(state)
        self._input_rows = None

    # ------------------------------------------------------------------ subclass API
    def build_network(self, n_users: int, n_items: int) -> AutoRecNetwork:
        cfg = self.config
        assert cfg.hidden_dim is not None  # resolved by AutoRecConfig
        n_inputs = n_users if cfg.variant == "item" else n_items
        return AutoRecNetwork(n_inputs, int(cfg.hidden_dim), cfg.activation)

    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[AutoRecNetwork]:
        cfg = self.config
        assert cfg.batch_size is not None and cfg.regularization is not None  # resolved by AutoRecConfig
        rows = self._rows_matrix(train.csr(binary=cfg.task == "topn"))
        self._input_rows = rows
        active = np.flatnonzero(np.diff(rows.indptr) > 0)  # rows with no entry teach nothing
        batch_size = int(cfg.batch_size)
        lam = float(cfg.regularization) / 2.0 / max(len(active), 1)
        observed_only = cfg.task == "rating"

        def batches(epoch: int, gen: np.random.Generator):
            for idx in batch_indices(len(active), batch_size, gen):
                block = rows[active[idx]]
                mask = None
                if observed_only:
                    observed = block.copy()
                    observed.data[:] = 1.0
                    mask = self._dense(observed)
                yield self._dense(block), mask

        def step(net: AutoRecNetwork, batch: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
            x, mask = batch
            loss = observed_squared_error(net(x), x, mask)
            return loss + lam * net.penalty() if lam > 0 else loss

        return TrainingPlan(step, batches)

    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        net = self.network_
        if self.config.variant == "item":
            codes = self._encode_all(net)                             # (n_items, k)
            weight, bias = net.decoder.weight[users], net.decoder.bias[users]  # (B, k), (B,)
            if items is None:
                return weight @ codes.T + bias[:, None]              # (B, n_items)
            return (weight * codes[items]).sum(dim=1) + bias
        if items is None:
            return net(self._dense(self._input()[users.cpu().numpy()]))  # (B, n_items)
        uniq, inverse = torch.unique(users, return_inverse=True)
        recon = net(self._dense(self._input()[uniq.cpu().numpy()]))       # (U, n_items)
        return recon[inverse, items]

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """Fold-in of users known only by their items (binary histories).

        U-AutoRec: the history row through the network (value 1 for top-N, the training mean
        rating for the rating task). I-AutoRec, top-N: a new user is a new decoder row, so
        solve ``min Σ_i (x_i − w·h_i − b)² + λ/2 ‖w‖²`` over every item with the item codes
        h_i fixed — the training objective of that row. For rating I-AutoRec a history
        without ratings cannot fit a decoder row: the default (summed similarities) is used.
        """
        cfg = self.config
        net = self.network_
        rows = history_matrix(histories, self.n_items)
        if cfg.variant == "item" and cfg.task == "rating":
            return super()._score_histories(histories)
        net.eval()
        with torch_threads(cfg.threads), torch.no_grad():
            if cfg.variant == "user":
                if cfg.task == "rating":
                    rows.data[:] = self.global_mean_
                block = max(1, _DENSE_CELLS // max(self.n_items, 1))
                return np.concatenate([net(self._dense(rows[start:start + block])).cpu().numpy()
                                       for start in range(0, rows.shape[0], block)]).astype(np.float32)
            codes = self._encode_all(net).cpu().numpy().astype(np.float64)  # (n_items, k)
        design = np.hstack([codes, np.ones((len(codes), 1))])
        assert cfg.regularization is not None  # resolved by AutoRecConfig
        penalty = np.full(design.shape[1], max(float(cfg.regularization) / 2.0, 1e-6))  # > 0: solvable
        penalty[-1] = 0.0  # the bias is not penalised
        solution = np.linalg.solve(design.T @ design + np.diag(penalty), (rows @ design).T)  # (k + 1, B)
        return (design @ solution).T.astype(np.float32)

    def item_embeddings(self) -> np.ndarray | None:
        """I-AutoRec: each item's hidden code; U-AutoRec: the decoder's item rows."""
        net = self.network_
        with torch.no_grad():
            if self.config.variant == "item":
                return self._encode_all(net).cpu().numpy()
            return net.decoder.weight.detach().cpu().numpy()

