"""Scheduled runs of job files, and the store-side lock that keeps one scheduler firing them.

A run is a batch job (``jobs`` row, ``kind = "scheduled"``) with run metadata (migration 4): the job name,
the instant it was scheduled for, who triggered it (``schedule`` or ``manual``), when it started, when
every brief of it had settled (``settled_at``), and ``run_info`` (the job file's hash, the records left
out with their file/record/field problems, the briefs over the limit, the auto-approve policy and what it
approved).

A run's id is ``run-<job>-<UTC scheduled time>`` and its idempotency key ``<job>@<ISO scheduled time>``;
:meth:`RunStoreMixin.create_run` records the run and all its briefs in **one** transaction with
``INSERT ... ON CONFLICT DO NOTHING``, so a duplicated tick, a redelivered task or a restarted scheduler
finds the run already there and adds nothing, and no run is ever half recorded.

``scheduler_locks`` holds one row per lock name: the owner (``beat@host:pid``), and an expiry that the
owner's heartbeat pushes forward. Another scheduler may take the lock only once it expired, or at once when
the owner is a process of this host that no longer exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.errors import NotFoundError
from worker.intake.briefs import Brief
from worker.store.jobs import JobCounts, JobStatus, Submission, _job_counts, derive_status
from worker.store.schema import briefs, job_items, jobs, scheduler_locks

logger = logging.getLogger(__name__)

RUN_KIND = "scheduled"
SETTLED = (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED)


def run_id_for(job_name: str, stamp: str) -> str:
    """``run-<job>-<stamp>`` (``stamp`` as :func:`worker.jobs.expansion.run_stamp` writes it)."""
    return f"run-{job_name}-{stamp}"


def run_key_for(job_name: str, scheduled_for: datetime) -> str:
    return f"{job_name}@{scheduled_for.isoformat()}"


@dataclass(frozen=True)
class RunRecord:
    """One run of a job file, with the counts of its briefs."""

    id: str
    job_name: str
    scheduled_for: datetime
    trigger: str
    status: str
    counts: JobCounts
    invalid_records: int
    started_at: datetime
    settled_at: datetime | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float | None:
        """From the run's start to the moment its last brief settled; ``None`` while it runs."""
        if self.settled_at is None:
            return None
        return max(0.0, (self.settled_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class LockHolder:
    """Who holds a scheduler lock, as the lock row says."""

    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime


class RunStoreMixin:
    """Run and scheduler-lock operations of :class:`worker.store.Store`."""

    _read: Any
    _write: Any
    _now: Any
    _url: Any
    _record_item: Any

    def _dialect_insert(self) -> Any:
        return (postgresql if self._url.get_backend_name() == "postgresql" else sqlite).insert

    # -- runs -----------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        job_name: str,
        scheduled_for: datetime,
        trigger: str,
        items: Sequence[tuple[Brief, str | None]],
        info: dict[str, Any],
        invalid_records: int = 0,
        description: str | None = None,
    ) -> tuple[Submission, bool]:
        """Record the run and its briefs atomically; ``(submission, True)`` when created now.

        When the run already exists (same job and scheduled time), nothing is added and
        ``(Submission(run_id), False)`` is returned: its briefs were published when it was created.
        """
        now = self._now()
        statement = (
            self._dialect_insert()(jobs)
            .values(
                id=run_id,
                kind=RUN_KIND,
                idempotency_key=run_key_for(job_name, scheduled_for),
                status=JobStatus.IN_PROGRESS if items else JobStatus.FAILED,
                cancel_requested=False,
                description=description,
                invalid_records=invalid_records,
                created_at=now,
                updated_at=now,
                job_name=job_name,
                scheduled_for=scheduled_for,
                started_at=now,
                trigger=trigger,
                run_info=info,
                settled_at=None if items else now,
            )
            .on_conflict_do_nothing()
            .returning(jobs.c.id)
        )
        submission = Submission(run_id)
        with self._write() as session:
            if session.execute(statement).first() is None:
                existing = session.execute(
                    select(jobs.c.id).where(jobs.c.idempotency_key == run_key_for(job_name, scheduled_for))
                ).scalar()
                return Submission(existing or run_id), False
            for position, (brief, source) in enumerate(items):
                note = self._record_item(session, run_id, brief, source, position)
                getattr(submission, note).append(brief.brief_id)
        return submission, True

    def find_run(self, job_name: str, scheduled_for: datetime) -> str | None:
        """The id of the run of ``job_name`` scheduled for ``scheduled_for``, if it was recorded."""
        with self._read() as session:
            return session.execute(
                select(jobs.c.id).where(jobs.c.idempotency_key == run_key_for(job_name, scheduled_for))
            ).scalar()

    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id``; :class:`NotFoundError` when there is no such run."""
        with self._read() as session:
            row = session.execute(select(jobs).where(jobs.c.id == run_id, jobs.c.kind == RUN_KIND)).first()
            if row is None:
                raise NotFoundError(f"run {run_id!r} does not exist; list runs with `copydesk jobs history JOB`")
            return _run_record(row, _job_counts(session, row.id))

    def list_runs(self, job_name: str | None = None, *, limit: int = 20) -> list[RunRecord]:
        """Runs, latest scheduled first; only those of ``job_name`` when given."""
        statement = (
            select(jobs)
            .where(jobs.c.kind == RUN_KIND)
            .order_by(jobs.c.scheduled_for.desc(), jobs.c.id.desc())
            .limit(limit)
        )
        if job_name is not None:
            statement = statement.where(jobs.c.job_name == job_name)
        with self._read() as session:
            rows = session.execute(statement).all()
            return [_run_record(row, _job_counts(session, row.id)) for row in rows]

    def latest_runs(self) -> dict[str, RunRecord]:
        """The latest run of each job name."""
        with self._read() as session:
            latest = (
                select(jobs.c.job_name, func.max(jobs.c.scheduled_for).label("latest"))
                .where(jobs.c.kind == RUN_KIND)
                .group_by(jobs.c.job_name)
                .subquery()
            )
            rows = session.execute(
                select(jobs).join(
                    latest, (jobs.c.job_name == latest.c.job_name) & (jobs.c.scheduled_for == latest.c.latest)
                )
            ).all()
            return {row.job_name: _run_record(row, _job_counts(session, row.id)) for row in rows}

    def open_runs(self) -> list[str]:
        """Ids of runs not settled yet, oldest first."""
        with self._read() as session:
            return list(
                session.execute(
                    select(jobs.c.id)
                    .where(jobs.c.kind == RUN_KIND, jobs.c.settled_at.is_(None))
                    .order_by(jobs.c.scheduled_for, jobs.c.id)
                ).scalars()
            )

    def open_runs_of_briefs(self, brief_ids: Sequence[str]) -> list[str]:
        """Ids of the unsettled runs that hold any of ``brief_ids``."""
        if not brief_ids:
            return []
        with self._read() as session:
            return list(
                session.execute(
                    select(jobs.c.id)
                    .distinct()
                    .join(job_items, job_items.c.job_id == jobs.c.id)
                    .where(
                        job_items.c.brief_id.in_(list(brief_ids)),
                        jobs.c.kind == RUN_KIND,
                        jobs.c.settled_at.is_(None),
                    )
                ).scalars()
            )

    def run_article_ids(self, run_id: str, statuses: Sequence[str]) -> list[str]:
        """Ids of the run's articles whose status is one of ``statuses``, in brief order."""
        from worker.store.schema import articles

        with self._read() as session:
            return list(
                session.execute(
                    select(articles.c.id)
                    .join(job_items, job_items.c.brief_id == articles.c.brief_id)
                    .where(job_items.c.job_id == run_id, articles.c.status.in_(list(statuses)))
                    .order_by(job_items.c.position)
                ).scalars()
            )

    def update_run_info(self, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Apply ``change`` to the run's ``run_info`` under the write lock; return the new info."""
        with self._write() as session:
            row = session.execute(
                select(jobs.c.run_info).where(jobs.c.id == run_id, jobs.c.kind == RUN_KIND).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"run {run_id!r} does not exist")
            info = change(dict(row.run_info or {}))
            session.execute(update(jobs).where(jobs.c.id == run_id).values(run_info=info, updated_at=self._now()))
        return info

    def settle_run(self, run_id: str) -> RunRecord | None:
        """Mark the run settled if every brief of it has settled; the updated record, else ``None``.

        ``settled_at`` is the moment its last brief changed state, so a run's duration does not depend
        on when someone looked. Only the first call that finds it settled marks it (``None`` afterwards).
        """
        with self._write() as session:
            row = session.execute(
                select(jobs).where(jobs.c.id == run_id, jobs.c.kind == RUN_KIND).with_for_update()
            ).first()
            if row is None or row.settled_at is not None:
                return None
            counts = _job_counts(session, run_id)
            status = derive_status(row.status, bool(row.cancel_requested), counts)
            if status not in SETTLED:
                return None
            last = session.execute(
                select(func.max(briefs.c.updated_at))
                .join(job_items, job_items.c.brief_id == briefs.c.id)
                .where(job_items.c.job_id == run_id)
            ).scalar()
            settled = max(last or row.started_at, row.started_at)
            session.execute(
                update(jobs)
                .where(jobs.c.id == run_id)
                .values(
                    status=status,
                    settled_at=settled,
                    finished_at=row.finished_at or settled,
                    updated_at=self._now(),
                )
            )
            row = session.execute(select(jobs).where(jobs.c.id == run_id)).one()
            return _run_record(row, counts)

    # -- the scheduler lock ---------------------------------------------------------------------------

    def acquire_scheduler_lock(
        self, name: str, owner: str, *, ttl: float, owner_is_gone: Callable[[str], bool] | None = None
    ) -> LockHolder | None:
        """Take lock ``name`` for ``owner`` for ``ttl`` seconds; ``None`` on success, else who holds it.

        A lock whose holder missed its heartbeats (expired), or whose holder ``owner_is_gone`` says has
        exited, is taken over; a lock ``owner`` already holds is renewed.
        """
        now = self._now()
        expires = now + timedelta(seconds=ttl)
        with self._write() as session:
            row = session.execute(
                select(scheduler_locks).where(scheduler_locks.c.name == name).with_for_update()
            ).first()
            if row is None:
                inserted = session.execute(
                    self._dialect_insert()(scheduler_locks)
                    .values(name=name, owner=owner, acquired_at=now, heartbeat_at=now, expires_at=expires)
                    .on_conflict_do_nothing()
                    .returning(scheduler_locks.c.name)
                ).first()
                if inserted is not None:
                    return None
                row = session.execute(select(scheduler_locks).where(scheduler_locks.c.name == name)).one()
                return LockHolder(row.owner, row.acquired_at, row.heartbeat_at, row.expires_at)
            gone = owner_is_gone is not None and owner_is_gone(row.owner)
            takeover = row.owner == owner or row.expires_at <= now or gone
            if not takeover:
                return LockHolder(row.owner, row.acquired_at, row.heartbeat_at, row.expires_at)
            if row.owner != owner:
                logger.warning("scheduler lock %s taken over from %s (expired or gone)", name, row.owner)
            session.execute(
                update(scheduler_locks)
                .where(scheduler_locks.c.name == name)
                .values(owner=owner, acquired_at=now, heartbeat_at=now, expires_at=expires)
            )
        return None

    def renew_scheduler_lock(self, name: str, owner: str, *, ttl: float) -> bool:
        """Push the lock's expiry forward; ``False`` when ``owner`` no longer holds it."""
        now = self._now()
        with self._write() as session:
            result = session.execute(
                update(scheduler_locks)
                .where(scheduler_locks.c.name == name, scheduler_locks.c.owner == owner)
                .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl))
            )
        return result.rowcount == 1

    def release_scheduler_lock(self, name: str, owner: str) -> None:
        with self._write() as session:
            session.execute(
                delete(scheduler_locks).where(scheduler_locks.c.name == name, scheduler_locks.c.owner == owner)
            )

    def scheduler_lock_holder(self, name: str) -> LockHolder | None:
        with self._read() as session:
            row = session.execute(select(scheduler_locks).where(scheduler_locks.c.name == name)).first()
        return None if row is None else LockHolder(row.owner, row.acquired_at, row.heartbeat_at, row.expires_at)


def _run_record(row: Any, counts: JobCounts) -> RunRecord:
    return RunRecord(
        id=row.id,
        job_name=row.job_name,
        scheduled_for=row.scheduled_for,
        trigger=row.trigger or "",
        status=derive_status(row.status, bool(row.cancel_requested), counts),
        counts=counts,
        invalid_records=row.invalid_records,
        started_at=row.started_at or row.created_at,
        settled_at=row.settled_at,
        info=dict(row.run_info or {}),
    )


__all__ = ["RUN_KIND", "LockHolder", "RunRecord", "RunStoreMixin", "run_id_for", "run_key_for"]
