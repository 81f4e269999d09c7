"""`PrivateTorchRecommender`: torch models that can also train by user-level DP-SGD.

A subclass's config derives from `PrivateTrainingConfig`; with ``dp_epsilon`` unset it trains
on the shared Trainer as usual, else `recforge.privacy.dp.fit_private` runs the subclass's
`_private_step` (each sampled user's own loss) and records the guarantee in `privacy_`.
"""

from __future__ import annotations

from typing import Generic

import numpy as np

from recforge.data.interactions import Interactions
from recforge.models.torch_base import NetT, TorchRecommender
from recforge.privacy.dp import PrivacyReport, PrivateTrainingConfig, UserStep, fit_private

__all__ = ["PrivateTorchRecommender"]


class PrivateTorchRecommender(TorchRecommender[NetT], Generic[NetT]):
    """A `TorchRecommender` whose `dp_epsilon` setting switches training to DP-SGD."""

    config: PrivateTrainingConfig
    #: the guarantee of a differentially private fit (`dp_epsilon`), else None
    privacy_: PrivacyReport | None = None

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        self.privacy_ = None
        if self.config.dp_epsilon is None:
            super()._fit(interactions, validation)
        else:
            fit_private(self, interactions, validation, self._private_step)

    def _private_step(self, train: Interactions, rng: np.random.Generator) -> UserStep:
        """The per-step loss of a batch of user indices (see `fit_private`)."""
        raise NotImplementedError
