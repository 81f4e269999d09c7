"""`TrainingConfig`: the settings of the shared training loop, included by every neural model.

A neural model's config subclasses `TrainingConfig` (itself a `ModelConfig`) and adds its
own hyperparameters::

    class MyConfig(TrainingConfig):
        embedding_dim: int = 64

Fields whose best value depends on the task default to ``None`` and are filled by the
config class's `default_rules` (see `recforge.config.ModelConfig`), so a constructed or
saved config always holds concrete values.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from recforge.config import DefaultRule, ModelConfig

__all__ = ["TrainingConfig", "parse_metric"]

_METRIC = re.compile(r"^(?:(ndcg|recall)@(\d+)|(rmse))$")


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; ``"rmse"`` → ``("rmse", 0)``."""
    match = _METRIC.match(name)
    if not match:
        raise ValueError(f"unknown validation metric {name!r} (use ndcg@K, recall@K or rmse)")
    if match.group(3):
        return "rmse", 0
    return match.group(1), int(match.group(2))


class TrainingConfig(ModelConfig):
    """Settings of the one epoch loop (`recforge.training.Trainer`).

    Optimisation: `epochs`, `batch_size`, `learning_rate`, `weight_decay` (optimizer-level
    L2), `optimizer`, `lr_schedule` (stepped once per epoch; ``step`` multiplies the rate by
    `lr_gamma` every `lr_step_size` epochs, ``cosine`` anneals it to 0 over `epochs`),
    `grad_clip` (max global gradient norm).

    Validation and early stopping: with ``validation_ratio > 0`` a random share of every
    user's training interactions (seeded) is held out; after each epoch
    `validation_metric` (None: ``ndcg@10`` for top-N, ``rmse`` for ratings) is computed on
    it (``ndcg@K``/``recall@K``: full ranking over all items minus the user's remaining
    training items; ``rmse``: held-out ratings). Training
    stops after `patience` epochs without an improvement larger than `min_delta` and the
    best epoch's weights are restored. A `validation` set passed to ``fit`` is used the
    same way, without carving.

    Runtime: `seed` (weights, sampling and dropout are repeatable), `threads` (torch
    intra-op threads while fitting and scoring; None leaves torch's setting), `device`
    (``auto`` = CUDA when available), `verbose` (a Rich progress bar with loss and metric).

    Data-parallel training (``recforge train --nproc N``, torchrun): `batch_size` stays the
    batch of one optimizer step, each of the N processes computing ``batch_size / N`` of it
    (`recforge.training.distributed`), so the settings mean the same whatever N; `threads`
    is per process.
    """

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(1024, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = "adam"
    lr_schedule: Literal["none", "cosine", "step"] = "none"
    lr_step_size: int = Field(10, ge=1)
    lr_gamma: float = Field(0.5, gt=0, le=1)
    grad_clip: float | None = Field(None, gt=0)
    validation_ratio: float = Field(0.0, ge=0, lt=1)
    validation_metric: str | None = None
    patience: int | None = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    verbose: bool = False

    default_rules: ClassVar[tuple[DefaultRule, ...]] = (
        DefaultRule({"task": "topn"}, {"validation_metric": "ndcg@10"}),
        DefaultRule({"task": "rating"}, {"validation_metric": "rmse"}))

    @field_validator("validation_metric")
    @classmethod
    def _check_metric(cls, value: str | None) -> str | None:
        if value is not None:
            parse_metric(value)
        return value
