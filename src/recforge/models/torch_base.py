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

import copy
import warnings
from abc import abstractmethod
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

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

__all__ = ["Scorer", "TorchRecommender", "float_network", "quantize_linear_layers"]

#: pairs scored per block by `score(user_idx, item_idx)`
_PAIR_BLOCK = 1 << 18
_NET = "network."


class Scorer(Protocol):
    """Scores computed outside the torch network (e.g. `recforge.export.onnx.OnnxScorer`)."""

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """(len(user_idx), n_items) float32 scores of known users."""
        ...

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """(len(sequences), n_items) next-item scores (sequence models only)."""
        ...


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
    #: scores known users instead of `network_` when set (`set_scorer`)
    scorer_: Scorer | None = None
    data_parallel: ClassVar[bool] = True
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
        self.scorer_ = None  # a scorer of the previous network would be stale
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
                    parameters=plan.parameters, find_unused_parameters=plan.find_unused_parameters,
                )
            finally:
                self._rows = None
            self.fit_processes_ = trainer.group.world_size if trainer.group is not None else 1
        self.network_.eval()

    # ------------------------------------------------------------------ scoring
    def set_scorer(self, scorer: Scorer | None) -> None:
        """Score known users' full rows through `scorer` (a `Scorer`, e.g. an `OnnxScorer`
        running the exported graph in onnxruntime) instead of the torch network; None goes
        back to the network. Ranking, exclusions and fallbacks stay the model's own."""
        self.scorer_ = scorer

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray | None = None) -> np.ndarray:
        user_idx = np.asarray(user_idx, np.int64)
        if item_idx is None and self.scorer_ is not None:
            return np.asarray(self.scorer_.score_users(user_idx), np.float32)
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
        # a compressed artifact's int8 layers are saved as float weights: `save` writes plain artifacts
        state = {_NET + k: v.detach().cpu().numpy() for k, v in float_network(self.network_).state_dict().items()}
        history = getattr(self, "history_", None)
        if history is not None:
            state["history.loss"] = history.losses
            state["history.metric"] = history.metrics
            state["history.best_epoch"] = np.array(history.best_epoch or 0, np.int64)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.scorer_ = None
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


    def _restore_compressed(self, compression: dict[str, Any]) -> None:
        """Run the layers a compressed artifact lists under ``int8_layers`` with int8 weights."""
        layers = [str(name) for name in compression.get("int8_layers", [])]
        if layers and self.device_.type == "cpu":
            quantize_linear_layers(self.network_, layers)


#: a network type
NetworkT = TypeVar("NetworkT", bound=nn.Module)


def quantize_linear_layers(net: nn.Module, names: list[str]) -> None:
    """Replace the named layers of `net` (in place) by torch's dynamically quantized ones:
    int8 weights with a scale per output channel, activations quantized per call."""
    if set(torch.backends.quantized.supported_engines) <= {"none"}:
        return  # no quantized kernels on this platform: the layers stay float
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of the torchao package, yet still
        # ships (and works) in the torch versions recforge supports
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:  # a torch without it: the layers stay float (dequantized at load)
            return
        quantize_dynamic(net, {name: per_channel_dynamic_qconfig for name in names}, dtype=torch.qint8,
                         inplace=True)


def float_network(net: NetworkT) -> NetworkT:
    """`net` in eval mode on the CPU, with dynamically quantized int8 layers (those of a
    compressed artifact, `quantize_linear_layers`) turned back into float layers of the
    same weights (a copy; `net` itself when there is nothing to convert)."""
    from torch.ao.nn.quantized import dynamic as qd

    quantized = [name for name, m in net.named_modules() if isinstance(m, qd.Linear)]
    if not quantized and all(p.device.type == "cpu" for p in net.parameters()):
        return net
    net = copy.deepcopy(net).cpu()
    for name in quantized:
        old = net.get_submodule(name)
        assert isinstance(old, qd.Linear)  # listed above
        weight, bias = old.weight().dequantize(), old.bias()
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            new.weight.copy_(weight)
            if bias is not None:
                new.bias.copy_(bias)
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, new)
    return net


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
