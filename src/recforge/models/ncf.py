"""Neural collaborative filtering: GMF, MLP and NeuMF.

He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017. Three
networks score a (user, item) pair:

* **GMF** — ``h_gᵀ (p_u ⊙ q_i)``: a generalised matrix factorization;
* **MLP** — ``h_mᵀ tower([p'_u, q'_i])``: a ReLU tower over the concatenated embeddings;
* **NeuMF** — both with separate embeddings, fused by one output layer:
  ``h_gᵀ (p_u ⊙ q_i) + h_mᵀ tower([p'_u, q'_i]) + b``.

Trained on implicit feedback with binary cross-entropy on each positive and `n_negatives`
unseen items drawn afresh every epoch (the paper's log loss), or with BPR. With
``pretrain=True`` NeuMF starts as the paper describes: GMF and MLP are trained alone first,
then NeuMF's embeddings and tower are copied from them and its output layer is
``[α·h_g, (1-α)·h_m]`` with bias ``α·b_g + (1-α)·b_m`` (`init_from_pretrained`).

Full ranking is vectorized: GMF scores all items with one matrix product, and the MLP's
first layer splits into a user part and an item part (``W [p; q] = W_u p + W_i q``), so the
tower runs on ``(chunk of pairs, h₁)`` blocks without building concatenated inputs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from recforge.config import DefaultRule
from recforge.data.interactions import Interactions
from recforge.models.torch_base import TorchRecommender
from recforge.nn import losses
from recforge.nn.layers import embedding, l2_rows, mlp
from recforge.training.config import TrainingConfig
from recforge.training.sampling import NegativeSampler, batch_indices
from recforge.training.trainer import Trainer, TrainingPlan

__all__ = ["NCF", "NCFConfig", "NCFNetwork", "init_from_pretrained"]

Variant = Literal["gmf", "mlp", "neumf"]

#: (user, item) pairs per block of the MLP tower when scoring all items
_PAIR_CHUNK = 1 << 16


class NCFConfig(TrainingConfig):
    """Hyperparameters of `NCF`; defaults chosen on a validation split carved from ML-100K's
    top-N training file (``configs/ml100k/ncf.yaml`` records the evidence).

    `variant`: ``gmf``, ``mlp`` or ``neumf``. `embedding_dim`: GMF's user/item vector size
    (its predictive factors). `mlp_embedding_dim`: size of the MLP's user and item vectors
    (the tower's input is twice that). `hidden_dims`: widths of the tower's hidden ReLU
    layers; the last is the MLP's predictive factors. `dropout`: after each tower layer
    but the last. `loss`: ``bce`` (pointwise log loss, the paper's) or ``bpr`` (pairwise).
    `n_negatives`: unseen items sampled per positive, afresh each epoch.
    `regularization`: λ of an L2 penalty on the embeddings each batch touches.
    `init_std`: standard deviation of the initial embeddings.

    `pretrain` (NeuMF only; None: on for ``neumf``): train GMF and MLP alone for
    `pretrain_epochs` epochs each with Adam at `pretrain_learning_rate`, initialise NeuMF
    from them weighted by `pretrain_alpha`, then fine-tune NeuMF for `epochs` epochs with
    `optimizer` at `learning_rate`. `epochs` and `learning_rate` left None resolve to a
    short fine-tuning (2 epochs at 1e-3) after pretraining, else to 10 epochs at 1e-2.
    The pretraining stages use the training part only and run without validation; early
    stopping (``validation_ratio > 0``) applies to the NeuMF stage.
    """

    variant: Variant = "neumf"
    embedding_dim: int = Field(32, ge=1)
    mlp_embedding_dim: int = Field(32, ge=1)
    hidden_dims: list[int] = Field(default_factory=lambda: [64, 32, 16], min_length=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    loss: Literal["bce", "bpr"] = "bce"
    n_negatives: int = Field(8, ge=1)
    regularization: float = Field(0.01, ge=0)
    init_std: float = Field(0.1, gt=0)
    pretrain: bool | None = None
    pretrain_epochs: int = Field(10, ge=1)
    pretrain_learning_rate: float = Field(1e-2, gt=0)
    pretrain_alpha: float = Field(0.5, ge=0, le=1)
    epochs: int | None = Field(None, ge=1)  # type: ignore[assignment]
    learning_rate: float | None = Field(None, gt=0)  # type: ignore[assignment]

    default_rules = (
        DefaultRule({"variant": "neumf"}, {"pretrain": True}),
        DefaultRule({}, {"pretrain": False}),
        DefaultRule({"pretrain": True}, {"epochs": 2, "learning_rate": 1e-3}),  # fine-tuning
        DefaultRule({"pretrain": False}, {"epochs": 10, "learning_rate": 1e-2}),  # from scratch
    )

    @model_validator(mode="after")
    def _check(self) -> NCFConfig:
        if self.task != "topn":
            raise ValueError("NCF is a top-N model (task 'topn')")
        if self.pretrain and self.variant != "neumf":
            raise ValueError(f"pretrain applies to variant 'neumf' only, not {self.variant!r}")
        if any(width < 1 for width in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        return self


class NCFNetwork(nn.Module):
    """GMF, MLP or NeuMF scoring network.

    Args:
        n_users, n_items: numbers of users and items.
        variant: which branches exist: ``gmf``, ``mlp`` or both (``neumf``).
        embedding_dim: GMF vector size d_g (`gmf_user`, `gmf_item`: (n, d_g)).
        mlp_embedding_dim: MLP vector size d_m (`mlp_user`, `mlp_item`: (n, d_m)).
        hidden_dims: hidden widths of `tower` (input 2·d_m, ReLU after every layer).
        dropout: dropout after each tower layer but the last.
        init_std: standard deviation of the normal embedding initialisation.

    `output` is ``Linear(d_g + h_last, 1)`` over ``[p_u ⊙ q_i, tower(...)]`` (the part of
    a missing branch is absent).

    Example::

        >>> net = NCFNetwork(4, 6, "neumf", 3, 2, [4, 2])
        >>> net(torch.tensor([0, 1]), torch.tensor([2, 5])).shape
        torch.Size([2])
        >>> net(torch.tensor([0, 1]), torch.tensor([[1, 2, 3], [0, 4, 5]])).shape
        torch.Size([2, 3])
        >>> net.score_all(torch.tensor([0, 1, 2])).shape
        torch.Size([3, 6])
    """

    def __init__(self, n_users: int, n_items: int, variant: Variant, embedding_dim: int,
                 mlp_embedding_dim: int, hidden_dims: list[int], *, dropout: float = 0.0,
                 init_std: float = 0.1) -> None:
        super().__init__()
        self.variant = variant
        self.has_gmf = variant in ("gmf", "neumf")
        self.has_mlp = variant in ("mlp", "neumf")
        width = 0
        if self.has_gmf:
            self.gmf_user = embedding(n_users, embedding_dim, std=init_std)
            self.gmf_item = embedding(n_items, embedding_dim, std=init_std)
            width += embedding_dim
        if self.has_mlp:
            self.mlp_user = embedding(n_users, mlp_embedding_dim, std=init_std)
            self.mlp_item = embedding(n_items, mlp_embedding_dim, std=init_std)
            self.tower = mlp([2 * mlp_embedding_dim, *hidden_dims], activation="relu",
                             dropout=dropout, last_activation=True)
            width += hidden_dims[-1]
        self.gmf_width = embedding_dim if self.has_gmf else 0
        self.output = nn.Linear(width, 1)
        nn.init.kaiming_uniform_(self.output.weight, a=1, nonlinearity="sigmoid")
        nn.init.zeros_(self.output.bias)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores (logits) of users (B,) for items (B,) → (B,), or items (B, N) → (B, N).

        The tower's first layer is applied as ``W_u p'_u + W_i q'_i + b``: the user part
        once per user row, the item part once per item (for the whole item table when the
        batch holds more pairs than there are items) — the same function as applying it
        to the concatenation, at a fraction of the cost.
        """
        squeeze = items.dim() == 1
        if squeeze:
            items = items.unsqueeze(1)
        parts = []
        if self.has_gmf:
            parts.append(self.gmf_user(users).unsqueeze(1) * self.gmf_item(items))
        if self.has_mlp:
            user_part, w_item = self._first_layer(users)
            if items.numel() > self.mlp_item.num_embeddings:
                item_part = (self.mlp_item.weight @ w_item.T)[items]                 # (B, N, h1)
            else:
                item_part = self.mlp_item(items) @ w_item.T
            pre = user_part.unsqueeze(1) + item_part
            parts.append(self.tower[1:](pre.reshape(-1, pre.shape[-1])).view(*items.shape, -1))
        hidden = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        out = self.output(hidden).squeeze(-1)
        return out.squeeze(1) if squeeze else out

    def _first_layer(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tower's first layer split: ``W_u p'_u + b`` (B, h1) and ``W_i`` (h1, d_m)."""
        first = self.tower[0]
        assert isinstance(first, nn.Linear)  # `mlp` starts with a Linear layer
        d = self.mlp_user.embedding_dim
        return self.mlp_user(users) @ first.weight[:, :d].T + first.bias, first.weight[:, d:]

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of users (B,) for every item → (B, n_items), without per-pair inputs."""
        weight, bias = self.output.weight[0], self.output.bias
        out = None
        if self.has_gmf:
            h_g = weight[: self.gmf_width]
            out = (self.gmf_user(users) * h_g) @ self.gmf_item.weight.T
        if self.has_mlp:
            mlp_part = self._tower_all(users, weight[self.gmf_width:])
            out = mlp_part if out is None else out + mlp_part
        assert out is not None  # every variant has a GMF or an MLP part
        return out + bias

    def _tower_all(self, users: torch.Tensor, h_m: torch.Tensor) -> torch.Tensor:
        """``h_mᵀ tower([p'_u, q'_i])`` for all items, as (B, n_items), in blocks of pairs."""
        rest = self.tower[1:]
        user_part, w_item = self._first_layer(users)                           # (B, h1)
        item_part = self.mlp_item.weight @ w_item.T                             # (I, h1)
        n_items = item_part.shape[0]
        out = user_part.new_empty(len(users), n_items)
        step = max(1, _PAIR_CHUNK // max(n_items, 1))
        for start in range(0, len(users), step):
            pre = user_part[start:start + step, None, :] + item_part[None, :, :]
            hidden = rest(pre.reshape(-1, pre.shape[-1]))
            out[start:start + step] = (hidden @ h_m).view(-1, n_items)
        return out

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Batch L2 of the embeddings used: users (B,), items (B, N) (mean over the N)."""
        total = users.new_zeros((), dtype=torch.float32)
        scale = 1.0 / items.shape[1]
        for name in ("gmf", "mlp"):
            if getattr(self, f"has_{name}"):
                user_emb, item_emb = getattr(self, f"{name}_user"), getattr(self, f"{name}_item")
                total = total + l2_rows(user_emb(users)) + scale * l2_rows(item_emb(items))
        return total


@torch.no_grad()
def init_from_pretrained(neumf: NCFNetwork, gmf: NCFNetwork, mlp_net: NCFNetwork,
                         alpha: float = 0.5) -> NCFNetwork:
    """Initialise `neumf` in place from a trained `gmf` and `mlp_net` (He et al. §3.4.1).

    Embeddings and tower are copied; the output layer becomes ``[α·h_g, (1-α)·h_m]`` with
    bias ``α·b_g + (1-α)·b_m``. Returns `neumf`.
    """
    if not (neumf.has_gmf and neumf.has_mlp) or gmf.variant != "gmf" or mlp_net.variant != "mlp":
        raise ValueError("init_from_pretrained needs a neumf, a gmf and an mlp network")
    pairs: list[tuple[nn.Module, nn.Module]] = [(neumf.gmf_user, gmf.gmf_user), (neumf.gmf_item, gmf.gmf_item),
             (neumf.mlp_user, mlp_net.mlp_user), (neumf.mlp_item, mlp_net.mlp_item)]
    # tower layers pair up in order (dropout may differ between the two towers)
    pairs += zip(_linears(neumf.tower), _linears(mlp_net.tower), strict=True)
    for target, source in pairs:
        for name, value in source.named_parameters():
            target.get_parameter(name).copy_(value)
    neumf.output.weight.copy_(torch.cat([alpha * gmf.output.weight,
                                         (1.0 - alpha) * mlp_net.output.weight], dim=1))
    neumf.output.bias.copy_(alpha * gmf.output.bias + (1.0 - alpha) * mlp_net.output.bias)
    return neumf


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


class NCF(TorchRecommender[NCFNetwork]):
    """Neural collaborative filtering (He et al., WWW 2017): GMF, MLP or NeuMF.

    Top-N only. See `NCFConfig` for the hyperparameters and the module docstring for the
    networks and pretraining.
    """

    name = "ncf"
    config_class = NCFConfig
    tasks: ClassVar[frozenset[str]] = frozenset({"topn"})
    config: NCFConfig

    def _network(self, variant: Variant, n_users: int, n_items: int) -> NCFNetwork:
        cfg = self.config
        return NCFNetwork(n_users, n_items, variant, cfg.embedding_dim, cfg.mlp_embedding_dim,
                          list(cfg.hidden_dims), dropout=cfg.dropout, init_std=cfg.init_std)

    def build_network(self, n_users: int, n_items: int) -> NCFNetwork:
        return self._network(self.config.variant, n_users, n_items)

    def training_plan(self, train: Interactions, rng: np.random.Generator) -> TrainingPlan[NCFNetwork]:
        cfg, device = self.config, self.device_
        users_np = train.user_idx.astype(np.int64)
        users = torch.from_numpy(users_np).to(device)
        items = torch.from_numpy(train.item_idx.astype(np.int64)).to(device)
        n, batch_size, lam = len(users_np), cfg.batch_size, cfg.regularization
        sampler = NegativeSampler(train.csr(binary=True))
        n_neg, loss_name = cfg.n_negatives, cfg.loss

        def batches(epoch: int, gen: np.random.Generator):
            negatives = torch.from_numpy(sampler.sample(users_np, n_neg, gen)).to(device)
            for idx in batch_indices(n, batch_size, gen):
                b = torch.from_numpy(idx).to(device)
                yield users[b], torch.cat([items[b, None], negatives[b]], dim=1)

        def step(net: NCFNetwork, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            u, cand = batch                       # (B,), (B, 1 + N): the positive first
            logits = net(u, cand)
            if loss_name == "bpr":
                loss = losses.bpr(logits[:, 0], logits[:, 1:])
            else:
                targets = torch.zeros_like(logits)
                targets[:, 0] = 1.0
                loss = losses.bce(logits, targets)
            return loss + lam * net.penalty(u, cand) if lam > 0 else loss

        if cfg.variant == "neumf" and cfg.pretrain:
            self._pretrain(train.n_users, train.n_items, step, batches, rng)
        return TrainingPlan(step, batches)

    def _pretrain(self, n_users: int, n_items: int, step: Any, batches: Any,
                  rng: np.random.Generator) -> None:
        """Train GMF and MLP alone, then initialise `network_` (NeuMF) from them."""
        cfg = self.config
        stage = cfg.model_copy(update={
            "epochs": cfg.pretrain_epochs, "learning_rate": cfg.pretrain_learning_rate,
            "optimizer": "adam", "lr_schedule": "none", "weight_decay": 0.0,
        })
        parts = []
        for variant in ("gmf", "mlp"):
            net = self._network(variant, n_users, n_items).to(self.device_)
            Trainer(stage).fit(net, step, batches, rng=rng)
            parts.append(net)
        init_from_pretrained(self.network_, parts[0], parts[1], cfg.pretrain_alpha)

    def score_tensor(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        net = self.network_
        return net.score_all(users) if items is None else net(users, items)

    def item_embeddings(self) -> np.ndarray | None:
        """GMF item vectors (gmf), MLP item vectors (mlp), or both concatenated (neumf)."""
        net = self.network_
        tables = (getattr(net, "gmf_item", None), getattr(net, "mlp_item", None))  # absent per variant
        parts = [t.weight for t in tables if t is not None]
        return torch.cat(parts, dim=1).detach().cpu().numpy()
