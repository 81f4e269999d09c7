"""``recforge data``: inspect a dataset, split it into train/test files, make the ML-100K folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recforge.cli.common import ColumnsOpt, HeaderOpt, SepOpt, file_options, handle_errors, make_console
from recforge.data.cold import COLD_METHODS, cold_split
from recforge.data.datasets import SyntheticSpec, describe, load_dataset
from recforge.data.interactions import Interactions
from recforge.data.movielens import movielens_path, movielens_spec
from recforge.data.splitting import SPLIT_METHODS, movielens_folds, split, write_split
from recforge.errors import DataError

app = typer.Typer(
    help="Inspect, split and fold datasets (built-in names, 'synthetic', or a file path).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DatasetArg = Annotated[str, typer.Argument(
    metavar="DATASET",
    help="movielens-100k, movielens-1m, movielens-20m, movielens-latest-small, synthetic, "
         "or a CSV/TSV/Parquet file.", show_default=False)]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Local unpacked copy of a built-in dataset (no download).",
    show_default="download once to $RECFORGE_DATA_DIR")]
UsersOpt = Annotated[int, typer.Option("--users", help="synthetic: number of users.")]
ItemsOpt = Annotated[int, typer.Option("--items", help="synthetic: number of items.")]
InteractionsOpt = Annotated[int, typer.Option(
    "--interactions", help="synthetic: number of interactions.")]


def _load(dataset: str, data_dir: Path | None, files: dict[str, Any], users: int, items: int,
          interactions: int, seed: int) -> Interactions:
    spec = SyntheticSpec(n_users=users, n_items=items, n_interactions=interactions, seed=seed)
    return load_dataset(dataset, data_dir=data_dir, synthetic=spec, **files)


@app.command("info")
@handle_errors
def info_command(
    dataset: DatasetArg,
    data_dir: DataDirOpt = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    header: HeaderOpt = None,
    json_out: Annotated[bool, typer.Option("--json/--table", help="Print one JSON object "
                                           "instead of a table.")] = False,
    users: UsersOpt = 1000,
    items: ItemsOpt = 500,
    interactions: InteractionsOpt = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="synthetic: random seed.")] = 0,
) -> None:
    """Sizes, density, rating histogram, activity quantiles and time span of a dataset."""
    files = file_options(columns, sep, header)
    facts = describe(_load(dataset, data_dir, files, users, items, interactions, seed))
    if json_out:
        typer.echo(json.dumps({"dataset": dataset, **facts}))
        return
    make_console().print(_info_table(dataset, facts))


def _info_table(dataset: str, facts: dict[str, Any]) -> Table:
    table = Table(title=dataset, show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    table.add_row("users", f"{facts['users']:,}")
    table.add_row("items", f"{facts['items']:,}")
    table.add_row("interactions", f"{facts['interactions']:,}")
    table.add_row("density", f"{facts['density']:.4%}")
    if facts["ratings"]:
        total = max(facts["interactions"], 1)
        hist = "  ".join(f"{k}: {v:,} ({v / total:.0%})" for k, v in facts["ratings"].items())
        table.add_row("ratings", hist)
    else:
        table.add_row("ratings", "none (implicit)")
    for key, label in (("per_user", "per user"), ("per_item", "per item")):
        q = facts[key]
        table.add_row(label, "  ".join(f"{name} {_fmt(v)}" for name, v in q.items()))
    span = facts["time_span"]
    table.add_row("time span", f"{span['start']} … {span['end']}" if span else "no timestamps")
    table.add_row("fingerprint", facts["fingerprint"])
    return table


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


@app.command("split")
@handle_errors
def split_command(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for train.tsv and test.tsv.")],
    method: Annotated[str, typer.Option(
        "--method", help=f"One of: {', '.join((*SPLIT_METHODS, *COLD_METHODS))}.")] = "user-ratio",
    test_ratio: Annotated[float, typer.Option(
        "--test-ratio", help="Share held out (ratio, user-ratio, temporal).")] = 0.2,
    n: Annotated[int, typer.Option("--n", help="leave-last: items held out per user.")] = 1,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the split (and of synthetic data).")] = 42,
    data_dir: DataDirOpt = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    header: HeaderOpt = None,
    users: UsersOpt = 1000,
    items: ItemsOpt = 500,
    interactions: InteractionsOpt = 20_000,
) -> None:
    """Split a dataset and write train.tsv / test.tsv (user_id, item_id, rating, timestamp)."""
    inter = _load(dataset, data_dir, file_options(columns, sep, header), users, items,
                  interactions, seed)
    if method in COLD_METHODS:
        train, test = cold_split(inter, method, test_ratio=test_ratio, seed=seed)
    else:
        train, test = split(inter, method, test_ratio=test_ratio, n=n, seed=seed)
    paths = write_split(train, test, out)
    for name, part, path in (("train", train, paths[0]), ("test", test, paths[1])):
        typer.echo(f"{name}: {len(part):,} interactions, {_active(part.user_counts()):,} users, "
                   f"{_active(part.item_counts()):,} items -> {path}")


def _active(counts: Any) -> int:
    return int((counts > 0).sum())


@app.command("folds")
@handle_errors
def folds_command(
    dataset: DatasetArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for u1.base … u5.test.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Write GroupLens' five ML-100K rating folds (u1..u5 .base/.test), byte-identical."""
    if not _is_ml100k(dataset):
        raise DataError(f"folds are defined for movielens-100k only, not {dataset!r}")
    written = movielens_folds(movielens_path(dataset, data_dir=data_dir), out)
    typer.echo(f"wrote {len(written)} files to {out}")


def _is_ml100k(name: str) -> bool:
    try:
        return movielens_spec(name).name == "movielens-100k"
    except DataError:
        return False
