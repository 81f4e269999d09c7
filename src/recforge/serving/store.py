"""The event store: interactions posted to the service, kept durably in any SQLAlchemy database.

SQLite (WAL mode, ``synchronous=FULL``) is the embedded default, a file next to the model
artifact; PostgreSQL (psycopg 3) serves production. The schema is created on first start by
explicit, numbered migrations recorded in a version table, under a lock so that several
workers starting at once apply each migration exactly once.

Duplicates are refused by the database itself: ``idempotency_key`` carries a unique
constraint and rows are inserted with ``ON CONFLICT DO NOTHING``, so concurrent retries of
one event from many clients or workers store it once. `add_events` returns only after the
transaction has committed: an event acknowledged by the service is on disk.

Every backend behaves alike on text PostgreSQL cannot hold: an event with a NUL character
is refused with DataError (SQLite would store it), and a read for such an ID finds nothing.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from recforge.errors import DataError, RecforgeError

#: the newest schema version this code knows (one entry per migration below)
SCHEMA_VERSION = 2
_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]{0,30}$")
#: key for PostgreSQL's advisory lock that serializes migrations across processes
_PG_LOCK_KEY = 0x7265_6366  # "recf"


class StoreError(RecforgeError):
    """The event store cannot be opened, migrated or reached; the message is one line."""


@dataclass(frozen=True)
class Event:
    """One interaction as posted: the two IDs are required, everything else optional."""

    user_id: str
    item_id: str
    rating: float | None = None
    type: str = "interaction"
    timestamp: int | None = None
    idempotency_key: str | None = None


def default_store_url(model_dir: str | Path) -> str:
    """``sqlite:///…`` for a file beside the artifact: ``<dir>-events.db`` next to ``<dir>``."""
    path = Path(model_dir).resolve()
    return f"sqlite:///{path.parent / (path.name + '-events.db')}"


def normalize_url(url: str) -> sa.URL:
    """Parse `url`; plain ``postgresql://`` URLs get the psycopg 3 driver."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise StoreError(f"invalid store URL {url!r} (expected e.g. sqlite:///events.db or "
                         "postgresql://user@host/db)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise StoreError("an in-memory SQLite store is not durable; give a file: sqlite:///PATH")
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot create the event store: directory {parent} does not exist")
    return parsed


class EventStore:
    """Append-only interaction log with idempotency, shared by every worker of a service.

    `table_prefix` (lowercase letters, digits, ``_``) lets several stores share one database,
    e.g. one per test run. Call `migrate` once before use (`open` does both).
    """

    def __init__(self, url: str, *, table_prefix: str = "", pool_size: int = 10) -> None:
        if table_prefix and not _PREFIX_RE.match(table_prefix):
            raise StoreError(f"invalid table prefix {table_prefix!r} (lowercase letters, digits, _)")
        self.url = normalize_url(url)
        self.display_url = self.url.render_as_string(hide_password=True)
        self.prefix = table_prefix
        self.dialect_name = self.url.get_backend_name()
        self.engine = self._make_engine(pool_size)
        self.metadata = sa.MetaData()
        self.version_table = sa.Table(
            f"{table_prefix}recforge_schema", self.metadata,
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("applied_at", sa.Float, nullable=False),
        )
        self.events = sa.Table(
            f"{table_prefix}recforge_events", self.metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                      autoincrement=True),
            sa.Column("user_id", sa.String(256), nullable=False),
            sa.Column("item_id", sa.String(256), nullable=False),
            sa.Column("rating", sa.Float, nullable=True),
            sa.Column("type", sa.String(32), nullable=False),
            sa.Column("timestamp", sa.BigInteger, nullable=True),
            sa.Column("idempotency_key", sa.String(128), nullable=True),
            sa.Column("received_at", sa.Float, nullable=False),
            sa.UniqueConstraint("idempotency_key", name=f"{table_prefix}recforge_events_idem_key"),
            sa.Index(f"{table_prefix}recforge_events_user", "user_id"),
        )
        self.control = sa.Table(
            f"{table_prefix}recforge_control", self.metadata,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("value", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
        #: migration number → function applying it inside the migration transaction
        self._migrations: dict[int, Callable[[Connection], None]] = {
            1: self._migration_1, 2: self._migration_2,
        }

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> EventStore:
        """Connect and bring the schema up to date; StoreError (one line) when impossible."""
        store = cls(url, **kwargs)
        try:
            store.migrate()
        except Exception:
            store.close()
            raise
        return store

    # ------------------------------------------------------------------ engine
    def _make_engine(self, pool_size: int) -> Engine:
        try:
            if self.dialect_name == "sqlite":
                engine = sa.create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size,
                                          connect_args={"timeout": 30, "check_same_thread": False})
                _configure_sqlite(engine)
                return engine
            return sa.create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size,
                                    pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"no database driver for {self.display_url}: {exc}") from None

    def _begin(self, write: bool = False) -> Any:
        """A transaction; for SQLite, writers take the write lock up front (BEGIN IMMEDIATE)."""
        conn = self.engine.connect()
        if write and self.dialect_name == "sqlite":
            conn = conn.execution_options(sqlite_immediate=True)
        return _Transaction(conn)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema
    def migrate(self) -> int:
        """Apply the migrations this database lacks; returns the schema version."""
        try:
            with self._begin(write=True) as conn:
                if self.dialect_name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                self.version_table.create(conn, checkfirst=True)
                current = conn.execute(sa.select(sa.func.max(self.version_table.c.version))).scalar()
                current = int(current or 0)
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"store {self.display_url} has schema version {current}, newer than this "
                        f"recforge supports ({SCHEMA_VERSION}); upgrade recforge"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    self._migrations[version](conn)
                    conn.execute(sa.insert(self.version_table).values(version=version,
                                                                      applied_at=time.time()))
                return SCHEMA_VERSION
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the event store {self.display_url}: {_one_line(exc)}") from None

    def _migration_1(self, conn: Connection) -> None:
        """Version 1: the events table, its user index and the idempotency-key constraint."""
        self.events.create(conn, checkfirst=True)

    def _migration_2(self, conn: Connection) -> None:
        """Version 2: a small control table; row "model" tells every worker which model to serve."""
        self.control.create(conn, checkfirst=True)
        conn.execute(sa.insert(self.control).values(name="model", generation=0, value="{}",
                                                    updated_at=time.time()))

    def schema_version(self) -> int:
        with self._begin() as conn:
            return int(conn.execute(sa.select(sa.func.max(self.version_table.c.version))).scalar() or 0)

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ writes
    def add_events(self, events: Sequence[Event]) -> list[bool]:
        """Store `events` in one committed transaction; per event: True stored, False duplicate.

        An event whose idempotency key is already stored, or appears earlier in the same
        batch, is a duplicate and is not stored again. Events without a key are always stored.
        """
        for ev in events:
            for field in ("user_id", "item_id", "type", "idempotency_key"):
                if "\x00" in (getattr(ev, field) or ""):
                    raise DataError(f"event {field} contains a NUL character, which the store cannot hold")
        now = time.time()
        status = [True] * len(events)
        first_with_key: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for i, ev in enumerate(events):
            key = ev.idempotency_key
            if key is not None:
                if key in first_with_key:
                    status[i] = False
                    continue
                first_with_key[key] = i
            rows.append({"user_id": ev.user_id, "item_id": ev.item_id, "rating": ev.rating,
                         "type": ev.type, "timestamp": ev.timestamp, "idempotency_key": key,
                         "received_at": now})
        if not rows:
            return status
        try:
            with self._begin(write=True) as conn:
                inserted_keys = self._insert(conn, rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None
        for key, i in first_with_key.items():
            status[i] = key in inserted_keys
        return status

    def _insert(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert rows, skipping key conflicts; returns the idempotency keys actually inserted."""
        if self.dialect_name in ("sqlite", "postgresql"):
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert if self.dialect_name == "sqlite" else pg_insert
            inserted: set[str] = set()
            # SQLite allows 32766 bound parameters per statement: 8 columns × 2000 rows fits
            for start in range(0, len(rows), 2000):
                stmt = (insert(self.events).values(rows[start:start + 2000])
                        .on_conflict_do_nothing(index_elements=["idempotency_key"])
                        .returning(self.events.c.idempotency_key))
                inserted.update(k for k in conn.execute(stmt).scalars() if k is not None)
            return inserted
        # other databases: one savepoint per keyed row, a unique violation means duplicate
        inserted = set()
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(self.events).values(row))
            except IntegrityError:
                continue
            if row["idempotency_key"] is not None:
                inserted.add(row["idempotency_key"])
        return inserted

    # ------------------------------------------------------------------ control
    def get_control(self, name: str) -> tuple[int, str]:
        """(generation, value) of a control entry; generation 0 means never set."""
        try:
            with self._begin() as conn:
                row = conn.execute(sa.select(self.control.c.generation, self.control.c.value)
                                   .where(self.control.c.name == name)).first()
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None
        return (int(row[0]), str(row[1])) if row is not None else (0, "")

    def set_control(self, name: str, value: str) -> int:
        """Set a control entry, atomically bumping its generation; returns the new generation."""
        c = self.control
        try:
            with self._begin(write=True) as conn:
                conn.execute(sa.update(c).where(c.c.name == name)
                             .values(generation=c.c.generation + 1, value=value, updated_at=time.time()))
                return int(conn.execute(sa.select(c.c.generation).where(c.c.name == name)).scalar_one())
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None

    def put_control(self, name: str, value: str) -> None:
        """Create or replace a control entry without touching generations (acknowledgements)."""
        c = self.control
        try:
            with self._begin(write=True) as conn:
                done = conn.execute(sa.update(c).where(c.c.name == name)
                                    .values(value=value, updated_at=time.time())).rowcount
                if not done:
                    conn.execute(sa.insert(c).values(name=name, generation=0, value=value,
                                                     updated_at=time.time()))
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None

    def list_control(self, prefix: str) -> dict[str, str]:
        """Values of the control entries whose names start with `prefix`."""
        c = self.control
        try:
            with self._begin() as conn:
                rows = conn.execute(sa.select(c.c.name, c.c.value)
                                    .where(c.c.name.startswith(prefix, autoescape=True))).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None
        return {str(name): str(value) for name, value in rows}

    def delete_control(self, prefix: str, older_than: float) -> int:
        """Remove the control entries named `prefix`… last set before Unix time `older_than`."""
        c = self.control
        try:
            with self._begin(write=True) as conn:
                return int(conn.execute(sa.delete(c).where(c.c.name.startswith(prefix, autoescape=True),
                                                           c.c.updated_at < older_than)).rowcount)
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ reads
    def items_for_users(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """Item IDs with stored events per user, oldest first (event timestamp, then arrival),
        each item once at its latest position; users without events are absent."""
        out: dict[str, list[str]] = {}
        user_ids = [u for u in user_ids if "\x00" not in u]  # none is ever stored
        if not user_ids:
            return out
        ev = self.events
        try:
            with self._begin() as conn:
                for start in range(0, len(user_ids), 500):
                    chunk = list(dict.fromkeys(user_ids[start:start + 500]))
                    when = sa.func.coalesce(ev.c.timestamp, 0)
                    result = conn.execute(sa.select(ev.c.user_id, ev.c.item_id).where(ev.c.user_id.in_(chunk))
                                          .order_by(when, ev.c.id))
                    for user, item in result:
                        out.setdefault(user, []).append(item)
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None
        return {user: list(reversed(dict.fromkeys(reversed(items)))) for user, items in out.items()}

    def user_events(self, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The user's newest stored events first, at most `limit`."""
        if "\x00" in user_id:  # none is ever stored
            return []
        ev = self.events
        query = (sa.select(ev.c.item_id, ev.c.rating, ev.c.type, ev.c.timestamp, ev.c.received_at)
                 .where(ev.c.user_id == user_id).order_by(ev.c.id.desc()).limit(limit))
        try:
            with self._begin() as conn:
                return [dict(row._mapping) for row in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise StoreError(f"event store unavailable: {_one_line(exc)}") from None

    def count(self) -> int:
        with self._begin() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.events)).scalar() or 0)

    def iter_events(self, batch_size: int = 50_000) -> Iterator[list[dict[str, Any]]]:
        """All events in storage order, in batches of row dicts (for retraining)."""
        ev = self.events
        last = 0
        while True:
            with self._begin() as conn:
                rows = [dict(r._mapping) for r in conn.execute(
                    sa.select(ev).where(ev.c.id > last).order_by(ev.c.id).limit(batch_size))]
            if not rows:
                return
            last = rows[-1]["id"]
            yield rows

    def drop(self) -> None:
        """Remove this store's tables (tests and tooling; the service never calls it)."""
        self.metadata.drop_all(self.engine)


class _Transaction:
    """``with`` block owning a connection and its transaction: commit on success, else roll back."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        try:
            self.conn.begin()
        except Exception:
            self.conn.close()
            raise
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()


def _configure_sqlite(engine: Engine) -> None:
    """WAL journal, full fsync on commit, a busy timeout, and explicit BEGIN statements.

    pysqlite's own transaction handling is turned off so that SQLAlchemy's ``begin`` emits a
    real ``BEGIN`` (``BEGIN IMMEDIATE`` for writers), as the SQLAlchemy docs recommend.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _enable_wal(cursor: Any, wait_s: float = 30.0) -> None:
    """Switch the database file to WAL once; retry while another connection holds the lock.

    Changing the journal mode needs an exclusive lock and SQLite answers "database is locked"
    at once, without its busy handler, when several processes open a new store together.
    The mode is persistent, so later connections find it set and skip the switch.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _one_line(exc: BaseException) -> str:
    """A database error's first line, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
