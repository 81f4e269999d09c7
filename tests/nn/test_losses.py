"""Known values of the loss functions on tiny tensors, computed by hand."""

import math

import pytest
import torch

from recforge.nn import losses


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bpr_known_values():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([0.0, 0.0])
    # -log σ(2) = softplus(-2); -log σ(0) = log 2
    expected = (softplus(-2.0) + math.log(2.0)) / 2
    assert float(losses.bpr(pos, neg)) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.410038, abs=1e-6)


def test_bpr_with_several_negatives_averages_pairs():
    pos = torch.tensor([1.0, 3.0])
    neg = torch.tensor([[0.0, 1.0], [4.0, 3.0]])
    expected = (softplus(-1.0) + math.log(2.0) + softplus(1.0) + math.log(2.0)) / 4
    assert float(losses.bpr(pos, neg)) == pytest.approx(expected, abs=1e-6)


def test_bpr_gradient_pushes_positive_up():
    pos = torch.tensor([0.0], requires_grad=True)
    neg = torch.tensor([0.0], requires_grad=True)
    losses.bpr(pos, neg).backward()
    assert pos.grad.item() == pytest.approx(-0.5) and neg.grad.item() == pytest.approx(0.5)


def test_mse_plain_and_weighted():
    pred, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert float(losses.mse(pred, target)) == pytest.approx(2.5)
    w = torch.tensor([3.0, 1.0])
    assert float(losses.mse(pred, target, w)) == pytest.approx((3 * 1 + 1 * 4) / 4)


def test_bce_with_logits():
    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (softplus(-2.0) + softplus(-1.0)) / 2
    assert float(losses.bce(logits, targets)) == pytest.approx(expected, abs=1e-6)
    assert float(losses.bce(torch.zeros(3), torch.ones(3))) == pytest.approx(math.log(2.0))


def test_sampled_softmax_known_values():
    pos = torch.tensor([0.0])
    neg = torch.tensor([[0.0, 0.0]])
    assert float(losses.sampled_softmax(pos, neg)) == pytest.approx(math.log(3.0), abs=1e-6)
    # temperature scales logits: [2, 0] / 2 -> [1, 0]
    value = losses.sampled_softmax(torch.tensor([2.0]), torch.tensor([[0.0]]), temperature=2.0)
    assert float(value) == pytest.approx(softplus(-1.0), abs=1e-6)


def test_sampled_softmax_logq_correction():
    # corrected logits: 0 - log .5 = log 2 for the positive, 0 - log .25 = log 4 per negative
    pos, neg = torch.tensor([0.0]), torch.tensor([[0.0, 0.0]])
    value = losses.sampled_softmax(
        pos, neg, pos_logq=torch.log(torch.tensor([0.5])), neg_logq=torch.log(torch.full((1, 2), 0.25))
    )
    assert float(value) == pytest.approx(-math.log(2 / (2 + 4 + 4)), abs=1e-6)


def test_multinomial_nll_uniform_logits():
    logits = torch.zeros(2, 4)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    # each observed item has log-probability -log 4; users sum 2 and 1 of them
    expected = (2 * math.log(4) + math.log(4)) / 2
    assert float(losses.multinomial_nll(logits, targets)) == pytest.approx(expected, abs=1e-6)


def test_kl_normal_known_values():
    assert float(losses.kl_normal(torch.zeros(3, 2), torch.zeros(3, 2))) == pytest.approx(0.0)
    mu = torch.tensor([[1.0, 1.0]])
    assert float(losses.kl_normal(mu, torch.zeros(1, 2))) == pytest.approx(1.0)
    # variance e: 0.5 * (e - 1 - 1)
    value = losses.kl_normal(torch.zeros(1, 1), torch.ones(1, 1))
    assert float(value) == pytest.approx(0.5 * (math.e - 2.0), abs=1e-6)
