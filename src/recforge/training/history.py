"""What a training run records per epoch: `EpochRecord` and `History`.

Shared by the torch `Trainer` and by models with their own compiled loop (`bpr`), so the
records read the same whichever trained the model. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["EpochRecord", "History"]


@dataclass
class EpochRecord:
    """One epoch: mean training loss (over batches), validation metric, learning rate, time."""

    epoch: int
    loss: float
    metric: float | None
    learning_rate: float
    seconds: float


@dataclass
class History:
    """Per-epoch records of a training run, the metric's name and the restored best epoch."""

    records: list[EpochRecord] = field(default_factory=list)
    metric_name: str | None = None
    best_epoch: int | None = None

    @property
    def losses(self) -> np.ndarray:
        return np.array([r.loss for r in self.records], np.float64)

    @property
    def metrics(self) -> np.ndarray:
        values = [np.nan if r.metric is None else r.metric for r in self.records]
        return np.array(values, np.float64)

    epochs_planned: int = 0

    @property
    def stopped_early(self) -> bool:
        return bool(self.records) and self.records[-1].epoch < self.epochs_planned
