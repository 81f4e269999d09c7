"""Data-parallel training of the torch models: torchrun's elastic launcher plus DDP.

`recforge train --nproc N` starts N copies of ``python -m recforge train …`` through torch's
elastic launch API (`launch`), exactly what ``torchrun --nproc-per-node N -m recforge train
…`` does; every copy joins the process group the launcher describes in its environment
(`process_group`: gloo on CPU, NCCL plus gloo on CUDA) and the shared `Trainer` wraps the
model's batch step in ``DistributedDataParallel``.

Sharding — what each process trains on. Every process loads the data set (the ID maps and
the validation split must be global) and builds the model's batches from it; each epoch's
shuffled order is drawn from a generator seeded alike in every process, cut into batches of
``batch_size`` as in one process, and each batch into N near-equal parts: process r trains
on part r of every batch (`recforge.training.sampling.sharded_batches`). Gradients are
averaged across processes, so an optimizer step sees the whole batch of ``batch_size``
examples and an epoch takes as many steps as in one process: the same config trains the
same model whatever N, with 1/N of the forward and backward work per process.

Seeds: the network is initialised from the config's seed in every process and DDP copies
rank 0's weights to the others; negative sampling, dropout and any other draw of the batch
factory or the step use a per-rank stream, so processes do not repeat each other's draws.
Rank 0 alone validates; it broadcasts the metric, so every process takes the same
early-stopping decision and restores the same best epoch. Only rank 0 logs and saves.

From Python, run a script under ``torchrun`` and fit inside `process_group`::

    with process_group(model.config.device) as group:
        model.fit(data)
        if group is None or group.rank == 0:
            model.save("out")
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recforge.errors import DistributedError

__all__ = [
    "DistributedError", "Group", "StepModule", "all_reduce_sum", "broadcast_value", "check_devices", "current",
    "launch", "launched_rank", "launched_world_size", "process_group",
]

#: how long a process waits for the others (rendezvous, a collective) before giving up
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Group:
    """The data-parallel process group this process belongs to."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """True in rank 0, the process that validates, logs and saves."""
        return self.rank == 0


def current() -> Group | None:
    """The initialised process group of two or more processes, else None (one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    world = torch.distributed.get_world_size()
    if world < 2:
        return None
    return Group(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def launched_world_size() -> int:
    """Processes in the run torchrun (or `launch`) started this one in; 1 outside such a run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's global rank in a torchrun run (0 outside one)."""
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Group | None]:
    """Join the process group torchrun describes in the environment, and leave it after.

    Yields the `Group`, or None outside a multi-process run (nothing is initialised then),
    or the group already initialised by the caller (left as it is). `device` is the model's:
    on CUDA each process takes GPU ``LOCAL_RANK`` and the backend is NCCL for GPU tensors and
    gloo for CPU ones; otherwise gloo.
    """
    if launched_world_size() < 2 or not torch.distributed.is_available():
        yield None
        return
    if torch.distributed.is_initialized():
        yield current()
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= gpus:
            raise DistributedError(f"training process {local_rank} on this machine needs GPU {local_rank}, but "
                                   f"there are {gpus}: start at most {gpus} per machine, or set device=cpu")
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield current()
        # leave together: a rank that tears gloo down while rank 0 still saves can abort at exit
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


class StepModule(nn.Module):
    """The whole batch step as one module, so DDP sees it: ``forward(batch)`` is the loss.

    DDP synchronises gradients only for the work done inside its ``forward``; a model's
    step calls its network's own methods (``forward_with_penalty``, ``score_all``…), so
    the step itself is what DDP wraps. The network is a submodule: its parameters are
    this module's. Parameters without elements (the table of a feature field the data
    lacks) enter the loss as an exact zero, so DDP gets their (empty) gradients instead of
    waiting for them.
    """

    def __init__(self, network: nn.Module, step: Callable[[Any, Any], torch.Tensor]) -> None:
        super().__init__()
        self.network = network
        self._step = step
        self._empty = [p for p in network.parameters() if p.requires_grad and p.numel() == 0]

    def forward(self, batch: Any) -> torch.Tensor:
        loss = self._step(self.network, batch)
        for param in self._empty:
            loss = loss + param.sum()
        return loss


def broadcast_value(value: float, device: torch.device) -> float:
    """Rank 0's `value` in every process."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.broadcast(tensor, src=0)
    return float(tensor.item())


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """The sums of `values` over all processes (one collective for the whole list)."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def check_devices(device: str, nproc: int) -> None:
    """Raise `DistributedError` when `nproc` processes on this machine would train on CUDA
    (`device` ``auto`` or ``cuda`` with a GPU present) with fewer GPUs than processes."""
    if device == "cpu" or not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if nproc > gpus:
        raise DistributedError(f"{nproc} processes on CUDA need a GPU each, and this machine has {gpus}: "
                               f"use --nproc {gpus}, or --set device=cpu")


def launch(argv: Sequence[str], nproc: int) -> None:
    """Run ``python -m recforge *argv`` in `nproc` processes on this machine under torch's
    elastic agent (the launcher behind torchrun, with a rendezvous on a free local port).

    The processes run the same recforge as this one (its source directory leads their
    ``PYTHONPATH``). Raises `DistributedError` when any of them fails; the agent stops
    the others then.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise DistributedError(f"--nproc must be at least 1, got {nproc}")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
    )
    source = str(Path(__file__).resolve().parents[2])  # the directory holding `recforge`
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = source if not path else os.pathsep.join([source, path])
    disabled = logging.root.manager.disable
    # the agent logs each worker's exit and SIGTERM at up to ERROR level; the workers print
    # their own one-line errors and the failure is raised below, so its log lines are noise
    logging.disable(logging.ERROR)
    try:
        elastic_launch(config, sys.executable)("-m", "recforge", *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise DistributedError(
            f"training process {rank} of {nproc} failed (exit code {failure.exitcode})") from None
    finally:
        logging.disable(disabled)
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path
