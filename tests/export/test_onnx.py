"""ONNX export: onnxruntime reproduces every torch model's scores; the scorer plugs into ranking."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.errors import ConfigError
from recforge.testing import fit_case

pytest.importorskip("onnxruntime")
from recforge.export.onnx import OnnxScorer, export_onnx, graph_facts, onnx_scorer

#: (model, variant, task): every registered torch model, and the variants with another graph
CASES = [
    ("mf", "", "topn"), ("mf", "", "rating"), ("bpr", "", "topn"), ("ncf", "", "topn"), ("ncf", "gmf", "topn"),
    ("ncf", "mlp", "topn"), ("autorec", "", "rating"), ("autorec", "user", "topn"), ("multvae", "", "topn"),
    ("two_tower", "", "topn"), ("deepfm", "", "topn"), ("widedeep", "", "topn"), ("gru4rec", "", "topn"),
    ("sasrec", "", "topn"),
]


@pytest.mark.parametrize(("name", "variant", "task"), CASES, ids=lambda v: v or "-")
def test_onnxruntime_equals_pytorch(name: str, variant: str, task: str, tmp_path):
    from recforge.models.torch_base import TorchRecommender

    model = fit_case(name, task, variant).model
    if not isinstance(model, TorchRecommender):
        pytest.skip(f"{name} is not a torch model on this branch")
    path = tmp_path / "model.onnx"
    data = export_onnx(model, path)
    assert path.read_bytes() == data
    facts = graph_facts(data)
    assert facts["model"] == name and int(facts["n_items"]) == model.n_items
    scorer = OnnxScorer(model, data, threads=1)
    # a batch unlike the traced example (2 users): the batch axis is dynamic
    for users in (np.array([3]), np.arange(model.n_users)[::-1].copy()):
        expected = model.score(users)
        got = scorer.score_users(users)
        assert got.shape == expected.shape == (len(users), model.n_items)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["ncf", "sasrec"])
def test_model_ranks_through_the_onnx_scorer(name: str):
    """With the scorer set, recommend (exclusions, fallbacks) runs on onnxruntime's scores."""
    model = fit_case(name).model
    users = model.user_map_.ids[:6].tolist()
    before = model.recommend(users, k=5)
    model.set_scorer(onnx_scorer(model))
    after = model.recommend(users, k=5)
    assert after[["user_id", "item_id", "rank"]].equals(before[["user_id", "item_id", "rank"]])
    np.testing.assert_allclose(after["score"], before["score"], atol=1e-4)
    if name == "sasrec":  # an anonymous session's sequence goes through the graph too
        hist = [model.user_history(0)[:3]]
        scores = model.score_histories(hist)
        model.set_scorer(None)
        np.testing.assert_allclose(scores, model.score_histories(hist), atol=1e-4)


def test_models_without_a_network_are_refused():
    with pytest.raises(ConfigError, match="no torch network"):
        export_onnx(fit_case("ease").model)
