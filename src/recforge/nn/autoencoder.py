"""A small feature autoencoder, trained with the shared `Trainer` (content profiles).

The idea of "content representation learning" in Wang, Wang & Yeung, "Collaborative Deep
Learning", KDD 2015: compress sparse item features into a dense code. Training needs torch;
`encode` runs in numpy so a loaded model scores without it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["encode", "train_autoencoder"]


def train_autoencoder(
    X: np.ndarray, hidden: int, dim: int, epochs: int, learning_rate: float, seed: int,
    threads: int | None,
) -> dict[str, np.ndarray]:
    """Fit ``x → tanh(W1 x + b1) → W2 · + b2 = code → decoder → x̂`` (MSE) with the shared Trainer.

    X: (n_items, F) encoded features. Returns the encoder weights as numpy arrays
    (``w1`` (hidden, F), ``b1``, ``w2`` (dim, hidden), ``b2``) so `encode` needs no torch.
    """
    import torch
    from torch import nn

    from recforge.nn.layers import mlp
    from recforge.training.config import TrainingConfig
    from recforge.training.sampling import batch_indices
    from recforge.training.trainer import Trainer, seeded, torch_threads

    cfg = TrainingConfig(epochs=epochs, batch_size=128, learning_rate=learning_rate, device="cpu",
                         seed=seed, threads=threads)
    with torch_threads(threads), seeded(seed) as rng:
        encoder = mlp([X.shape[1], hidden, dim], activation="tanh")
        net = nn.Sequential(encoder, nn.Tanh(), mlp([dim, hidden, X.shape[1]], activation="tanh"))
        data = torch.from_numpy(np.ascontiguousarray(X, np.float32))

        def batches(epoch: int, gen: np.random.Generator):
            for idx in batch_indices(len(data), cfg.batch_size, gen):
                yield data[torch.from_numpy(idx)]

        def step(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            return ((network(batch) - batch) ** 2).sum(dim=1).mean()

        Trainer(cfg).fit(net, step, batches, rng=rng)
    first, last = encoder[0], encoder[-1]
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)  # mlp starts and ends with a Linear
    return {k: v.detach().numpy().astype(np.float32) for k, v in
            (("w1", first.weight), ("b1", first.bias), ("w2", last.weight), ("b2", last.bias))}


def encode(weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """The autoencoder code of rows X: (n, F) → (n, dim), in numpy."""
    hidden = np.tanh(X @ weights["w1"].T + weights["b1"])
    return np.tanh(hidden @ weights["w2"].T + weights["b2"]).astype(np.float32)
