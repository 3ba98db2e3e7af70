"""Ordered schema migrations, recorded in ``schema_migrations``.

:func:`apply_pending` runs inside one transaction that the caller opened on a connection that holds the
store's migration lock: on SQLite the transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time,
others wait on ``busy_timeout``); on PostgreSQL :func:`apply_pending` takes a transaction-scoped advisory
lock first. Two processes migrating at once therefore run one after the other, and the second finds
nothing to do. SQLite and PostgreSQL both have transactional DDL, so a migration that fails leaves the
database at the previous version.

How to add migration 2 (for example a ``briefs.priority`` column):

1. In :mod:`worker.store.schema`, write ``define_v2(metadata)`` that changes the *current* tables the
   same way, e.g. ``metadata.tables["briefs"].append_column(Column("priority", Integer, nullable=False,
   server_default="0"))``, and call it right after ``define_v1(metadata)``. Never edit ``define_v1``:
   migration 1 must keep creating exactly the version-1 tables.
2. Here, write ``_v2_add_brief_priority(conn)`` that makes the same change in the database with DDL both
   backends accept, e.g. ``conn.execute(text("ALTER TABLE briefs ADD COLUMN priority INTEGER NOT NULL
   DEFAULT 0"))``, and append ``Migration(2, "add briefs.priority", _v2_add_brief_priority)`` to
   :data:`MIGRATIONS`. SQLite's ``ALTER TABLE`` cannot drop constraints or change column types: for
   those, create the new table, copy the rows, drop the old one and rename (``PRAGMA
   defer_foreign_keys=ON`` first, since ``foreign_keys`` cannot change inside a transaction).
3. Add a test that a version-1 store migrated to 2 and a fresh store end with the same columns, on
   SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, inspect, select, text

from worker.errors import StoreError
from worker.store.schema import define_v1, define_v2, new_metadata, schema_migrations

logger = logging.getLogger(__name__)

_PG_LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtext('copydesk.migrate:' || coalesce(current_schema(), '')))")


@dataclass(frozen=True)
class Migration:
    """One schema change: ``apply`` runs inside the migration transaction."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_create_tables(conn: Connection) -> None:
    v1 = new_metadata()
    define_v1(v1)
    v1.create_all(conn)


def _v2_create_jobs(conn: Connection) -> None:
    """Create ``jobs`` and ``job_items``."""
    current = new_metadata()
    define_v1(current)
    define_v2(current)
    for name in ("jobs", "job_items"):
        current.tables[name].create(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create briefs, articles and candidates", _v1_create_tables),
    Migration(2, "create jobs and job_items", _v2_create_jobs),
)


def _check_order(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must be 1..N in order, got {versions}")


_check_order(MIGRATIONS)


def latest_version() -> int:
    """The version a fully migrated store has."""
    return MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The highest applied version, 0 for an empty database."""
    if not inspect(conn).has_table(schema_migrations.name):
        return 0
    return conn.execute(select(func.max(schema_migrations.c.version))).scalar_one_or_none() or 0


def _take_lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_LOCK_SQL)
    # SQLite: the caller's transaction began with BEGIN IMMEDIATE, which is the lock.


def apply_pending(conn: Connection, *, now: datetime) -> list[int]:
    """Apply every migration not yet recorded, in order; return the versions applied now."""
    _take_lock(conn)
    schema_migrations.create(conn, checkfirst=True)
    applied = set(conn.execute(select(schema_migrations.c.version)).scalars())
    newest = max(applied, default=0)
    if newest > latest_version():
        raise StoreError(
            f"the store's schema is at version {newest} but this copydesk only knows versions up to "
            f"{latest_version()}: upgrade copydesk"
        )
    done: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        logger.info("applying store migration %d: %s", migration.version, migration.name)
        migration.apply(conn)
        conn.execute(insert(schema_migrations).values(version=migration.version, name=migration.name, applied_at=now))
        done.append(migration.version)
    return done
