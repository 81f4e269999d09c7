"""The event store against SQLite and PostgreSQL: schema, idempotency, concurrency, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from recforge.serving.store import (
    SCHEMA_VERSION,
    Event,
    EventStore,
    StoreError,
    default_store_url,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, table prefix) of an empty store; PostgreSQL tables are dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}", ""
        return
    url = request.getfixturevalue("pg_url")
    prefix = request.getfixturevalue("table_prefix")
    yield url, prefix
    cleanup = EventStore(url, table_prefix=prefix)
    cleanup.drop()
    cleanup.close()


@pytest.fixture
def store(store_url: tuple[str, str]) -> Iterator[EventStore]:
    url, prefix = store_url
    s = EventStore.open(url, table_prefix=prefix)
    yield s
    s.close()


def test_schema_is_created_once_with_a_version(store_url: tuple[str, str]):
    url, prefix = store_url
    first = EventStore.open(url, table_prefix=prefix)
    assert first.schema_version() == SCHEMA_VERSION
    first.add_events([Event("u", "i", idempotency_key="k")])
    second = EventStore.open(url, table_prefix=prefix)  # a restart: nothing re-created or lost
    assert second.schema_version() == SCHEMA_VERSION and second.count() == 1
    with second.engine.connect() as conn:
        versions = conn.execute(sa.select(second.version_table.c.version)).scalars().all()
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    first.close()
    second.close()


def test_concurrent_first_start_migrates_once(store_url: tuple[str, str]):
    url, prefix = store_url
    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _: EventStore.open(url, table_prefix=prefix), range(8)))
    assert {s.schema_version() for s in stores} == {SCHEMA_VERSION}
    with stores[0].engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(stores[0].version_table)).scalar() \
            == SCHEMA_VERSION
    for s in stores:
        s.close()


def test_newer_schema_is_refused(store: EventStore, store_url: tuple[str, str]):
    with store.engine.begin() as conn:
        conn.execute(sa.insert(store.version_table).values(version=SCHEMA_VERSION + 1, applied_at=0.0))
    url, prefix = store_url
    with pytest.raises(StoreError, match="newer than this recforge supports"):
        EventStore.open(url, table_prefix=prefix)


def test_idempotency_keys_within_and_across_batches(store: EventStore):
    assert store.add_events([Event("u1", "a", 5.0, "rating", 100, "k1"), Event("u1", "b", idempotency_key="k1"),
                             Event("u1", "c")]) == [True, False, True]
    assert store.add_events([Event("u1", "a", idempotency_key="k1"), Event("u2", "a", idempotency_key="k2"),
                             Event("u2", "b")]) == [False, True, True]
    assert store.count() == 4
    assert store.items_for_users(["u1", "u2", "nobody"]) == {"u1": ["a", "c"], "u2": ["a", "b"]} or \
        {k: sorted(v) for k, v in store.items_for_users(["u1", "u2"]).items()} == {"u1": ["a", "c"], "u2": ["a", "b"]}
    newest = store.user_events("u1")
    assert [e["item_id"] for e in newest] == ["c", "a"]
    assert newest[1]["rating"] == 5.0 and newest[1]["type"] == "rating" and newest[1]["timestamp"] == 100
    rows = [r for batch in store.iter_events(batch_size=2) for r in batch]
    assert [r["item_id"] for r in rows] == ["a", "c", "a", "b"]


def test_concurrent_writers_store_each_key_exactly_once(store: EventStore):
    """32 writers race on 200 keys, every key sent by 8 of them: each is stored once."""
    n_keys, n_writers = 200, 32

    def writer(w: int) -> int:
        stored = 0
        mine = [k for k in range(n_keys) if k % 4 == w % 4]
        for start in range(0, len(mine), 10):
            batch = [Event(f"user{k % 7}", f"item{k}", idempotency_key=f"key-{k}") for k in mine[start:start + 10]]
            stored += sum(store.add_events(batch))
        return stored

    with ThreadPoolExecutor(n_writers) as pool:
        stored = sum(pool.map(writer, range(n_writers)))
    assert stored == n_keys
    assert store.count() == n_keys
    with store.engine.connect() as conn:
        keys = conn.execute(sa.select(store.events.c.idempotency_key)).scalars().all()
    assert sorted(keys) == sorted(f"key-{k}" for k in range(n_keys))


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path):
    store = EventStore.open(f"sqlite:///{tmp_path / 'e.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.add_events([Event("u", "i")])
    store.close()
    # committed rows are in the file for any other reader
    assert sqlite3.connect(tmp_path / "e.db").execute("select count(*) from recforge_events").fetchone() == (1,)


def test_default_store_sits_beside_the_artifact(tmp_path: Path):
    assert default_store_url(tmp_path / "model") == f"sqlite:///{tmp_path.resolve() / 'model-events.db'}"


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "invalid store URL"),
    ("sqlite://", "in-memory SQLite store is not durable"),
    ("sqlite:////no/such/dir/events.db", "directory /no/such/dir does not exist"),
    ("nosuchdb://x/y", "no database driver"),
    ("postgresql://nobody:secret@127.0.0.1:1/none", "cannot open the event store"),
])
def test_bad_store_urls_are_one_line_errors(url: str, message: str):
    with pytest.raises(StoreError, match=message) as info:
        EventStore.open(url)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


def test_table_prefix_is_validated():
    with pytest.raises(StoreError, match="invalid table prefix"):
        EventStore("sqlite:////tmp/x.db", table_prefix="x; drop table")
