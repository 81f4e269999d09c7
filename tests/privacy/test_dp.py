"""Differential privacy: DP-SGD's accountant stays within the target and is recorded; the
Laplace counts have the mechanism's noise scale and clip each user's contribution."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.privacy import laplace_counts
from recforge.registry import create_model

pytest.importorskip("opacus")


def _tiny(seed: int = 0, n: int = 600) -> Interactions:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user_id": rng.integers(0, 60, n).astype(str),
                          "item_id": rng.integers(0, 40, n).astype(str)}).drop_duplicates()
    return Interactions.from_frame(frame, rating_col=None, timestamp_col=None)


SMALL = {
    "mf": {"embedding_dim": 8, "epochs": 2, "dp_max_items": 8, "n_negatives": 4},
    "multvae": {"hidden_dims": [16], "latent_dim": 4, "epochs": 2},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_dp_sgd_spends_at_most_the_target_and_records_it(name, tmp_path):
    model = create_model(name, {**SMALL[name], "dp_epsilon": 3.0, "dp_delta": 1e-3, "dp_sample_rate": 0.25,
                                "device": "cpu", "threads": 1})
    model.fit(_tiny())
    report = model.privacy_
    assert report is not None
    assert 0 < report.epsilon <= 3.0 + 1e-9
    assert report.epsilon > 1.5  # the noise was calibrated to the target, not far above it
    assert report.steps == 2 * 4 and report.noise_multiplier > 0
    meta = json.loads((model.save(tmp_path / name) / "meta.json").read_text())
    assert meta["privacy"]["epsilon"] == pytest.approx(report.epsilon)
    assert meta["privacy"]["delta"] == 1e-3 and meta["privacy"]["accountant"] == "rdp"
    assert meta["privacy"]["unit"].startswith("user")
    assert np.isfinite(model.score(np.arange(3))).all()


def test_dp_sgd_is_repeatable_under_a_seed():
    params = {**SMALL["multvae"], "dp_epsilon": 2.0, "dp_sample_rate": 0.25, "device": "cpu", "threads": 1}
    a, b = create_model("multvae", params), create_model("multvae", params)
    a.fit(_tiny())
    b.fit(_tiny())
    np.testing.assert_array_equal(a.score(np.arange(5)), b.score(np.arange(5)))


def test_dp_sgd_refuses_early_stopping_and_non_softmax_losses():
    model = create_model("mf", {**SMALL["mf"], "dp_epsilon": 1.0, "validation_ratio": 0.2, "device": "cpu"})
    with pytest.raises(ConfigError, match="validation"):
        model.fit(_tiny())
    with pytest.raises(ConfigError, match="softmax"):
        create_model("mf", {"dp_epsilon": 1.0, "loss": "bpr"})


def test_a_model_without_dp_has_no_privacy_record(tmp_path):
    model = create_model("mf", {**SMALL["mf"], "device": "cpu", "threads": 1})
    model.fit(_tiny())
    assert model.privacy_ is None
    assert "privacy" not in json.loads((model.save(tmp_path / "m") / "meta.json").read_text())


def test_laplace_noise_has_the_mechanism_scale():
    """E|noise| = b = max_items / ε for Laplace(b); the mean over 20 000 items is within 3 %."""
    rows = sp.csr_matrix((20_000, 20_000), dtype=np.float32)  # no users: the output is pure noise
    noise = laplace_counts(rows, epsilon=0.5, max_items=4, rng=np.random.default_rng(7))
    assert np.abs(noise).mean() == pytest.approx(4 / 0.5, rel=0.03)
    assert abs(np.median(noise)) < 0.3


def test_laplace_counts_clip_each_user_and_are_seeded():
    rows = sp.csr_matrix(np.ones((5, 30), np.float32))  # 5 users with 30 items each
    exact = laplace_counts(rows, epsilon=1e12, max_items=3, rng=np.random.default_rng(1))
    assert exact.sum() == pytest.approx(5 * 3)  # each user counted on 3 items only
    a = laplace_counts(rows, 1.0, 3, np.random.default_rng(3))
    np.testing.assert_array_equal(a, laplace_counts(rows, 1.0, 3, np.random.default_rng(3)))


def test_private_popularity_ranks_by_noisy_counts_and_records_them(tmp_path):
    data = _tiny()
    exact = create_model("popularity", {}).fit(data)
    loose = create_model("popularity", {"dp_epsilon": 1e9, "dp_max_items": 1000}).fit(data)
    np.testing.assert_allclose(loose.item_scores_, exact.item_scores_, atol=1e-3)
    tight = create_model("popularity", {"dp_epsilon": 0.1}).fit(data)
    assert not np.allclose(tight.item_scores_, exact.item_scores_)
    assert tight.privacy_ is not None and tight.privacy_.epsilon == 0.1
    assert (tight.popularity_scores() >= 0).all()
    meta = json.loads((tight.save(tmp_path / "p") / "meta.json").read_text())
    assert meta["privacy"]["accountant"] == "laplace"
    with pytest.raises(ConfigError, match="topn"):
        create_model("popularity", {"task": "rating", "dp_epsilon": 1.0})
