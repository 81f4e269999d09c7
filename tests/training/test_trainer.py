"""The shared epoch loop: optimisation, schedules, early stopping, seeding, validation."""

import numpy as np
import pytest
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.splitting import carve_validation
from recforge.errors import ConfigError
from recforge.evaluation.evaluate import evaluate_topn
from recforge.registry import create_model
from recforge.testing import tiny_interactions
from recforge.training.callbacks import Callback
from recforge.training.config import TrainingConfig
from recforge.training.sampling import batch_indices
from recforge.training.trainer import Trainer, TrainingError, seeded, torch_threads
from recforge.training.validation import make_validator


def regression_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def step(net, idx):
        return ((net(x[idx]).squeeze(1) - y[idx]) ** 2).mean()

    def batches(epoch, rng):
        return (torch.from_numpy(i) for i in batch_indices(128, 32, rng))

    return step, batches


def make_net(seed: int = 0) -> nn.Module:
    with seeded(seed):
        return nn.Linear(3, 1)


class Snapshots(Callback):
    """Records the network's weights after every epoch."""

    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, trainer, record):
        self.weights[record.epoch] = trainer.network.weight.detach().clone()


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "adagrad"])
def test_training_reduces_the_loss(optimizer):
    step, batches = regression_problem()
    lr = 0.5 if optimizer == "adagrad" else 0.05
    cfg = TrainingConfig(epochs=30, learning_rate=lr, optimizer=optimizer, device="cpu")
    history = Trainer(cfg).fit(make_net(), step, batches)
    assert len(history.records) == 30
    assert history.losses[-1] < 0.2 * history.losses[0]
    assert history.best_epoch is None and history.metric_name is None


def test_early_stopping_restores_best_epoch_on_rigged_metric():
    step, batches = regression_problem()
    sequence = iter([0.10, 0.30, 0.20, 0.25, 0.29, 0.50, 0.60])
    snaps = Snapshots()
    cfg = TrainingConfig(epochs=7, learning_rate=0.05, patience=3, device="cpu")
    net = make_net()
    history = Trainer(cfg, callbacks=[snaps]).fit(
        net, step, batches, validate=lambda: next(sequence), metric_name="ndcg@10")
    # best at epoch 2; epochs 3, 4, 5 do not improve -> stop after epoch 5
    assert [r.epoch for r in history.records] == [1, 2, 3, 4, 5]
    assert history.best_epoch == 2 and history.stopped_early
    np.testing.assert_allclose(history.metrics, [0.10, 0.30, 0.20, 0.25, 0.29])
    torch.testing.assert_close(net.weight.detach(), snaps.weights[2])
    assert not torch.equal(snaps.weights[2], snaps.weights[5])


def test_lower_is_better_metric_and_no_patience():
    step, batches = regression_problem()
    sequence = iter([1.0, 0.5, 0.7, 0.8, 0.9, 0.95])
    snaps = Snapshots()
    cfg = TrainingConfig(epochs=6, learning_rate=0.05, patience=None, device="cpu")
    net = make_net()
    history = Trainer(cfg, callbacks=[snaps]).fit(
        net, step, batches, validate=lambda: next(sequence), higher_is_better=False)
    assert len(history.records) == 6 and not history.stopped_early
    assert history.best_epoch == 2
    torch.testing.assert_close(net.weight.detach(), snaps.weights[2])


def test_min_delta_ignores_tiny_improvements():
    step, batches = regression_problem()
    sequence = iter([0.5, 0.501, 0.502, 0.9])
    cfg = TrainingConfig(epochs=4, patience=2, min_delta=0.01, device="cpu")
    history = Trainer(cfg).fit(make_net(), step, batches, validate=lambda: next(sequence))
    assert len(history.records) == 3 and history.best_epoch == 1


def test_step_and_cosine_schedules():
    step, batches = regression_problem()
    cfg = TrainingConfig(epochs=5, learning_rate=0.1, lr_schedule="step", lr_step_size=2,
                         lr_gamma=0.5, device="cpu")
    lrs = [r.learning_rate for r in Trainer(cfg).fit(make_net(), step, batches).records]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.05, 0.025])
    cfg = TrainingConfig(epochs=4, learning_rate=0.1, lr_schedule="cosine", device="cpu")
    lrs = [r.learning_rate for r in Trainer(cfg).fit(make_net(), step, batches).records]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] < lrs[0] and lrs[3] < lrs[2]


def test_grad_clip_limits_the_update():
    step, batches = regression_problem()
    cfg = TrainingConfig(epochs=1, learning_rate=1.0, optimizer="sgd", grad_clip=1e-3,
                         batch_size=128, device="cpu")
    net = make_net()
    before = net.weight.detach().clone()
    Trainer(cfg).fit(net, step, batches)
    # four SGD steps of at most lr * 1e-3 each
    assert float((net.weight.detach() - before).norm()) <= 4 * 1e-3 + 1e-6


def test_diverging_loss_raises():
    def step(net, batch):
        return net(torch.ones(1, 3)).sum() * float("nan")

    cfg = TrainingConfig(epochs=2, device="cpu")
    with pytest.raises(TrainingError, match="loss became nan"):
        Trainer(cfg).fit(make_net(), step, lambda epoch, rng: [0])


def test_batch_factory_gets_epoch_and_seeded_rng():
    seen = []

    def batches(epoch, rng):
        seen.append((epoch, int(rng.integers(1_000_000))))
        return []

    cfg = TrainingConfig(epochs=3, seed=5, device="cpu")
    Trainer(cfg).fit(make_net(), lambda net, b: None, batches)
    first = list(seen)
    seen.clear()
    Trainer(cfg).fit(make_net(), lambda net, b: None, batches)
    assert [e for e, _ in first] == [1, 2, 3] and first == seen


def test_verbose_progress_bar_runs(capsys):
    step, batches = regression_problem()
    sequence = iter([0.1, 0.2])
    cfg = TrainingConfig(epochs=2, verbose=True, device="cpu")
    Trainer(cfg).fit(make_net(), step, batches, validate=lambda: next(sequence), metric_name="m")
    err = capsys.readouterr().err
    assert "loss" in err and "m 0.2000" in err


def test_seeded_restores_global_rng_and_threads_are_restored():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded(0):
        a = torch.rand(2)
    with seeded(0):
        b = torch.rand(2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.rand(3), expected)
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_config_auto_metric_and_checks():
    assert TrainingConfig().validation_metric == "ndcg@10"
    assert TrainingConfig(task="rating").validation_metric == "rmse"
    assert TrainingConfig(validation_metric="recall@20").validation_metric == "recall@20"
    with pytest.raises(ValueError, match="unknown validation metric"):
        TrainingConfig(validation_metric="auc")
    with pytest.raises(ConfigError):
        create_model("mf", optimizer="rmsprop")


def test_validation_metric_equals_the_evaluators_figure():
    """Early stopping ranks and scores exactly like `evaluate_topn` (one ranking, one metric code)."""
    data, _ = tiny_interactions()
    train, held = carve_validation(data, 0.25, seed=1)
    model = create_model("itemknn").fit(train)
    for metric in ("ndcg", "recall"):
        validate, higher = make_validator(model.score, train.csr(binary=True), held, f"{metric}@5")
        expected = evaluate_topn(model, held, ks=[5], beyond_accuracy=False).metrics[f"{metric}@5"]
        assert higher
        assert validate() == pytest.approx(expected, abs=1e-12)


def test_validator_excludes_training_items():
    data, held = tiny_interactions()
    truth = Interactions(user_map=data.user_map, item_map=data.item_map,
                         user_idx=np.arange(data.n_users, dtype=np.int32),
                         item_idx=held.astype(np.int32))
    dense = data.csr(binary=True).toarray()
    # loves the items each user already has — all excluded — and then the held-out one
    oracle = dense * 10.0
    oracle[np.arange(data.n_users), held] = 5.0
    validate, higher = make_validator(lambda u, i=None: oracle[u], data.csr(binary=True),
                                      truth, "ndcg@5")
    assert higher and validate() == pytest.approx(1.0)
    validate, _ = make_validator(lambda u, i=None: -oracle[u], data.csr(binary=True),
                                 truth, "recall@5")
    assert validate() == pytest.approx(0.0)


def test_torch_model_with_validation_split_stops_and_restores():
    data, _ = tiny_interactions()
    model = create_model("mf", epochs=30, batch_size=64, learning_rate=0.05, embedding_dim=8,
                         validation_ratio=0.2, patience=3, device="cpu", threads=1)
    model.fit(data)
    h = model.history_
    assert h.metric_name == "ndcg@10" and h.best_epoch is not None
    assert np.isfinite(h.metrics).all()
    if h.stopped_early:
        assert len(h.records) == h.best_epoch + 3
    # the carved split is per-user 20 %: scoring after fit uses all training items as seen
    items, _ = model.recommend_idx(np.arange(data.n_users), 3)
    seen = data.csr(binary=True).toarray() > 0
    assert not seen[np.repeat(np.arange(data.n_users), 3), items.ravel()].any()


def test_torch_model_with_explicit_validation_set_and_rmse():
    data, _ = tiny_interactions()
    rng = np.random.default_rng(0)
    mask = rng.random(len(data)) < 0.8
    train, val = data.subset(mask), data.subset(~mask)
    model = create_model("mf", task="rating", epochs=5, batch_size=32, embedding_dim=4,
                         device="cpu", threads=1)
    model.fit(train, validation=val)
    assert model.history_.metric_name == "rmse"
    assert (model.history_.metrics > 0).all()
    best = int(np.nanargmin(model.history_.metrics)) + 1
    assert model.history_.best_epoch == best
