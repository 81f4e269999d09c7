"""Mult-VAE and Mult-DAE: autoencoders over a user's item row with a multinomial likelihood.

Liang, Krishnan, Hoffman & Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018. The encoder reads the user's L2-normalised, dropout-corrupted binary row; the
decoder outputs logits over all items, trained with the multinomial log-likelihood. The
``vae`` variant has a Gaussian latent with a KL term whose weight β grows linearly per
update up to `anneal_cap` over `total_anneal_steps` (the paper's partial regularisation);
``dae`` is the deterministic denoising autoencoder of the same paper. At inference the
latent mean is used, so scores are deterministic: ``score(u) = decoder(μ(row_u))``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the conventional name)

from recforge.data.interactions import Interactions
from recforge.models.base import history_matrix
from recforge.models.private import PrivateTorchRecommender
from recforge.nn import losses
from recforge.nn.layers import mlp
from recforge.privacy.dp import PrivateTrainingConfig, UserStep
from recforge.training.sampling import batch_indices
from recforge.training.trainer import TrainingPlan, torch_threads

__all__ = ["MultVAE", "MultVAEConfig", "MultVAENetwork"]

#: fold-in forwards blocks of history rows under this many float32 cells
_BLOCK_CELLS = 1 << 22


class MultVAEConfig(PrivateTrainingConfig):
    """Hyperparameters of `MultVAE`, with defaults chosen on validation splits carved from
    the ML-100K training data (configs/ml100k/multvae.yaml records the evidence).

    `variant`: ``vae`` (Mult-VAE) or ``dae`` (Mult-DAE). `hidden_dims`: encoder hidden
    widths (the decoder mirrors them); `latent_dim`: size of the bottleneck; `dropout`:
    input dropout rate; `activation`: hidden activation (tanh in the paper);
    `anneal_cap`: the largest KL weight β; `total_anneal_steps`: optimizer steps over which
    β rises from 0 to 1 (capped at `anneal_cap`; 0 means β = `anneal_cap` from the start).

    Defaults differ from the paper's ML-20M setting (β annealed to 0.2 over 200 000
    steps): on ML-100K the full KL weight (β = 1 throughout) overfits far less, and a
    cosine learning-rate schedule steadies the last epochs.

    Differential privacy (`dp_epsilon` and the other ``dp_`` settings of
    `PrivateTrainingConfig`): user-level DP-SGD, one clipped gradient per sampled user row
    (β fixed at `anneal_cap`).
    """

    variant: Literal["vae", "dae"] = "vae"
    hidden_dims: list[int] = Field(default_factory=lambda: [600])
    latent_dim: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    activation: Literal["tanh", "relu", "sigmoid", "gelu", "selu"] = "tanh"
    anneal_cap: float = Field(1.0, ge=0)
    total_anneal_steps: int = Field(0, ge=0)
    lr_schedule: Literal["none", "cosine", "step"] = "cosine"
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)


class MultVAENetwork(nn.Module):
    """Encoder ``I → hidden… → 2·latent`` (μ, log σ²) and decoder ``latent → …hidden → I``.

    Args:
        n_items: input and output width I.
        hidden_dims: encoder hidden widths; the decoder uses them reversed.
        latent_dim: bottleneck size D.
        dropout: dropout on the normalised input row.
        variational: sample ``z ~ N(μ, σ²)`` in training (Mult-VAE) or use ``z = μ`` (DAE).
        activation: hidden activation.

    Example::

        >>> net = MultVAENetwork(10, [8], 4)
        >>> logits, mu, logvar = net(torch.ones(3, 10))
        >>> logits.shape, mu.shape
        (torch.Size([3, 10]), torch.Size([3, 4]))
    """

    def __init__(self, n_items: int, hidden_dims: list[int], latent_dim: int, *,
                 dropout: float = 0.5, variational: bool = True, activation: str = "tanh") -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.variational = variational
        self.dropout = nn.Dropout(dropout)
        out = 2 * latent_dim if variational else latent_dim
        self.encoder = mlp([n_items, *hidden_dims, out], activation=activation)
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), n_items], activation=activation)

    def encode(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, I) interaction rows → latent mean (B, D) and log-variance (B, D) or None."""
        h = self.encoder(self.dropout(F.normalize(rows, dim=1)))
        if not self.variational:
            return h, None
        return h[:, :self.latent_dim], h[:, self.latent_dim:]

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, I) rows → item logits (B, I), μ (B, D), log σ² (B, D) or None.

        In training mode a VAE samples ``z = μ + σ·ε``; in eval mode ``z = μ``.
        """
        mu, logvar = self.encode(rows)
        z = mu
        if self.training and logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


class MultVAE(PrivateTorchRecommender[MultVAENetwork]):
    """Mult-VAE / Mult-DAE (Liang et al., WWW 2018) for implicit feedback.

    A known user's scores are the decoder's logits for their training row; item vectors
    (`item_embeddings`) are the rows of the decoder's output weight.
    """

    name = "multvae"
    config_class = MultVAEConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    config: MultVAEConfig
    def _private_step(self, train: Interactions, rng: np.random.Generator) -> UserStep:
        """User-level DP loss: each sampled user's multinomial NLL plus β·KL of their own row."""
        rows, device, beta = train.csr(binary=True), self.device_, float(self.config.anneal_cap)

        def step(net: MultVAENetwork, users: np.ndarray) -> torch.Tensor:
            x = _dense(rows, users, device)
            logits, mu, logvar = net(x)
            loss = -(F.log_softmax(logits, dim=1) * x).sum(1)
            if logvar is not None:
                loss = loss - beta * 0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            return loss.mean()

        return step

    def build_network(self, n_users: int, n_items: int) -> MultVAENetwork:
        cfg = self.config
        return MultVAENetwork(n_items, list(cfg.hidden_dims), cfg.latent_dim, dropout=cfg.dropout,
                              variational=cfg.variant == "vae", activation=cfg.activation)

    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[MultVAENetwork]:
        cfg, device = self.config, self.device_
        assert cfg.batch_size is not None  # resolved by MultVAEConfig
        rows = train.csr(binary=True)
        users = np.flatnonzero(np.diff(rows.indptr) > 0)
        batch_size = int(cfg.batch_size)
        cap, anneal = float(cfg.anneal_cap), int(cfg.total_anneal_steps)
        steps = [0]

        def batches(epoch: int, gen: np.random.Generator):
            for idx in batch_indices(len(users), batch_size, gen):
                yield _dense(rows, users[idx], device)

        def step(net: MultVAENetwork, x: torch.Tensor) -> torch.Tensor:
            logits, mu, logvar = net(x)
            loss = losses.multinomial_nll(logits, x)
            if logvar is not None:
                beta = min(cap, steps[0] / anneal) if anneal > 0 else cap
                loss = loss + beta * losses.kl_normal(mu, logvar)
            steps[0] += 1
            return loss

        return TrainingPlan(step, batches)

    pairs_via_rows = True

    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        x = _dense(self.user_rows(), users.cpu().numpy(), users.device)
        return self.network_(x)[0]

    def item_embeddings(self) -> np.ndarray | None:
        last = self.network_.decoder[-1]
        assert isinstance(last, nn.Linear)  # `mlp` ends with a Linear layer
        return last.weight.detach().cpu().numpy()

    def _score_histories(self, histories: list[np.ndarray]) -> np.ndarray:
        """The decoder's logits for each history row: `score` of a user with that history."""
        rows = history_matrix(histories, self.n_items)
        out = np.empty(rows.shape, np.float32)
        block = max(1, _BLOCK_CELLS // max(self.n_items, 1))
        self.network_.eval()
        with torch_threads(self.config.threads), torch.no_grad():
            for start in range(0, rows.shape[0], block):
                x = _dense(rows, np.arange(start, min(start + block, rows.shape[0])), self.device_)
                out[start:start + len(x)] = self.network_(x)[0].float().cpu().numpy()
        return out


def _dense(rows: sp.csr_matrix, users: np.ndarray, device: torch.device) -> torch.Tensor:
    """The binary rows of `users` as a dense float32 tensor (len(users), n_items) on `device`."""
    return torch.from_numpy(rows[users].toarray().astype(np.float32, copy=False)).to(device)
