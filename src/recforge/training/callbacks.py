"""Callbacks of the shared training loop: early stopping with best-weights restore, progress.

A callback subclasses `Callback` and overrides any of its three hooks; each receives the
running `Trainer`, whose attributes (`network`, `optimizer`, `history`, `stop_training`)
it may read or set.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from recforge.training.trainer import EpochRecord, Trainer

__all__ = ["Callback", "EarlyStopping", "RichProgress"]


class Callback:
    """Hooks called by `Trainer.fit`; the defaults do nothing."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch (network, optimizer and scheduler exist)."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """After each epoch's training and validation; set ``trainer.stop_training`` to stop."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch (also after an early stop)."""


class EarlyStopping(Callback):
    """Stop when the validation metric has not improved for `patience` epochs; restore the best.

    Args:
        higher_is_better: True for NDCG/recall, False for RMSE.
        patience: epochs without improvement before stopping; None never stops early (the
            best epoch is still restored at the end).
        min_delta: an improvement must exceed this to count.
        restore_best: load the best epoch's weights (kept in memory) when training ends.

    After training, `best_epoch` (1-based) and `best_value` describe the best epoch.
    """

    def __init__(
        self,
        higher_is_better: bool = True,
        patience: int | None = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        self.higher_is_better = higher_is_better
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self.best_value: float = -math.inf if higher_is_better else math.inf
        self._best_state: dict[str, torch.Tensor] | None = None
        self._stale = 0

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.higher_is_better:
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if record.metric is None:
            return
        if self.best_epoch is None or self._improved(record.metric):
            self.best_epoch, self.best_value, self._stale = record.epoch, record.metric, 0
            if self.restore_best:
                state = trainer.network.state_dict()
                self._best_state = {k: v.detach().clone() for k, v in state.items()}
        else:
            self._stale += 1
            if self.patience is not None and self._stale >= self.patience:
                trainer.stop_training = True

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best and self._best_state is not None:
            trainer.network.load_state_dict(self._best_state)
        trainer.history.best_epoch = self.best_epoch
        self._best_state = None


class RichProgress(Callback):
    """A Rich progress bar over epochs (on stderr) showing the loss and validation metric."""

    def __init__(self, description: str = "training", metric_name: str | None = None) -> None:
        self.description = description
        self.metric_name = metric_name
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        progress.start()
        self._task = progress.add_task(self.description, total=trainer.config.epochs, status="")
        self._progress = progress

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        if self._progress is None or self._task is None:
            return
        status = f"loss {record.loss:.4f}"
        if record.metric is not None:
            status += f"  {self.metric_name or 'metric'} {record.metric:.4f}"
        self._progress.update(self._task, completed=record.epoch, status=status)

    def on_train_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
