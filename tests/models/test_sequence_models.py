"""gru4rec and sasrec: next-item known answer, causality, fold-in, explain, save/load."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import Recommender
from recforge.models.sasrec import SASRecNetwork
from recforge.models.sequence_nets import TorchSequenceModel, pad_sequences, sequence_windows
from recforge.registry import create_model

N_ITEMS, N_USERS, STEPS = 30, 60, 14

#: small fast settings that learn the synthetic transitions
FAST: dict[str, dict[str, Any]] = {
    "gru4rec": dict(embedding_dim=16, hidden_dim=32, max_length=8, epochs=40, batch_size=16,
                    learning_rate=0.02, dropout=0.0, threads=1, device="cpu"),
    "sasrec": dict(embedding_dim=16, hidden_dim=32, n_layers=1, n_heads=2, max_length=8, epochs=40,
                   batch_size=16, learning_rate=0.01, dropout=0.0, threads=1, device="cpu"),
}
MODELS = list(FAST)


def cycle_data(seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Users walk a fixed random cycle over the items: the next item is a function of the last.

    Returns the training interactions (STEPS items per user, timestamps in walk order) and
    each user's true next item. The item sets of the users overlap in every pattern, so an
    order-free model cannot tell the next item from the set.
    """
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(N_ITEMS)
    starts = rng.integers(0, N_ITEMS, N_USERS)
    pos = (starts[:, None] + np.arange(STEPS + 1)[None, :]) % N_ITEMS
    walk = cycle[pos]
    frame = pd.DataFrame({
        "user_id": np.repeat([f"u{u:03d}" for u in range(N_USERS)], STEPS),
        "item_id": [f"i{i:03d}" for i in walk[:, :STEPS].ravel()],
        "timestamp": np.tile(np.arange(STEPS), N_USERS) + 1000,
    })
    data = Interactions.from_frame(frame)
    return data, data.item_map.to_idx([f"i{i:03d}" for i in walk[:, STEPS]])


@pytest.fixture(scope="module")
def cycle() -> tuple[Interactions, np.ndarray]:
    return cycle_data()


@pytest.fixture(scope="module")
def fitted(cycle) -> dict[str, TorchSequenceModel]:
    data, _ = cycle
    return {name: create_model(name, **FAST[name]).fit(data) for name in MODELS}  # type: ignore[misc]


@pytest.mark.parametrize("name", MODELS)
def test_sequence_model_learns_a_deterministic_next_item(name, fitted, cycle) -> None:
    data, target = cycle
    items, _ = fitted[name].recommend_idx(np.arange(data.n_users), 10)
    hr10 = float(np.mean((items == target[:, None]).any(axis=1)))
    top1 = float(np.mean(items[:, 0] == target))
    assert hr10 >= 0.95 and top1 >= 0.8, f"{name}: HR@10 {hr10:.2f}, HR@1 {top1:.2f}"
    # an order-free model sees only the set of items: it cannot single the next one out
    ease = create_model("ease", regularization=10.0).fit(data)
    items, _ = ease.recommend_idx(np.arange(data.n_users), 1)
    assert float(np.mean(items[:, 0] == target)) < 0.5


@pytest.mark.parametrize("name", MODELS)
def test_fold_in_of_the_training_sequence_equals_the_users_scores(name, fitted, cycle) -> None:
    model, users = fitted[name], np.array([0, 7, 33])
    folded = model.score_histories([model.user_history(int(u)) for u in users])
    np.testing.assert_allclose(folded, model.score(users), rtol=1e-5, atol=1e-5)
    assert model.user_history(0).tolist() == cycle[0].sequences()[1][:STEPS].tolist()


@pytest.mark.parametrize("name", MODELS)
def test_order_matters_and_only_the_last_max_length_items_count(name, fitted) -> None:
    model = fitted[name]
    seq = model.user_history(3)
    scores = model.score_histories([seq, seq[::-1], np.concatenate([seq[::-1], seq])])
    assert not np.allclose(scores[0], scores[1], atol=1e-3), "reversing the sequence changed nothing"
    np.testing.assert_allclose(scores[2], scores[0], rtol=1e-5, atol=1e-5)  # max_length 8 < STEPS


@pytest.mark.parametrize("name", MODELS)
def test_save_load_keeps_scores_and_sequences(name, fitted, tmp_path) -> None:
    model = fitted[name]
    loaded = Recommender.load(model.save(tmp_path / name))
    np.testing.assert_array_equal(loaded.score(np.arange(5)), model.score(np.arange(5)))
    assert loaded.user_history(4).tolist() == model.user_history(4).tolist()
    session = [np.array([2, 9, 4])]
    np.testing.assert_array_equal(loaded.score_histories(session), model.score_histories(session))


@pytest.mark.parametrize("name", MODELS)
def test_explain_names_items_whose_removal_lowers_the_score_by_their_contribution(name, fitted) -> None:
    model = fitted[name]
    uid = model.user_map_.ids[5]
    item = int(model.recommend_idx(np.array([5]), 1)[0][0, 0])
    frame = model.explain(uid, [model.item_map_.ids[item]], n=3)
    assert len(frame) >= 1 and set(frame["kind"]) == {"item"}
    assert list(frame["rank"]) == list(range(1, len(frame) + 1))
    assert (np.diff(frame["contribution"].to_numpy()) <= 0).all() and frame["contribution"].iloc[0] > 0
    history = model.user_history(5)
    top = int(model.item_map_.to_idx([frame["source"].iloc[0]])[0])
    assert top in set(history[-model.config.max_length:].tolist())
    full = model.score(np.array([5]))[0, item]
    without = model.score_histories([history[history != top]])[0, item]
    assert full - without == pytest.approx(frame["contribution"].iloc[0], abs=1e-5)


def test_sasrec_states_are_causal() -> None:
    torch.manual_seed(0)
    net = SASRecNetwork(20, 8, max_length=6, hidden_dim=16, n_layers=2, n_heads=2).eval()
    a = torch.tensor([[3, 5, 7, 2, 9, 1]])
    b = torch.tensor([[3, 5, 7, 11, 0, 0]])  # differs from position 3 on
    with torch.no_grad():
        ha, hb = net.states(a), net.states(b)
    np.testing.assert_allclose(ha[0, :3].numpy(), hb[0, :3].numpy(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ha[0, 3], hb[0, 3])


def test_sasrec_scales_the_input_embeddings_not_the_output_table() -> None:
    """With scale_embeddings the blocks see √d·item + position; the scored table is unchanged."""
    torch.manual_seed(0)
    plain = SASRecNetwork(20, 16, max_length=4, hidden_dim=16, n_layers=1, n_heads=2).eval()
    scaled = SASRecNetwork(20, 16, max_length=4, hidden_dim=16, n_layers=1, n_heads=2, scale_embeddings=True).eval()
    scaled.load_state_dict(plain.state_dict())
    tokens = torch.tensor([[3, 5, 7, 0]])
    with torch.no_grad():
        plain.items.weight.mul_(4.0)  # √16 = 4: the plain net's inputs now equal the scaled net's
        plain_states = plain.states(tokens)
        plain.items.weight.div_(4.0)
        np.testing.assert_allclose(scaled.states(tokens).numpy(), plain_states.numpy(), rtol=1e-5, atol=1e-6)
    assert torch.equal(scaled.item_table(), plain.item_table())


def test_windows_make_every_item_but_each_users_first_a_target_once() -> None:
    indptr = np.array([0, 7, 8, 11])
    items = np.arange(11)
    for stride in (3, 2, 1):
        windows, first = sequence_windows(indptr, items, 3, stride)
        trained = (windows[:, 1:] > 0) & (np.arange(3)[None, :] >= first[:, None])
        targets = windows[:, 1:][trained] - 1
        assert sorted(targets.tolist()) == [1, 2, 3, 4, 5, 6, 9, 10], stride
        assert windows[0].tolist() == [4, 5, 6, 7]  # the newest window ends at the user's last item
    assert sequence_windows(indptr, items, 3)[0].shape == (3, 4)
    assert sequence_windows(indptr, items, 3, 1)[0].shape == (5, 4)
    tokens, lengths = pad_sequences([items[:2], items[:5]], 3)
    assert tokens.tolist() == [[1, 2, 0], [3, 4, 5]] and lengths.tolist() == [2, 3]


@pytest.mark.parametrize("name", MODELS)
def test_validation_holds_out_each_users_last_item_and_fit_keeps_the_full_sequence(name, cycle) -> None:
    data, _ = cycle
    model = create_model(name, **{**FAST[name], "epochs": 3, "validation_ratio": 0.01, "patience": None})
    model.fit(data)
    assert len(model.history_.metrics) == 3 and np.isfinite(model.history_.metrics).all()
    assert len(model.user_history(0)) == STEPS


def test_sampled_softmax_with_logq_learns_the_transitions(cycle) -> None:
    data, target = cycle
    model = create_model("sasrec", **{**FAST["sasrec"], "loss": "softmax", "n_negatives": 10, "item_bias": True})
    items, _ = model.fit(data).recommend_idx(np.arange(data.n_users), 10)
    assert float(np.mean((items == target[:, None]).any(axis=1))) >= 0.9


def test_sasrec_heads_must_divide_the_embedding() -> None:
    with pytest.raises(ConfigError, match="n_heads"):
        create_model("sasrec", embedding_dim=10, n_heads=4)
    with pytest.raises(ConfigError):
        create_model("gru4rec", task="rating")
