"""Batch jobs in the store, with the semantics of the OpenAI Batch API.

A job is a set of brief ids submitted together. Its status is derived from its briefs:
``validating`` while being recorded, ``in_progress`` while any brief is queued or running, ``completed`` when
every brief is settled (done, failed or cancelled), ``failed`` when no brief of it was valid,
``cancelling`` after a cancel request while briefs still run, ``cancelled`` once they have settled. Counts are
disjoint: ``done`` (an article that passed its gates), ``needs_attention`` (an article stored with failing
gates), ``failed``, ``cancelled``, ``queued`` and ``running`` add up to ``total``.

Resubmitting a brief id: one with an article keeps it (``note = already_done``); one queued or running is
left alone (``already_queued``); one failed or cancelled is queued again with its attempts reset
(``requeued``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from worker.errors import NotFoundError
from worker.intake.briefs import Brief
from worker.results import ArticleStatus, BriefStatus
from worker.store.records import ArticleRecord, article_record, content_hash
from worker.store.schema import articles, briefs, job_items, jobs

logger = logging.getLogger(__name__)

CHUNK = 500


class JobStatus:
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class JobCounts:
    total: int = 0
    queued: int = 0
    running: int = 0
    done: int = 0
    needs_attention: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0

    @property
    def settled(self) -> int:
        return self.done + self.needs_attention + self.failed + self.cancelled + self.expired


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    status: str
    description: str | None
    invalid_records: int
    counts: JobCounts
    created_at: datetime
    finished_at: datetime | None
    idempotency_key: str | None = None
    expires_at: datetime | None = None


@dataclass
class Submission:
    """What recording a job did with each brief id."""

    job_id: str
    new: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    already_queued: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)

    @property
    def to_publish(self) -> list[str]:
        """Brief ids that need a queue message now."""
        return self.new + self.requeued


@dataclass(frozen=True)
class BriefResult:
    """One line of a job's results: the brief and its article or its error."""

    brief_id: str
    status: str
    article: ArticleRecord | None
    error: str | None


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:16]


class JobStoreMixin:
    """Job operations of :class:`worker.store.Store` (it provides ``_read``, ``_write`` and ``_now``)."""

    _read: Any
    _write: Any
    _now: Any

    def create_job(
        self,
        items: Iterable[tuple[Brief, str | None]],
        *,
        kind: str = "submit",
        description: str | None = None,
        invalid_records: int = 0,
        job_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Record a job and its briefs, streaming ``items`` in chunks (a 10,000-brief file never sits in
        memory whole). With ``idempotency_key``, a second call returns the first job's id and adds nothing."""
        job_id = job_id or new_job_id()
        if idempotency_key is not None:
            existing = self.find_job_by_key(idempotency_key)
            if existing is not None:
                return Submission(existing)
        now = self._now()
        with self._write() as session:
            session.execute(
                insert(jobs).values(
                    id=job_id,
                    kind=kind,
                    idempotency_key=idempotency_key,
                    status=JobStatus.VALIDATING,
                    cancel_requested=False,
                    description=description,
                    invalid_records=invalid_records,
                    created_at=now,
                    updated_at=now,
                )
            )
        submission = Submission(job_id)
        position = 0
        for chunk in _chunks(items, CHUNK):
            with self._write() as session:
                for brief, source in chunk:
                    note = self._record_item(session, job_id, brief, source, position)
                    getattr(submission, note).append(brief.brief_id)
                    position += 1
        status = JobStatus.IN_PROGRESS if position else JobStatus.FAILED
        with self._write() as session:
            session.execute(update(jobs).where(jobs.c.id == job_id).values(status=status, updated_at=self._now()))
        return submission

    def _record_item(self, session: Session, job_id: str, brief: Brief, source: str | None, position: int) -> str:
        now = self._now()
        row = session.execute(select(briefs.c.status).where(briefs.c.id == brief.brief_id)).first()
        if row is None:
            session.execute(
                insert(briefs).values(
                    id=brief.brief_id,
                    payload=brief.model_dump(mode="json"),
                    content_hash=content_hash(brief),
                    source=source,
                    job_id=job_id,
                    status=BriefStatus.QUEUED.value,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            note = "new"
        elif row.status == BriefStatus.DONE.value:
            note = "already_done"
        elif row.status in (BriefStatus.FAILED.value, BriefStatus.CANCELLED.value, BriefStatus.EXPIRED.value):
            session.execute(
                update(briefs)
                .where(briefs.c.id == brief.brief_id)
                .values(status=BriefStatus.QUEUED.value, attempts=0, last_error=None, retry_group=None, updated_at=now)
            )
            note = "requeued"
        else:
            note = "already_queued"
        already = session.execute(
            select(job_items.c.brief_id).where(job_items.c.job_id == job_id, job_items.c.brief_id == brief.brief_id)
        ).first()
        if already is None:
            session.execute(
                insert(job_items).values(job_id=job_id, brief_id=brief.brief_id, position=position, note=note)
            )
        return note

    def set_invalid_records(self, job_id: str, count: int) -> None:
        """Record how many records of the job's files were invalid (reported, never enqueued)."""
        with self._write() as session:
            session.execute(update(jobs).where(jobs.c.id == job_id).values(invalid_records=count))

    def find_job_by_key(self, idempotency_key: str) -> str | None:
        with self._read() as session:
            return session.execute(select(jobs.c.id).where(jobs.c.idempotency_key == idempotency_key)).scalar()

    def get_job(self, job_id: str) -> JobRecord:
        """The job with its derived status and counts; :class:`NotFoundError` when absent."""
        with self._read() as session:
            row = session.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                raise NotFoundError(f"job {job_id!r} does not exist; list jobs with `copydesk jobs list`")
            counts = _job_counts(session, job_id)
        return self._job_record(row, counts)

    def list_jobs(self, *, limit: int = 50) -> list[JobRecord]:
        with self._read() as session:
            rows = session.execute(select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)).all()
            return [self._job_record(row, _job_counts(session, row.id)) for row in rows]

    def _job_record(self, row: Any, counts: JobCounts) -> JobRecord:
        status = derive_status(row.status, bool(row.cancel_requested), counts)
        settled = (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.EXPIRED)
        if status != row.status and status in settled and row.finished_at is None:
            finished = self._now()
            with self._write() as session:
                session.execute(
                    update(jobs)
                    .where(jobs.c.id == row.id)
                    .values(status=status, finished_at=finished, updated_at=finished)
                )
        else:
            finished = row.finished_at
        return JobRecord(
            row.id,
            row.kind,
            status,
            row.description,
            row.invalid_records,
            counts,
            row.created_at,
            finished,
            row.idempotency_key,
            row.expires_at,
        )

    def cancel_job(self, job_id: str) -> int:
        """Cancel the job's briefs that have not started; running ones finish. Returns how many were cancelled.

        A queued brief that another job not being cancelled also holds is left queued: it is written for
        that job (this one stays ``cancelling`` until it settles).
        """
        self.get_job(job_id)
        now = self._now()
        members = select(job_items.c.brief_id).where(job_items.c.job_id == job_id)
        other = job_items.alias("other")
        held_elsewhere = (
            select(other.c.brief_id)
            .join(jobs, jobs.c.id == other.c.job_id)
            .where(other.c.brief_id == briefs.c.id, other.c.job_id != job_id, jobs.c.cancel_requested.is_(False))
            .exists()
        )
        with self._write() as session:
            session.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True, updated_at=now))
            result = session.execute(
                update(briefs)
                .where(briefs.c.id.in_(members), briefs.c.status == BriefStatus.QUEUED.value, ~held_elsewhere)
                .values(status=BriefStatus.CANCELLED.value, last_error="cancelled before it started", updated_at=now)
            )
        return int(result.rowcount)

    def job_results(self, job_id: str) -> Iterator[BriefResult]:
        """Each brief of the job in submission order, with its article or error (streamed in pages)."""
        self.get_job(job_id)
        position = -1
        while True:
            with self._read() as session:
                rows = session.execute(
                    select(job_items.c.position, briefs.c.id, briefs.c.status, briefs.c.last_error)
                    .join(briefs, briefs.c.id == job_items.c.brief_id)
                    .where(job_items.c.job_id == job_id, job_items.c.position > position)
                    .order_by(job_items.c.position)
                    .limit(CHUNK)
                ).all()
                ids = [row.id for row in rows]
                found = session.execute(select(articles).where(articles.c.brief_id.in_(ids))).all()
            by_brief = {row.brief_id: article_record(row) for row in found}
            for row in rows:
                yield BriefResult(row.id, row.status, by_brief.get(row.id), row.last_error)
            if len(rows) < CHUNK:
                return
            position = rows[-1].position

    def fresh_queued_briefs(self, *, limit: int, exclude: str | None = None) -> list[str]:
        """Up to ``limit`` queued briefs never attempted, oldest first: company for a batch.

        Briefs that were attempted before are left out: the briefs of a crashed batch are retried in their
        halves (:meth:`requeue_in_halves`) or alone, so that a poison brief cannot take a fresh batch down with
        it (the poison-brief guard).
        """
        if limit <= 0:
            return []
        statement = (
            select(briefs.c.id)
            .where(briefs.c.status == BriefStatus.QUEUED.value, briefs.c.attempts == 0)
            .order_by(briefs.c.created_at, briefs.c.id)
            .limit(limit + 1)
        )
        with self._read() as session:
            ids = [brief_id for brief_id in session.execute(statement).scalars() if brief_id != exclude]
        return ids[:limit]


def derive_status(stored: str, cancel_requested: bool, counts: JobCounts) -> str:
    """The job's status from its stored state and its briefs' counts."""
    if stored in (JobStatus.VALIDATING, JobStatus.FAILED):
        return stored
    if counts.settled < counts.total:
        return JobStatus.CANCELLING if cancel_requested else JobStatus.IN_PROGRESS
    if cancel_requested:
        return JobStatus.CANCELLED
    return JobStatus.EXPIRED if counts.expired else JobStatus.COMPLETED


def _job_counts(session: Session, job_id: str) -> JobCounts:
    attention = ArticleStatus.NEEDS_ATTENTION.value
    bucket = case((articles.c.status == attention, attention), else_=briefs.c.status).label("bucket")
    rows = session.execute(
        select(bucket, func.count())
        .select_from(
            job_items.join(briefs, briefs.c.id == job_items.c.brief_id).outerjoin(
                articles, articles.c.brief_id == briefs.c.id
            )
        )
        .where(job_items.c.job_id == job_id)
        .group_by(bucket)
    ).all()
    values = {str(name): int(count) for name, count in rows}
    return JobCounts(
        total=sum(values.values()),
        queued=values.get(BriefStatus.QUEUED.value, 0),
        running=values.get(BriefStatus.RUNNING.value, 0),
        done=values.get(BriefStatus.DONE.value, 0),
        needs_attention=values.get(attention, 0),
        failed=values.get(BriefStatus.FAILED.value, 0),
        cancelled=values.get(BriefStatus.CANCELLED.value, 0),
        expired=values.get(BriefStatus.EXPIRED.value, 0),
    )


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["BriefResult", "JobCounts", "JobRecord", "JobStatus", "JobStoreMixin", "Submission", "derive_status"]
