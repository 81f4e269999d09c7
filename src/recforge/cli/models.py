"""Model commands: models, train, recommend, predict, similar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from recforge.cli.common import (
    ColumnsOpt,
    HeaderOpt,
    SepOpt,
    file_options,
    given_options,
    handle_errors,
    make_console,
)
from recforge.errors import ConfigError, DataError, DistributedError


@handle_errors
def models_command(
    name: str | None = typer.Argument(
        None, metavar="[NAME]", show_default=False,
        help="A model: print its settings (name, type, default, description)."),
) -> None:
    """List the registered models, or print one model's settings."""
    import inspect

    from rich.table import Table
    from rich.text import Text

    from recforge.config import config_settings
    from recforge.registry import available_models, get_model_class

    console = make_console()
    if name is None:
        table = Table("model", "what it is", box=None)
        for model_name, summary in available_models().items():
            table.add_row(model_name, summary)
        console.print(table)
        return
    config_class = get_model_class(name).config_class
    console.print(f"{name}: {available_models()[name]}", markup=False)
    table = Table("setting", "type", "default", "description", box=None)
    for row in config_settings(config_class):
        table.add_row(*(Text(row[key]) for key in ("name", "type", "default", "description")))
    console.print(table)
    doc = inspect.cleandoc(config_class.__doc__ or "")
    if doc:
        console.print(f"\n{doc}", markup=False, highlight=False)
    console.print(f"\nset them with `recforge train --model {name} --set NAME=VALUE` "
                  "(repeatable) or a --config YAML", markup=False, highlight=False)


def load_params(config: Path | None, overrides: list[str], task: str | None) -> tuple[str | None, dict[str, Any]]:
    """Model name (if the YAML names one) and params from YAML + ``--set`` + ``--task``.

    The YAML is either flat (the model's config keys) or ``{model: NAME, params: {...}}``.
    """

    from recforge.config import apply_overrides, read_yaml_mapping

    name = None
    params: dict[str, Any] = {}
    if config is not None:
        loaded = read_yaml_mapping(config)
        if "params" in loaded or "model" in loaded:
            name = loaded.get("model")
            params = dict(loaded.get("params") or {})
        else:
            params = loaded
    params = apply_overrides(params, overrides)
    if task is not None:
        params["task"] = task
    return name, params


@handle_errors
def train_command(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Registered model name (see `recforge models`)."),
    data: str = typer.Option(
        ..., "--data", help="Built-in dataset name (movielens-100k, synthetic...) or a CSV/TSV/Parquet file."
    ),
    out: Path = typer.Option(..., "--out", help="Directory to write the model artifact to."),
    task: str | None = typer.Option(
        None, "--task", help="topn (implicit, ranking) or rating (explicit prediction).",
        show_default="the model's, see `recforge models NAME`"),
    config: Path | None = typer.Option(None, "--config", help="YAML file of model settings."),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", show_default=False,
        help="Override a setting (repeatable); `recforge models NAME` lists them."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Local copy of a built-in dataset.",
        show_default="download once to $RECFORGE_DATA_DIR"),
    items: Path | None = typer.Option(
        None, "--items", help="Item metadata file (id, title, ...) for a plain data file."
    ),
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    header: HeaderOpt = None,
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch models (per process with --nproc).",
        show_default="torch's, one per physical core; with --nproc N, the cores / N"),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", help="No progress output."),
    nproc: int = typer.Option(
        1, "--nproc", min=1,
        help="Training processes on this machine. Torch models train data-parallel (DDP: gloo on CPU, NCCL "
             "on CUDA) under torchrun's elastic launcher, each process on its part of every batch, as "
             "`torchrun --nproc-per-node N -m recforge train ...` does; other models say what they do "
             "instead and train in one process."),
    dp_epsilon: float | None = typer.Option(
        None, "--dp-epsilon", show_default=False,
        help="Train under (ε, δ)-differential privacy, the user as the unit (mf, multvae, popularity)."),
    dp_delta: float | None = typer.Option(
        None, "--dp-delta",
        show_default="1/(10·users)", help="δ of the DP guarantee (DP-SGD models)."),
) -> None:
    """Train a model on a dataset and save it as an artifact directory."""
    from recforge.registry import create_model, get_model_class
    from recforge.training import distributed

    world = distributed.launched_world_size()
    rank = distributed.launched_rank()
    console = make_console(stderr=True, quiet=quiet or rank != 0)
    if task is not None and task not in ("topn", "rating"):
        raise ConfigError(f"--task must be topn or rating, got {task!r}")
    yaml_name, params = load_params(config, set_, task)
    if yaml_name is not None and yaml_name != model:
        raise ConfigError(f"--config {config} is for model {yaml_name!r}, not --model {model!r}")
    name = model
    model_class = get_model_class(name)  # an unknown name: one line listing the known models
    if world > 1 and nproc > 1:
        raise ConfigError("--nproc starts the training processes itself: under torchrun, leave it out "
                          "(torchrun's --nproc-per-node sets them)")
    processes = max(world, nproc)
    parallel = model_class.data_parallel and processes > 1
    if processes > 1 and not model_class.data_parallel:
        if rank != 0:
            return  # rank 0 trains it alone
        console.print(f"{name} trains in one process, not {processes}: {model_class.parallelism}",
                      markup=False, highlight=False)
    if threads is not None:
        _set_threads(threads)
    _dp_params(name, params, dp_epsilon, dp_delta)
    if processes > 1 and dp_epsilon is not None:
        raise ConfigError("--dp-epsilon trains in one process (its accountant counts one sampler's "
                          "steps): drop --nproc")
    if not quiet and _accepts(name, "verbose"):
        params.setdefault("verbose", True)
    try:
        recommender = create_model(name, params)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (`recforge models {name}` describes them)") from None
    device = str(getattr(recommender.config, "device", "cpu"))
    if parallel and world == 1:  # start the processes; each runs this command again
        distributed.check_devices(device, nproc)
        args = given_options(ctx, skip={"nproc"})
        if threads is None:
            args += ["--threads", str(max(1, _cpu_count() // nproc))]
        console.print(f"training {name} in {nproc} processes (torchrun's elastic launcher, DDP)")
        distributed.launch(["train", *args], nproc)
        return
    options = file_options(columns, sep, header)
    if not parallel:
        _train_and_save(recommender, name, data, data_dir, items, options, out, console)
        return
    with distributed.process_group(device) as group:
        if group is None:
            raise DistributedError("this torch build has no torch.distributed: train in one process")
        console.print(f"process group: {group.world_size} processes ({_backend()}); rank 0 validates, "
                      "logs and saves")
        _train_and_save(recommender, name, data, data_dir, items, options, out if group.is_main else None,
                        console)


def _train_and_save(recommender: Any, name: str, data: str, data_dir: Path | None, items: Path | None,
                    options: dict[str, Any], out: Path | None, console: Any) -> None:
    """Load the data, fit, and save to `out` (None: a rank other than 0, which writes nothing)."""
    from recforge.data.datasets import load_dataset

    with console.status(f"loading {data}"):
        interactions = load_dataset(data, data_dir=data_dir, items_file=items, **options)
    console.print(f"data: {interactions.n_users} users, {interactions.n_items} items, {len(interactions)} interactions")
    console.print(f"training {name} ({recommender.config.task})")
    recommender.fit(interactions)
    if out is None:
        return
    recommender.save(out)
    console.print(f"trained in {recommender.fit_seconds_:.1f} s; saved to {out}")
    privacy = getattr(recommender, "privacy_", None)
    if privacy is not None:
        console.print(privacy.describe())


def _dp_params(name: str, params: dict[str, Any], epsilon: float | None, delta: float | None) -> None:
    """Put `--dp-epsilon` / `--dp-delta` into the settings of a model that has them."""
    for flag, field, value in (("--dp-epsilon", "dp_epsilon", epsilon), ("--dp-delta", "dp_delta", delta)):
        if value is None:
            continue
        if not _accepts(name, field):
            raise ConfigError(f"{flag}: model {name!r} has no differentially private training "
                              "(mf, multvae and popularity do)")
        params[field] = value


def _backend() -> str:
    """The process group's backend, e.g. ``gloo`` (or ``cpu:gloo,cuda:nccl``)."""
    import torch

    return str(torch.distributed.get_backend())


def _cpu_count() -> int:
    """CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _accepts(name: str, field: str) -> bool:
    from recforge.registry import get_model_class

    return field in get_model_class(name).config_class.model_fields


def _set_threads(threads: int) -> None:
    if threads < 1:
        raise ConfigError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)


def _load_model(path: Path):
    from recforge.registry import load_model

    return load_model(path)


def _add_titles(frame: Any, model: Any, id_column: str, position: int) -> None:
    """Insert a ``title`` column after `id_column` when the model knows titles of those items.

    Data without titles (a plain interaction file) gets no empty column.
    """
    column = frame[id_column].astype(str).map(model.item_titles())
    if column.notna().any():
        frame.insert(position, "title", column.astype(object).fillna("").to_numpy())


@handle_errors
def recommend_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory."),
    users: str = typer.Option(..., "--users", help="'all' or comma-separated user IDs."),
    k: int = typer.Option(10, "--k", min=1, max=10_000, help="Items per user."),
    out: Path | None = typer.Option(None, "--out", help="TSV file to write (user_id item_id rank score)."),
    include_seen: bool = typer.Option(
        False, "--include-seen/--exclude-seen", help="Allow items the user has in training."),
    unknown: str = typer.Option(
        "error", "--unknown", help="Unknown users: error | skip | fallback (adds a fallback column)."),
    explain: bool = typer.Option(
        False, "--explain/--no-explain", help="Add the training items behind each recommendation."),
) -> None:
    """Top-K recommendations per user, never an item the user has in training."""
    if unknown not in ("error", "skip", "fallback"):
        raise ConfigError("--unknown must be error, skip or fallback")
    recommender = _load_model(model)
    ids = recommender.user_map_.ids if users.strip() == "all" else [u.strip() for u in users.split(",") if u.strip()]
    if len(ids) == 0:
        raise DataError("--users names no user")
    if out is not None and not explain:  # straight from the ranked lists to the file, no frame
        lists = recommender.rank_users(ids, k=k, exclude_seen=not include_seen, unknown=unknown)
        out.parent.mkdir(parents=True, exist_ok=True)
        n_rows, n_users = write_ranked_lists(out, ids, lists, recommender.item_map_.ids,
                                             with_fallback=unknown == "fallback")
        typer.echo(f"wrote {n_rows} recommendations for {n_users} users to {out}", err=True)
        return
    frame = recommender.recommend(ids, k=k, exclude_seen=not include_seen, unknown=unknown)
    if explain:
        frame["because"] = _explanations(recommender, frame)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, sep="\t", index=False, float_format="%.6g")
        typer.echo(f"wrote {len(frame)} recommendations for {frame['user_id'].nunique()} users to {out}", err=True)
        return
    _add_titles(frame, recommender, "item_id", 3)
    _print_frame(frame)


def write_ranked_lists(path: Path, user_ids: Any, lists: Any, item_ids: Any, with_fallback: bool) -> tuple[int, int]:
    """Write padded top-k lists as TSV rows user_id, item_id, rank, score[, fallback].

    Columns go to pyarrow's CSV writer as indices into the ID tables (no string per row);
    scores are float32 in their shortest exact form. IDs holding a tab, quote or newline
    take pandas' writer, which quotes them. Returns (rows written, users with a row).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no types
    import pyarrow.csv as pacsv  # type: ignore[import-untyped]

    rows, cols = np.nonzero(lists.items >= 0)
    users = pa.array(np.asarray(user_ids, dtype=object), type=pa.string())
    items = pa.array(np.asarray(item_ids, dtype=object), type=pa.string())
    columns = {
        "user_id": pa.DictionaryArray.from_arrays(pa.array(rows.astype(np.int32)), users),
        "item_id": pa.DictionaryArray.from_arrays(pa.array(lists.items[rows, cols].astype(np.int32)), items),
        "rank": pa.array((cols + 1).astype(np.int64)),
        "score": pa.array(lists.scores[rows, cols].astype(np.float32)),
    }
    if with_fallback:
        columns["fallback"] = pa.array(lists.fallback[rows], type=pa.string(), from_pandas=True)
    table = pa.table(columns)
    try:
        with path.open("wb") as fh:
            fh.write(("\t".join(columns) + "\n").encode())
            pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    except pa.ArrowInvalid:  # an ID with a structural character: quote it as pandas does
        frame = pd.DataFrame({name: np.asarray(col.to_pylist(), dtype=object) for name, col in columns.items()})
        frame.to_csv(path, sep="\t", index=False)
    return len(rows), len(np.unique(rows))


def _explanations(recommender: Any, frame: Any) -> list[str]:
    """Per recommendation: "ID (weight)" of the user's training items that count most."""
    users = frame["user_id"].unique()
    known = set(users[recommender.user_map_.lookup(users) >= 0])
    text: dict[tuple[str, str], str] = {}
    for user, group in frame.groupby("user_id", sort=False):
        if user not in known:
            continue
        why = recommender.explain(user, group["item_id"].tolist(), n=2)
        for item, rows in why.groupby("item_id", sort=False):
            text[(user, item)] = ", ".join(f"{s} ({w:.3g})" for s, w in zip(rows["source"], rows["contribution"],
                                                                             strict=True))
    return [text.get((u, i), "") for u, i in zip(frame["user_id"], frame["item_id"], strict=True)]


@handle_errors
def predict_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory."),
    pairs: Path = typer.Option(..., "--pairs", help="Table with user and item columns (e.g. u1.test)."),
    out: Path = typer.Option(..., "--out", help="TSV file to write (user_id item_id prediction)."),
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    header: HeaderOpt = None,
) -> None:
    """Predicted score (rating, for rating models) of every (user, item) pair in a file."""
    import pandas as pd

    from recforge.data.files import read_interactions_frame

    recommender = _load_model(model)
    table = read_interactions_frame(pairs, **file_options(columns, sep, header))
    preds = recommender.predict(table["user_id"].astype(str), table["item_id"].astype(str))
    result = pd.DataFrame({"user_id": table["user_id"], "item_id": table["item_id"], "prediction": preds})
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, sep="\t", index=False, float_format="%.6g")
    unknown = int(
        (
            (recommender.user_map_.lookup(table["user_id"]) < 0) | (recommender.item_map_.lookup(table["item_id"]) < 0)
        ).sum()
    )
    typer.echo(
        f"wrote {len(result)} predictions to {out} ({unknown} pairs with an unknown user or item got the fallback)",
        err=True,
    )


@handle_errors
def similar_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory."),
    item: str = typer.Option(..., "--item", help="Item ID."),
    k: int = typer.Option(10, "--k", min=1, max=10_000, help="Number of similar items."),
    json_out: bool = typer.Option(False, "--json/--table", help="Print JSON instead of a table."),
) -> None:
    """Items most similar to one item under the model."""
    recommender = _load_model(model)
    frame = recommender.similar_items([item], k=k)
    _add_titles(frame, recommender, "similar_item_id", 2)
    if json_out:
        typer.echo(frame.to_json(orient="records"))
        return
    _print_frame(frame)


def _print_frame(frame: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(*[str(c) for c in frame.columns], box=None)
    for row in frame.itertuples(index=False):  # Text: a title like "[Rec]" is not markup
        table.add_row(*[Text(f"{v:.4f}" if isinstance(v, float) else "" if v is None else str(v)) for v in row])
    make_console().print(table)
