"""Benchmark runs on a tiny synthetic TSV pair (popularity only), report files, README sync."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recforge.errors import ConfigError, DataError
from recforge.evaluation.benchmark import BenchmarkConfig, load_config, read_config, run_benchmark, split_interactions
from recforge.evaluation.report import main as report_main
from recforge.evaluation.report import update_readme
from recforge.testing import tiny_interactions

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def tsv_pair(tmp_path: Path) -> Path:
    """data/train.tsv and data/test.tsv (headed, tab-separated, with ratings)."""
    data, held = tiny_interactions()
    rng = np.random.default_rng(0)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data.to_frame().to_csv(data_dir / "train.tsv", sep="\t", index=False)
    test = pd.DataFrame({
        "user_id": data.user_map.ids,
        "item_id": data.item_map.ids[held],
        "rating": rng.integers(1, 6, len(held)),
        "timestamp": 2_000_000 + np.arange(len(held)),
    })
    test.to_csv(data_dir / "test.tsv", sep="\t", index=False)
    return tmp_path


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _topn_config(tmp: Path) -> Path:
    """A config one directory below the data: paths relative to the YAML file."""
    (tmp / "bench").mkdir(exist_ok=True)
    return _write(tmp / "bench" / "tiny.yaml", {
        "dataset": {"name": "tiny", "train": "../data/train.tsv", "test": "../data/test.tsv"},
        "task": "topn",
        "ks": [2, 5],
        "curve_k": 8,
        "n_bootstrap": 50,
        "models": [
            {"name": "popularity"},
            {"name": "popularity", "label": "pop-again", "params": {"damping": 1.0}},
            {"name": "popularity", "label": "broken", "params": {"no_such_setting": 1}},
        ],
    })


def test_topn_benchmark_writes_results_markdown_and_html(tsv_pair: Path):
    out = tsv_pair / "out"
    results = run_benchmark(_topn_config(tsv_pair), out, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert set(on_disk) == {"dataset", "protocol", "models", "best", "significance"}
    ok, again, broken = on_disk["models"]
    assert {"name", "params", "metrics", "train_seconds", "recommend_seconds"} <= set(ok)
    assert ok["name"] == "popularity" and ok["params"] == {"task": "topn"}
    assert again["name"] == "pop-again" and again["model"] == "popularity"
    assert {"ndcg@2", "recall@5", "coverage@5", "precision@2", "map@5"} <= set(ok["metrics"])
    assert ok["train_seconds"] >= 0 and ok["recommend_seconds"] >= 0
    assert ok["ci"]["ndcg@2"][0] <= ok["metrics"]["ndcg@2"] <= ok["ci"]["ndcg@2"][1]
    assert broken["name"] == "broken" and "no_such_setting" in broken["error"]
    assert "metrics" not in broken
    assert on_disk["best"] in {"popularity", "pop-again"}
    assert on_disk["protocol"]["cpu_count"] >= 1
    sig = on_disk["significance"]
    assert sig and all(set(s) == {"model", "vs", "metric", "p_wilcoxon", "p_ttest"} for s in sig)
    assert {s["metric"] for s in sig} == {"ndcg@2", "recall@5"}
    assert all(s["p_wilcoxon"] == 1.0 for s in sig)          # identical rankings

    md = (out / "results.md").read_text()
    assert "| model | NDCG@2 | Recall@5 |" in md
    assert "train s" in md and "threads" in md
    assert "| broken | failed: " in md
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') >= 3   # bars, curves, times
    assert "Significance" in page and "pop-again" in page


def test_table_metrics_choose_the_columns_and_the_table_gives_p_against_the_best(tsv_pair: Path):
    config = _write(tsv_pair / "cols.yaml", {
        "dataset": {"train": "data/train.tsv", "test": "data/test.tsv"},
        "ks": [2, 5], "n_bootstrap": 20, "table_metrics": ["HR@5", "mrr@2"],
        "models": [{"name": "popularity"}, {"name": "ease"}],
    })
    results = run_benchmark(config, tsv_pair / "cols-out", progress=False)
    assert results["best"] == "ease" and results["protocol"]["table"] == ["hr@5", "mrr@2"]
    p_pop = next(s["p_wilcoxon"] for s in results["significance"]
                 if s["model"] == "popularity" and s["metric"] == "ndcg@2")
    md = (tsv_pair / "cols-out" / "results.md").read_text()
    assert "| model | HR@5 | MRR@2 | p vs best | train s |" in md
    rows = {line.split(" | ")[0].strip("| *"): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert rows["ease"][3] == "best"
    assert rows["popularity"][3] == (f"{p_pop:.2e}" if p_pop < 1e-3 else f"{p_pop:.4f}")
    with pytest.raises(ConfigError, match="'hr@50' is not computed"):
        load_config(_write(tsv_pair / "bad.yaml", {**yaml.safe_load(config.read_text()), "table_metrics": ["hr@50"]}))


def test_exclude_seen_false_ranks_the_users_own_items_for_re_consumption(tsv_pair: Path):
    data, _ = tiny_interactions()
    again = data.to_frame().groupby("user_id").head(1)   # every user consumes a training item again
    again.to_csv(tsv_pair / "data" / "again.tsv", sep="\t", index=False)
    base = {"dataset": {"train": "data/train.tsv", "test": "data/again.tsv"}, "ks": [5], "n_bootstrap": 20,
            "models": [{"name": "popularity"}]}
    excluded = run_benchmark(_write(tsv_pair / "ex.yaml", base), tsv_pair / "ex", progress=False)
    kept = run_benchmark(_write(tsv_pair / "keep.yaml", {**base, "exclude_seen": False}), tsv_pair / "keep",
                         progress=False)
    assert excluded["models"][0]["metrics"]["hr@5"] == 0.0 and excluded["protocol"]["exclude_seen"] is True
    assert kept["models"][0]["metrics"]["hr@5"] > 0.0 and kept["protocol"]["exclude_seen"] is False
    assert "the user's own included" in (tsv_pair / "keep" / "results.md").read_text()


def test_rating_benchmark(tsv_pair: Path):
    config = _write(tsv_pair / "rating.yaml", {
        "dataset": {"train": str(tsv_pair / "data" / "train.tsv"),    # absolute paths work too
                    "test": str(tsv_pair / "data" / "test.tsv")},
        "task": "rating",
        "n_bootstrap": 20,
        "models": [{"name": "popularity", "params": {"task": "rating"}},
                   {"name": "popularity", "label": "damped", "params": {"damping": 20}}],
    })
    results = run_benchmark(config, tsv_pair / "rating-out", progress=False)
    first, second = results["models"]
    assert second["params"]["task"] == "rating"
    assert {"rmse", "mae", "accuracy", "auc"} <= set(first["metrics"])
    assert results["best"] == min(results["models"], key=lambda m: m["metrics"]["rmse"])["name"]
    assert {s["metric"] for s in results["significance"]} == {"rmse", "mae"}
    assert "| model | RMSE | MAE |" in (tsv_pair / "rating-out" / "results.md").read_text()


def test_config_errors_are_one_line(tmp_path: Path):
    base = {"dataset": {"train": "a.tsv", "test": "b.tsv"}, "models": [{"name": "popularity"}]}
    with pytest.raises(ConfigError, match="colour: Extra inputs"):
        load_config(_write(tmp_path / "x.yaml", {**base, "colour": "red"}))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        load_config(_write(tmp_path / "x.yaml", {**base, "models": [{"name": "nope"}]}))
    with pytest.raises(ConfigError, match="unique"):
        load_config(_write(tmp_path / "x.yaml", {**base, "models": [{"name": "popularity"}] * 2}))
    with pytest.raises(ConfigError, match="not computed"):
        load_config(_write(tmp_path / "x.yaml", {**base, "primary": "ndcg@7"}))
    with pytest.raises(DataError, match="does not exist"):
        run_benchmark(_write(tmp_path / "x.yaml", base), tmp_path / "o", progress=False)


def test_shipped_benchmark_configs_are_valid():
    topn = load_config(BENCHMARKS / "ml100k-topn.yaml")
    assert [m.name for m in topn.models] == ["popularity", "itemknn", "userknn", "ease", "ials",
                                             "mf", "bpr", "ncf", "multvae"]
    assert topn.dataset.train == "../../shared/bench/ml-100k/topn_train.tsv"
    # the next-item protocols; gru4rec and sasrec need not be registered for the YAML to be checked
    for name, train in (("ml100k-next-item.yaml", "../../shared/bench/ml-100k/next_train.tsv"),
                        ("ml1m-next-item.yaml", None)):
        nxt = read_config(BENCHMARKS / name, BenchmarkConfig)
        assert [m.name for m in nxt.models if m.name != "ease" or not m.label] == [
            "popularity", "transition", "ease", "ials", "gru4rec", "sasrec"]
        assert nxt.ks == [10, 20] and nxt.primary_metric() == "ndcg@10" and nxt.dataset.train == train
        assert nxt.table_metrics == ["ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20", "mrr@20"]
    ml1m = read_config(BENCHMARKS / "ml1m-next-item.yaml", BenchmarkConfig).dataset
    assert ml1m.builtin == "movielens-1m" and ml1m.split is not None and ml1m.split.method == "leave_one_out"
    rating = load_config(BENCHMARKS / "ml100k-rating.yaml")
    assert rating.task == "rating"
    assert [m.name for m in rating.models] == ["popularity", "itemknn", "userknn", "mf", "autorec"]


def test_split_interactions_holds_out_per_user():
    data, _ = tiny_interactions()
    train, test = split_interactions(data, "random", 0.2, seed=1)
    assert len(train) + len(test) == len(data)
    per_user = np.bincount(test.user_idx, minlength=data.n_users)
    counts = data.user_counts()
    np.testing.assert_array_equal(per_user, np.maximum(1, np.round(counts * 0.2)))
    _, last = split_interactions(data, "leave_one_out")
    assert np.all(np.bincount(last.user_idx, minlength=data.n_users) == 1)
    latest = data.to_frame().groupby("user_id")["timestamp"].max()
    assert (last.to_frame().set_index("user_id")["timestamp"] == latest).all()


def test_readme_section_is_regenerated(tmp_path: Path, capsys):
    results = tmp_path / "res"
    results.mkdir()
    (results / "results.md").write_text("| model | NDCG@10 |\n|---|---:|\n| popularity | 0.2233 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:topn:start -->\nold\n<!-- results:topn:end -->\ntail\n"
                      "<!-- results:rating:start --><!-- results:rating:end -->\n")
    assert report_main(["--readme", str(readme), "--results", str(results), "--section", "topn"]) == 0
    text = readme.read_text()
    assert "old" not in text and "| popularity | 0.2233 |" in text and text.endswith(
        "tail\n<!-- results:rating:start --><!-- results:rating:end -->\n")
    assert update_readme(readme, results, "topn") is False        # idempotent
    assert report_main(["--readme", str(readme), "--results", str(results), "--section", "x"]) == 1
    assert "lacks the markers" in capsys.readouterr().err
