"""THE epoch loop every neural recforge model trains with.

A model does not write a loop. It hands the `Trainer` three things:

* a **network** — a plain ``nn.Module`` holding the parameters;
* a **batch step** — ``step(network, batch) -> loss``: computes the scalar loss of one batch
  (forward pass plus the loss functions of `recforge.nn.losses`); the trainer does
  ``zero_grad``, ``backward``, gradient clipping and the optimizer step;
* a **batch factory** — ``batches(epoch, rng) -> iterable of batches``: called once per
  epoch (1-based) with the trainer's numpy Generator, to shuffle and draw negatives.

A batch is whatever the step expects: (users, items, ratings) for rating MSE, (users,
positives, negatives) for BPR, a dense block of user rows for an autoencoder. Example::

    >>> import numpy as np, torch
    >>> from recforge.training.config import TrainingConfig
    >>> from recforge.training.sampling import batch_indices
    >>> from recforge.training.trainer import Trainer
    >>> x, y = torch.randn(64, 3), torch.randn(64)
    >>> net = torch.nn.Linear(3, 1)
    >>> def step(net, idx):
    ...     return ((net(x[idx]).squeeze(1) - y[idx]) ** 2).mean()
    >>> def batches(epoch, rng):
    ...     return (torch.from_numpy(i) for i in batch_indices(64, 16, rng))
    >>> history = Trainer(TrainingConfig(epochs=3, device="cpu")).fit(net, step, batches)
    >>> len(history.records)
    3

Validation: pass ``validate`` (a zero-argument function returning the metric, run under
``torch.no_grad`` with the network in eval mode) and the trainer adds early stopping and
restores the best epoch's weights. `recforge.models.torch_base.TorchRecommender` wires all
of this — validation split, seeding, threads, device — for `Recommender` subclasses.

Data-parallel: inside an initialised process group of several processes (torchrun,
`recforge.training.distributed`) `fit` wraps the step in ``DistributedDataParallel``, gives
each process its part of every batch (the batch factory must draw its batches with
`recforge.training.sampling.batch_indices`), validates on rank 0 only and shares the metric
and rank 0's decision to stop, so every process stops at the same epoch with the same weights.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from recforge.errors import ConfigError, RecforgeError
from recforge.training import distributed
from recforge.training.callbacks import Callback, EarlyStopping, RichProgress
from recforge.training.config import TrainingConfig
from recforge.training.history import EpochRecord, History
from recforge.training.sampling import BatchShard, sharded_batches

__all__ = [
    "BatchFactory", "BatchStep", "EpochRecord", "History", "NetT", "Trainer", "TrainingError",
    "TrainingPlan", "resolve_device", "seeded", "torch_threads",
]

#: the network type a model trains (its `TrainingPlan`'s step receives that network)
NetT = TypeVar("NetT", bound=nn.Module)

BatchStep = Callable[[NetT, Any], torch.Tensor]
BatchFactory = Callable[[int, np.random.Generator], Iterable[Any]]


class TrainingError(RecforgeError, FloatingPointError):
    """Training diverged (the loss became NaN or infinite)."""


@dataclass
class TrainingPlan(Generic[NetT]):
    """What a model gives the trainer: the batch step, the per-epoch batch factory, and
    optionally its own parameter groups (default: all of the network's parameters).

    `find_unused_parameters`: some parameters get no gradient in some steps (DDP must then
    look for them every step; only data-parallel training reads it).
    """

    step: BatchStep[NetT]
    batches: BatchFactory
    parameters: Iterable[Any] | None = None
    find_unused_parameters: bool = False


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA raises ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but CUDA is not available (use auto or cpu)")
    return torch.device(device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[np.random.Generator]:
    """Seed torch (CPU and the given CUDA device) inside, restoring the global RNG after.

    Yields a numpy Generator from the same seed, for shuffling and sampling. Network
    initialisation, dropout and reparameterisation noise drawn inside are repeatable.
    """
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield np.random.default_rng(seed)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(threads)`` (None: unchanged), restoring it after."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Trainer:
    """Runs epochs of minibatch optimisation as `config` (a `TrainingConfig`) says.

    Args:
        config: the model's config (any `TrainingConfig` subclass).
        callbacks: extra callbacks; early stopping (when validating) and a progress bar
            (when ``config.verbose``) are added automatically.

    Attributes (while and after `fit`): `network`, `optimizer`, `scheduler`, `history`,
    `stop_training` (a callback sets it to end training after the current epoch).
    """

    def __init__(self, config: TrainingConfig, callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.stop_training = False
        self.history = History()

    def make_optimizer(self, parameters: Iterable[Any]) -> torch.optim.Optimizer:
        """The optimizer named by ``config.optimizer`` with its learning rate and weight decay."""
        cfg = self.config
        params = list(parameters)
        lr, decay = cfg.learning_rate, cfg.weight_decay
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, weight_decay=decay)
        return torch.optim.Adagrad(params, lr=lr, weight_decay=decay)

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The per-epoch learning-rate schedule named by ``config.lr_schedule`` (or None)."""
        cfg = self.config
        if cfg.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
        return None

    def fit(
        self,
        network: NetT,
        step: BatchStep[NetT],
        batches: BatchFactory,
        *,
        rng: np.random.Generator | None = None,
        validate: Callable[[], float] | None = None,
        metric_name: str | None = None,
        higher_is_better: bool = True,
        parameters: Iterable[Any] | None = None,
        find_unused_parameters: bool = False,
    ) -> History:
        """Train `network` for up to ``config.epochs`` epochs; returns the `History`.

        Args:
            network: the module to optimise (already on its device).
            step: ``step(network, batch) -> scalar loss tensor``.
            batches: ``batches(epoch, rng) -> iterable of batches`` (epoch is 1-based).
            rng: numpy Generator passed to `batches` (default: from ``config.seed``).
            validate: returns the validation metric after each epoch; enables early
                stopping (``config.patience``) and best-epoch restore.
            metric_name: label of the metric (progress bar, history).
            higher_is_better: direction of the metric.
            parameters: parameters or parameter groups to optimise (default: all; a network
                with a ``no_weight_decay`` tuple of parameter names keeps those, e.g. item
                biases that carry popularity, out of ``weight_decay``).
            find_unused_parameters: data-parallel only: some parameters get no gradient in
                some steps (see `TrainingPlan`).
        """
        cfg = self.config
        rng = rng if rng is not None else np.random.default_rng(cfg.seed)
        self.network: nn.Module = network
        if parameters is None:
            parameters = _parameter_groups(network)
        self.optimizer = self.make_optimizer(parameters)
        self.scheduler = self.make_scheduler(self.optimizer)
        self.stop_training = False
        self.history = History(metric_name=metric_name if validate is not None else None)
        self.history.epochs_planned = cfg.epochs
        self.group = distributed.current()
        callbacks = list(self.callbacks)
        if validate is not None:
            callbacks.append(EarlyStopping(higher_is_better, cfg.patience, cfg.min_delta))
        if cfg.verbose and (self.group is None or self.group.is_main):
            callbacks.append(RichProgress(type(network).__name__, metric_name))
        with contextlib.ExitStack() as stack:
            run: Callable[[Any], torch.Tensor]
            shard = None
            if self.group is None:
                def run(batch: Any) -> torch.Tensor:
                    return step(network, batch)
            else:
                run, rng, shard = self._data_parallel(stack, self.group, step, rng, find_unused_parameters)
            for cb in callbacks:
                cb.on_train_begin(self)
            try:
                for epoch in range(1, cfg.epochs + 1):
                    record = self._epoch(epoch, run, batches, rng, validate, shard)
                    self.history.records.append(record)
                    for cb in callbacks:
                        cb.on_epoch_end(self, record)
                    if self.group is not None:  # rank 0 decides, whatever a callback did elsewhere
                        self.stop_training = bool(distributed.broadcast_value(
                            float(self.stop_training), _device_of(network)))
                    if self.stop_training:
                        break
            finally:
                for cb in callbacks:
                    cb.on_train_end(self)
        network.eval()
        return self.history

    def _data_parallel(
        self,
        stack: contextlib.ExitStack,
        group: distributed.Group,
        step: BatchStep[Any],
        rng: np.random.Generator,
        find_unused_parameters: bool,
    ) -> tuple[nn.Module, np.random.Generator, BatchShard]:
        """The DDP-wrapped step, this rank's sampling generator and its batch shard.

        `rng` is seeded alike in every process: one draw from it seeds the batch order
        (shared) and the per-rank streams (numpy draws of the batch factory, torch draws of
        the step such as dropout), which the torch RNG is restored from when `fit` ends.
        """
        from torch.nn.parallel import DistributedDataParallel

        network = self.network
        base = int(rng.integers(2**62))
        shard = BatchShard(group.rank, group.world_size, np.random.default_rng([base, 0]))
        local = np.random.default_rng([base, 1 + group.rank])
        device = _device_of(network)
        cuda = device.type == "cuda"
        index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
        stack.enter_context(torch.random.fork_rng(devices=[index] if index is not None else []))
        torch.manual_seed(int(local.integers(2**62)))
        module = distributed.StepModule(network, step)
        ddp = DistributedDataParallel(module, device_ids=[index] if index is not None else None,
                                      find_unused_parameters=find_unused_parameters)
        return ddp, local, shard

    def _epoch(
        self,
        epoch: int,
        run: Callable[[Any], torch.Tensor],
        batches: BatchFactory,
        rng: np.random.Generator,
        validate: Callable[[], float] | None,
        shard: BatchShard | None = None,
    ) -> EpochRecord:
        cfg, network, optimizer, group = self.config, self.network, self.optimizer, self.group
        start = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        network.train()
        total = None
        n_batches = 0
        with sharded_batches(shard) if shard is not None else contextlib.nullcontext():
            for batch in batches(epoch, rng):
                if shard is not None and shard.calls == 0:
                    raise TrainingError(
                        f"{type(network).__name__}'s batches do not come from batch_indices, so they "
                        "cannot be shared out among training processes; train it with one process")
                optimizer.zero_grad(set_to_none=True)
                loss = run(batch)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
                optimizer.step()
                total = loss.detach() if total is None else total + loss.detach()
                n_batches += 1
        if self.scheduler is not None:
            self.scheduler.step()
        loss_sum = float(total) if total is not None else 0.0
        if group is not None:  # the mean over every process's batches
            loss_sum, count = distributed.all_reduce_sum([loss_sum, n_batches], _device_of(network))
            n_batches = round(count)
        mean_loss = loss_sum / n_batches if n_batches else 0.0
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"training loss became {mean_loss} in epoch {epoch}; lower learning_rate "
                "or set grad_clip"
            )
        metric = None
        if validate is not None:
            network.eval()
            if group is None or group.is_main:
                with torch.no_grad():
                    metric = float(validate())
            if group is not None:  # rank 0's figure: every process stops at the same epoch
                metric = distributed.broadcast_value(math.nan if metric is None else metric, _device_of(network))
        return EpochRecord(epoch, mean_loss, metric, lr, time.perf_counter() - start)


def _device_of(network: nn.Module) -> torch.device:
    """The device of the network's first parameter or buffer (CPU for an empty network)."""
    first = next(itertools.chain(network.parameters(), network.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def _parameter_groups(network: nn.Module) -> list[dict[str, Any]]:
    """All trainable parameters; those named in ``network.no_weight_decay`` in a group without decay."""
    exempt = set(getattr(network, "no_weight_decay", ()))
    decay = [p for n, p in network.named_parameters() if n not in exempt]
    free = [p for n, p in network.named_parameters() if n in exempt]
    return [{"params": decay}] + ([{"params": free, "weight_decay": 0.0}] if free else [])
