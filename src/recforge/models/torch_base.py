"""`TorchRecommender`: the base of neural models — network, scorer and the shared trainer.

After lenskit's flexmf split: a model supplies a plain ``nn.Module`` (the network), how to
train it (a `TrainingPlan`: batch step + batch factory) and how to score with it; this base
does the rest once — validation split, seeding, threads, device, early stopping via the
`Trainer`, eval-mode block scoring under ``no_grad``, and weights ⇄ ``.npz`` arrays.

A new model writes four methods::

    class MyModel(TorchRecommender):
        name = "mymodel"
        config_class = MyConfig                      # a TrainingConfig subclass

        def build_network(self, n_users, n_items) -> nn.Module: ...
        def training_plan(self, train, rng) -> TrainingPlan: ...
        def score_tensor(self, users, items=None) -> torch.Tensor: ...   # (B, n_items) | (B,)
        def item_embeddings(self) -> np.ndarray | None: ...              # optional
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Generic

import numpy as np
import scipy.sparse as sp
import torch

from recforge import resources
from recforge.data.interactions import Interactions
from recforge.data.splitting import carve_validation
from recforge.models.base import Recommender
from recforge.models.cold_start import FeatureColdStart
from recforge.training.config import TrainingConfig
from recforge.training.trainer import (
    EpochRecord,
    History,
    NetT,
    Trainer,
    TrainingPlan,
    resolve_device,
    seeded,
    torch_threads,
)
from recforge.training.validation import make_validator

__all__ = ["TorchRecommender"]

#: pairs scored per block by `score(user_idx, item_idx)`
_PAIR_BLOCK = 1 << 18
_NET = "network."


class TorchRecommender(Recommender, Generic[NetT]):
    """Base of models whose parameters live in a torch network trained by `Trainer`.

    Subclasses implement `build_network`, `training_plan` and `score_tensor`, and name
    their network class as the type parameter (``TorchRecommender[MFNetwork]``) so that
    `network_` and the training step are typed as that network. Learned
    attributes after `fit`: `network_` (in eval mode, on `device_`), `history_` (the
    `History` of training), `device_`.

    While `training_plan`'s batches run and while validating, `user_rows()` returns the
    training part only (without the carved validation interactions); after fitting it
    returns all training interactions — the history a user-row model (an autoencoder)
    reads at scoring time.
    """

    config: TrainingConfig
    config_class: ClassVar[type[TrainingConfig]] = TrainingConfig
    network_: NetT
    #: score (user, item) pairs from full rows of the distinct users (for networks whose
    #: cost is per user row, like autoencoders); else `score_tensor` gets the pairs
    pairs_via_rows: ClassVar[bool] = False

    # ------------------------------------------------------------------ subclass API
    @abstractmethod
    def build_network(self, n_users: int, n_items: int) -> NetT:
        """A freshly initialised network (called under the config's seed)."""

    @abstractmethod
    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[NetT]:
        """Prepare training tensors and return the batch step and per-epoch batch factory.

        `train` is the data to learn from (validation interactions already removed); move
        tensors to `self.device_`. `rng` is the seeded numpy Generator of this run.
        """

    @abstractmethod
    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores from `network_` (called in eval mode under ``no_grad``).

        Args:
            users: (B,) int64 user indices on `device_`.
            items: None for all items, or (B,) int64 item indices paired with `users`.

        Returns:
            (B, n_items) scores when `items` is None, else (B,) paired scores (never
            called with `items` when `pairs_via_rows` is set).
        """

    def carve_validation(self, interactions: Interactions) -> tuple[Interactions, Interactions]:
        """(train, validation) for early stopping when ``validation_ratio > 0``: a seeded random
        share of each user's interactions; sequence models hold out each user's last one."""
        return carve_validation(interactions, self.config.validation_ratio, seed=self.config.seed)

    def user_rows(self) -> sp.csr_matrix:
        """users × items binary history the network reads (see the class docstring)."""
        rows: sp.csr_matrix | None = getattr(self, "_rows", None)
        return rows if rows is not None else self.seen_

    # ------------------------------------------------------------------ training
    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        cfg = self.config
        self.device_ = resolve_device(cfg.device)
        n_users, n_items = interactions.n_users, interactions.n_items
        with torch_threads(cfg.threads), seeded(cfg.seed, self.device_) as rng:
            train = interactions
            if validation is None and cfg.validation_ratio > 0:
                train, validation = self.carve_validation(interactions)
            self._rows = train.csr(binary=True) if train is not interactions else None
            self.network_ = self.build_network(n_users, n_items).to(self.device_)
            plan = self.training_plan(train, rng)
            validate, higher = None, True
            if validation is not None and len(validation) > 0:
                validate, higher = make_validator(
                    self.score, self.user_rows(), validation, str(cfg.validation_metric),
                    self.rating_scale_ if cfg.task == "rating" else None,
                )
            trainer = Trainer(cfg)
            try:
                self.history_: History = trainer.fit(
                    self.network_, plan.step, plan.batches, rng=rng, validate=validate,
                    metric_name=cfg.validation_metric, higher_is_better=higher,
                    parameters=plan.parameters,
                )
            finally:
                self._rows = None
        self.network_.eval()

    # ------------------------------------------------------------------ scoring
    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        network = self.network_
        network.eval()
        device = self.device_
        n_items = len(self.item_map_)
        with torch_threads(self.config.threads), torch.no_grad():
            if item_idx is None:
                out = np.empty((len(user_idx), n_items), np.float32)
                block = resources.block_rows(4 * max(n_items, 1))
                for start in range(0, len(user_idx), block):
                    users = torch.from_numpy(user_idx[start:start + block]).to(device)
                    out[start:start + len(users)] = self.score_tensor(users).float().cpu().numpy()
                return out
            item_idx = np.asarray(item_idx, np.int64)
            if self.pairs_via_rows:
                return self._score_pairs_via_rows(user_idx, item_idx)
            paired = np.empty(len(user_idx), np.float32)
            for start in range(0, len(user_idx), _PAIR_BLOCK):
                users = torch.from_numpy(user_idx[start:start + _PAIR_BLOCK]).to(device)
                items = torch.from_numpy(item_idx[start:start + _PAIR_BLOCK]).to(device)
                scores = self.score_tensor(users, items)
                paired[start:start + len(users)] = scores.float().cpu().numpy()
            return paired

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {_NET + k: v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()}
        history = getattr(self, "history_", None)
        if history is not None:
            state["history.loss"] = history.losses
            state["history.metric"] = history.metrics
            state["history.best_epoch"] = np.array(history.best_epoch or 0, np.int64)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.device_ = resolve_device(self.config.device)
        with seeded(self.config.seed, self.device_):
            network = self.build_network(len(self.user_map_), len(self.item_map_))
        weights = {k[len(_NET):]: torch.from_numpy(np.ascontiguousarray(v))
                   for k, v in state.items() if k.startswith(_NET)}
        try:
            network.load_state_dict(weights, strict=True)
        except RuntimeError as exc:  # missing/unexpected keys or wrong shapes
            raise ValueError(f"weights do not fit the network: {exc}") from None
        self.network_ = network.to(self.device_).eval()
        self._rows = None
        if "history.loss" in state:
            losses, metrics = state["history.loss"], state["history.metric"]
            records = [
                EpochRecord(i, float(loss), None if np.isnan(m) else float(m), np.nan, np.nan)
                for i, (loss, m) in enumerate(zip(losses, metrics, strict=True), 1)
            ]
            self.history_ = History(
                records=records,
                metric_name=None if np.isnan(metrics).all() else self.config.validation_metric,
                best_epoch=int(state["history.best_epoch"]) or None,
            )


class FeatureTorchRecommender(FeatureColdStart, TorchRecommender[NetT]):
    """A torch model over user and item features (two-tower, DeepFM): fits the feature
    pipelines before training and saves them with the network's weights."""

    def _fit(self, interactions: Interactions, validation: Interactions | None) -> None:
        self._fit_feature_pipelines(interactions)
        super()._fit(interactions, validation)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {**super()._get_state(), **self._pipeline_arrays()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._restore_pipelines(state)
        super()._set_state(state)
