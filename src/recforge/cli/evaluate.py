"""Evaluation commands: ``recforge evaluate`` and ``recforge benchmark``.

Thin wrappers over `recforge.evaluation`; register them with
``app.command("evaluate")(evaluate_command)`` and ``app.command("benchmark")(benchmark_command)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from recforge.cli.common import ColumnsOpt, HeaderOpt, SepOpt, file_options, handle_errors, make_console
from recforge.errors import ConfigError, DataError

TASKS = ("topn", "rating", "sampled")


def parse_ks(text: str) -> list[int]:
    """``"10,20"`` -> [10, 20]; ConfigError for anything but positive integers."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"--k expects comma-separated positive integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k expects comma-separated positive integers, got {text!r}")
    return ks


@handle_errors
def evaluate_command(
    model: Path | None = typer.Option(None, "--model", help="Model artifact directory."),
    test: Path = typer.Option(..., "--test", help="Test interactions (e.g. topn_test.tsv, u1.test)."),
    train: Path | None = typer.Option(
        None, "--train",
        help="Training interactions: the seen items and catalog for --recs (with --model, "
             "checked to be the data the model was trained on)."),
    task: str | None = typer.Option(
        None, "--task", help="topn (full ranking), rating (RMSE/MAE) or sampled (NCF protocol).",
        show_default="the model's task; topn with --recs"),
    k: str = typer.Option("10,20", "--k", help="Comma-separated cut-offs K."),
    json_out: bool = typer.Option(False, "--json/--table", help="Print one JSON object instead of a table."),
    recs: Path | None = typer.Option(
        None, "--recs", help="Score this recommendations TSV (user_id item_id rank, as written by "
                             "`recforge recommend --out`) instead of a model."),
    threshold: float = typer.Option(4.0, "--threshold", help="Rating task: liked = rating >= this."),
    negatives: int = typer.Option(100, "--negatives", min=1, help="Sampled task: negatives per test pair."),
    seed: int = typer.Option(0, "--seed", help="Sampled task: seed of the negative sampling."),
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    header: HeaderOpt = None,
) -> None:
    """Evaluate a model (or a file of recommendation lists) on a test set, by the protocol.

    The data options (--columns, --sep, --header) apply to both --test and --train.
    """
    from recforge.data.files import load_file
    from recforge.evaluation import evaluate as ev

    if task is not None and task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    ks = parse_ks(k)
    if model is None and recs is None:
        raise ConfigError("give --model (an artifact directory) or --recs (a recommendations file)")
    files = file_options(columns, sep, header)
    test_data = load_file(test, **files)
    if recs is not None:
        if task not in (None, "topn"):
            raise ConfigError("--recs lists are scored as top-N only (--task topn)")
        if train is not None:
            train_data = load_file(train, **files)
        elif model is not None:
            train_data = _load(model).training_interactions()
        else:
            raise ConfigError("--recs needs --train (the training file) or --model")
        result = ev.evaluate_lists(ev.read_recommendations(recs), train_data, test_data, ks)
    else:
        assert model is not None  # without --recs, --model is required (checked above)
        recommender = _load(model)
        if train is not None:
            fingerprint = load_file(train, **files).fingerprint()
            if fingerprint != recommender.fingerprint_:
                raise DataError(f"the model was not trained on {train} (data fingerprint "
                                f"{recommender.fingerprint_} vs {fingerprint})")
        task = task or recommender.config.task
        if task == "rating":
            if not test_data.has_ratings:
                raise DataError(f"{test} has no rating column; task 'rating' needs one")
            result = ev.evaluate_rating(recommender, test_data, threshold=threshold)
        elif task == "sampled":
            result = ev.evaluate_sampled(recommender, test_data, ks, n_negatives=negatives, seed=seed)
        else:
            result = ev.evaluate_topn(recommender, test_data, ks)
    payload = result.to_dict()
    if json_out:
        info = {key: value for key, value in payload.items() if key not in ("task", "users", "metrics")}
        typer.echo(json.dumps({"task": payload["task"], "users": payload["users"],
                               "metrics": payload["metrics"], "info": info}))
        return
    _print_result(payload)


def _load(path: Path) -> Any:
    from recforge.registry import load_model

    return load_model(path)


def _print_result(payload: dict[str, Any]) -> None:
    from rich.table import Table

    from recforge.evaluation.report import metric_label

    metrics = payload["metrics"]
    by_k: dict[str, dict[str, Any]] = {}
    for name, value in metrics.items():
        base, _, kk = name.partition("@")
        by_k.setdefault(base, {})[kk] = value
    cutoffs = sorted({kk for row in by_k.values() for kk in row}, key=lambda s: (s != "", int(s or 0)))
    table = Table("metric", *[f"@{kk}" if kk else "value" for kk in cutoffs], box=None)
    for base, row in by_k.items():
        cells = [row.get(kk) for kk in cutoffs]
        table.add_row(metric_label(base), *["" if v is None else f"{v:.4f}" for v in cells])
    extra = {k: v for k, v in payload.items() if k not in ("task", "users", "metrics")}
    console = make_console()
    console.print(f"task {payload['task']}: {payload['users']} test users"
                  + "".join(f", {k.replace('_', ' ')} {_short(v)}" for k, v in extra.items()))
    console.print(table)


def _short(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@handle_errors
def benchmark_command(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Benchmark YAML (dataset, task, ks, models)."),
    out: Path = typer.Option(..., "--out", help="Directory for results.json, results.md, report.html."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", help="No progress output on stderr."),
) -> None:
    """Train and evaluate every model of a benchmark config; write results and an HTML report.

    The results table goes to stdout: rendered on a terminal, plain Markdown (as in
    results.md) when piped or redirected. Progress goes to stderr. A config with
    ``protocol: cold-start`` runs the cold-user / cold-item protocol instead
    (`recforge.evaluation.cold`; results.json and results.md).
    """
    from recforge.evaluation import cold
    from recforge.evaluation.benchmark import run_benchmark
    from recforge.evaluation.report import results_markdown

    if cold.is_cold_config(config):
        log = make_console(stderr=True, quiet=quiet)
        result = cold.run_cold_benchmark(config, out, log=log.print)
        print_markdown(cold.results_markdown(result))
        return

    results = run_benchmark(config, out, progress=not quiet)
    print_markdown(results_markdown(results))
    failed = [m["name"] for m in results["models"] if "error" in m]
    if failed:
        typer.echo(f"{len(failed)} model(s) failed: {', '.join(failed)} "
                   f"(see {out / 'results.json'})", err=True)
        if len(failed) == len(results["models"]):
            raise typer.Exit(1)


def print_markdown(text: str) -> None:
    """Markdown on stdout: rendered on a terminal, the text itself when piped or redirected.

    Piped output keeps every cell whole and can be pasted into a README as it is.
    """
    from rich.markdown import Markdown

    console = make_console()
    if console.is_terminal:
        console.print(Markdown(text))
    else:
        typer.echo(text.rstrip("\n"))
