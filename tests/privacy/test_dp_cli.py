"""`recforge train --dp-epsilon`: the guarantee is printed and recorded; models without DP refuse it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recforge.cli.main import app

runner = CliRunner()


def test_train_with_dp_epsilon_prints_and_records_the_guarantee(tmp_path: Path, ml100k_bench: Path):
    out = tmp_path / "pop"
    result = runner.invoke(app, ["train", "--model", "popularity", "--data", str(ml100k_bench / "topn_train.tsv"),
                                 "--out", str(out), "--dp-epsilon", "2"])
    assert result.exit_code == 0, result.output
    assert "ε = 2" in result.output and "unit: user" in result.output
    privacy = json.loads((out / "meta.json").read_text())["privacy"]
    assert privacy["epsilon"] == 2.0 and privacy["accountant"] == "laplace"


def test_dp_epsilon_on_a_model_without_dp_is_one_clear_line(tmp_path: Path, ml100k_bench: Path):
    result = runner.invoke(app, ["train", "--model", "ease", "--data", str(ml100k_bench / "topn_train.tsv"),
                                 "--out", str(tmp_path / "e"), "--dp-epsilon", "1", "--quiet"])
    assert result.exit_code != 0
    assert "no differentially private training" in result.output
    assert "Traceback" not in result.output


def test_dp_epsilon_with_several_processes_is_refused_in_one_line(tmp_path: Path, ml100k_bench: Path):
    result = runner.invoke(app, ["train", "--model", "mf", "--data", str(ml100k_bench / "topn_train.tsv"),
                                 "--out", str(tmp_path / "m"), "--dp-epsilon", "1", "--nproc", "2", "--quiet"])
    assert result.exit_code != 0
    assert "drop --nproc" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()
