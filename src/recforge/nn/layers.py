"""Reusable network parts: an MLP builder and embedding initialisation helpers.

Networks in recforge are plain ``nn.Module``s built from these parts; the training loop
lives once in `recforge.training.trainer`.

Example::

    >>> import torch
    >>> net = mlp([8, 16, 4], activation="relu", dropout=0.1)
    >>> net(torch.zeros(3, 8)).shape
    torch.Size([3, 4])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = [
    "Activation", "bias_embedding", "embedding", "init_linear", "l2_rows", "make_activation", "mlp",
]

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "selu", "leaky_relu", "identity"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
    "selu": nn.SELU, "leaky_relu": nn.LeakyReLU, "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of `Activation`)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        known = ", ".join(_ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r} (known: {known})") from None


def mlp(
    dims: Sequence[int],
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    last_activation: bool = False,
    batch_norm: bool = False,
    init: Literal["xavier", "kaiming", "default"] = "xavier",
) -> nn.Sequential:
    """A multi-layer perceptron ``dims[0] → dims[1] → … → dims[-1]``.

    Each hidden layer is Linear → [BatchNorm1d] → activation → [Dropout]. The last layer is
    linear unless `last_activation`. Input shape (B, dims[0]), output shape (B, dims[-1]).

    Args:
        dims: layer widths, input first; at least two entries.
        activation: name of the hidden activation (see `Activation`).
        dropout: dropout probability after each hidden activation.
        last_activation: also apply the activation (no dropout) after the last layer.
        batch_norm: add BatchNorm1d after each hidden linear layer.
        init: weight initialisation of the linear layers (biases start at zero).
    """
    if len(dims) < 2:
        raise ValueError(f"mlp needs at least an input and an output width, got {list(dims)}")
    make_activation(activation)  # fail early on an unknown name
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        linear = nn.Linear(d_in, d_out)
        init_linear(linear, init, nonlinearity=activation)
        layers.append(linear)
        last = i == len(dims) - 2
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        elif last_activation:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


def init_linear(
    layer: nn.Linear,
    method: Literal["xavier", "kaiming", "default"] = "xavier",
    nonlinearity: str = "relu",
) -> nn.Linear:
    """Initialise a linear layer in place: Xavier/Glorot-uniform or Kaiming weights, zero bias."""
    if method == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    elif method == "kaiming":
        gain_name: Literal["relu", "leaky_relu"] = "leaky_relu" if nonlinearity == "leaky_relu" else "relu"
        nn.init.kaiming_uniform_(layer.weight, nonlinearity=gain_name)
    elif method != "default":
        raise ValueError(f"unknown init {method!r}")
    if layer.bias is not None and method != "default":
        nn.init.zeros_(layer.bias)
    return layer


def embedding(
    n: int,
    dim: int,
    *,
    std: float = 0.1,
    init: Literal["normal", "xavier", "uniform"] = "normal",
) -> nn.Embedding:
    """An ``nn.Embedding(n, dim)`` with a small random init (weight shape (n, dim)).

    Args:
        n: number of rows (users or items).
        dim: embedding dimension.
        std: standard deviation for ``init="normal"``, bound for ``init="uniform"``;
            small values start every score near zero.
        init: ``normal`` (N(0, std²)), ``xavier`` (Glorot uniform over (n, dim)), or
            ``uniform`` (U(-std, std)).
    """
    emb = nn.Embedding(n, dim)
    scale = std
    if init == "normal":
        nn.init.normal_(emb.weight, 0.0, scale)
    elif init == "xavier":
        nn.init.xavier_uniform_(emb.weight)
    elif init == "uniform":
        nn.init.uniform_(emb.weight, -scale, scale)
    else:
        raise ValueError(f"unknown embedding init {init!r}")
    return emb


def bias_embedding(n: int) -> nn.Embedding:
    """A zero-initialised ``nn.Embedding(n, 1)``: one learned bias per user or item."""
    emb = nn.Embedding(n, 1)
    nn.init.zeros_(emb.weight)
    return emb


def l2_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the summed squared entries of each row, added over tensors.

    Each tensor has shape (B, ...) — e.g. the user vectors (B, d), positive item vectors
    (B, d) and negative item vectors (B, N, d) of a batch; the batch-wise L2 penalty of
    classic SGD matrix factorization (Koren et al. 2009) is ``λ · l2_rows(p_u, q_i, b_u, b_i)``.
    """
    total = tensors[0].new_zeros(())
    for t in tensors:
        total = total + t.pow(2).reshape(t.shape[0], -1).sum(dim=1).mean()
    return total
