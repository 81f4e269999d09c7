"""GRU4Rec: a recurrent network over the user's time-ordered items (Hidasi et al., ICLR 2016).

The documents' RNN over behaviour sequences: item embedding → dropout → a stacked GRU →
dropout → a linear map back to the embedding space, scored against the item embeddings
(tied). Trained on next-item prediction at every position of windows of the last
`max_length` items with a softmax over the catalog (see `recforge.models.sequence_nets`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from recforge.models.sequence_nets import SequenceConfig, SequenceNetwork, TorchSequenceModel
from recforge.training.config import TrainingConfig

__all__ = ["GRU4Rec", "GRU4RecConfig", "GRU4RecNetwork"]


class GRU4RecConfig(SequenceConfig):
    """Hyperparameters of `GRU4Rec`, chosen on each user's last training interaction of the
    ML-100K next-item split (configs/ml100k/gru4rec.yaml records the evidence).

    `hidden_dim`: GRU state size; `n_layers`: stacked GRU layers; `dropout`: on the item
    embeddings, between GRU layers and on the output state. The other settings are those of
    `SequenceConfig`.
    """

    hidden_dim: int = Field(128, ge=1)
    n_layers: int = Field(1, ge=1)
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-2, gt=0)
    lr_schedule: Literal["none", "cosine", "step"] = "cosine"


class GRU4RecNetwork(SequenceNetwork):
    """Item embedding → GRU → linear to the embedding size; tied next-item scores.

    Example::

        >>> net = GRU4RecNetwork(10, 8, 16)
        >>> net.states(torch.tensor([[1, 2, 0]])).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, n_layers: int = 1,
                 dropout: float = 0.0, item_bias: bool = False) -> None:
        super().__init__(n_items, embedding_dim, item_bias)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding_dim, hidden_dim, n_layers, batch_first=True,
                          dropout=dropout if n_layers > 1 else 0.0)
        self.out = nn.Linear(hidden_dim, embedding_dim)
        nn.init.xavier_normal_(self.items.weight[1:])

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.dropout(self.items(tokens)))
        return self.out(self.dropout(h))


class GRU4Rec(TorchSequenceModel[GRU4RecNetwork]):
    """GRU4Rec (Hidasi et al. 2016) with cross-entropy over the catalog at every position."""

    name = "gru4rec"
    config_class: ClassVar[type[TrainingConfig]] = GRU4RecConfig
    config: GRU4RecConfig

    def build_network(self, n_users: int, n_items: int) -> GRU4RecNetwork:
        cfg = self.config
        return GRU4RecNetwork(n_items, cfg.embedding_dim, cfg.hidden_dim, cfg.n_layers,
                              cfg.dropout, cfg.item_bias)

