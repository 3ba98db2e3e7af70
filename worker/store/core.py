"""The :class:`Store`: the ledger of briefs and the articles written for them.

Every public method opens its own session and transaction (``with Session(engine) as s, s.begin()``)
and holds no state between calls besides the engine, so one :class:`Store` may be shared by threads and
several processes may use the same database. Times come from ``clock`` (UTC ``datetime.now`` by
default); leases compare the callers' clocks, so workers' clocks should be roughly in sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from sqlalchemy import (
    ColumnElement,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.config import Settings
from worker.errors import ConflictError, NotFoundError
from worker.intake.briefs import Brief
from worker.results import ArticleResult, ArticleStatus, BriefStatus
from worker.store import migrations
from worker.store.canary import CanaryStoreMixin
from worker.store.claims import ClaimStoreMixin
from worker.store.engine import WRITE_OPTION, is_unique_violation, make_engine, parse_url, safe_url, translate_errors
from worker.store.expiry import ExpiryStoreMixin
from worker.store.history import draft_values
from worker.store.jobs import JobStoreMixin
from worker.store.keys import KeyStoreMixin
from worker.store.pages import ArticlePagesMixin
from worker.store.records import (
    ArticleRecord,
    BriefRecord,
    StoredText,
    article_id_for,
    article_record,
    brief_record,
    content_hash,
)
from worker.store.recovery import RecoveryStoreMixin
from worker.store.review import ReviewStoreMixin
from worker.store.runs import RunStoreMixin
from worker.store.schema import articles, briefs, candidates
from worker.store.stats import StatsStoreMixin
from worker.store.webhooks import WebhookStoreMixin

logger = logging.getLogger(__name__)

_SETTLED = (BriefStatus.DONE.value, BriefStatus.CANCELLED.value)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Store(
    ClaimStoreMixin,
    JobStoreMixin,
    ReviewStoreMixin,
    RunStoreMixin,
    KeyStoreMixin,
    WebhookStoreMixin,
    ExpiryStoreMixin,
    StatsStoreMixin,
    ArticlePagesMixin,
    CanaryStoreMixin,
    RecoveryStoreMixin,
):
    """SQLAlchemy-backed store on SQLite or PostgreSQL. See the package docstring for the design."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._url = parse_url(url)
        self._engine = make_engine(self._url)
        self._write_engine = self._engine.execution_options(**{WRITE_OPTION: True})
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store at ``settings.effective_store_url``."""
        return cls(settings.effective_store_url)

    def __repr__(self) -> str:
        return f"Store({safe_url(self._url)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; the store stays usable and reconnects on demand."""
        self._engine.dispose()

    # -- plumbing -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with translate_errors(self._url), Session(self._engine) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with translate_errors(self._url), Session(self._write_engine) as session, session.begin():
            yield session

    @staticmethod
    def _brief_exists(session: Session, brief_id: str) -> bool:
        return session.execute(select(briefs.c.id).where(briefs.c.id == brief_id)).first() is not None

    # -- schema ---------------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply pending migrations in one locked transaction; return the versions applied now.

        Cheap when the schema is current (one read, no lock), so every process may call it at start-up.
        """
        if self.schema_version() == migrations.latest_version():
            return []
        with translate_errors(self._url), self._write_engine.connect() as conn, conn.begin():
            applied = migrations.apply_pending(conn, now=self._now())
        if applied:
            logger.info("store %s migrated to version %d", safe_url(self._url), applied[-1])
        return applied

    def schema_version(self) -> int:
        """The highest applied migration, 0 for an empty database."""
        with self._read() as session:
            return migrations.current_version(session.connection())

    # -- briefs ---------------------------------------------------------------------------------------

    def add_brief(self, brief: Brief, *, source: str | None = None, job_id: str | None = None) -> bool:
        """Insert ``brief`` as queued; ``False`` (and no change) when its id is already stored."""
        now = self._now()
        values = {
            "id": brief.brief_id,
            "payload": brief.model_dump(mode="json"),
            "content_hash": content_hash(brief),
            "source": source,
            "job_id": job_id,
            "status": BriefStatus.QUEUED.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        dialect = postgresql if self._url.get_backend_name() == "postgresql" else sqlite
        statement = (
            dialect.insert(briefs).values(**values).on_conflict_do_nothing(index_elements=["id"]).returning(briefs.c.id)
        )
        with self._write() as session:
            inserted = session.execute(statement).first() is not None
            if not inserted:
                stored = session.execute(
                    select(briefs.c.content_hash).where(briefs.c.id == brief.brief_id)
                ).scalar_one()
                if stored != values["content_hash"]:
                    logger.warning("brief %s already stored with different content; kept the stored one", brief.id)
        return inserted

    def get_brief(self, brief_id: str) -> BriefRecord:
        """The brief ``brief_id``; :class:`NotFoundError` when absent."""
        with self._read() as session:
            row = session.execute(select(briefs).where(briefs.c.id == brief_id)).first()
        if row is None:
            raise NotFoundError(f"brief {brief_id!r} is not in the store")
        return brief_record(row)

    @staticmethod
    def _claimable(now: datetime) -> ColumnElement[bool]:
        lease_expired = or_(briefs.c.lease_expires_at.is_(None), briefs.c.lease_expires_at <= now)
        return or_(
            briefs.c.status == BriefStatus.QUEUED.value,
            and_(briefs.c.status == BriefStatus.RUNNING.value, lease_expired),
        )

    def claim_brief(self, brief_id: str, *, owner: str, lease_seconds: float, max_attempts: int) -> BriefRecord | None:
        """Lease the brief to ``owner`` if it is queued or its lease expired; ``None`` otherwise.

        The claim is one conditional ``UPDATE`` (so two workers cannot both win) that also counts the
        attempt. A claimable brief that already used ``max_attempts`` is marked failed instead (poison
        brief) and ``None`` is returned. The claim of a brief queued in a retry group (a half of a crashed
        batch, :meth:`requeue_in_halves`) is not counted and ends its group: halves shrink on every crash, so
        a brief makes at most log2(batch size) such claims before it runs alone and counts again.
        :class:`NotFoundError` when the brief does not exist.
        """
        _check_lease_args(owner, lease_seconds)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        now = self._now()
        with self._write() as session:  # the statements of claim_briefs, for one id
            row = session.execute(self._claim_statement([brief_id], now, owner, lease_seconds, max_attempts)).first()
            if row is not None:
                return brief_record(row)
            if session.execute(self._give_up_statement([brief_id], now, max_attempts)).first() is not None:
                logger.warning("brief %s failed: gave up after %d attempts", brief_id, max_attempts)
            elif not self._brief_exists(session, brief_id):
                raise NotFoundError(f"brief {brief_id!r} is not in the store")
        return None

    def renew_lease(self, brief_id: str, *, owner: str, lease_seconds: float) -> bool:
        """Extend ``owner``'s lease; ``False`` when the brief is no longer running under that owner."""
        _check_lease_args(owner, lease_seconds)
        now = self._now()
        with self._write() as session:
            result = session.execute(
                update(briefs)
                .where(
                    briefs.c.id == brief_id,
                    briefs.c.status == BriefStatus.RUNNING.value,
                    briefs.c.lease_owner == owner,
                )
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
            return result.rowcount == 1

    def fail_brief(self, brief_id: str, error: str, *, final: bool) -> None:
        """Record ``error``; ``final`` marks the brief failed, otherwise it goes back to queued.

        Only queued or running briefs change; a done or cancelled brief is left as it is (logged).
        :class:`NotFoundError` when the brief does not exist.
        """
        status = BriefStatus.FAILED if final else BriefStatus.QUEUED
        now = self._now()
        with self._write() as session:
            result = session.execute(
                update(briefs)
                .where(
                    briefs.c.id == brief_id,
                    briefs.c.status.in_([BriefStatus.QUEUED.value, BriefStatus.RUNNING.value]),
                )
                .values(
                    status=status.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error=error,
                    updated_at=now,
                )
            )
            if result.rowcount == 1:
                return
            if not self._brief_exists(session, brief_id):
                raise NotFoundError(f"brief {brief_id!r} is not in the store")
        logger.warning("fail_brief(%s) ignored: the brief is no longer queued or running", brief_id)

    def stale_briefs(self, *, queued_before: datetime, now: datetime, limit: int | None = None) -> list[str]:
        """Ids of briefs queued since before ``queued_before`` or running with a lease expired at ``now``,
        the longest waiting first, at most ``limit`` of them.

        "Queued since" is ``updated_at``: the time the brief last changed state (added or requeued).
        """
        statement = (
            select(briefs.c.id)
            .where(
                or_(
                    and_(briefs.c.status == BriefStatus.QUEUED.value, briefs.c.updated_at < queued_before),
                    and_(
                        briefs.c.status == BriefStatus.RUNNING.value,
                        or_(briefs.c.lease_expires_at.is_(None), briefs.c.lease_expires_at <= now),
                    ),
                )
            )
            .order_by(briefs.c.updated_at, briefs.c.id)
            .limit(limit)
        )
        with self._read() as session:
            return list(session.execute(statement).scalars())

    def count_by_status(self) -> dict[str, int]:
        """Number of briefs per status; every :class:`BriefStatus` is present, zero included."""
        counts = {status.value: 0 for status in BriefStatus}
        with self._read() as session:
            rows = session.execute(select(briefs.c.status, func.count()).group_by(briefs.c.status)).all()
        counts.update({status: count for status, count in rows})
        return counts

    # -- articles -------------------------------------------------------------------------------------

    def save_article(self, result: ArticleResult, *, owner: str | None = None) -> ArticleRecord:
        """Store the article and its candidates and mark the brief done, all in one transaction.

        At most one article per brief: ``articles.brief_id`` is UNIQUE, so a second save for the same
        brief fails in the database, the transaction rolls back (no candidates, no status change) and
        :class:`ConflictError` is raised. With ``owner``, the brief must still be running under that
        owner's lease (:class:`ConflictError` otherwise); a cancelled brief is always a conflict.
        :class:`NotFoundError` when the brief does not exist.

        The one exception: an article an editor sent back (status ``regenerating``) is updated in place as
        its next revision; its previous text stays in ``article_revisions`` and the new candidates' attempts
        continue after the stored ones. Either way the revision and an event are recorded, and the brief's
        feedback is cleared (the events keep it).
        """
        now = self._now()
        article_id = article_id_for(result.brief_id)
        with self._write() as session:
            self._check_can_save(session, result.brief_id, owner)
            current = session.execute(
                select(articles).where(articles.c.brief_id == result.brief_id).with_for_update()
            ).first()
            offset = 0
            if current is not None and current.status == ArticleStatus.REGENERATING.value:
                article_id = current.id
                self._store_regenerated(session, result, current, owner)
                offset = session.execute(
                    select(func.coalesce(func.max(candidates.c.attempt), 0)).where(
                        candidates.c.brief_id == result.brief_id
                    )
                ).scalar_one()
            else:
                self._insert_article(session, result, article_id, now)
                self._record_generated(session, result, article_id, owner)
            if result.candidates:
                rows = [
                    {"brief_id": result.brief_id, **asdict(c), "attempt": c.attempt + offset} for c in result.candidates
                ]
                session.execute(insert(candidates), rows)
            session.execute(
                update(briefs)
                .where(briefs.c.id == result.brief_id)
                .values(
                    status=BriefStatus.DONE.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    feedback=None,
                    updated_at=now,
                )
            )
            row = session.execute(select(articles).where(articles.c.id == article_id)).one()
        return article_record(row)

    @staticmethod
    def _check_can_save(session: Session, brief_id: str, owner: str | None) -> None:
        row = session.execute(
            select(briefs.c.status, briefs.c.lease_owner).where(briefs.c.id == brief_id).with_for_update()
        ).first()
        if row is None:
            raise NotFoundError(f"brief {brief_id!r} is not in the store")
        if row.status == BriefStatus.CANCELLED.value:
            raise ConflictError(f"brief {brief_id!r} was cancelled; its article was not stored")
        if owner is not None and (row.status != BriefStatus.RUNNING.value or row.lease_owner != owner):
            raise ConflictError(
                f"brief {brief_id!r} is no longer leased to {owner!r} (status {row.status}, "
                f"lease owner {row.lease_owner!r}); its article was not stored"
            )

    @staticmethod
    def _insert_article(session: Session, result: ArticleResult, article_id: str, now: datetime) -> None:
        values = {"id": article_id, "brief_id": result.brief_id, **draft_values(result, 1, str(result.status))}
        try:
            session.execute(insert(articles).values(**values, created_at=now, updated_at=now))
        except sa_exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise ConflictError(
                    f"brief {result.brief_id!r} already has an article ({article_id}); nothing was stored"
                ) from exc
            raise

    def set_article_file(self, article_id: str, path: str) -> None:
        """Record where the article's Markdown file was written; :class:`NotFoundError` when absent."""
        with self._write() as session:
            result = session.execute(
                update(articles).where(articles.c.id == article_id).values(file_path=str(path), updated_at=self._now())
            )
            if result.rowcount != 1:
                raise NotFoundError(f"article {article_id!r} is not in the store")

    def get_article(self, article_id_or_brief_id: str) -> ArticleRecord:
        """The article with that id, else the article of the brief with that id; :class:`NotFoundError`."""
        key = article_id_or_brief_id
        with self._read() as session:
            row = session.execute(select(articles).where(articles.c.id == key)).first()
            if row is None:
                row = session.execute(select(articles).where(articles.c.brief_id == key)).first()
        if row is None:
            raise NotFoundError(f"no article with id or brief id {key!r} in the store")
        return article_record(row)

    def list_articles(
        self, *, status: str | None = None, style: str | None = None, limit: int = 100
    ) -> list[ArticleRecord]:
        """Articles, newest first, optionally filtered by status and style."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        statement = select(articles).order_by(articles.c.created_at.desc(), articles.c.id.desc()).limit(limit)
        if status is not None:
            statement = statement.where(articles.c.status == str(status))
        if style is not None:
            statement = statement.where(articles.c.style == style)
        with self._read() as session:
            return [article_record(row) for row in session.execute(statement)]

    def recent_article_texts(self, *, style: str, limit: int) -> list[StoredText]:
        """The texts of the style's newest ``limit`` articles, newest first: four columns, no JSON decoded (a
        bounded scan of ``ix_articles_style_created_at_id``)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        columns = (articles.c.id, articles.c.brief_id, articles.c.title, articles.c.body_markdown)
        statement = (
            select(*columns)
            .where(articles.c.style == style)
            .order_by(articles.c.created_at.desc(), articles.c.id.desc())
            .limit(limit)
        )
        with self._read() as session:
            return [StoredText(*row) for row in session.execute(statement)]

    def list_candidates(self, brief_id: str) -> list[dict[str, Any]]:
        """The brief's stored candidates in (attempt, index) order, as plain dicts; ``[]`` when none."""
        statement = (
            select(candidates)
            .where(candidates.c.brief_id == brief_id)
            .order_by(candidates.c.attempt, candidates.c.index, candidates.c.id)
        )
        with self._read() as session:
            return [dict(row._mapping) for row in session.execute(statement)]


def _check_lease_args(owner: str, lease_seconds: float) -> None:
    if not owner:
        raise ValueError("owner must be a non-empty string")
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
