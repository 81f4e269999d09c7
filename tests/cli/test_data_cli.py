"""`recforge data` commands through Typer's runner: output, files, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recforge.cli.data import app

SHARED = Path(__file__).resolve().parents[3] / "shared"
runner = CliRunner()


def _log(tmp_path: Path, text: str = "user,item,rating,timestamp\n1,10,4,100\n1,20,5,200\n"
         "2,10,3,300\n2,30,4,400\n3,20,2,500\n") -> Path:
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def test_info_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(_log(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert (facts["users"], facts["items"], facts["interactions"]) == (3, 3, 5)
    assert facts["ratings"] == {"2": 1, "3": 1, "4": 2, "5": 1}
    assert facts["per_item"]["max"] == 2.0


def test_info_table_synthetic() -> None:
    result = runner.invoke(app, ["info", "synthetic", "--users", "30", "--items", "20",
                                 "--interactions", "200"])
    assert result.exit_code == 0, result.output
    assert "interactions" in result.stdout and "200" in result.stdout
    assert "time span" in result.stdout


def test_split_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "split"
    result = runner.invoke(app, ["split", "synthetic", "--method", "leave-last", "--out",
                                 str(out), "--users", "50", "--items", "40",
                                 "--interactions", "600"])
    assert result.exit_code == 0, result.output
    assert "train: " in result.stdout and "test: 50 interactions" in result.stdout
    lines = (out / "test.tsv").read_text().splitlines()
    assert lines[0] == "user_id\titem_id\trating\ttimestamp" and len(lines) == 51


def test_split_with_columns(tmp_path: Path) -> None:
    log = _log(tmp_path, "who,what\na,x\na,y\nb,x\nb,y\nb,z\n")
    result = runner.invoke(app, ["split", str(log), "--method", "ratio", "--test-ratio", "0.4",
                                 "--out", str(tmp_path / "o"), "--columns", "user=who,item=what"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "train.tsv").read_text().startswith("user_id\titem_id\n")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("user,thing\n1,2\n", "missing column 'item_id' (columns: user, thing)"),
     ("user,item,rating\n1,2,great\n", "non-numeric"),
     ("", "empty")],
)
def test_malformed_csv_one_line_error(tmp_path: Path, text: str, pattern: str) -> None:
    log = _log(tmp_path, text)
    for args in (["info", str(log)], ["split", str(log), "--out", str(tmp_path / "o")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0]
        assert "Traceback" not in result.output


def test_bad_method_and_unknown_dataset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["split", "synthetic", "--method", "magic", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 1 and "unknown split method 'magic'" in result.stderr
    result = runner.invoke(app, ["info", "movielens-7k"])
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown dataset")


def test_folds(tmp_path: Path) -> None:
    data, bench = SHARED / "data" / "ml-100k", SHARED / "bench" / "ml-100k"
    if not (data / "u.data").is_file() or not (bench / "u1.test").is_file():
        pytest.skip("shared ML-100K data not available")
    result = runner.invoke(app, ["folds", "movielens-100k", "--data-dir", str(data),
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "u3.test").read_bytes() == (bench / "u3.test").read_bytes()
    result = runner.invoke(app, ["folds", "synthetic", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "movielens-100k only" in result.stderr


def test_split_cold_users_and_items_hold_out_whole_ids(tmp_path: Path) -> None:
    import pandas as pd

    from recforge.cli.main import app as main_app

    for method, col in (("cold-users", "user_id"), ("cold-items", "item_id")):
        out = tmp_path / method
        result = runner.invoke(main_app, ["data", "split", "synthetic", "--method", method, "--out", str(out)])
        assert result.exit_code == 0, result.output
        train = pd.read_csv(out / "train.tsv", sep="\t", dtype=str)
        test = pd.read_csv(out / "test.tsv", sep="\t", dtype=str)
        assert not set(train[col]) & set(test[col])
        assert 0.05 < test[col].nunique() / (train[col].nunique() + test[col].nunique()) < 0.3
