"""Helpers shared by the CLI commands: one-line errors, the data-file options, consoles.

Every command that reads an interaction file takes the same data options, declared once
here (`ColumnsOpt`, `SepOpt`, `HeaderOpt`) and turned into the readers' keyword arguments
by `file_options`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from recforge.errors import ConfigError, DistributedError, RecforgeError

if TYPE_CHECKING:
    from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a RecforgeError inside a command into ``error: <message>`` on stderr, exit 1.

    Users see one readable line instead of a traceback; the signature is kept for Typer. In
    a data-parallel run only rank 0 prints it, the ranks meeting the same bad input alike;
    a `DistributedError`, which is about one process, names that process's rank.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RecforgeError as exc:
            rank = os.environ.get("RANK", "0")
            if rank == "0":
                typer.echo(f"error: {exc}", err=True)
            elif isinstance(exc, DistributedError):
                typer.echo(f"error (training process {rank}): {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def parse_columns(spec: str | None) -> dict[str, str] | None:
    """``"user=uid,item=movie,rating=stars"`` -> {"user": "uid", ...}; None when empty.

    Roles are checked later by the file reader, which also accepts 0-based positions.
    """
    if spec is None or not spec.strip():
        return None
    out: dict[str, str] = {}
    for part in spec.split(","):
        role, sep, name = part.partition("=")
        if not sep or not role.strip() or not name.strip():
            raise ConfigError(f"bad --columns entry {part.strip()!r} (expected ROLE=NAME)")
        out[role.strip()] = name.strip()
    return out


def given_options(ctx: typer.Context, skip: Collection[str] = ()) -> list[str]:
    """The command's options as given on its command line (not those left at their
    defaults), rebuilt from the parsed values: what a copy of the command run elsewhere
    (`recforge train --nproc` starting its training processes) needs. Options named in
    `skip` (parameter names) are left out."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if name is None or name in skip or param.param_type_name != "option":
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name == "DEFAULT":
            continue
        value = ctx.params[name]
        if getattr(param, "is_flag", False) and param.secondary_opts:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif getattr(param, "is_flag", False):
            if value:
                args.append(param.opts[0])
        elif param.multiple:
            for item in value:
                args += [param.opts[0], str(item)]
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


# ------------------------------------------------------------------ data-file options
ColumnsOpt = Annotated[str | None, typer.Option(
    "--columns", metavar="ROLE=NAME,...",
    help="Map a file's columns by name or 0-based position: user=NAME,item=NAME"
         "[,rating=NAME,timestamp=NAME]. Default: the usual names (user_id, userId, movieId, "
         "rating, score, timestamp...).", show_default=False)]
SepOpt = Annotated[str | None, typer.Option(
    "--sep", "--delimiter", metavar="SEP",
    help="Field delimiter of a text file: tab, comma, semicolon, pipe, space, '::' or any "
         "string. Default: sniffed from the first lines.", show_default=False)]
HeaderOpt = Annotated[bool | None, typer.Option(
    "--header/--no-header",
    help="Whether the file's first line names the columns. Default: sniffed.",
    show_default=False)]

_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
              "space": r"\s+", "spaces": r"\s+", "whitespace": r"\s+", " ": r"\s+"}


def file_options(columns: str | None, sep: str | None, header: bool | None) -> dict[str, Any]:
    """The data options as keyword arguments of `load_file` / `load_dataset`."""
    if sep is not None:
        if sep == "":
            raise ConfigError("--sep must not be empty")
        sep = _SEP_NAMES.get(sep.lower() if sep.strip() else sep, sep)
    return {"columns": parse_columns(columns), "sep": sep, "header": header}


# ------------------------------------------------------------------ consoles
#: width of a console that does not write to a terminal: wide enough that no table cell is cut
PLAIN_WIDTH = 10_000


def make_console(stderr: bool = False, quiet: bool = False) -> Console:
    """A rich Console that never cuts table cells when its stream is not a terminal.

    On a terminal rich fits tables to the window. Piped or redirected output has no window,
    and rich would fall back to 80 columns and shorten cells to ``0.4…``; there the
    console is as wide as its longest line and prints no colour codes.
    """
    from rich.console import Console

    console = Console(stderr=stderr, quiet=quiet)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, quiet=quiet, width=PLAIN_WIDTH, no_color=True,
                   highlight=False, soft_wrap=False)
