"""End-to-end CLI runs on ML-100K: train, recommend, predict, similar, and error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.registry import available_models, create_model

runner = CliRunner()


def run(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pop_model(tmp_path_factory: pytest.TempPathFactory, ml100k_bench: Path) -> Path:
    out = tmp_path_factory.mktemp("cli") / "pop"
    result = run("train", "--model", "popularity", "--data", ml100k_bench / "topn_train.tsv",
                 "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_models_lists_every_registered_model():
    result = run("models")
    assert result.exit_code == 0
    for name in available_models():
        assert name in result.output


def test_recommend_all_users_never_returns_training_items(pop_model: Path, ml100k_bench: Path, tmp_path: Path):
    out = tmp_path / "recs.tsv"
    result = run("recommend", "--model", pop_model, "--users", "all", "--k", "20", "--out", out)
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert recs["user_id"].nunique() == 943
    assert (recs.groupby("user_id")["rank"].apply(list) == [list(range(1, 21))] * 943).all()
    train = pd.read_csv(ml100k_bench / "topn_train.tsv", sep="\t", dtype={"user_id": str, "item_id": str})
    clash = recs.merge(train, on=["user_id", "item_id"])
    assert clash.empty
    scores = recs.groupby("user_id")["score"].apply(lambda s: bool(np.all(np.diff(s.to_numpy()) <= 0)))
    assert scores.all()


def test_predict_rating_pairs_from_u1_test(ml100k_bench: Path, tmp_path: Path):
    model = tmp_path / "m"
    result = run("train", "--model", "popularity", "--task", "rating", "--data", ml100k_bench / "u1.base",
                 "--out", model, "--quiet")
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred.tsv"
    result = run("predict", "--model", model, "--pairs", ml100k_bench / "u1.test", "--out", out)
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str})
    assert list(pred.columns) == ["user_id", "item_id", "prediction"]
    truth = pd.read_csv(ml100k_bench / "u1.test", sep="\t", header=None,
                        names=["user_id", "item_id", "rating", "ts"], dtype={"user_id": str, "item_id": str})
    assert len(pred) == len(truth) == 20000
    assert (pred["user_id"] == truth["user_id"]).all()
    assert pred["prediction"].between(1, 5).all()
    rmse = float(np.sqrt(np.mean((pred["prediction"] - truth["rating"]) ** 2)))
    assert rmse < 1.1537  # the damped item mean beats the global mean (PROTOCOL.md)


def test_similar_json(pop_model: Path):
    result = run("similar", "--model", pop_model, "--item", "50", "--k", "5", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 5 and all(r["similar_item_id"] != "50" for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "nope", "--data", "x.tsv", "--out", "o"], "unknown model"),
        (["recommend", "--model", "/nonexistent/model", "--users", "1"], "does not exist"),
        (["similar", "--model", "MODEL", "--item", "no-such-item"], "unknown item"),
        (["recommend", "--model", "MODEL", "--users", "no-such-user"], "unknown user"),
        (["train", "--model", "popularity", "--data", "x.tsv", "--out", "o", "--set", "damping=-1"],
         "damping"),
    ],
)
def test_errors_are_one_line(args: list[str], message: str, pop_model: Path):
    args = [str(pop_model) if a == "MODEL" else a for a in args]
    result = run(*args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_corrupt_artifact_is_refused(pop_model: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in pop_model.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "item_ids.json").write_text("[")
    result = run("recommend", "--model", broken, "--users", "1")
    assert result.exit_code == 1 and "corrupt" in result.output


def test_console_script_reports_errors_without_traceback(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,rating\n1,2,five\n")
    proc = subprocess.run([sys.executable, "-m", "recforge.cli.main", "train", "--model", "popularity",
                           "--data", str(bad), "--out", str(tmp_path / "m"), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "rating" in proc.stderr


def test_recommend_explain_names_training_items_of_the_user(ml100k_bench: Path, tmp_path: Path):
    model = tmp_path / "ease"
    assert run("train", "--model", "ease", "--data", ml100k_bench / "topn_train.tsv", "--out", model,
               "--quiet").exit_code == 0
    out = tmp_path / "recs.tsv"
    result = run("recommend", "--model", model, "--users", "1,2", "--k", "5", "--explain", "--out", out)
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out, sep="\t", dtype=str)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score", "because"]
    train = pd.read_csv(ml100k_bench / "topn_train.tsv", sep="\t", dtype=str)
    for row in recs.itertuples():
        named = [part.split(" ")[0] for part in row.because.split(", ")]
        assert set(named) <= set(train.loc[train["user_id"] == row.user_id, "item_id"])


@pytest.mark.parametrize("odd_id", [None, "tab\there"])
def test_the_list_writer_equals_the_recommend_frame(tmp_path: Path, odd_id: str | None):
    """`recommend --out` writes the ranked lists directly (pyarrow); the rows equal `recommend`'s
    frame, scores to float32 precision, and an ID with a tab is quoted like pandas does."""
    from recforge.cli.models import write_ranked_lists
    from recforge.data.interactions import IdMap
    from recforge.testing import tiny_interactions

    data, _ = tiny_interactions()
    if odd_id is not None:
        ids = data.user_map.ids.copy()
        ids[3] = odd_id
        data = type(data)(**{**data.__dict__, "user_map": IdMap(ids)})
    model = create_model("ials", embedding_dim=4, epochs=3).fit(data)
    users = [*model.user_map_.ids[:6], "nobody"]
    lists = model.rank_users(users, k=5, unknown="fallback")
    out = tmp_path / "recs.tsv"
    n_rows, n_users = write_ranked_lists(out, users, lists, model.item_map_.ids, with_fallback=True)
    written = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str}, keep_default_na=False)
    expected = model.recommend(users, k=5, unknown="fallback")
    assert (n_rows, n_users) == (len(expected), 7)
    for col in ("user_id", "item_id", "rank"):
        assert written[col].tolist() == expected[col].tolist(), col
    np.testing.assert_allclose(written["score"], expected["score"], rtol=1e-6)
    assert written["fallback"].tolist() == expected["fallback"].fillna("").tolist()
