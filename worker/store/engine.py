"""Engine construction and driver-error translation for the store.

SQLite connections get ``busy_timeout`` (30 s), WAL journal mode and foreign keys on connect. The
pysqlite driver's own transaction handling is switched off so that SQLAlchemy's ``begin`` event emits
the ``BEGIN`` itself: a plain ``BEGIN`` for reads and ``BEGIN IMMEDIATE`` for writes (engines derived with
:data:`WRITE_OPTION`), so that a writer takes SQLite's write lock up front and waits on ``busy_timeout``
instead of failing when it upgrades a read lock.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from worker.errors import StoreError, TransientStoreError

logger = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
WRITE_OPTION = "copydesk_write"

_TRANSIENT_MARKERS = (
    "database is locked",
    "database table is locked",
    "connection refused",
    "could not connect",
    "server closed",
    "connection is closed",
    "connection failed",
    "connection timeout",
    "timeout expired",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "ssl syscall",
    "eof detected",
)
_MISSING_TABLE_MARKERS = ("no such table",)


def parse_url(url: str) -> URL:
    """Parse and check a store URL; :class:`StoreError` when it is malformed or not supported."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise StoreError(f"invalid store URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"unsupported store URL {parsed.render_as_string(hide_password=True)!r}: use sqlite:/// or "
            "postgresql+psycopg://"
        )
    return parsed


def safe_url(url: URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    return url.render_as_string(hide_password=True)


def make_engine(url: URL) -> Engine:
    """An engine for ``url`` configured for the store (see the module docstring)."""
    try:
        if url.get_backend_name() == "sqlite":
            _create_sqlite_parent(url)
            engine = create_engine(url)
            _install_sqlite_hooks(engine)
            return engine
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot open the store at {safe_url(url)}: {exc}") from exc


def _create_sqlite_parent(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    parent = Path(database).expanduser().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory {parent} for the SQLite store: {exc}") from exc


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin event emits BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL unless already on; retry while another connection is switching the same new file.

    SQLite does not call the busy handler for every lock taken while changing the journal mode, so two
    processes opening a fresh database at once can get "database is locked" here: retry with back-off
    for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlstate(exc: sa_exc.DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or "")


def is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    """True when ``exc`` is a UNIQUE or PRIMARY KEY violation on either backend."""
    return _sqlstate(exc) == "23505" or "UNIQUE constraint failed" in str(exc.orig)


def _is_transient(exc: sa_exc.DBAPIError) -> bool:
    if exc.connection_invalidated or _sqlstate(exc).startswith(("08", "40", "57P")):
        return True
    message = str(exc.orig).lower()
    return isinstance(exc, sa_exc.OperationalError) and any(m in message for m in _TRANSIENT_MARKERS)


def _first_line(exc: sa_exc.DBAPIError) -> str:
    return (str(exc.orig).strip().splitlines() or ["unknown error"])[0]


@contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn SQLAlchemy/driver errors into :class:`StoreError` subclasses with a readable message."""
    where = safe_url(url)
    try:
        yield
    except sa_exc.TimeoutError as exc:
        raise TransientStoreError(f"the store at {where} has no free connection ({exc}); retry later") from exc
    except sa_exc.DBAPIError as exc:
        detail = _first_line(exc)
        if _is_transient(exc):
            logger.warning("transient store error at %s: %s", where, detail)
            raise TransientStoreError(f"the store at {where} is busy or unreachable ({detail}); retry later") from exc
        if _sqlstate(exc) == "42P01" or any(m in detail.lower() for m in _MISSING_TABLE_MARKERS):
            raise StoreError(f"the store at {where} is not set up ({detail}): run the store migration first") from exc
        raise StoreError(f"the store at {where} refused the operation: {detail}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(f"the store at {where} refused the operation: {exc}") from exc
