"""Federated matrix factorization: FedAvg over simulated clients that keep their data.

Each simulated client is one user: it holds that user's interactions and user vector p_u
and never sends them. A round (McMahan et al., AISTATS 2017, FedAvg) samples
`clients_per_round` users; each copies the global item table (vectors Q and biases b),
runs `local_steps` gradient steps of the full-softmax loss of its own items
(``−mean_{j∈h} log softmax(b + Q p_u)_j + λ‖p_u‖²``) on p_u and its copy, and returns
only the item-side change ΔQ. The server averages the changes and applies them. With
`clip` each client's change is scaled to L2 norm ≤ C; with `noise_multiplier` σ > 0
Gaussian noise of std σ·C is added to the sum (DP-FedAvg, McMahan et al., ICLR 2018),
and the user-level (ε, δ) of the item-side releases is accounted with Rényi DP when Opacus
is installed. At the end every client fits its own vector to the final items locally
(`softmax_fold_in`) — in a deployment it stays on the device; the simulation gathers
the vectors into a `MatrixFactorization` so the result is scored like any model.

Flower (flwr) is not used: its releases pin fastapi, starlette, typer, rich and protobuf
to versions that would downgrade recforge's serving and CLI stack, and its simulation
engine needs Ray. The rounds here are the FedAvg of Flower's strategy, run in-process.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.fold_in import softmax_fold_in
from recforge.models.mf import MatrixFactorization
from recforge.privacy.report import PrivacyReport

__all__ = ["FederatedConfig", "FederatedMF", "FederatedRound"]


class FederatedConfig(BaseModel):
    """Settings of the federated rounds (the MF settings are the model's `MFConfig`).

    `rounds`; `clients_per_round` (users sampled uniformly without replacement each round);
    `local_steps` and `client_lr` (plain gradient steps on the client); `server_lr` (step
    on the averaged change); `reg` (λ on the user vector); `clip` (max L2 norm of a
    client's change, None: no clipping); `noise_multiplier` (σ; needs `clip`);
    `delta` (δ of the reported guarantee; None: 1/(10·users)); `seed`.
    """

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(200, ge=1)
    clients_per_round: int = Field(100, ge=1)
    local_steps: int = Field(5, ge=1)
    client_lr: float = Field(1.0, gt=0)
    server_lr: float = Field(1.0, gt=0)
    reg: float = Field(0.05, ge=0)
    clip: float | None = Field(None, gt=0)
    noise_multiplier: float = Field(0.0, ge=0)
    delta: float | None = Field(None, gt=0, lt=1)
    seed: int = 42


@dataclass
class FederatedRound:
    """One round: the clients that took part, their mean change's norm, the mean local loss."""

    round: int
    clients: int
    update_norm: float
    loss: float


@dataclass
class _Server:
    items: np.ndarray  # (n_items, d + 1): vectors and the bias column
    log: list[FederatedRound] = field(default_factory=list)


class FederatedMF(MatrixFactorization):
    """`MatrixFactorization` trained by FedAvg over simulated per-user clients.

    Saved and loaded as an ``mf`` artifact (the federated settings are not part of it).
    Uses `embedding_dim`, `init_std` and `seed` of the `MFConfig`; always biased items,
    softmax loss, top-N.
    """

    def __init__(self, config: Any = None, federated: FederatedConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.federated = federated or FederatedConfig()
        self.rounds_: list[FederatedRound] = []

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg, fed = self.config, self.federated
        if cfg.task != "topn":
            raise ConfigError("federated MF trains the topn task")
        if fed.noise_multiplier > 0 and fed.clip is None:
            raise ConfigError("federated noise_multiplier needs clip (the noise is calibrated to it)")
        rows = interactions.csr(binary=True)
        n_users, n_items = rows.shape
        d = int(cfg.embedding_dim or 64)
        rng = np.random.default_rng(fed.seed)
        std = float(cfg.init_std or 0.01)
        server = _Server(np.concatenate([rng.normal(0, std, (n_items, d)), np.zeros((n_items, 1))], 1))
        users = rng.normal(0, std, (n_users, d))  # each lives on its client
        active = np.flatnonzero(np.diff(rows.indptr) > 0)
        m = min(fed.clients_per_round, len(active))
        for r in range(1, fed.rounds + 1):
            chosen = rng.choice(active, m, replace=False)
            deltas, users[chosen], loss = _local_updates(server.items, users[chosen], rows[chosen], fed)
            if fed.clip is not None:
                norms = np.sqrt((deltas ** 2).sum(axis=(1, 2)))
                deltas *= np.minimum(1.0, fed.clip / np.maximum(norms, 1e-12))[:, None, None]
            total = deltas.sum(axis=0)
            if fed.noise_multiplier > 0:
                assert fed.clip is not None  # checked above
                total += rng.normal(0, fed.noise_multiplier * fed.clip, total.shape)
            update = fed.server_lr * total / m
            if not np.isfinite(update).all():
                raise ConfigError(f"federated training diverged in round {r}; lower client_lr or set clip")
            server.items += update
            server.log.append(FederatedRound(r, m, float(np.linalg.norm(update)), loss))
        Q, b = server.items[:, :d], server.items[:, d]
        P = softmax_fold_in(Q, b, rows, max(fed.reg, 1e-3))  # each client's own final vector
        self.network_ = self.build_network(n_users, n_items)
        with torch.no_grad():
            weight_u = np.concatenate([P, np.zeros((n_users, 1))], 1) if cfg.use_bias else P
            weight_i = server.items if cfg.use_bias else Q
            self.network_.users.weight.copy_(torch.from_numpy(weight_u.astype(np.float32)))
            self.network_.items.weight.copy_(torch.from_numpy(weight_i.astype(np.float32)))
        self.network_.eval()
        self.device_ = torch.device("cpu")
        self.rounds_ = server.log
        self.privacy_ = _account(fed, m / len(active), len(active))


def _local_updates(items: np.ndarray, P: np.ndarray, rows: sp.csr_matrix,
                   fed: FederatedConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """All sampled clients' local steps at once: (item-table changes (m, n, d+1), new user
    vectors (m, d), mean final local loss). Client c reads only row c of `rows` and P[c]."""
    d = P.shape[1]
    local = np.broadcast_to(items, (len(P), *items.shape)).copy()
    P = P.copy()
    H = np.asarray(rows.todense(), np.float64)
    count = np.maximum(H.sum(1, keepdims=True), 1.0)
    loss = 0.0
    for _ in range(fed.local_steps):
        s = np.einsum("mnd,md->mn", local[..., :d], P) + local[..., d]
        s -= s.max(1, keepdims=True)
        log_p = s - np.log(np.exp(s).sum(1, keepdims=True))
        loss = float((-(log_p * H).sum(1) / count[:, 0]).mean())
        g = (np.exp(log_p) * count - H) / count  # ∂ mean NLL / ∂ scores
        grad_p = np.einsum("mn,mnd->md", g, local[..., :d]) + 2 * fed.reg * P
        local[..., :d] -= fed.client_lr * g[:, :, None] * P[:, None, :]
        local[..., d] -= fed.client_lr * g
        P -= fed.client_lr * grad_p
    return local - items[None], P, loss


def _account(fed: FederatedConfig, q: float, n: int) -> PrivacyReport | None:
    """The user-level (ε, δ) of the item-side releases (RDP), when noise was added and Opacus is there."""
    if fed.noise_multiplier <= 0:
        return None
    try:
        from opacus.accountants import RDPAccountant
    except ImportError:
        return None
    delta = fed.delta if fed.delta is not None else 1.0 / (10 * n)
    accountant = RDPAccountant()
    accountant.history = [(fed.noise_multiplier, q, fed.rounds)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps = float(accountant.get_epsilon(delta))
    assert fed.clip is not None  # noise needs clip
    return PrivacyReport(mechanism="DP-FedAvg (clipped client updates, Gaussian noise)",
                         unit="user (client), item-side updates", epsilon=eps, delta=delta,
                         target_epsilon=eps, accountant="rdp", noise_multiplier=fed.noise_multiplier,
                         max_grad_norm=fed.clip, sample_rate=q, steps=fed.rounds)
