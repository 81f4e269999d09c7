"""`recforge quickstart` runs the main job end to end and leaves a loadable model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.registry import load_model


def test_quickstart_on_ml100k(ml100k_raw: Path, tmp_path: Path):
    out = tmp_path / "qs"
    result = CliRunner().invoke(app, ["quickstart", "--data-dir", str(ml100k_raw), "--out", str(out), "--k", "5"])
    assert result.exit_code == 0, result.output
    assert "943 users, 1682 items, 100000 interactions" in result.output
    ndcg = float(next(line for line in result.output.splitlines() if "ndcg@10" in line).split()[-2])
    assert ndcg > 0.40  # EASE on a per-user 80/20 split of ML-100K; popularity is ~0.22
    model = load_model(out / "model")
    recs = model.recommend([model.user_map_.ids[0]], k=5)
    titles = model.item_features_.loc[recs["item_id"], "title"]
    assert all(t in result.output for t in titles)
    train = pd.read_csv(out / "split" / "train.tsv", sep="\t")
    test = pd.read_csv(out / "split" / "test.tsv", sep="\t")
    assert len(train) + len(test) == 100000


def test_quickstart_synthetic_runs_offline(tmp_path: Path):
    result = CliRunner().invoke(app, ["quickstart", "--synthetic", "--out", str(tmp_path / "qs"), "--model",
                                      "popularity"])
    assert result.exit_code == 0, result.output
    assert "5. recommend" in result.output
    assert (tmp_path / "qs" / "model" / "meta.json").is_file()
