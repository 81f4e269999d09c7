"""Benchmarks: train several models on one split, evaluate them, write results and a report.

A benchmark is a YAML file (validated by `BenchmarkConfig`, unknown keys rejected)::

    dataset:
      name: ml-100k                 # label in the results
      train: ../../shared/bench/ml-100k/topn_train.tsv   # relative to this YAML file
      test: ../../shared/bench/ml-100k/topn_test.tsv
      # or a built-in dataset and a split instead of train/test:
      # builtin: movielens-100k
      # data_dir: /path/to/local/copy       # optional
      # split: {method: random, test_fraction: 0.2, seed: 0}   # random | temporal | leave_one_out
    task: topn                      # topn (full ranking) | rating (RMSE/MAE)
    ks: [10, 20]
    exclude_seen: true              # topn: leave each user's training items out (false: re-consumption)
    primary: ndcg@10                # picks "best"; default ndcg@10 (topn) / rmse (rating)
    significance_metrics: [ndcg@10, recall@20]   # bootstrap CIs and paired tests vs the best
    table_metrics: [ndcg@10, hr@10]  # columns of results.md (default: the compared, then more)
    models:
      - name: popularity
      - name: itemknn
        label: itemknn-k50          # optional; to run one model with different params
        params: {k: 50}

`run_benchmark` trains each model with ``create_model(name, params).fit(train)`` (the
benchmark's `task` is added to `params` when absent), evaluates it by the protocol, and
writes ``results.json``, ``results.md`` and ``report.html`` (see `recforge.evaluation.report`).
A model that fails to build, train or evaluate is recorded with its error; the rest go on.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recforge.config import describe_validation_error, read_yaml_mapping
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.evaluation.evaluate import (
    LOWER_IS_BETTER,
    EvalResult,
    evaluate_rating,
    evaluate_topn,
)
from recforge.evaluation.stats import bootstrap_ci, paired_test

RATING_METRICS = ("rmse", "mae", "accuracy", "precision", "recall", "f1", "auc", "log_loss")
TOPN_METRICS = ("precision", "recall", "f1", "ndcg", "hr", "map", "mrr", "coverage", "novelty",
                "diversity", "popularity", "gini")


class SplitConfig(BaseModel):
    """How to split a built-in dataset: per user, a `test_fraction` (at least one) is held out.

    ``random``: a random share; ``temporal``: the user's latest share; ``leave_one_out``:
    the user's latest interaction. Users with a single interaction stay in training.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["random", "temporal", "leave_one_out"] = "random"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0


class DatasetConfig(BaseModel):
    """Either `train` + `test` files, or a `builtin` dataset with a `split`."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    train: str | None = None
    test: str | None = None
    builtin: str | None = None
    data_dir: str | None = None
    split: SplitConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatasetConfig:
        files = self.train is not None or self.test is not None
        if files and self.builtin is not None:
            raise ValueError("give either train/test files or a builtin dataset, not both")
        if files and (self.train is None or self.test is None):
            raise ValueError("train and test files go together")
        if not files and self.builtin is None:
            raise ValueError("give train and test files, or a builtin dataset with a split")
        if self.builtin is not None and self.split is None:
            self.split = SplitConfig()
        return self


class ModelEntry(BaseModel):
    """One model run: registered `name`, optional unique `label`, and its config `params`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.label or self.name


class BenchmarkConfig(BaseModel):
    """A whole benchmark: data, protocol settings and the models to compare."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig
    task: Literal["topn", "rating"] = "topn"
    ks: list[int] = Field(default_factory=lambda: [10, 20])
    exclude_seen: bool = True
    primary: str | None = None
    significance_metrics: list[str] | None = None
    table_metrics: list[str] | None = None
    curve_k: int = Field(50, ge=1)
    threshold: float = 4.0
    n_bootstrap: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    seed: int = 0
    baseline: str | None = None
    models: list[ModelEntry] = Field(min_length=1)

    @field_validator("ks")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or min(ks) < 1:
            raise ValueError("ks must be positive integers")
        return sorted(set(ks))

    @field_validator("table_metrics")
    @classmethod
    def _lower(cls, names: list[str] | None) -> list[str] | None:
        return [m.lower() for m in names] if names is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> BenchmarkConfig:
        keys = [m.key for m in self.models]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"model labels must be unique (repeated: {', '.join(dup)}); "
                             "give each run of the same model its own label")
        for m in self.models:
            if m.params.get("task", self.task) != self.task:
                raise ValueError(f"model {m.key!r} has task {m.params['task']!r} but the "
                                 f"benchmark task is {self.task!r}")
        known = set(self.metric_names())
        for name in [self.primary_metric(), *self.compared_metrics(), *(self.table_metrics or [])]:
            if name not in known:
                listed = ", ".join(sorted(known))
                raise ValueError(f"metric {name!r} is not computed (known: {listed})")
        if self.baseline is not None and self.baseline not in keys:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models")
        return self

    def metric_names(self) -> list[str]:
        if self.task == "rating":
            return list(RATING_METRICS)
        return [f"{m}@{k}" for k in self.ks for m in TOPN_METRICS]

    def primary_metric(self) -> str:
        if self.primary:
            return self.primary.lower()
        if self.task == "rating":
            return "rmse"
        return f"ndcg@{10 if 10 in self.ks else self.ks[0]}"

    def compared_metrics(self) -> list[str]:
        """Metrics with CIs and paired tests: by default the two headline figures."""
        if self.significance_metrics:
            return [m.lower() for m in self.significance_metrics]
        if self.task == "rating":
            return ["rmse", "mae"]
        out = [self.primary_metric(), f"recall@{20 if 20 in self.ks else self.ks[-1]}"]
        return list(dict.fromkeys(out))


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def read_config(path: str | Path, cls: type[ConfigT]) -> ConfigT:
    """A benchmark YAML validated as `cls` (one ConfigError line on any problem)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "benchmark config")
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None


def check_model_names(path: str | Path, names: Iterable[str]) -> None:
    """ConfigError naming the first model of a benchmark YAML that the registry does not know."""
    from recforge.registry import available_models

    known = available_models()
    for name in names:
        if name not in known:
            raise ConfigError(f"{path}: unknown model {name!r} (known: {', '.join(known)})")


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and validate a benchmark YAML file (one ConfigError line on any problem)."""
    config = read_config(path, BenchmarkConfig)
    check_model_names(path, [m.name for m in config.models])
    return config


# ----------------------------------------------------------------------------- data


def split_interactions(
    data: Interactions, method: str = "random", test_fraction: float = 0.2, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Per-user holdout: round(test_fraction · n) (at least one) of each user's interactions.

    Users with one interaction keep it in training. Returns (train, test) on `data`'s maps;
    vectorized (one lexsort).
    """
    n = len(data)
    counts = data.user_counts()
    if method == "leave_one_out":
        n_test = np.minimum(counts, 1)
    else:
        n_test = np.maximum(1, np.round(counts * test_fraction)).astype(np.int64)
    n_test = np.where(counts >= 2, np.minimum(n_test, counts - 1), 0)
    if method == "random":
        order = np.lexsort((np.random.default_rng(seed).random(n), data.user_idx))
    else:  # latest first; among equal timestamps, the later row in file order first
        ts = data.timestamps if data.timestamps is not None else np.zeros(n, np.int64)
        order = np.lexsort((-np.arange(n), -ts.astype(np.int64), data.user_idx))
    starts = np.concatenate([[0], np.cumsum(counts)])[data.user_idx[order]]
    position = np.arange(n) - starts
    is_test = np.zeros(n, bool)
    is_test[order] = position < n_test[data.user_idx[order]]
    return data.subset(~is_test), data.subset(is_test)


def _resolve(path: str, base: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else (base / p).resolve()


def load_data(
    config: BenchmarkConfig, base_dir: Path
) -> tuple[Interactions, Interactions, dict[str, Any]]:
    """Training and test interactions of a benchmark, with a description for the results."""
    ds = config.dataset
    info: dict[str, Any]
    if ds.builtin is None:
        from recforge.data.files import load_file

        assert ds.train is not None and ds.test is not None  # DatasetConfig's validator
        train_path, test_path = _resolve(ds.train, base_dir), _resolve(ds.test, base_dir)
        for p in (train_path, test_path):
            if not p.is_file():
                raise DataError(f"benchmark data file {p} does not exist")
        train, test = load_file(train_path), load_file(test_path)
        info = {"name": ds.name or train_path.parent.name, "train": ds.train, "test": ds.test}
    else:
        from recforge.data.datasets import load_dataset

        data_dir = _resolve(ds.data_dir, base_dir) if ds.data_dir else None
        data = load_dataset(ds.builtin, data_dir=data_dir)
        split = ds.split or SplitConfig()
        train, test = split_interactions(data, split.method, split.test_fraction, split.seed)
        train = train.compact()
        info = {"name": ds.name or ds.builtin, "builtin": ds.builtin, "split": split.model_dump()}
    if config.task == "rating" and not (train.has_ratings and test.has_ratings):
        raise DataError("task 'rating' needs ratings in both the training and the test data")
    info.update({
        "users": train.n_users, "items": train.n_items, "train_interactions": len(train),
        "test_users": len(np.unique(test.user_idx)), "test_interactions": len(test),
    })
    return train, test, info


# ----------------------------------------------------------------------------- running


def thread_counts() -> dict[str, int | None]:
    """Threads of the run: torch's intra-op threads and the machine's CPUs.

    torch is only asked when a model has already imported it (importing torch just to ask
    costs seconds); ``torch_threads`` is None when no model used torch.
    """
    torch = sys.modules.get("torch")
    torch_threads = int(torch.get_num_threads()) if torch is not None else None
    return {"torch_threads": torch_threads, "cpu_count": os.cpu_count()}


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN/inf to None, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def _confidence_intervals(result: EvalResult, metrics: list[str], config: BenchmarkConfig
                          ) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    ci = functools.partial(bootstrap_ci, n_resamples=config.n_bootstrap,
                           confidence=config.confidence, seed=config.seed)
    for name in metrics:
        if name == "rmse" and "sq_error" in result.samples:
            out[name] = list(ci(result.samples["sq_error"], transform=np.sqrt))
        elif name == "mae" and "abs_error" in result.samples:
            out[name] = list(ci(result.samples["abs_error"]))
        elif name in result.per_user:
            out[name] = list(ci(result.per_user[name]))
    return out


def run_model(entry: ModelEntry, config: BenchmarkConfig, train: Interactions, test: Interactions
              ) -> tuple[dict[str, Any], EvalResult]:
    """Train and evaluate one model; returns its results record and the evaluation."""
    from recforge.registry import create_model

    params = dict(entry.params)
    params.setdefault("task", config.task)
    model = create_model(entry.name, params)
    start = time.perf_counter()
    model.fit(train)
    train_seconds = time.perf_counter() - start
    # a model with its own `threads` setting trains and scores on that many (torch_threads)
    threads = getattr(model.config, "threads", None) or thread_counts()["torch_threads"]
    if config.task == "topn":
        start = time.perf_counter()
        model.recommend_idx(np.arange(model.n_users), k=max(config.ks), exclude_seen=config.exclude_seen)
        recommend_seconds = time.perf_counter() - start
        result = evaluate_topn(model, test, config.ks, depth=max(config.curve_k, *config.ks),
                               exclude_seen=config.exclude_seen)
    else:
        result = evaluate_rating(model, test, threshold=config.threshold)
        recommend_seconds = result.info["predict_seconds"]
    record = {
        "name": entry.key,
        "model": entry.name,
        "params": params,
        "metrics": dict(result.metrics),
        "train_seconds": train_seconds,
        "recommend_seconds": recommend_seconds,
        "threads": threads,
        "ci": _confidence_intervals(result, config.compared_metrics(), config),
    }
    return record, result


def pick_best(records: list[dict[str, Any]], metric: str) -> str | None:
    """Label of the best successful model on `metric` (lower is better for errors)."""
    scored = [(r["metrics"].get(metric), r["name"]) for r in records if "error" not in r]
    scored = [(v, n) for v, n in scored if v is not None and np.isfinite(v)]
    if not scored:
        return None
    lower = metric.partition("@")[0] in LOWER_IS_BETTER
    return (min if lower else max)(scored, key=lambda t: t[0])[1]


def significance(results: dict[str, EvalResult], best: str, metrics: list[str]
                 ) -> list[dict[str, Any]]:
    """Paired tests of every model against the best, on per-user vectors."""
    rows = []
    for name, res in results.items():
        if name == best:
            continue
        for metric in metrics:
            if metric not in res.per_user or metric not in results[best].per_user:
                continue
            test = paired_test(res.per_user[metric], results[best].per_user[metric])
            rows.append({"model": name, "vs": best, "metric": metric,
                         "p_wilcoxon": test.p_wilcoxon, "p_ttest": test.p_ttest})
    return rows


def _warm_up_ranking() -> None:
    """Rank a tiny score matrix once, with and without exclusions, so the compiled kernels are ready."""
    import scipy.sparse as sp

    from recforge import ranking

    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    ranking.top_k(scores, 2)
    seen = sp.csr_matrix(np.eye(3, 4, dtype=np.float32))
    ranking.top_k(scores, 2, exclude=seen)
    ranking.top_k_product(scores[:, :2], scores[:, :2].copy(), 2, exclude=seen[:, :3])


def run_benchmark(
    config_path: str | Path, out_dir: str | Path, *, progress: bool = True, console: Any = None
) -> dict[str, Any]:
    """Run the benchmark in `config_path`; write results.json, results.md, report.html.

    Returns the results dictionary written to ``results.json``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recforge.evaluation import report

    config_path = Path(config_path)
    config = load_config(config_path)
    console = console or Console(stderr=True, quiet=not progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with console.status("loading data"):
        train, test, dataset = load_data(config, config_path.resolve().parent)
    console.print(f"data: {dataset['users']} users, {dataset['items']} items, "
                  f"{dataset['train_interactions']} train / {dataset['test_interactions']} test")
    with console.status("compiling the ranking kernel"):
        _warm_up_ranking()  # its one-time compile must not count as the first model's ranking time
    records: list[dict[str, Any]] = []
    evals: dict[str, EvalResult] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        job = bar.add_task("models", total=len(config.models))
        for entry in config.models:
            bar.update(job, description=f"{entry.key}: training + evaluating")
            try:
                record, result = run_model(entry, config, train, test)
            except Exception as exc:  # one failing model must not stop the benchmark
                message = f"{type(exc).__name__}: {exc}".strip()
                if os.environ.get("RECFORGE_DEBUG"):
                    console.print(traceback.format_exc())
                console.print(f"[red]{entry.key} failed:[/red] {message}")
                records.append({"name": entry.key, "model": entry.name,
                                "params": dict(entry.params), "error": message})
            else:
                records.append(record)
                evals[entry.key] = result
                headline = ", ".join(f"{m} {record['metrics'][m]:.4f}"
                                     for m in config.compared_metrics() if m in record["metrics"])
                console.print(f"{entry.key}: {headline} (train {record['train_seconds']:.2f} s)")
            bar.advance(job)
    primary = config.primary_metric()
    best = pick_best(records, primary)
    threads = thread_counts()
    results = _clean({
        "dataset": dataset,
        "protocol": {
            "task": config.task,
            "ranking": "full" if config.task == "topn" else None,
            "exclude_seen": config.task == "topn" and config.exclude_seen,
            "ks": config.ks,
            "primary": primary,
            "compared": config.compared_metrics(),
            "table": config.table_metrics,
            "threshold": config.threshold if config.task == "rating" else None,
            "bootstrap": {"n_resamples": config.n_bootstrap, "confidence": config.confidence,
                          "seed": config.seed},
            "baseline": config.baseline or _default_baseline(records),
            **threads,
        },
        "models": records,
        "best": best,
        "significance": significance(evals, best, config.compared_metrics()) if best else [],
    })
    curves = {}
    if config.task == "topn":
        for name, res in evals.items():
            curves[name] = {m: res.curve(m, config.curve_k).tolist() for m in ("recall", "ndcg")}
    report.write_all(results, out, curves=curves)
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'report.html'}")
    return results


def _default_baseline(records: list[dict[str, Any]]) -> str | None:
    ok = [r["name"] for r in records if "error" not in r]
    if not ok:
        return None
    return next((n for n in ok if n == "popularity"), ok[0])
