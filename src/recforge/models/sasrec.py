"""SASRec: causal self-attention over the user's time-ordered items (Kang & McAuley, ICDM 2018).

Item embeddings plus learned positional embeddings, dropout, then `n_layers` pre-norm
transformer blocks (multi-head causal self-attention and a position-wise feed-forward
layer of width `hidden_dim`, GELU) and a final layer norm; the state at each position is
scored against the item embeddings (tied). Trained with cross-entropy over the catalog at
every position of windows of the last `max_length` items (see
`recforge.models.sequence_nets`), which Klenitskiy & Vasilev (RecSys 2023) found far
stronger than the paper's sampled binary loss.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from recforge.models.sequence_nets import SequenceConfig, SequenceNetwork, TorchSequenceModel
from recforge.training.config import TrainingConfig

__all__ = ["SASRec", "SASRecConfig", "SASRecNetwork"]


class SASRecConfig(SequenceConfig):
    """Hyperparameters of `SASRec`, chosen on each user's last training interaction of the
    ML-100K next-item split (configs/ml100k/sasrec.yaml records the evidence).

    `scale_embeddings`: multiply the item embeddings by √embedding_dim before adding the
    positions, as the paper does (the tied output table keeps the plain vectors), so items
    outweigh the positional term. `n_layers`: transformer blocks; `n_heads`: attention heads (must divide
    `embedding_dim`); `hidden_dim`: width of the feed-forward layer; `dropout`: on the
    input embeddings, attention weights and the blocks' outputs. The other settings are
    those of `SequenceConfig`.
    """

    hidden_dim: int = Field(128, ge=1)
    scale_embeddings: bool = True
    n_layers: int = Field(1, ge=1)
    n_heads: int = Field(2, ge=1)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    lr_schedule: Literal["none", "cosine", "step"] = "cosine"

    @model_validator(mode="after")
    def _check_heads(self) -> SASRecConfig:
        if self.embedding_dim % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide embedding_dim ({self.embedding_dim})")
        return self


class SASRecNetwork(SequenceNetwork):
    """Item + position embeddings → causal pre-norm transformer blocks → layer norm.

    Position t attends to positions 0..t only, so a state never sees later items.

    Example::

        >>> net = SASRecNetwork(10, 8, max_length=4, hidden_dim=16, n_layers=1, n_heads=2)
        >>> net.states(torch.tensor([[1, 2, 0, 0]])).shape
        torch.Size([1, 4, 8])
    """

    def __init__(self, n_items: int, embedding_dim: int, *, max_length: int, hidden_dim: int,
                 n_layers: int, n_heads: int, dropout: float = 0.0, item_bias: bool = False,
                 scale_embeddings: bool = False) -> None:
        super().__init__(n_items, embedding_dim, item_bias)
        self.input_scale = math.sqrt(embedding_dim) if scale_embeddings else 1.0
        self.positions = nn.Embedding(max_length, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(embedding_dim, n_heads, hidden_dim, dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(embedding_dim)
        self.causal: torch.Tensor
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(max_length),
                             persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Embedding | nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        pos = torch.arange(length, device=tokens.device)
        h = self.dropout(self.items(tokens) * self.input_scale + self.positions(pos)[None])
        mask = self.causal[:length, :length]
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.norm(h)


class SASRec(TorchSequenceModel[SASRecNetwork]):
    """SASRec (Kang & McAuley 2018) with cross-entropy over the catalog at every position."""

    name = "sasrec"
    config_class: ClassVar[type[TrainingConfig]] = SASRecConfig
    config: SASRecConfig

    def build_network(self, n_users: int, n_items: int) -> SASRecNetwork:
        cfg = self.config
        return SASRecNetwork(n_items, cfg.embedding_dim, max_length=cfg.max_length, hidden_dim=cfg.hidden_dim,
                             n_layers=cfg.n_layers, n_heads=cfg.n_heads, dropout=cfg.dropout,
                             item_bias=cfg.item_bias, scale_embeddings=cfg.scale_embeddings)
