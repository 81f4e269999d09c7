"""Serving commands: `serve`, `keys create|list|revoke`, `retrain`.

`recforge serve` without ``--keys-file`` runs without authentication, and therefore only on
a loopback address (with a warning); on any other address it refuses to start. With
``--workers N`` (N > 1) it gives the launch a fresh Prometheus multiprocess directory,
removed when the server stops, so ``/metrics`` reports totals across the workers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from recforge.cli.common import handle_errors
from recforge.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI

    from recforge.data.interactions import Interactions
    from recforge.models.base import Recommender

#: how `serve --workers N` hands its settings to the worker processes' app factory
ENV_CONFIG = "RECFORGE_SERVE_CONFIG"

keys_app = typer.Typer(help="Manage API keys: only their SHA-256 hashes are stored.",
                       no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


def _require_extra(*modules: str) -> None:
    """A one-line error naming the extra to install when a serving dependency is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"this command needs {', '.join(missing)}: pip install 'recforge[serve]'")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- serve
@handle_errors
def serve_command(
    model: Path = typer.Option(..., "--model", help="Model artifact directory to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    store: str | None = typer.Option(
        None, "--store", help="Event store SQLAlchemy URL (default: sqlite:///<model>-events.db "
                              "beside the artifact; postgresql://user@host/db for production)."),
    keys_file: Path | None = typer.Option(
        None, "--keys-file", help="API keys file (see `recforge keys create`). Without it the "
                                  "service is open and binds to loopback addresses only."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="uvicorn worker processes."),
    public_metrics: bool = typer.Option(
        False, "--public-metrics/--private-metrics", help="Serve /metrics without a key."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    table_prefix: str = typer.Option("", "--table-prefix", help="Prefix of the store's table "
                                     "names, for several services sharing one database."),
    runtime: str = typer.Option("torch", "--runtime", help="What computes a torch model's scores: torch, or "
                                "onnx (its exported graph in onnxruntime; needs recforge[export])."),
) -> None:
    """Serve a model over HTTP: recommendations, similar items, scores, events, a web page."""
    _require_extra("fastapi", "uvicorn", "sqlalchemy", "prometheus_client")
    if runtime not in ("torch", "onnx"):
        raise ConfigError(f"--runtime must be torch or onnx, got {runtime!r}")
    if runtime == "onnx":
        from recforge.export.onnx import require_onnx

        require_onnx()
    import uvicorn

    from recforge.serving.app import create_app
    from recforge.serving.metrics import MULTIPROC_ENV
    from recforge.serving.store import default_store_url

    if keys_file is None and not _is_loopback(host):
        raise ConfigError(f"refusing to serve on {host} without --keys-file: anyone who can reach "
                          "it could use it. Create a key with `recforge keys create` or bind 127.0.0.1")
    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise ConfigError(f"--log-level must be critical, error, warning, info, debug or trace, got {log_level!r}")
    settings: dict[str, Any] = {"model_dir": str(model.resolve()),
                "store_url": store or default_store_url(model),
                "keys_file": str(keys_file.resolve()) if keys_file is not None else None,
                "public_metrics": public_metrics, "table_prefix": table_prefix,
                "launch_id": uuid.uuid4().hex, "runtime": runtime, "workers": workers}
    # open everything once here, so a bad artifact, store or keys file is one line, not a crash
    app = create_app(**settings)
    if keys_file is None:
        typer.echo(f"warning: no --keys-file: serving WITHOUT authentication on {host} "
                   "(loopback only; every caller has admin rights)", err=True)
    typer.echo(f"serving {model} on http://{host}:{port}/ (store: "
               f"{app.state.service.store.display_url}, workers: {workers}, runtime: {runtime})", err=True)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)
        return
    app.state.service.store.close()
    del app  # the workers load their own copies
    # a fresh directory per launch, set before the workers import prometheus_client, so that
    # every worker's /metrics reports totals across workers
    metrics_dir = tempfile.mkdtemp(prefix="recforge-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[ENV_CONFIG] = json.dumps({**settings, "metrics_dir": metrics_dir})
    try:
        _run_workers(host, port, workers, log_level)
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """uvicorn's multi-process mode, with TCP_NODELAY kept on the workers' connections.

    uvicorn binds the shared listening socket with ``proto=0``; accepted sockets inherit it
    and asyncio then skips TCP_NODELAY, so every keep-alive request waits ~40 ms for a
    delayed ACK on Linux (uvicorn issue #3149). Re-wrapping the socket lets the kernel
    report ``IPPROTO_TCP``.
    """
    import inspect
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("recforge.cli.serve:worker_app", factory=True, host=host, port=port,
                            workers=workers, log_level=log_level, server_header=False)
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(fileno=sock.detach())  # family, type and proto read from the fd
        sock.set_inheritable(True)
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn < 0.36
        server = uvicorn.Server(config)
        Multiprocess(config, target=server.run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()


def worker_app() -> FastAPI:
    """App factory of each uvicorn worker process; settings come from `serve` via the env."""
    from recforge.serving.app import create_app

    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise ConfigError(f"{ENV_CONFIG} is not set (start workers with `recforge serve --workers N`)")
    return create_app(**json.loads(raw))


# ---------------------------------------------------------------------- keys
@handle_errors
def keys_create_command(
    name: str = typer.Option(..., "--name", help="Who the key is for (unique in the file)."),
    scope: str = typer.Option("read", "--scope", help="read (the /v1 API) or admin (also reload)."),
    keys_file: Path = typer.Option(..., "--keys-file", help="Keys file (created if absent)."),
) -> None:
    """Create an API key: prints the key once on stdout and stores only its SHA-256."""
    from recforge.serving.auth import create_key

    secret = create_key(keys_file, name, scope)
    typer.echo(secret)
    typer.echo(f"created {scope} key {name!r} in {keys_file}; it is shown only once", err=True)


@handle_errors
def keys_list_command(
    keys_file: Path = typer.Option(..., "--keys-file", help="Keys file."),
) -> None:
    """List the keys' names, scopes and creation times (the keys themselves are not stored)."""
    from recforge.serving.auth import read_keys_file

    for entry in read_keys_file(keys_file):
        typer.echo(f"{entry.name}\t{entry.scope}\t{entry.created}")


@handle_errors
def keys_revoke_command(
    name: str = typer.Option(..., "--name", help="Name of the key to remove."),
    keys_file: Path = typer.Option(..., "--keys-file", help="Keys file."),
) -> None:
    """Revoke a key; a running service stops accepting it at its next request."""
    from recforge.serving.auth import revoke_key

    revoke_key(keys_file, name)
    typer.echo(f"revoked key {name!r}", err=True)


keys_app.command("create")(keys_create_command)
keys_app.command("list")(keys_list_command)
keys_app.command("revoke")(keys_revoke_command)


# ---------------------------------------------------------------------- retrain
@handle_errors
def retrain_command(
    model: Path = typer.Option(..., "--model", help="The artifact the service was started with."),
    out: Path = typer.Option(..., "--out", help="Directory for the new artifact."),
    store: str | None = typer.Option(None, "--store", help="Event store URL (default: the one "
                                     "`recforge serve` uses for this model)."),
    force: bool = typer.Option(
        False, "--force/--no-force", help="Replace a non-empty --out directory."),
    table_prefix: str = typer.Option("", "--table-prefix", help="The store's table prefix, as "
                                     "given to `recforge serve`."),
) -> None:
    """Train a new artifact on the original training data plus the stored events.

    Same model and config as the original; new users and items are included. Serve it with
    `POST /v1/admin/reload {"model_dir": OUT}` or a restart.
    """
    _require_extra("sqlalchemy")
    from recforge.registry import create_model, load_model
    from recforge.serving.store import EventStore, default_store_url

    if out.resolve() == model.resolve():
        raise ConfigError("--out must differ from --model: write the new artifact elsewhere, "
                          "then reload the service with it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"--out {out} exists and is not empty (use --force to replace it)")
    base = load_model(model)
    event_store = EventStore.open(store or default_store_url(model), table_prefix=table_prefix)
    try:
        events = events_frame(event_store)
    finally:
        event_store.close()
    data, stats = merge_training_and_events(base, events)
    new = create_model(base.name, base.config.model_dump())
    typer.echo(f"training {base.name} on {stats['training']} training interactions + "
               f"{stats['events']} stored events ({stats['new_users']} new users, "
               f"{stats['new_items']} new items, {stats['skipped']} events without a rating skipped)",
               err=True)
    new.fit(data)
    new.save(out)
    typer.echo(f"trained in {new.fit_seconds_:.1f} s; saved to {out}", err=True)


def events_frame(store: Any) -> pd.DataFrame:
    """Every stored event in storage order: user_id, item_id, rating (NaN when absent)."""
    import pandas as pd

    frames = [pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]) for rows in
              ([{k: r[k] for k in ("user_id", "item_id", "rating")} for r in batch]
               for batch in store.iter_events())]
    if not frames:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "item_id": pd.Series(dtype=object),
                             "rating": pd.Series(dtype=float)})
    return pd.concat(frames, ignore_index=True)


def merge_training_and_events(model: Recommender, events: pd.DataFrame) -> tuple[Interactions, dict[str, int]]:
    """The model's training data with the events appended; an event replaces a training pair.

    With explicit ratings, an event without one is skipped for the rating task and given the
    training median for top-N (an implicit positive). Without ratings, event ratings are
    ignored. Item and user features are kept (new items have none).
    """
    import numpy as np
    import pandas as pd

    from recforge.data.interactions import Interactions

    train = model.training_interactions()
    base = train.to_frame()
    ev = events.copy()
    skipped = 0
    if train.ratings is not None:
        missing = ev["rating"].isna()
        if model.config.task == "rating":
            skipped = int(missing.sum())
            ev = ev[~missing]
        else:
            ev.loc[missing, "rating"] = float(np.median(train.ratings)) if len(train) else 1.0
        columns = ["user_id", "item_id", "rating"]
    else:
        columns = ["user_id", "item_id"]
    merged = pd.concat([base[columns], ev[columns]], ignore_index=True)
    data = Interactions.from_frame(
        merged, rating_col="rating" if train.has_ratings else None, timestamp_col=None,
        item_features=model.item_features_, user_features=model.user_features_,
    )
    stats = {
        "training": len(train), "events": len(ev), "skipped": skipped,
        "new_users": len(set(ev["user_id"]) - set(model.user_map_.ids.tolist())),
        "new_items": len(set(ev["item_id"]) - set(model.item_map_.ids.tolist())),
    }
    return data, stats

