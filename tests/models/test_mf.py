"""MatrixFactorization: configuration, the network, rating and implicit training."""


import numpy as np
import pytest
import torch

from recforge.errors import ConfigError
from recforge.models.mf import MatrixFactorization, MFNetwork
from recforge.registry import create_model
from recforge.testing import tiny_interactions

FAST = dict(epochs=20, batch_size=64, learning_rate=0.02, embedding_dim=8, threads=1, device="cpu")


def test_auto_defaults_depend_on_task():
    topn, rating = create_model("mf").config, create_model("mf", task="rating").config
    assert topn.loss == "softmax" and rating.loss == "mse"
    assert topn.n_negatives >= 1 and topn.validation_metric == "ndcg@10"
    assert rating.validation_metric == "rmse"
    assert create_model("mf", loss="softmax").config.n_negatives > 1
    assert create_model("mf", embedding_dim=7).config.embedding_dim == 7


def test_invalid_loss_and_task_combinations():
    with pytest.raises(ConfigError, match="does not fit task"):
        MatrixFactorization(task="rating", loss="bpr")
    with pytest.raises(ConfigError, match="does not fit task"):
        MatrixFactorization(loss="mse")


def test_network_scores_and_penalty_by_hand():
    net = MFNetwork(2, 3, 2, global_bias=3.0)
    with torch.no_grad():
        net.users.weight.copy_(torch.tensor([[1.0, 0.0, 0.5], [0.0, 2.0, -0.5]]))
        net.items.weight.copy_(torch.tensor([[1.0, 1.0, 0.1], [0.0, 1.0, 0.2], [2.0, 0.0, 0.3]]))
    users = torch.tensor([0, 1])
    scores, penalty = net.forward_with_penalty(users, torch.tensor([2, 1]))
    # user 0 item 2: 2 + 0.5 + 0.3 + 3; user 1 item 1: 2 - 0.5 + 0.2 + 3
    torch.testing.assert_close(scores, torch.tensor([5.8, 4.7]))
    # (1 + .25 + 4 + .09 + 4 + .25 + 1 + .04) / 2
    assert penalty.item() == pytest.approx(10.63 / 2)
    torch.testing.assert_close(net.score_all(users)[[0, 1], [2, 1]], scores)
    many = net(users, torch.tensor([[2, 0], [1, 1]]))
    torch.testing.assert_close(many[:, 0], scores)


def test_rating_model_learns_ratings_and_handles_cold_pairs():
    data, _ = tiny_interactions()
    model = create_model("mf", task="rating", **{**FAST, "epochs": 60}).fit(data)
    pred = model.predict_idx(data.user_idx, data.item_idx)
    assert np.sqrt(np.mean((pred - data.ratings) ** 2)) < 0.5
    item = 3
    expected = model.global_mean_ + model.network_.item_bias[item].item()
    cold = model.predict(["nobody"], [data.item_map.ids[item]])
    assert cold[0] == pytest.approx(np.clip(expected, *model.rating_scale_), abs=1e-5)


def test_item_embeddings_and_seed_changes_weights():
    data, _ = tiny_interactions()
    a = create_model("mf", **FAST).fit(data)
    b = create_model("mf", **{**FAST, "seed": 1}).fit(data)
    assert a.item_embeddings().shape == (data.n_items, 8)
    assert not np.array_equal(a.item_embeddings(), b.item_embeddings())
