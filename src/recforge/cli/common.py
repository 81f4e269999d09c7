"""Helpers shared by the CLI commands: one-line errors and option parsing."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from recforge.errors import ConfigError, RecforgeError

P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a RecforgeError inside a command into ``error: <message>`` on stderr, exit 1.

    Users see one readable line instead of a traceback; the signature is kept for Typer.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RecforgeError as exc:
            typer.echo(f"error: {exc}", err=True)
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
