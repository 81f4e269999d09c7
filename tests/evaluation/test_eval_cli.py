"""`recforge evaluate` / `recforge benchmark` on tiny files: JSON output, --recs, error lines."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from recforge.cli.evaluate import benchmark_command, evaluate_command, parse_ks
from recforge.data.files import load_file
from recforge.errors import ConfigError
from recforge.evaluation.evaluate import evaluate_topn
from recforge.registry import create_model
from recforge.testing import tiny_interactions

app = typer.Typer(pretty_exceptions_enable=False)
app.command("evaluate")(evaluate_command)
app.command("benchmark")(benchmark_command)
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("evalcli")
    data, held = tiny_interactions()
    data.to_frame().to_csv(tmp / "train.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    pd.DataFrame({"user_id": data.user_map.ids, "item_id": data.item_map.ids[held],
                  "rating": rng.integers(1, 6, len(held))}).to_csv(tmp / "test.tsv", sep="\t",
                                                                  index=False)
    train = load_file(tmp / "train.tsv")
    model = create_model("popularity").fit(train)
    model.save(tmp / "pop")
    create_model("popularity", task="rating").fit(train).save(tmp / "pop-rating")
    recs = model.recommend(model.user_map_.ids, k=5)
    recs.to_csv(tmp / "recs.tsv", sep="\t", index=False, float_format="%.6g")
    return {"dir": tmp, "train": tmp / "train.tsv", "test": tmp / "test.tsv",
            "model": tmp / "pop", "rating": tmp / "pop-rating", "recs": tmp / "recs.tsv"}


def test_evaluate_model_json(files):
    result = run("evaluate", "--model", files["model"], "--test", files["test"], "--k", "2,5",
                 "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["task"] == "topn" and payload["users"] == 24
    assert {"ndcg@2", "recall@5", "coverage@5"} <= set(payload["metrics"])
    model = create_model("popularity").fit(load_file(files["train"]))
    direct = evaluate_topn(model, load_file(files["test"]), ks=(2, 5))
    assert payload["metrics"]["ndcg@2"] == pytest.approx(direct.metrics["ndcg@2"])


def test_scoring_recommend_output_agrees_with_the_model(files):
    by_model = json.loads(run("evaluate", "--model", files["model"], "--test", files["test"],
                              "--k", "2,5", "--json").stdout)
    by_lists = run("evaluate", "--recs", files["recs"], "--train", files["train"], "--test",
                   files["test"], "--k", "2,5", "--json")
    assert by_lists.exit_code == 0, by_lists.output
    lists = json.loads(by_lists.stdout)
    assert lists["metrics"].keys() == by_model["metrics"].keys()
    for name, value in by_model["metrics"].items():
        assert lists["metrics"][name] == pytest.approx(value), name


def test_recs_with_a_training_item_is_an_error_line(files, tmp_path: Path):
    train = pd.read_csv(files["train"], sep="\t", dtype=str)
    bad = pd.DataFrame({"user_id": [train["user_id"][0]], "item_id": [train["item_id"][0]],
                        "rank": [1]})
    bad.to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    result = run("evaluate", "--recs", tmp_path / "bad.tsv", "--train", files["train"],
                 "--test", files["test"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "training items of their user" in result.stderr
    assert "Traceback" not in result.output


def test_rating_and_sampled_tasks_and_table_output(files):
    rating = run("evaluate", "--model", files["rating"], "--test", files["test"], "--json")
    assert rating.exit_code == 0, rating.output
    assert {"rmse", "mae", "auc"} <= set(json.loads(rating.stdout)["metrics"])
    sampled = run("evaluate", "--model", files["model"], "--test", files["test"], "--task",
                  "sampled", "--negatives", "5", "--k", "3", "--json")
    assert json.loads(sampled.stdout)["metrics"].keys() == {"sampled_hr@3", "sampled_ndcg@3",
                                                            "sampled_mrr@3"}
    table = run("evaluate", "--model", files["model"], "--test", files["test"])
    assert table.exit_code == 0 and "NDCG" in table.stdout and "@20" in table.stdout


def test_usage_errors(files):
    nothing = run("evaluate", "--test", files["test"])
    assert nothing.exit_code == 1 and "--model" in nothing.stderr
    wrong = run("evaluate", "--model", files["model"], "--test", files["test"], "--train",
                files["test"])
    assert wrong.exit_code == 1 and "not trained on" in wrong.stderr
    with pytest.raises(ConfigError):
        parse_ks("10,x")
    assert parse_ks("20, 10,10") == [10, 20]


def test_benchmark_command(files, tmp_path: Path):
    config = tmp_path / "b.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": {"train": str(files["train"]), "test": str(files["test"])},
        "ks": [2, 5], "curve_k": 5, "n_bootstrap": 20,
        "models": [{"name": "popularity"}],
    }))
    result = run("benchmark", config, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "results.json").read_text())["best"] == "popularity"
    assert (tmp_path / "out" / "report.html").is_file()
