"""What a differentially private fit guarantees (`PrivacyReport`, recorded in meta.json) and
ε-DP item counts (`laplace_counts`) for popularity rankings.

Private counts: each user's contribution is clipped to `max_items` distinct items (L1
sensitivity `max_items`) and Laplace noise of scale ``max_items / ε`` is added per item
(Dwork, McSherry, Nissim & Smith, TCC 2006): the released counts, and every ranking made
from them, are ε-DP with the user as the unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.errors import ConfigError

__all__ = ["PrivacyReport", "laplace_counts", "privacy_meta"]


@dataclass(frozen=True)
class PrivacyReport:
    """What a private fit guarantees, recorded in the artifact's meta.json.

    DP-SGD: `noise_multiplier` σ (noise std σ·C), `max_grad_norm` C, Poisson `sample_rate`
    q, `steps`. Laplace counts: `noise_multiplier` is the Laplace scale, `max_grad_norm`
    the L1 sensitivity (items per user), one release (`steps` 1, δ 0).
    """

    mechanism: str
    unit: str
    epsilon: float
    delta: float
    target_epsilon: float
    accountant: str
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return asdict(self)

    def describe(self) -> str:
        """One line for the console."""
        if self.accountant == "laplace":
            return (f"differential privacy: ε = {self.epsilon:g} (pure), {self.mechanism}, unit: {self.unit}; "
                    f"Laplace scale {self.noise_multiplier:.3g}")
        return (f"differential privacy: spent ε = {self.epsilon:.3g} (target {self.target_epsilon:g}), "
                f"δ = {self.delta:.2g}, {self.accountant.upper()} accountant, unit: {self.unit}; "
                f"noise σ = {self.noise_multiplier:.3g}, clip C = {self.max_grad_norm:g}, "
                f"q = {self.sample_rate:.3g}, {self.steps} steps")


def privacy_meta(model: object) -> dict[str, Any]:
    """``{"privacy": report}`` for meta.json when `model` was fitted under differential privacy."""
    report = getattr(model, "privacy_", None)
    return {"privacy": report.to_dict()} if isinstance(report, PrivacyReport) else {}



def laplace_counts(rows: sp.csr_matrix, epsilon: float, max_items: int,
                   rng: np.random.Generator) -> np.ndarray:
    """ε-DP item counts of a users × items matrix, the user as the unit.

    Each user counts once on at most `max_items` of their distinct items (a seeded random
    subset when they have more), so one user changes the count vector by at most
    `max_items` in L1; Laplace noise of scale ``max_items / ε`` per item makes the release
    ε-differentially private.

    >>> rows = sp.csr_matrix(np.ones((4, 3)))
    >>> float(laplace_counts(rows, 1e9, 2, np.random.default_rng(0)).round().sum())
    8.0
    """
    if epsilon <= 0 or max_items < 1:
        raise ConfigError("laplace_counts needs epsilon > 0 and max_items >= 1")
    rows = sp.csr_matrix(rows)
    counts = np.zeros(rows.shape[1], np.float64)
    lengths = np.diff(rows.indptr)
    for u in np.flatnonzero(lengths):
        items = np.unique(rows.indices[rows.indptr[u]:rows.indptr[u + 1]])
        if len(items) > max_items:
            items = rng.choice(items, max_items, replace=False)
        counts[items] += 1.0
    return counts + rng.laplace(0.0, max_items / epsilon, size=len(counts))
