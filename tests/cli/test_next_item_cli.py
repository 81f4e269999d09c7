"""The next-item protocol through the CLI: train `transition` on next_train.tsv, recommend
from the users' sequences, evaluate on next_test.tsv (PROTOCOL.md's reference figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.registry import load_model

runner = CliRunner()


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def test_transition_trains_recommends_and_evaluates_on_the_next_item_split(ml100k_bench: Path, tmp_path: Path):
    model_dir = tmp_path / "transition"
    result = run("train", "--model", "transition", "--data", ml100k_bench / "next_train.tsv", "--out", model_dir,
                 "--quiet")
    assert result.exit_code == 0, result.output
    out = tmp_path / "recs.tsv"
    result = run("recommend", "--model", model_dir, "--users", "1", "--k", "5", "--out", out)
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out, sep="\t", dtype={"user_id": str, "item_id": str})
    model = load_model(model_dir)
    last = model.user_history(int(model.user_map_.lookup(["1"])[0]))[-1]
    after_last = model.next_item_scores([last])[0]           # the list follows user 1's last item
    assert recs["score"].tolist() == pytest.approx(after_last[model.item_map_.lookup(recs["item_id"])].tolist())
    result = run("evaluate", "--model", model_dir, "--test", ml100k_bench / "next_test.tsv", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]
    # PROTOCOL.md: first-order transitions backed off to popularity, NDCG@10 0.0816 / HR@10 0.1485
    assert (metrics["ndcg@10"], metrics["hr@10"]) == pytest.approx((0.0816, 0.1485), abs=1e-4)
