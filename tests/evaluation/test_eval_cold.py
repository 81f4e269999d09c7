"""Cold-start benchmark: config validation, and one fold of ML-100K end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.errors import ConfigError
from recforge.evaluation.cold import load_cold_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cold.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("cold_users: {baseline: nope, models: [{name: popularity}]}", "baseline 'nope'"),
    ("cold_users: {baseline: random, models: [{name: random}]}", "cold-items entry only"),
    ("cold_items: {baseline: x, models: [{name: no_such_model, label: x}]}", "unknown model 'no_such_model'"),
    ("folds: 1\ncold_items: {baseline: random, models: [{name: random}]}", "folds"),
    ("seed: 1", "give cold_users, cold_items or both"),
])
def test_bad_configs_are_one_line_errors(tmp_path: Path, body: str, message: str):
    path = _write(tmp_path, f"protocol: cold-start\ndataset: {{data_dir: .}}\n{body}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_cold_config(path)
    assert "\n" not in str(err.value)


def test_one_fold_of_ml100k(tmp_path: Path, ml100k_raw: Path):
    path = _write(tmp_path, f"""
protocol: cold-start
dataset: {{name: movielens-100k, data_dir: {ml100k_raw}}}
folds: 5
max_folds: 1
threads: 1
cold_users:
  baseline: demographic_popularity
  models: [{{name: popularity}}, {{name: demographic_popularity}}]
cold_items:
  baseline: random
  models: [{{name: random}}, {{name: popularity}}, {{name: content}}]
""")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["benchmark", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    users, items = res["cold_users"], res["cold_items"]
    # 20 % of the 943 users, each ranked from demographics only
    assert 180 <= users["users"] <= 200
    demo, pop = users["models"]["demographic_popularity"], users["models"]["popularity"]
    assert demo["ndcg@10"] > pop["ndcg@10"]
    assert pop["ndcg@10 vs baseline"]["diff"] == pytest.approx(pop["ndcg@10"] - demo["ndcg@10"], abs=2e-4)
    # a CF model cannot score unseen items: chance level; item features lift content far above it
    rnd, cf, content = (items["models"][n]["recall@20"] for n in ("random", "popularity", "content"))
    assert abs(cf - rnd) < 0.03
    assert content > 2 * rnd
    md = (out / "results.md").read_text()
    assert "| demographic_popularity |" in md and "| content |" in md


def test_request_time_items_personalise_and_are_never_recommended(ml100k_raw: Path):
    from recforge.data.cold import cold_user_folds
    from recforge.data.movielens import load_movielens
    from recforge.evaluation.cold import ColdBenchmarkConfig, ColdSide, _given_items, _rank_cold, cold_users
    from recforge.registry import create_model

    data = load_movielens("movielens-100k", data_dir=ml100k_raw)
    side = ColdSide(baseline="popularity", given=[0, 5], models=[{"name": "popularity"}, {"name": "ease"}])
    config = ColdBenchmarkConfig(protocol="cold-start", dataset={"data_dir": str(ml100k_raw)}, max_folds=1,
                                 cold_users=side)
    result = cold_users(data, side, config, lambda _: None)
    # EASE knows nothing of an unknown user: it gives the popular list
    assert result["models"]["ease"]["ndcg@10"] == pytest.approx(result["models"]["popularity"]["ndcg@10"], abs=0.02)
    assert set(result["given"]) == {5}
    train, test = cold_user_folds(data, 5, 42)[0]
    train = train.compact()
    model = create_model("ease").fit(train)
    users = np.unique(test.user_map.to_ids(test.user_idx))[:50]
    given = _given_items(test, users, 5, "random", np.random.default_rng(0))
    items = _rank_cold(model, users, None, given)
    cold = _rank_cold(model, users, None, None)
    # five folded-in items personalise the list: most users get a list unlike the popular one
    assert np.mean([len(set(a) & set(b)) < 10 for a, b in zip(items[:, :10], cold[:, :10], strict=True)]) > 0.9
    for row, u in enumerate(users):
        assert len(given[u]) == 5
        assert not set(model.item_map_.ids[items[row]]) & set(given[u])


def test_given_is_for_cold_users_only(tmp_path: Path):
    path = _write(tmp_path, "protocol: cold-start\ndataset: {data_dir: .}\n"
                            "cold_items: {baseline: random, given: [0, 3], models: [{name: random}]}\n")
    with pytest.raises(ConfigError, match="cold_users only"):
        load_cold_config(path)


def test_given_first_takes_the_earliest_interactions():
    from recforge.data.interactions import Interactions
    from recforge.evaluation.cold import _given_items

    frame = pd.DataFrame({"user_id": ["a"] * 4 + ["b"] * 3, "item_id": ["1", "2", "3", "4", "1", "5", "6"],
                          "timestamp": [40, 10, 30, 20, 7, 9, 8]})
    test = Interactions.from_frame(frame)
    first = _given_items(test, np.array(["a", "b"]), 2, "first", np.random.default_rng(0))
    assert first == {"a": ["2", "4"], "b": ["1", "6"]}
    rand = _given_items(test, np.array(["a", "b"]), 2, "random", np.random.default_rng(0))
    assert all(len(v) == 2 and set(v) <= set(frame[frame["user_id"] == u]["item_id"]) for u, v in rand.items())
