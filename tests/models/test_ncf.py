"""NCF (GMF / MLP / NeuMF): conformance, hand-computed scores, pretraining, quality floor."""

import numpy as np
import pytest
import torch

from recforge.errors import ConfigError
from recforge.models import ncf as ncf_module
from recforge.models.ncf import NCF, NCFNetwork, init_from_pretrained
from recforge.registry import create_model
from recforge.testing import tiny_interactions

FAST = dict(epochs=15, batch_size=32, learning_rate=0.02, embedding_dim=8, mlp_embedding_dim=8,
            hidden_dims=[16, 8], init_std=0.1, pretrain=False, threads=1, device="cpu")


def test_config_rules():
    cfg = NCF().config
    assert cfg.variant == "neumf" and cfg.pretrain and cfg.validation_metric == "ndcg@10"
    assert (cfg.epochs, cfg.learning_rate) == (2, 1e-3)  # a short fine-tuning after pretraining
    gmf = NCF(variant="gmf").config
    assert not gmf.pretrain and (gmf.epochs, gmf.learning_rate) == (10, 1e-2)
    assert NCF(variant="gmf", epochs=3).config.epochs == 3
    with pytest.raises(ConfigError, match="pretrain applies"):
        NCF(variant="gmf", pretrain=True)
    with pytest.raises(ConfigError):
        NCF(task="rating")
    with pytest.raises(ConfigError):
        NCF(hidden_dims=[])


def _set(param: torch.nn.Parameter, values) -> None:
    with torch.no_grad():
        param.copy_(torch.tensor(values, dtype=torch.float32))


def test_gmf_score_is_h_dot_elementwise_product_plus_bias():
    net = NCFNetwork(2, 3, "gmf", 2, 4, [4]).eval()
    _set(net.gmf_user.weight, [[1.0, 2.0], [-1.0, 0.5]])
    _set(net.gmf_item.weight, [[3.0, 1.0], [0.0, -2.0], [1.0, 1.0]])
    _set(net.output.weight, [[0.5, -1.0]])
    _set(net.output.bias, [0.25])
    # h·(p_u ⊙ q_i) + b, by hand: rows are users, columns items
    expected = torch.tensor([[0.5 * 3 - 2 * 1, 0.5 * 0 + 2 * 2, 0.5 - 2],
                             [-0.5 * 3 - 0.5, 0.5 * 0 + 0.5 * 2, -0.5 - 0.5]]) + 0.25
    with torch.no_grad():
        torch.testing.assert_close(net.score_all(torch.tensor([0, 1])), expected)
        torch.testing.assert_close(net(torch.tensor([0, 1]), torch.tensor([1, 2])),
                                   expected[[0, 1], [1, 2]])
        torch.testing.assert_close(net(torch.tensor([1]), torch.tensor([[2, 0, 1]])), expected[[1]][:, [2, 0, 1]])


@pytest.mark.parametrize("variant", ["mlp", "neumf"])
def test_vectorized_scores_equal_the_concatenated_tower(variant):
    torch.manual_seed(0)
    net = NCFNetwork(5, 7, variant, 3, 4, [6, 5, 2], dropout=0.5).eval()
    users = torch.tensor([0, 3, 4])
    items = torch.tensor([[1, 2, 6], [0, 6, 6], [3, 4, 5]])
    with torch.no_grad():
        tower_in = torch.cat([net.mlp_user(users)[:, None].expand(-1, 3, -1), net.mlp_item(items)], -1)
        parts = [net.tower(tower_in)]
        if variant == "neumf":
            parts.insert(0, net.gmf_user(users)[:, None] * net.gmf_item(items))
        expected = net.output(torch.cat(parts, -1)).squeeze(-1)
        torch.testing.assert_close(net(users, items), expected)
        torch.testing.assert_close(net.score_all(users).gather(1, items), expected)
        torch.testing.assert_close(net(users, items[:, 0]), expected[:, 0])


def test_init_from_pretrained_copies_weights_with_alpha():
    torch.manual_seed(1)
    gmf = NCFNetwork(4, 6, "gmf", 3, 2, [4, 2])
    mlp_net = NCFNetwork(4, 6, "mlp", 3, 2, [4, 2], dropout=0.3)
    neumf = NCFNetwork(4, 6, "neumf", 3, 2, [4, 2])
    init_from_pretrained(neumf, gmf, mlp_net, alpha=0.3)
    torch.testing.assert_close(neumf.gmf_user.weight, gmf.gmf_user.weight)
    torch.testing.assert_close(neumf.gmf_item.weight, gmf.gmf_item.weight)
    torch.testing.assert_close(neumf.mlp_user.weight, mlp_net.mlp_user.weight)
    torch.testing.assert_close(neumf.mlp_item.weight, mlp_net.mlp_item.weight)
    linears = [m for m in mlp_net.tower if isinstance(m, torch.nn.Linear)]
    torch.testing.assert_close(neumf.tower[0].weight, linears[0].weight)
    torch.testing.assert_close(neumf.tower[2].bias, linears[1].bias)
    h = neumf.output.weight[0]
    torch.testing.assert_close(h[:3], 0.3 * gmf.output.weight[0])
    torch.testing.assert_close(h[3:], 0.7 * mlp_net.output.weight[0])
    torch.testing.assert_close(neumf.output.bias, 0.3 * gmf.output.bias + 0.7 * mlp_net.output.bias)
    # the fused score is the alpha-mix of the two scores
    users, items = torch.tensor([0, 1, 3]), torch.tensor([5, 0, 2])
    with torch.no_grad():
        mix = 0.3 * gmf.eval()(users, items) + 0.7 * mlp_net.eval()(users, items)
        torch.testing.assert_close(neumf.eval()(users, items), mix)
    with pytest.raises(ValueError):
        init_from_pretrained(gmf, neumf, mlp_net)


def test_pretraining_starts_neumf_from_the_alpha_mix(monkeypatch):
    """fit(pretrain=True): NeuMF starts at α·GMF + (1−α)·MLP of the two pretrained networks."""
    parts = {}
    original = ncf_module.init_from_pretrained

    def spy(neumf, gmf, mlp_net, alpha):
        parts.update(gmf=gmf, mlp=mlp_net, alpha=alpha)
        return original(neumf, gmf, mlp_net, alpha)

    monkeypatch.setattr(ncf_module, "init_from_pretrained", spy)
    data, held = tiny_interactions()
    # one NeuMF epoch at a negligible rate leaves the initialisation in place
    model = create_model("ncf", **{**FAST, "pretrain": True, "pretrain_epochs": 15,
                                   "pretrain_learning_rate": 0.02, "pretrain_alpha": 0.4,
                                   "epochs": 1, "optimizer": "sgd", "learning_rate": 1e-12})
    model.fit(data)
    assert parts["alpha"] == 0.4
    users = torch.arange(data.n_users)
    with torch.no_grad():
        gmf_scores = parts["gmf"].eval().score_all(users)
        mix = 0.4 * gmf_scores + 0.6 * parts["mlp"].eval().score_all(users)
    np.testing.assert_allclose(model.score(users.numpy()), mix.numpy(), rtol=1e-5, atol=1e-5)
    # the GMF part was trained before the copy: it already ranks the known answer first
    masked = gmf_scores.numpy() + np.where(data.csr(binary=True).toarray() > 0, -np.inf, 0)
    assert np.mean(masked.argmax(axis=1) == held) >= 0.75


def test_item_embeddings_shapes():
    data, _ = tiny_interactions()
    for variant, width in (("gmf", 8), ("mlp", 8), ("neumf", 16)):
        model = create_model("ncf", variant=variant, **{**FAST, "epochs": 1}).fit(data)
        assert model.item_embeddings().shape == (data.n_items, width)
