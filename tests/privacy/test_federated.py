"""Federated MF: a 2-round FedAvg simulation over per-user clients (tiny data, seconds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import Recommender
from recforge.privacy.federated import FederatedConfig, FederatedMF


def _tiny() -> Interactions:
    """Two taste groups: users 0-9 like items 0-9, users 10-19 like items 10-19."""
    rng = np.random.default_rng(0)
    pairs = [(u, i) for u in range(20) for i in rng.choice(10, 6, replace=False) + (10 if u >= 10 else 0)]
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"]).astype(str)
    return Interactions.from_frame(frame, rating_col=None, timestamp_col=None)


def _fit(**fed) -> FederatedMF:
    model = FederatedMF({"embedding_dim": 4, "init_std": 0.1}, federated=FederatedConfig(**fed))
    model.fit(_tiny())
    return model


def test_two_rounds_learn_the_groups_and_save_as_mf(tmp_path):
    model = _fit(rounds=2, clients_per_round=5, local_steps=20, client_lr=2.0)
    assert [r.round for r in model.rounds_] == [1, 2] and all(r.clients == 5 for r in model.rounds_)
    assert model.rounds_[-1].update_norm > 0
    top = model.recommend([str(u) for u in range(20)], k=2, exclude_seen=True)
    same_group = [(int(u) >= 10) == (int(i) >= 10) for u, i in zip(top["user_id"], top["item_id"], strict=True)]
    assert np.mean(same_group) >= 0.8  # the item side learned the two groups from the clients' updates
    loaded = Recommender.load(model.save(tmp_path / "fed"))
    assert loaded.name == "mf"
    np.testing.assert_allclose(loaded.score(np.arange(3)), model.score(np.arange(3)), rtol=1e-5)


def test_clipping_bounds_each_update_and_noise_is_accounted():
    clipped = _fit(rounds=2, clients_per_round=5, clip=1e-3)
    assert all(r.update_norm <= 1e-3 + 1e-12 for r in clipped.rounds_)  # the mean of ≤ C changes
    assert clipped.privacy_ is None  # no noise: no DP claim
    pytest.importorskip("opacus")
    noisy = _fit(rounds=2, clients_per_round=5, clip=0.5, noise_multiplier=1.0)
    assert noisy.privacy_ is not None and noisy.privacy_.steps == 2
    assert 0 < noisy.privacy_.epsilon < np.inf and noisy.privacy_.sample_rate == pytest.approx(5 / 20)


def test_the_rounds_are_seeded_and_noise_needs_clip():
    a, b = _fit(rounds=2, clients_per_round=5), _fit(rounds=2, clients_per_round=5)
    np.testing.assert_array_equal(a.score(np.arange(4)), b.score(np.arange(4)))
    with pytest.raises(ConfigError, match="clip"):
        _fit(rounds=1, noise_multiplier=1.0)
