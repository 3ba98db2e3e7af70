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
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, inspect, literal, select, text, update

from worker.errors import StoreError
from worker.store.schema import (
    V8_INDEXES,
    JSONType,
    define_v1,
    define_v2,
    define_v3,
    define_v4,
    define_v5,
    define_v6,
    define_v7,
    define_v8,
    new_metadata,
    schema_migrations,
    v4_job_columns,
    v5_quality_column,
    v6_retry_group_column,
    v7_job_expiry_column,
)

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


def _v3_review(conn: Connection) -> None:
    """Add ``briefs.feedback``; create ``article_revisions`` and ``article_events``; record each existing
    article's text as its current revision and a ``generated`` event, so that no history starts empty."""
    conn.execute(text("ALTER TABLE briefs ADD COLUMN feedback TEXT"))
    current = new_metadata()
    define_v1(current)
    define_v2(current)
    define_v3(current)
    for name in ("article_revisions", "article_events"):
        current.tables[name].create(conn)
    arts = current.tables["articles"]
    revisions = current.tables["article_revisions"]
    events = current.tables["article_events"]
    copied = ("article_id", "revision", "title", "body_markdown", "scores", "failing_gates", "status")
    conn.execute(
        insert(revisions).from_select(
            [*copied, "source", "author", "provenance", "created_at"],
            select(
                arts.c.id,
                arts.c.revision,
                arts.c.title,
                arts.c.body_markdown,
                arts.c.scores,
                arts.c.failing_gates,
                arts.c.status,
                literal("generated"),
                literal("copydesk"),
                arts.c.provenance,
                arts.c.created_at,
            ),
        )
    )
    conn.execute(
        insert(events).from_select(
            ["article_id", "brief_id", "kind", "to_status", "revision", "actor", "details", "created_at"],
            select(
                arts.c.id,
                arts.c.brief_id,
                literal("generated"),
                arts.c.status,
                arts.c.revision,
                literal("copydesk"),
                literal({"note": "recorded by migration 3"}, JSONType),
                arts.c.created_at,
            ),
        )
    )


def _v4_scheduled_runs(conn: Connection) -> None:
    """Add the run columns to ``jobs`` (with their index) and create ``scheduler_locks``."""
    for column in v4_job_columns():
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column.name} {kind}"))
    current = new_metadata()
    define_v1(current)
    define_v2(current)
    define_v4(current)
    for index in current.tables["jobs"].indexes:
        if index.name == "ix_jobs_job_name_scheduled_for":
            index.create(conn)
    current.tables["scheduler_locks"].create(conn)


# The gate names when migration 5 was written (worker.styles.catalog.GATE_NAMES then), frozen.
# fmt: off
_V5_GATES = frozenset({
    "readability", "grade", "sentiment", "formality", "structure", "length",
    "repetition", "keywords", "on_topic", "style_rules", "memorisation",
})
# fmt: on
_V5_ON_TOPIC_WEIGHT = 0.05


def v5_quality(scores: Mapping[str, Any]) -> float:
    """``Scorecard.quality`` of stored scores JSON as it was computed when migration 5 was written; 0 when the
    scores cannot be read. A frozen copy, so that migration 5 always backfills the same numbers: the share of
    gate-able scores that pass, weighted ``1 - w``, plus ``w`` times ``on_topic`` clamped to 0..1."""
    passed: dict[str, bool] = {}
    values: dict[str, float] = {}
    try:
        for name, item in scores.items():
            values[name] = float(item["value"])
            for bound in ("low", "high"):
                if item.get(bound) is not None:
                    float(item[bound])
            passed[name] = bool(item["passed"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    gateable = [ok for name, ok in passed.items() if name in _V5_GATES]
    if not gateable:
        return 0.0
    share = sum(gateable) / len(gateable)
    topical = min(max(values["on_topic"], 0.0), 1.0) if "on_topic" in values else 0.0
    return (1 - _V5_ON_TOPIC_WEIGHT) * share + _V5_ON_TOPIC_WEIGHT * topical


def _v5_article_quality(conn: Connection) -> None:
    """Add ``articles.quality`` and fill it for the stored articles from their scores (:func:`v5_quality`)."""
    column = v5_quality_column()
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE articles ADD COLUMN {column.name} {kind} NOT NULL DEFAULT 0"))
    current = new_metadata()
    define_v1(current)
    define_v5(current)
    arts = current.tables["articles"]
    for article_id, scores in conn.execute(select(arts.c.id, arts.c.scores)).all():
        quality = v5_quality(scores) if isinstance(scores, Mapping) else 0.0
        if quality and math.isfinite(quality):  # a NaN score ranked nowhere in particular; NULL is refused
            conn.execute(update(arts).where(arts.c.id == article_id).values(quality=quality))


def _v6_retry_group(conn: Connection) -> None:
    """Add ``briefs.retry_group`` and its index (retrying a crashed batch in halves)."""
    column = v6_retry_group_column()
    conn.execute(text(f"ALTER TABLE briefs ADD COLUMN {column.name} {column.type.compile(dialect=conn.dialect)}"))
    current = new_metadata()
    define_v1(current)
    define_v5(current)
    define_v6(current)
    for index in current.tables["briefs"].indexes:
        if index.name == "ix_briefs_retry_group":
            index.create(conn)


def _v7_http_api(conn: Connection) -> None:
    """Create ``api_keys``, ``webhook_endpoints``, ``webhook_deliveries`` and ``webhook_attempts``; add
    ``jobs.expires_at``."""
    column = v7_job_expiry_column()
    conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column.name} {column.type.compile(dialect=conn.dialect)}"))
    current = new_metadata()
    define_v1(current)
    define_v2(current)
    define_v3(current)
    define_v4(current)
    define_v5(current)
    define_v6(current)
    define_v7(current)
    for name in ("api_keys", "webhook_endpoints", "webhook_deliveries", "webhook_attempts"):
        current.tables[name].create(conn)


def _v8_flat_cost_indexes(conn: Connection) -> None:
    """Create the indexes of :func:`~worker.store.schema.define_v8` (their tables are unchanged otherwise)."""
    current = new_metadata()
    for define in (define_v1, define_v2, define_v3, define_v4, define_v5, define_v6, define_v7, define_v8):
        define(current)
    wanted = {name for _, name, _ in V8_INDEXES}
    for table in {table for table, _, _ in V8_INDEXES}:
        for index in current.tables[table].indexes:
            if index.name in wanted:
                index.create(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create briefs, articles and candidates", _v1_create_tables),
    Migration(2, "create jobs and job_items", _v2_create_jobs),
    Migration(3, "editorial review: article_revisions, article_events, briefs.feedback", _v3_review),
    Migration(4, "scheduled runs: jobs run columns and scheduler_locks", _v4_scheduled_runs),
    Migration(5, "articles.quality, the number the review queue sorts by", _v5_article_quality),
    Migration(6, "briefs.retry_group: a crashed batch is retried in halves", _v6_retry_group),
    Migration(7, "http api: api_keys, webhooks and jobs.expires_at", _v7_http_api),
    Migration(
        8, "indexes for a flat per-brief cost: queued briefs, a style's articles, job results", _v8_flat_cost_indexes
    ),
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
