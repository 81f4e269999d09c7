"""DP-SGD for torch recommenders, through Opacus (the optional ``privacy`` extra).

DP-SGD (Abadi et al., CCS 2016): each step samples users independently with probability
q (Poisson sampling), computes one gradient per sampled *user* (the user's whole loss on
that step), clips it to L2 norm `dp_max_grad_norm`, sums, adds Gaussian noise of standard
deviation σ·C and takes an optimizer step. σ is the smallest noise multiplier for which the
accountant (Rényi DP, Mironov 2017, or the PRV accountant of Gopi et al. 2021) bounds the
whole run by the target (ε, δ). The unit of privacy is the user: adding or removing one
user's entire history changes the released model's distribution by at most (ε, δ).
Early stopping on a validation split is refused under DP (it reads the training data
outside the accounting). The artifact still holds the training interactions (for
excluding seen items), so the guarantee covers what the model's *parameters* and
rankings reveal, not the artifact files: keep those private.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field

from recforge.errors import ConfigError
from recforge.privacy.report import PrivacyReport
from recforge.training.config import TrainingConfig
from recforge.training.history import EpochRecord, History
from recforge.training.trainer import resolve_device, seeded, torch_threads

if TYPE_CHECKING:
    from recforge.data.interactions import Interactions
    from recforge.models.torch_base import TorchRecommender

__all__ = ["PrivacyReport", "PrivateTrainingConfig", "UserStep", "fit_private"]

#: expected users per DP-SGD step when `dp_sample_rate` is left at None
DEFAULT_EXPECTED_USERS = 256

#: ``step(network, users) -> mean loss over those users`` (one term per user)
UserStep = Callable[[Any, np.ndarray], torch.Tensor]


class PrivateTrainingConfig(TrainingConfig):
    """`TrainingConfig` plus DP-SGD settings, for models that train per user.

    `dp_epsilon`: the target ε (None: no differential privacy, the usual training).
    `dp_delta`: the target δ (None: ``1 / (10 · users)``). `dp_max_grad_norm`: the clipping
    norm C of each user's gradient. `dp_sample_rate`: the Poisson rate q at which each user
    joins a step (None: 256 expected users per step); a DP "epoch" is ``round(1/q)`` steps.
    `dp_accountant`: ``rdp`` (Rényi DP) or ``prv`` (privacy random variables, tighter).
    """

    dp_epsilon: float | None = Field(None, gt=0)
    dp_delta: float | None = Field(None, gt=0, lt=1)
    dp_max_grad_norm: float = Field(1.0, gt=0)
    dp_sample_rate: float | None = Field(None, gt=0, le=1)
    dp_accountant: Literal["rdp", "prv"] = "rdp"


def _opacus() -> Any:
    try:
        import opacus
    except ImportError:  # the optional extra is missing
        raise ConfigError("dp_epsilon needs Opacus: pip install 'recforge[privacy]'") from None
    return opacus


def fit_private(model: TorchRecommender[Any], interactions: Interactions,
                validation: Interactions | None,
                make_step: Callable[[Interactions, np.random.Generator], UserStep]) -> PrivacyReport:
    """Train `model.network_` by user-level DP-SGD on `interactions` and return the report.

    `make_step(train, rng)` returns the per-step loss of a batch of user indices (the mean
    over them of each user's loss, which must depend on no other user). Sets `network_`,
    `history_`, `device_` and `privacy_` on `model`.
    """
    cfg = model.config
    assert isinstance(cfg, PrivateTrainingConfig) and cfg.dp_epsilon is not None
    if validation is not None or cfg.validation_ratio > 0:
        raise ConfigError("dp_epsilon cannot be combined with validation_ratio or a validation set: "
                          "early stopping reads the training data outside the privacy accounting")
    _opacus()
    from opacus import GradSampleModule
    from opacus.accountants import create_accountant
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.optimizers import DPOptimizer

    model.scorer_ = None
    model.device_ = resolve_device(cfg.device)
    rows = interactions.csr(binary=True)
    users = np.flatnonzero(np.diff(rows.indptr) > 0)
    n = len(users)
    q = float(cfg.dp_sample_rate) if cfg.dp_sample_rate is not None else min(1.0, DEFAULT_EXPECTED_USERS / n)
    per_epoch = max(1, round(1.0 / q))
    steps = int(cfg.epochs) * per_epoch
    delta = float(cfg.dp_delta) if cfg.dp_delta is not None else 1.0 / (10 * n)
    target = float(cfg.dp_epsilon)
    with warnings.catch_warnings():
        # "optimal order is the largest alpha": the bound is looser than it could be, still valid
        warnings.simplefilter("ignore", UserWarning)
        sigma = float(get_noise_multiplier(target_epsilon=target, target_delta=delta, sample_rate=q,
                                           steps=steps, accountant=cfg.dp_accountant))
    expected = max(1, round(q * n))
    clip = float(cfg.dp_max_grad_norm)
    with torch_threads(cfg.threads), seeded(cfg.seed, model.device_) as rng, warnings.catch_warnings():
        # Opacus's backward hooks fire on module outputs (the embeddings' index inputs need no gradient)
        warnings.filterwarnings("ignore", message="Full backward hook", category=UserWarning)
        net = model.build_network(interactions.n_users, interactions.n_items).to(model.device_)
        step = make_step(interactions, rng)
        wrapped = GradSampleModule(net)
        base = torch.optim.Adam(net.parameters(), lr=float(cfg.learning_rate))
        optimizer = DPOptimizer(base, noise_multiplier=sigma, max_grad_norm=clip,
                                expected_batch_size=expected, loss_reduction="mean")
        accountant = create_accountant(cfg.dp_accountant)
        history = History()
        net.train()
        try:
            for epoch in range(1, int(cfg.epochs) + 1):
                start, total = time.perf_counter(), 0.0
                for _ in range(per_epoch):
                    batch = users[rng.random(n) < q]
                    optimizer.zero_grad(set_to_none=True)
                    if len(batch) == 0:
                        _noise_only_step(base, sigma * clip / expected)
                    else:
                        loss = step(net, batch)
                        loss.backward()
                        optimizer.step()
                        total += float(loss.detach())
                    accountant.step(noise_multiplier=sigma, sample_rate=q)
                mean = total / per_epoch
                if not math.isfinite(mean):
                    raise ConfigError(f"DP training diverged in epoch {epoch}; lower learning_rate")
                history.records.append(EpochRecord(epoch, mean, None, float(cfg.learning_rate),
                                                   time.perf_counter() - start))
        finally:
            wrapped._close()
    for p in net.parameters():
        p.grad = None
    model.network_ = net.eval()
    model.history_ = history
    report = PrivacyReport(
        mechanism="DP-SGD (Opacus), Poisson sampling of users", unit="user (all of a user's interactions)",
        epsilon=_spent(accountant, delta), delta=delta, target_epsilon=target,
        accountant=cfg.dp_accountant, noise_multiplier=sigma, max_grad_norm=clip, sample_rate=q, steps=steps)
    setattr(model, "privacy_", report)  # noqa: B010 (declared by the models that train privately)
    return report


def _spent(accountant: Any, delta: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta))


def _noise_only_step(optimizer: torch.optim.Optimizer, std: float) -> None:
    """An empty Poisson batch still releases a noisy step (skipping it would reveal the emptiness)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.normal(0.0, std, p.shape, device=p.device)
    optimizer.step()

