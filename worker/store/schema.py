"""Table definitions of the store, shared by SQLite and PostgreSQL.

The tables are SQLAlchemy Core :class:`~sqlalchemy.Table` objects; the store runs Core statements
through a short-lived ORM :class:`~sqlalchemy.orm.Session` per operation.

Versioning: :func:`define_v1` describes the tables exactly as migration 1 creates them and must never
change afterwards. The module-level :data:`metadata` is the *current* schema that queries use: it starts
as version 1, and a later migration N adds a ``define_vN(metadata)`` function here that alters the
tables the same way migration N alters the database (see :mod:`worker.store.migrations`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 140  # brief ids are safe names (<= 128 characters); article ids add a prefix
STATUS_LENGTH = 32

#: JSON on SQLite (stored as text), JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no timezone support, so the value is converted to UTC
    and stored naive (SQLAlchemy's fixed-width ISO format, which compares correctly as text); it is read
    back as an aware UTC datetime. Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _required(*columns: tuple[str, Any]) -> list[Column[Any]]:
    """``NOT NULL`` columns from ``(name, type)`` pairs, in the order given."""
    return [Column(name, kind, nullable=False) for name, kind in columns]


def define_schema_migrations(metadata: MetaData) -> Table:
    """The bookkeeping table, created before any migration runs."""
    return Table(
        "schema_migrations",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("name", String(200), nullable=False),
        Column("applied_at", UTCDateTime(), nullable=False),
    )


def define_v1(metadata: MetaData) -> None:
    """The tables as migration 1 creates them. Frozen: never edit once released."""
    Table(
        "briefs",
        metadata,
        Column("id", String(ID_LENGTH), primary_key=True),
        Column("payload", JSONType, nullable=False),
        Column("content_hash", String(64), nullable=False),
        Column("source", Text, nullable=True),
        Column("job_id", String(ID_LENGTH), nullable=True),
        Column("status", String(STATUS_LENGTH), nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("lease_owner", String(200), nullable=True),
        Column("lease_expires_at", UTCDateTime(), nullable=True),
        Column("last_error", Text, nullable=True),
        *_timestamps(),
        Index(None, "status", "updated_at"),
        Index(None, "job_id"),
    )
    Table(
        "articles",
        metadata,
        Column("id", String(ID_LENGTH), primary_key=True),
        Column("brief_id", String(ID_LENGTH), ForeignKey("briefs.id"), nullable=False, unique=True),
        Column("status", String(STATUS_LENGTH), nullable=False),
        Column("title", Text, nullable=False),
        Column("body_markdown", Text, nullable=False),
        Column("style", String(ID_LENGTH), nullable=False),
        Column("adapter_version", String(200), nullable=True),
        Column("scores", JSONType, nullable=False),
        Column("failing_gates", JSONType, nullable=False),
        Column("provenance", JSONType, nullable=False),
        Column("revision", Integer, nullable=False, server_default="1"),
        Column("file_path", Text, nullable=True),
        *_timestamps(),
        Index(None, "status"),
        Index(None, "style"),
    )
    Table(
        "candidates",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("brief_id", String(ID_LENGTH), ForeignKey("briefs.id"), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("index", Integer, nullable=False),
        Column("text", Text, nullable=False),
        Column("scores", JSONType, nullable=False),
        Column("failing_gates", JSONType, nullable=False),
        Column("passed", Boolean, nullable=False),
        Column("selected", Boolean, nullable=False),
        Column("seed", BigInteger, nullable=False),
        Column("new_tokens", Integer, nullable=False),
        Column("generation_seconds", Float, nullable=False),
        UniqueConstraint("brief_id", "attempt", "index"),
    )


def define_v2(metadata: MetaData) -> None:
    """Version 2: batch jobs (OpenAI Batch API semantics) and which briefs each job holds."""
    Table(
        "jobs",
        metadata,
        Column("id", String(ID_LENGTH), primary_key=True),
        Column("kind", String(STATUS_LENGTH), nullable=False),
        Column("idempotency_key", String(300), nullable=True, unique=True),
        Column("status", String(STATUS_LENGTH), nullable=False),
        Column("cancel_requested", Boolean, nullable=False, server_default="0"),
        Column("description", Text, nullable=True),
        Column("invalid_records", Integer, nullable=False, server_default="0"),
        Column("finished_at", UTCDateTime(), nullable=True),
        *_timestamps(),
    )
    Table(
        "job_items",
        metadata,
        Column("job_id", String(ID_LENGTH), ForeignKey("jobs.id"), primary_key=True),
        Column("brief_id", String(ID_LENGTH), ForeignKey("briefs.id"), primary_key=True),
        Column("position", Integer, nullable=False),
        Column("note", String(STATUS_LENGTH), nullable=False),
        Index("ix_job_items_brief_id", "brief_id"),
    )


def define_v3(metadata: MetaData) -> None:
    """Version 3: editorial review. Every text an article had (``article_revisions``, one row per revision,
    the current one included), every decision and change (``article_events``), and the editor's feedback
    for a brief sent back for a new draft (``briefs.feedback``)."""
    metadata.tables["briefs"].append_column(Column("feedback", Text, nullable=True))
    Table(
        "article_revisions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("article_id", String(ID_LENGTH), ForeignKey("articles.id"), nullable=False),
        *_required(
            ("revision", Integer),
            ("title", Text),
            ("body_markdown", Text),
            ("scores", JSONType),
            ("failing_gates", JSONType),
            ("status", String(STATUS_LENGTH)),
            ("source", String(STATUS_LENGTH)),
            ("author", String(200)),
        ),
        Column("note", Text, nullable=True),
        Column("provenance", JSONType, nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        UniqueConstraint("article_id", "revision"),
    )
    Table(
        "article_events",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("article_id", String(ID_LENGTH), ForeignKey("articles.id"), nullable=False),
        Column("brief_id", String(ID_LENGTH), nullable=False),
        Column("kind", String(STATUS_LENGTH), nullable=False),
        Column("from_status", String(STATUS_LENGTH), nullable=True),
        Column("to_status", String(STATUS_LENGTH), nullable=False),
        Column("revision", Integer, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("note", Text, nullable=True),
        Column("details", JSONType, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Index(None, "article_id", "id"),
        Index(None, "kind"),
    )


def define_v4(metadata: MetaData) -> None:
    """Version 4: scheduled runs of job files. A run is a ``jobs`` row (``kind = "scheduled"``) with the job
    name, the instant it was scheduled for, its trigger, when it started and settled, and ``run_info``
    (records left out, auto-approval); ``scheduler_locks`` keeps a single scheduler firing the schedules."""
    table = metadata.tables["jobs"]
    for column in v4_job_columns():
        table.append_column(column)
    Index("ix_jobs_job_name_scheduled_for", table.c.job_name, table.c.scheduled_for)
    Table(
        "scheduler_locks",
        metadata,
        Column("name", String(ID_LENGTH), primary_key=True),
        Column("owner", String(200), nullable=False),
        Column("acquired_at", UTCDateTime(), nullable=False),
        Column("heartbeat_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
    )


def v4_job_columns() -> list[Column[Any]]:
    """The columns migration 4 adds to ``jobs`` (new objects on each call: a column belongs to one table)."""
    return [
        Column("job_name", String(ID_LENGTH), nullable=True),
        Column("scheduled_for", UTCDateTime(), nullable=True),
        Column("trigger", String(STATUS_LENGTH), nullable=True),
        Column("started_at", UTCDateTime(), nullable=True),
        Column("settled_at", UTCDateTime(), nullable=True),
        Column("run_info", JSONType, nullable=True),
    ]


def define_v5(metadata: MetaData) -> None:
    """Version 5: ``articles.quality``, the number the review queue's ``worst`` order sorts by (the chosen
    draft's :attr:`~worker.scoring.scorecard.Scorecard.quality`, written when the article is saved)."""
    metadata.tables["articles"].append_column(v5_quality_column())


def v5_quality_column() -> Column[float]:
    """The column migration 5 adds to ``articles`` (a new object on each call)."""
    return Column("quality", Float, nullable=False, server_default="0")


def define_v6(metadata: MetaData) -> None:
    """Version 6: ``briefs.retry_group``, the half of a crashed batch a queued brief is retried with
    (bisection, :mod:`worker.queue.reconciler`); indexed, since a task looks its group up by it."""
    table = metadata.tables["briefs"]
    table.append_column(v6_retry_group_column())
    Index("ix_briefs_retry_group", table.c.retry_group)


def v6_retry_group_column() -> Column[Any]:
    """The column migration 6 adds to ``briefs`` (a new object on each call)."""
    return Column("retry_group", String(64), nullable=True)


def define_v7(metadata: MetaData) -> None:
    """Version 7: the HTTP API. ``api_keys`` (only each key's SHA-256 is kept, with its role),
    ``webhook_endpoints`` (URL, subscribed events, signing secret), ``webhook_deliveries`` (one per event and
    endpoint; its id is the event id a receiver deduplicates on) and ``webhook_attempts`` (every try); and
    ``jobs.expires_at``, the end of a job's completion window."""
    metadata.tables["jobs"].append_column(v7_job_expiry_column())
    Table(
        "api_keys",
        metadata,
        Column("id", String(32), primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("role", String(STATUS_LENGTH), nullable=False),
        Column("secret_hash", String(64), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("revoked_at", UTCDateTime(), nullable=True),
    )
    Table(
        "webhook_endpoints",
        metadata,
        Column("id", String(32), primary_key=True),
        Column("url", Text, nullable=False),
        Column("events", JSONType, nullable=False),
        Column("secret", String(200), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("disabled_at", UTCDateTime(), nullable=True),
    )
    Table(
        "webhook_deliveries",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("endpoint_id", String(32), ForeignKey("webhook_endpoints.id"), nullable=False),
        Column("event_type", String(64), nullable=False),
        Column("payload", JSONType, nullable=False),
        Column("status", String(STATUS_LENGTH), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("next_attempt_at", UTCDateTime(), nullable=True),
        Column("delivered_at", UTCDateTime(), nullable=True),
        Index(None, "status", "next_attempt_at"),
    )
    Table(
        "webhook_attempts",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("delivery_id", String(64), ForeignKey("webhook_deliveries.id"), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("status_code", Integer, nullable=True),
        Column("error", Text, nullable=True),
        Column("seconds", Float, nullable=False),
        Index(None, "delivery_id", "attempt"),
    )


def v7_job_expiry_column() -> Column[Any]:
    """The column migration 7 adds to ``jobs`` (a new object on each call)."""
    return Column("expires_at", UTCDateTime(), nullable=True)


def define_v8(metadata: MetaData) -> None:
    """Version 8: indexes that keep a job's per-brief cost flat as the store grows (issue 19). A task's
    companions (``briefs``: queued, oldest first), the newest articles of a style (``articles``: the
    near-duplicate check) and a job's results in submission order (``job_items``) each read a bounded slice of
    an index instead of sorting every matching row."""
    for table, name, columns in V8_INDEXES:
        Index(name, *(metadata.tables[table].c[column] for column in columns))


#: ``(table, index name, columns)`` of the indexes migration 8 creates.
V8_INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("briefs", "ix_briefs_status_created_at_id", ("status", "created_at", "id")),
    ("articles", "ix_articles_style_created_at_id", ("style", "created_at", "id")),
    ("job_items", "ix_job_items_job_id_position", ("job_id", "position")),
)


def new_metadata() -> MetaData:
    """An empty :class:`MetaData` with the store's constraint naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


metadata = new_metadata()
schema_migrations = define_schema_migrations(metadata)
define_v1(metadata)
define_v2(metadata)
define_v3(metadata)
define_v4(metadata)
define_v5(metadata)
define_v6(metadata)
define_v7(metadata)
define_v8(metadata)

briefs = metadata.tables["briefs"]
articles = metadata.tables["articles"]
candidates = metadata.tables["candidates"]
jobs = metadata.tables["jobs"]
job_items = metadata.tables["job_items"]
article_revisions = metadata.tables["article_revisions"]
article_events = metadata.tables["article_events"]
scheduler_locks = metadata.tables["scheduler_locks"]
api_keys = metadata.tables["api_keys"]
webhook_endpoints = metadata.tables["webhook_endpoints"]
webhook_deliveries = metadata.tables["webhook_deliveries"]
webhook_attempts = metadata.tables["webhook_attempts"]
