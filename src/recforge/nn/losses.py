"""Training losses as plain functions of score tensors (after spotlight's ``losses.py``).

Every function returns a scalar tensor: the mean over the batch. Shapes use ``B`` for the
batch, ``N`` for sampled negatives per positive, ``I`` for the number of items.

Example::

    >>> import torch
    >>> pos = torch.tensor([2.0, 0.0])
    >>> neg = torch.tensor([0.0, 0.0])
    >>> round(float(bpr(pos, neg)), 4)   # mean of -log σ(2) and -log σ(0)
    0.41
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812 (the conventional name)

__all__ = ["bce", "bpr", "kl_normal", "mse", "multinomial_nll", "sampled_softmax"]


def mse(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error, optionally weighted per example.

    Args:
        pred: predicted values, shape (B,).
        target: observed values (e.g. ratings), shape (B,).
        weight: optional non-negative weights, shape (B,); the result is then
            ``sum(w·(pred-target)²) / sum(w)``.
    """
    err = (pred - target) ** 2
    if weight is None:
        return err.mean()
    return (weight * err).sum() / weight.sum().clamp_min(1e-12)


def bce(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy on logits (numerically stable), mean over all elements.

    For implicit feedback with sampled negatives, stack the positive and negative scores:
    ``bce(torch.cat([pos[:, None], neg], 1), torch.cat([ones, zeros], 1))``.

    Args:
        logits: raw scores, any shape (e.g. (B,) or (B, 1 + N)).
        targets: labels in [0, 1], same shape as `logits`.
        weight: optional per-element weights, same shape.
    """
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), weight=weight)


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalized ranking loss ``-log σ(s⁺ - s⁻)`` (Rendle et al., UAI 2009).

    Args:
        pos: scores of observed items, shape (B,).
        neg: scores of sampled negatives, shape (B,) or (B, N); with N negatives the loss
            averages over all (positive, negative) pairs.
    """
    if neg.dim() == pos.dim() + 1:
        pos = pos.unsqueeze(-1)
    return F.softplus(neg - pos).mean()


def sampled_softmax(
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    pos_logq: torch.Tensor | None = None,
    neg_logq: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy of each positive against its sampled negatives (sampled softmax).

    The logits are ``[s⁺, s⁻₁ … s⁻_N] / temperature``; the target is position 0. With logQ
    correction (Bengio & Senécal 2008; Yi et al., RecSys 2019) the log sampling
    probability of each item is subtracted from its logit, which makes the sampled loss an
    unbiased proxy of the full softmax under non-uniform (e.g. popularity) sampling.

    Args:
        pos: scores of observed items, shape (B,).
        neg: scores of sampled negatives, shape (B, N).
        pos_logq: log sampling probability of each positive, shape (B,), or None.
        neg_logq: log sampling probability of each negative, shape (B, N), or None.
        temperature: divides all logits (> 0).
    """
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1) / temperature
    if neg_logq is not None:
        correction = torch.cat(
            [pos_logq.unsqueeze(1) if pos_logq is not None else torch.zeros_like(pos).unsqueeze(1),
             neg_logq], dim=1)
        logits = logits - correction
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def multinomial_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multinomial negative log-likelihood ``-Σᵢ xᵢ log softmax(z)ᵢ`` (Liang et al., WWW 2018).

    Args:
        logits: unnormalized item scores per user, shape (B, I).
        targets: the users' interaction rows (counts or 0/1), shape (B, I).

    Returns the mean over users of the per-user sum.
    """
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence ``KL(N(mu, exp(logvar)) ‖ N(0, I))``, summed over dims, mean over batch.

    Args:
        mu: posterior means, shape (B, D).
        logvar: posterior log-variances, shape (B, D).
    """
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
