"""What a newcomer hit (issue 10): uncut tables off a terminal, the same data options on every
command that reads a file, honest --help, settings named in errors and by `models NAME`, no
empty title column, quickstart outside the working directory, bad numbers refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from recforge.cli.main import app
from recforge.registry import available_models, get_model_class
from recforge.testing import tiny_interactions

runner = CliRunner()


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result: object) -> str:
    """The stderr of a failed command: exactly one ``error:`` line and no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny train/test files, once with the usual column names and once with odd ones."""
    tmp = tmp_path_factory.mktemp("newcomer")
    data, held = tiny_interactions()
    frame = data.to_frame()
    frame.to_csv(tmp / "train.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    test = pd.DataFrame({"user_id": data.user_map.ids, "item_id": data.item_map.ids[held],
                         "rating": rng.integers(1, 6, len(held)), "timestamp": 2_000_000})
    test.to_csv(tmp / "test.tsv", sep="\t", index=False)
    odd = {"user_id": "who", "item_id": "what", "rating": "stars", "timestamp": "when"}
    frame.rename(columns=odd).to_csv(tmp / "odd_train.csv", sep=";", index=False)
    test.rename(columns=odd).to_csv(tmp / "odd_test.csv", sep=";", index=False)
    return {"dir": tmp, "train": tmp / "train.tsv", "test": tmp / "test.tsv",
            "odd_train": tmp / "odd_train.csv", "odd_test": tmp / "odd_test.csv"}


@pytest.fixture(scope="module")
def pop_model(files: dict[str, Path]) -> Path:
    out = files["dir"] / "pop"
    result = run("train", "--model", "popularity", "--data", files["train"], "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


ODD = "user=who,item=what,rating=stars,timestamp=when"


# ------------------------------------------------------------------ tables off a terminal
def test_benchmark_piped_prints_whole_numbers_as_markdown(files: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "b.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": {"train": str(files["train"]), "test": str(files["test"])},
        "ks": [2, 5], "curve_k": 5, "n_bootstrap": 20,
        "models": [{"name": "popularity"}, {"name": "itemknn"}],
    }))
    result = run("benchmark", config, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for model in results["models"]:
        row = next(line for line in result.stdout.splitlines() if f"| {model['name']} |" in line
                   or f"| **{model['name']}** |" in line)
        assert f"{model['metrics']['ndcg@2']:.4f}" in row  # e.g. 0.4470, not 0.4…
    assert result.stdout.strip() == (tmp_path / "out" / "results.md").read_text().strip()


def test_rich_tables_are_not_cut_without_a_terminal(files: dict[str, Path], pop_model: Path) -> None:
    listing = run("models")
    assert "…" not in listing.stdout
    for summary in available_models().values():
        assert summary in listing.stdout
    table = run("evaluate", "--model", pop_model, "--test", files["test"], "--k", "2,5")
    metrics = json.loads(run("evaluate", "--model", pop_model, "--test", files["test"], "--k",
                             "2,5", "--json").stdout)["metrics"]
    assert "…" not in table.stdout
    for value in metrics.values():
        assert f"{value:.4f}" in table.stdout
    info = run("data", "info", files["train"]).stdout
    facts = json.loads(run("data", "info", files["train"], "--json").stdout)
    ratings = next(line for line in info.splitlines() if "ratings" in line)
    assert all(f"{value}: {count:,} (" in ratings for value, count in facts["ratings"].items())


# ------------------------------------------------------------------ the same data options
def test_evaluate_reads_non_standard_columns(files: dict[str, Path], pop_model: Path, tmp_path: Path) -> None:
    plain = json.loads(run("evaluate", "--model", pop_model, "--test", files["test"], "--json").stdout)
    missing = run("evaluate", "--model", pop_model, "--test", files["odd_test"])
    assert "--columns user=NAME" in one_error_line(missing)
    odd = run("evaluate", "--model", pop_model, "--test", files["odd_test"], "--columns", ODD,
              "--sep", ";", "--train", files["odd_train"], "--json")
    assert odd.exit_code == 0, odd.output
    assert json.loads(odd.stdout)["metrics"] == pytest.approx(plain["metrics"])


def test_train_predict_and_split_take_the_same_data_options(files: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m"
    trained = run("train", "--model", "popularity", "--data", files["odd_train"], "--columns", ODD,
                  "--delimiter", "semicolon", "--header", "--out", model, "--quiet")
    assert trained.exit_code == 0, trained.output
    headerless = tmp_path / "pairs.txt"
    headerless.write_text("u00|i01\nu01|i02\n")
    pred = run("predict", "--model", model, "--pairs", headerless, "--sep", "pipe", "--no-header",
               "--out", tmp_path / "p.tsv")
    assert pred.exit_code == 0, pred.output
    assert pd.read_csv(tmp_path / "p.tsv", sep="\t")["user_id"].tolist() == ["u00", "u01"]
    split = run("data", "split", files["odd_train"], "--columns", ODD, "--sep", ";",
                "--out", tmp_path / "s")
    assert split.exit_code == 0, split.output
    assert (tmp_path / "s" / "train.tsv").read_text().startswith("user_id\titem_id\trating\ttimestamp\n")
    wrong = run("data", "info", files["odd_train"], "--columns", ODD, "--sep", "tab")
    assert "missing column 'who'" in one_error_line(wrong)
    builtin = run("data", "info", "synthetic", "--no-header")
    assert "--header/--no-header applies to data files" in one_error_line(builtin)


# ------------------------------------------------------------------ --help
def test_train_help_marks_required_flags_and_defaults() -> None:
    text = run("train", "--help").stdout
    assert re.search(r"--model <str>\s+Registered model name.*\s+\[required\]", text)
    assert "--quiet / --no-quiet" in text and "[default: no-quiet]" in text
    assert re.search(r"--task <str>(.|\n)*?\[default: \(the model's", text)
    assert re.search(r"--threads <int range>(.|\n)*?\[default: \(torch's", text)


@pytest.mark.parametrize("command", [
    ["train"], ["recommend"], ["predict"], ["similar"], ["evaluate"], ["benchmark"], ["models"],
    ["quickstart"], ["serve"], ["retrain"], ["keys", "create"], ["data", "info"],
    ["data", "split"], ["data", "folds"],
])
def test_no_help_shows_a_flag_as_taking_a_bool(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout
    assert "<bool>" not in result.stdout and "╭" not in result.stdout


# ------------------------------------------------------------------ settings
def test_bad_setting_names_the_key_and_lists_the_valid_ones(files: dict[str, Path], tmp_path: Path) -> None:
    unknown = one_error_line(run("train", "--model", "ease", "--data", files["train"],
                                 "--out", tmp_path / "m", "--set", "alpha=abc"))
    assert "unknown setting 'alpha'" in unknown
    assert "regularization (float, default 600.0)" in unknown and "implicit (bool, default True)" in unknown
    assert "recforge models ease" in unknown
    mistyped = one_error_line(run("train", "--model", "ease", "--data", files["train"],
                                  "--out", tmp_path / "m", "--set", "regularization=abc"))
    assert "regularization: " in mistyped and "(got 'abc')" in mistyped and "valid settings: " in mistyped
    assert not (tmp_path / "m").exists()


def test_models_name_prints_every_setting_from_the_config_class() -> None:
    result = run("models", "ease")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()[2:]
            if line.strip() and line.split()[0] in {"task", "seed", "regularization", "implicit"}}
    assert rows == {"task": ["topn|rating", "'topn'"], "seed": ["int", "42"],
                    "regularization": ["float", "600.0"], "implicit": ["bool", "True"]}
    assert "L2 penalty on the item-item weights" in result.stdout  # the field's docstring
    for name in available_models():
        listed = run("models", name)
        assert listed.exit_code == 0, listed.output
        fields = get_model_class(name).config_class.model_fields
        assert all(re.search(rf"^ ?{f}\s", listed.stdout, re.M) for f in fields), name


def test_unknown_model_is_one_line_listing_the_known_ones(files: dict[str, Path], tmp_path: Path) -> None:
    for result in (run("models", "nope"),
                   run("train", "--model", "nope", "--data", files["train"], "--out", tmp_path / "m")):
        line = one_error_line(result)
        assert "unknown model 'nope'" in line and "ease" in line and "two_tower" in line


# ------------------------------------------------------------------ titles
def test_no_title_column_without_titles_and_one_with_them(files: dict[str, Path], pop_model: Path,
                                                         tmp_path: Path) -> None:
    for args in (["recommend", "--model", pop_model, "--users", "u00", "--k", "3"],
                 ["similar", "--model", pop_model, "--item", "i01", "--k", "3"]):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "title" not in result.stdout.splitlines()[0].split()
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i:02d},Film [{i}]\n" for i in range(20)))
    titled = tmp_path / "titled"
    assert run("train", "--model", "popularity", "--data", files["train"], "--items", items,
               "--out", titled, "--quiet").exit_code == 0
    result = run("recommend", "--model", titled, "--users", "u00", "--k", "3")
    assert result.stdout.splitlines()[0].split()[:4] == ["user_id", "item_id", "rank", "title"]
    assert re.search(r"Film \[\d+\]", result.stdout)  # brackets are text, not rich markup


# ------------------------------------------------------------------ quickstart
def test_quickstart_writes_outside_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(cache))
    result = run("quickstart", "--synthetic", "--model", "popularity")
    assert result.exit_code == 0, result.output
    assert list(work.iterdir()) == []
    assert (cache / "quickstart" / "model" / "meta.json").is_file()
    assert f"--model {cache / 'quickstart' / 'model'}" in result.stdout


# ------------------------------------------------------------------ bad numbers
@pytest.mark.parametrize(("column", "value"), [("rating", "1e308"), ("rating", "inf"),
                                               ("timestamp", "1e30")])
def test_out_of_range_numbers_are_refused_by_every_command(files: dict[str, Path], pop_model: Path,
                                                            tmp_path: Path, column: str, value: str) -> None:
    frame = pd.read_csv(files["train"], sep="\t", dtype=str)
    frame.loc[5, column] = value
    bad = tmp_path / "bad.tsv"
    frame.to_csv(bad, sep="\t", index=False)
    expected = f"column {column!r} has 1 non-finite or out-of-range values (first: row 6"
    outputs = {"split": tmp_path / "split", "train": tmp_path / "model"}
    for result in (run("data", "split", bad, "--out", outputs["split"]),
                   run("data", "info", bad),
                   run("train", "--model", "popularity", "--data", bad, "--out", outputs["train"]),
                   run("evaluate", "--model", pop_model, "--test", bad)):
        assert expected in one_error_line(result)
    assert not any(path.exists() for path in outputs.values())
