"""MultVAE / Mult-DAE: conformance, model-specific behaviour, and the ML-100K quality floor."""


import numpy as np
import pytest
import torch

from recforge.models.multvae import MultVAE, MultVAENetwork
from recforge.registry import create_model
from recforge.testing import tiny_interactions

FAST = dict(epochs=30, batch_size=8, hidden_dims=[16], latent_dim=8, learning_rate=0.01,
            total_anneal_steps=50, threads=1, device="cpu")


def test_network_shapes_and_deterministic_eval():
    net = MultVAENetwork(12, [6], 3)
    x = (torch.rand(5, 12) > 0.5).float()
    logits, mu, logvar = net(x)
    assert logits.shape == (5, 12) and mu.shape == (5, 3) and logvar.shape == (5, 3)
    net.eval()
    torch.testing.assert_close(net(x)[0], net(x)[0])
    dae = MultVAENetwork(12, [6], 3, variational=False)
    _, mu, logvar = dae(x)
    assert mu.shape == (5, 3) and logvar is None


def test_scores_are_decoder_of_training_row_and_repeatable():
    data, _ = tiny_interactions()
    model = create_model("multvae", **FAST).fit(data)
    users = np.arange(data.n_users)
    first = model.score(users)
    np.testing.assert_array_equal(first, model.score(users))
    rows = torch.from_numpy(data.csr(binary=True).toarray())
    with torch.no_grad():
        mu, _ = model.network_.encode(rows)
        expected = model.network_.decoder(mu).numpy()
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)
    assert model.item_embeddings().shape == (data.n_items, 16)


def test_kl_annealing_reaches_the_cap():
    data, _ = tiny_interactions()
    model = MultVAE(**{**FAST, "anneal_cap": 0.2, "total_anneal_steps": 50, "epochs": 1})
    model.fit(data)  # sets device, maps and the network
    plan = model.training_plan(data, np.random.default_rng(0))
    net = model.network_.train()
    batch = next(iter(plan.batches(1, np.random.default_rng(0))))
    torch.manual_seed(0)
    # with the same noise, the loss grows with β until β hits anneal_cap (0.2 at step 10)
    values = []
    for _ in range(12):
        torch.manual_seed(0)
        values.append(plan.step(net, batch).item())
    assert values[0] < values[5] < values[10]
    assert values[10] == pytest.approx(values[11], rel=1e-6)


def test_dae_has_no_kl_term():
    data, _ = tiny_interactions()
    model = MultVAE(**{**FAST, "variant": "dae", "epochs": 1}).fit(data)
    plan = model.training_plan(data, np.random.default_rng(0))
    net = model.network_.train()
    batch = next(iter(plan.batches(1, np.random.default_rng(0))))
    torch.manual_seed(0)
    a = plan.step(net, batch).item()
    torch.manual_seed(0)
    b = plan.step(net, batch).item()
    assert a == pytest.approx(b)
