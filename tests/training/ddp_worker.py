"""Run by test_distributed.py under torchrun (2 gloo processes): what data-parallel training does.

Each process writes what it saw to ``OUT/rank<R>.json``; the test compares the ranks. Run
by hand: ``torchrun --standalone --nproc-per-node 2 tests/training/ddp_worker.py OUT``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: the validation figures rank 0 reports per epoch: best at epoch 2, then 2 epochs without gain
SCRIPTED_METRICS = [0.1, 0.5, 0.4, 0.3, 0.9, 0.9, 0.9, 0.9]
N_ROWS, BATCH = 128, 32


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_ROWS, 3, generator=gen)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


def early_stopping(rank: int) -> dict[str, Any]:
    """Rank 0 validates (scripted figures) and decides when to stop; the others must not
    validate, and a callback of theirs that wants to stop after epoch 1 is overruled."""
    from recforge.training.callbacks import Callback
    from recforge.training.config import TrainingConfig
    from recforge.training.sampling import batch_indices
    from recforge.training.trainer import Trainer, seeded

    x, y = regression_data()
    rows: list[list[int]] = []
    with seeded(rank):  # a different initialisation per rank: DDP must copy rank 0's
        net = nn.Linear(3, 1)
    epochs_validated: list[int] = []

    def step(net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        rows.append(idx.tolist())
        return ((net(x[idx]).squeeze(1) - y[idx]) ** 2).mean()

    def batches(epoch: int, rng: np.random.Generator):
        return (torch.from_numpy(i) for i in batch_indices(N_ROWS, BATCH, rng))

    def validate() -> float:
        if rank != 0:
            raise AssertionError("only rank 0 validates")
        epochs_validated.append(len(epochs_validated) + 1)
        return SCRIPTED_METRICS[len(epochs_validated) - 1]

    class StopOnOtherRanks(Callback):
        def on_epoch_end(self, trainer: Trainer, record: Any) -> None:
            if rank != 0:
                trainer.stop_training = True

    cfg = TrainingConfig(epochs=len(SCRIPTED_METRICS), learning_rate=0.05, patience=2, device="cpu")
    history = Trainer(cfg, [StopOnOtherRanks()]).fit(net, step, batches, rng=np.random.default_rng(7),
                                                     validate=validate)
    return {"epochs": len(history.records), "best_epoch": history.best_epoch,
            "metrics": history.metrics.tolist(), "losses": history.losses.tolist(),
            "weights": [p.detach().flatten().tolist() for p in net.parameters()], "rows": rows}


class TwoHeads(nn.Module):
    """`b` is used in even epochs only: DDP must be told to look for unused parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 1)
        self.b = nn.Linear(3, 1)


def unused_parameters() -> list[list[float]]:
    from recforge.training.config import TrainingConfig
    from recforge.training.sampling import batch_indices
    from recforge.training.trainer import Trainer, seeded

    x, y = regression_data()
    with seeded(0):
        net = TwoHeads()

    def step(net: TwoHeads, batch: tuple[torch.Tensor, int]) -> torch.Tensor:
        idx, epoch = batch
        pred = net.a(x[idx]) + (net.b(x[idx]) if epoch % 2 == 0 else 0.0)
        return ((pred.squeeze(1) - y[idx]) ** 2).mean()

    def batches(epoch: int, rng: np.random.Generator):
        return ((torch.from_numpy(i), epoch) for i in batch_indices(N_ROWS, BATCH, rng))

    Trainer(TrainingConfig(epochs=3, learning_rate=0.05, device="cpu")).fit(
        net, step, batches, find_unused_parameters=True)
    return [p.detach().flatten().tolist() for p in net.parameters()]


def not_sharded() -> str:
    """A batch factory that does not draw its batches with batch_indices: a clear error."""
    from recforge.training.config import TrainingConfig
    from recforge.training.trainer import Trainer, TrainingError

    x, y = regression_data()

    def step(net: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        return ((net(x[idx]).squeeze(1) - y[idx]) ** 2).mean()

    def batches(epoch: int, rng: np.random.Generator):
        return (torch.arange(i, i + BATCH) for i in range(0, N_ROWS, BATCH))

    try:
        Trainer(TrainingConfig(epochs=1, device="cpu")).fit(nn.Linear(3, 1), step, batches)
    except TrainingError as exc:
        return str(exc)
    return ""


def models() -> dict[str, list[float]]:
    """Every data-parallel registered model, 2 epochs with validation: per-parameter sums."""
    from recforge.registry import available_models, create_model, get_model_class
    from recforge.testing import TINY_SETTINGS, tiny_interactions

    data, _ = tiny_interactions()
    out: dict[str, list[float]] = {}
    for name in available_models():
        if not get_model_class(name).data_parallel:
            continue
        settings = {**TINY_SETTINGS.get(name, {}), "epochs": 2, "validation_ratio": 0.2, "threads": 1,
                    "device": "cpu"}
        model = create_model(name, settings).fit(data)
        out[name] = [float(p.detach().double().sum()) for p in model.network_.parameters()]
        out[name].append(float(model.fit_processes_))
    return out


def main(out: Path) -> None:
    from recforge.training.distributed import process_group

    torch.set_num_threads(1)
    with process_group("cpu") as group:
        assert group is not None, "run under torchrun with 2 processes"
        facts = {"rank": group.rank, "world_size": group.world_size, "early_stopping": early_stopping(group.rank),
                 "unused": unused_parameters(), "not_sharded": not_sharded(), "models": models()}
    (out / f"rank{group.rank}.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
