"""AutoRec (I- and U-AutoRec): conformance, observed-only loss, scoring, quality floor."""

import numpy as np
import pytest
import torch

from recforge.models.autorec import AutoRec, AutoRecNetwork, observed_squared_error
from recforge.testing import tiny_interactions

FAST = dict(epochs=100, batch_size=8, hidden_dim=16, learning_rate=0.01, regularization=0.1,
            threads=1, device="cpu")


def test_defaults_are_the_rating_task():
    cfg = AutoRec().config
    assert cfg.task == "rating" and cfg.variant == "item" and cfg.validation_metric == "rmse"
    assert cfg.hidden_dim == 500 and cfg.activation == "sigmoid"
    topn = AutoRec(task="topn").config
    assert topn.validation_metric == "ndcg@10" and topn.hidden_dim is not None


def test_loss_counts_observed_entries_only():
    target = torch.tensor([[5.0, 0.0, 3.0], [0.0, 4.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    recon = torch.tensor([[4.0, 9.0, 3.5], [-7.0, 2.0, 8.0]])
    # row 0: (5-4)² + (3-3.5)² = 1.25; row 1: (4-2)² = 4; mean over rows
    assert observed_squared_error(recon, target, mask).item() == pytest.approx((1.25 + 4) / 2)
    # changing the reconstruction where nothing was observed changes nothing
    other = recon.clone()
    other[mask == 0] = 0.0
    assert observed_squared_error(other, target, mask).item() == pytest.approx((1.25 + 4) / 2)
    # without a mask every entry counts (the top-N variant)
    full = ((recon - target) ** 2).sum(dim=1).mean()
    assert observed_squared_error(recon, target, None).item() == pytest.approx(full.item())


def test_training_batches_mask_the_observed_ratings():
    data, _ = tiny_interactions()
    model = AutoRec(**{**FAST, "epochs": 1}).fit(data)
    plan = model.training_plan(data, np.random.default_rng(0))
    items_by_users = data.csr().T.toarray()
    for x, mask in plan.batches(1, np.random.default_rng(0)):
        rows = [np.flatnonzero((items_by_users == row).all(axis=1))[0] for row in x.numpy()]
        np.testing.assert_array_equal(mask.numpy(), items_by_users[rows] != 0)
    net = model.network_.train()
    x, mask = next(iter(plan.batches(1, np.random.default_rng(0))))
    # the step is the masked error plus the weight penalty spread over the rows
    lam = model.config.regularization / 2 / data.n_items
    expected = observed_squared_error(net(x), x, mask) + lam * net.penalty()
    torch.testing.assert_close(plan.step(net, (x, mask)), expected)


def test_item_autorec_score_is_item_column_reconstruction_at_the_user():
    data, _ = tiny_interactions()
    model = AutoRec(**{**FAST, "epochs": 5}).fit(data)
    items_by_users = torch.from_numpy(data.csr().T.toarray())
    with torch.no_grad():
        recon = model.network_(items_by_users).numpy()       # (n_items, n_users)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(model.score(users), recon.T, rtol=1e-5, atol=1e-5)
    pairs = model.score(np.array([0, 5, 23]), np.array([3, 0, 19]))
    np.testing.assert_allclose(pairs, recon[[3, 0, 19], [0, 5, 23]], rtol=1e-5, atol=1e-5)
    assert model.item_embeddings().shape == (data.n_items, 16)


def test_rating_predictions_fit_the_training_ratings_and_cold_pairs_get_the_mean():
    data, _ = tiny_interactions()
    model = AutoRec(**FAST).fit(data)
    pred = model.predict_idx(data.user_idx, data.item_idx)
    assert np.sqrt(np.mean((pred - data.ratings) ** 2)) < 0.5
    cold = model.predict(["nobody", data.user_map.ids[0]], [data.item_map.ids[0], "nothing"])
    np.testing.assert_allclose(cold, model.global_mean_, rtol=1e-6)


def test_network_shapes():
    net = AutoRecNetwork(7, 3)
    assert net(torch.zeros(2, 7)).shape == (2, 7)
    assert net.encode(torch.zeros(2, 7)).shape == (2, 3)


# ---------------------------------------------------------------------- quality floor
