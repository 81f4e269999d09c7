"""Fixtures of the serving tests: model artifacts, keys, in-process clients, live servers.

Live servers are real uvicorn processes on a free loopback port (the same app factory as
`recforge serve --workers N`); PostgreSQL tests skip with a reason when 127.0.0.1:5432 is
not reachable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.registry import create_model
from recforge.serving.app import create_app
from recforge.serving.auth import create_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PG_URLS = ("postgresql+psycopg://root@127.0.0.1:5432/test",
           "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# ---------------------------------------------------------------------- artifacts
def tiny_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Six users, eight items, ratings; item titles "Item <id>"."""
    rows = [("u1", "a", 5), ("u1", "b", 4), ("u2", "a", 3), ("u2", "c", 5), ("u3", "b", 2),
            ("u3", "c", 4), ("u3", "d", 5), ("u4", "a", 4), ("u4", "e", 1), ("u5", "f", 3),
            ("u5", "a", 5), ("u6", "g", 4), ("u6", "h", 2), ("u6", "a", 3)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    items = pd.DataFrame({"title": [f"Item {c}" for c in "abcdefgh"]}, index=list("abcdefgh"))
    return frame, items


@pytest.fixture
def tiny_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return tiny_frame()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame, items = tiny_frame()
    data = Interactions.from_frame(frame, item_features=items)
    out = tmp_path_factory.mktemp("tiny") / "pop"
    create_model("popularity").fit(data).save(out)
    return out


@pytest.fixture(scope="session")
def tiny_itemknn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame, items = tiny_frame()
    data = Interactions.from_frame(frame, item_features=items)
    out = tmp_path_factory.mktemp("tiny") / "itemknn"
    create_model("itemknn").fit(data).save(out)
    return out


def load_ml100k(bench: Path, raw: Path) -> Interactions:
    frame = pd.read_csv(bench / "topn_train.tsv", sep="\t",
                        dtype={"user_id": str, "item_id": str})
    titles = pd.read_csv(raw / "u.item", sep="|", encoding="latin-1", header=None,
                         usecols=[0, 1], names=["item_id", "title"], dtype={"item_id": str})
    return Interactions.from_frame(frame, item_features=titles.set_index("item_id"))


@pytest.fixture(scope="session")
def ml100k_model_dir(tmp_path_factory: pytest.TempPathFactory, ml100k_bench: Path,
                     ml100k_raw: Path) -> Path:
    """An item-kNN artifact trained on the ML-100K benchmark split, with movie titles."""
    out = tmp_path_factory.mktemp("ml100k") / "itemknn"
    create_model("itemknn").fit(load_ml100k(ml100k_bench, ml100k_raw)).save(out)
    return out


# ---------------------------------------------------------------------- keys and clients
@dataclass(frozen=True)
class Keys:
    file: Path
    read: str
    admin: str


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    file = tmp_path_factory.mktemp("keys") / "keys.json"
    return Keys(file, create_key(file, "reader", "read"), create_key(file, "operator", "admin"))


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator:
    """make_client(model_dir, **create_app kwargs) -> TestClient with its own SQLite store."""
    clients: list[TestClient] = []

    def make(model_dir: Path, **kwargs: object) -> TestClient:
        kwargs.setdefault("store_url", f"sqlite:///{tmp_path / f'events-{len(clients)}.db'}")
        client = TestClient(create_app(model_dir, **kwargs))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# ---------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def pg_url() -> str:
    import sqlalchemy as sa

    reasons = []
    for url in PG_URLS:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return url
        except Exception as exc:  # any failure means: no usable PostgreSQL here
            reasons.append(str(exc).splitlines()[0])
        finally:
            engine.dispose()
    pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({'; '.join(reasons)})")


@pytest.fixture
def table_prefix() -> str:
    """A table prefix unique to this test, so runs never see each other's PostgreSQL rows."""
    return f"t{uuid.uuid4().hex[:10]}_"


# ---------------------------------------------------------------------- live servers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the server process group: no shutdown hook runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


#: runs `recforge serve` (the Typer command itself) whether or not main.py registers it
_SERVE = ("import typer; from recforge.cli.serve import serve_command; "
          "app = typer.Typer(pretty_exceptions_enable=False); app.command()(serve_command); app()")


def start_server(model_dir: Path, store_url: str, log: Path, keys_file: Path | None = None,
                 workers: int = 1, port: int | None = None, table_prefix: str = "",
                 env: dict[str, str] | None = None) -> LiveServer:
    """A real `recforge serve` process for `model_dir`; waits until /readyz answers 200.

    `env`: variables added to the server's environment.
    """
    port = port or free_port()
    cmd = [sys.executable, "-c", _SERVE, "--model", str(model_dir), "--store", store_url,
           "--port", str(port), "--workers", str(workers), "--log-level", "warning",
           "--table-prefix", table_prefix]
    if keys_file is not None:
        cmd += ["--keys-file", str(keys_file)]
    env = {**os.environ, **(env or {})}
    with log.open("ab") as fh:
        process = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")


@pytest.fixture
def thread_server() -> Iterator:
    """thread_server(app) -> base URL of a real uvicorn server running `app` in a thread."""
    import threading

    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: object) -> str:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("in-thread server did not start")
            time.sleep(0.02)
        running.append((server, thread))
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator:
    """live_server(model_dir, store_url, ...) -> LiveServer, stopped after the test."""
    servers: list[LiveServer] = []

    def start(model_dir: Path, store_url: str, **kwargs: object) -> LiveServer:
        server = start_server(model_dir, store_url, tmp_path / f"server-{len(servers)}.log", **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
