"""The `recforge` command: thin Typer commands over the public API.

Every command turns a RecforgeError (bad input, unknown ID, corrupt artifact...) into one
line on stderr and exit code 1; never a traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from recforge import __version__
from recforge.cli import models as model_commands
from recforge.cli.data import app as data_app
from recforge.cli.evaluate import benchmark_command, evaluate_command
from recforge.cli.export import compress_command, export_command, index_command
from recforge.cli.quickstart import quickstart_command
from recforge.cli.serve import keys_app, retrain_command, serve_command

app = typer.Typer(
    name="recforge",
    help="recforge: recommender systems from interaction logs to a served API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: flags as --x/--no-x, no boxes cut at 80 columns
)
app.add_typer(data_app, name="data", help="Inspect, split and fold datasets.")
app.command("models")(model_commands.models_command)
app.command("train")(model_commands.train_command)
app.command("recommend")(model_commands.recommend_command)
app.command("predict")(model_commands.predict_command)
app.command("similar")(model_commands.similar_command)
app.command("evaluate")(evaluate_command)
app.command("benchmark")(benchmark_command)
app.command("quickstart")(quickstart_command)
app.add_typer(keys_app, name="keys", help="Create, list and revoke API keys (only hashes are stored).")
app.command("serve")(serve_command)
app.command("export")(export_command)
app.command("compress")(compress_command)
app.command("index")(index_command)
app.command("retrain")(retrain_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    block_mb: float | None = typer.Option(
        None, "--block-mb", envvar="RECFORGE_BLOCK_MB", min=1.0, show_default=False,
        help="Memory of the score blocks in flight at once, MiB (default 64): bounds every blocked "
             "operation (ranking all users, scoring)."),
    threads: int | None = typer.Option(
        None, "--threads", envvar="RECFORGE_THREADS", min=1, show_default=False,
        help="Threads for ranking and the compiled kernels (default: every CPU)."),
) -> None:
    """recforge: recommender systems from interaction logs to a served API."""
    from recforge import resources

    resources.set_limits(block_mb=block_mb, threads=threads)


def main() -> None:
    """Console-script entry point: run the app, one-line errors for anything unexpected.

    In a data-parallel run (``RANK`` set by torchrun) rank 0 reports input errors, which every
    rank meets alike; an unexpected error of another rank names that rank.
    """
    from recforge.errors import RecforgeError

    rank = os.environ.get("RANK", "0")
    try:
        app()
    except RecforgeError as exc:
        if rank == "0":
            typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if os.environ.get("RECFORGE_DEBUG"):
            raise
        label = "error" if rank == "0" else f"error (training process {rank})"
        typer.echo(f"{label}: {type(exc).__name__}: {exc} (RECFORGE_DEBUG=1 shows the traceback)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
