"""Recovery in the store: leases of dead processes, crashed batches retried in halves, stale briefs touched.

A process holds a lease on each brief of the batch it generates. When it dies (a crash, a SIGKILL, a hard time
limit) its leases are ended (:meth:`RecoveryStoreMixin.expire_leases_of`, one statement for the whole batch)
and the unfinished part of its batch is queued again in two halves (:meth:`RecoveryStoreMixin.requeue_in_halves`),
each half a ``retry_group`` that one task claims together: a poison brief is alone after log2(batch size)
crashes while the other briefs keep running in batches. Used by :mod:`worker.queue.reconciler` and
:mod:`worker.tasks.write`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update

from worker.results import BriefStatus
from worker.store.jobs import CHUNK, _chunks
from worker.store.schema import briefs

logger = logging.getLogger(__name__)


class RecoveryStoreMixin:
    """Lease and crash-recovery queries of :class:`~worker.store.Store` (it provides ``_read``, ``_write`` and
    ``_now``)."""

    _read: Any
    _write: Any
    _now: Any

    def touch_briefs(self, brief_ids: Iterable[str]) -> None:
        """Mark briefs as just published (the reconciler's "stale since" clock restarts).

        A running brief whose lease expired goes back to queued (the claim that takes it counts an attempt as
        usual): it is then published again only after ``stale_after``, like any queued brief, instead of on
        every reconciler pass until a worker gets to it.
        """
        ids = list(brief_ids)
        now = self._now()
        lease_over = _lease_over(now)
        with self._write() as session:
            for chunk in _chunks(ids, CHUNK):
                session.execute(
                    update(briefs)
                    .where(briefs.c.id.in_(chunk), briefs.c.status == BriefStatus.QUEUED.value)
                    .values(updated_at=now)
                )
                session.execute(
                    update(briefs)
                    .where(briefs.c.id.in_(chunk), briefs.c.status == BriefStatus.RUNNING.value, lease_over)
                    .values(status=BriefStatus.QUEUED.value, lease_owner=None, lease_expires_at=None, updated_at=now)
                )

    def retry_group_of(self, brief_id: str) -> list[str]:
        """The queued briefs retried together with ``brief_id`` (its half of a crashed batch, itself included),
        in id order; ``[]`` when the brief is not queued in a retry group."""
        group = select(briefs.c.retry_group).where(briefs.c.id == brief_id, briefs.c.status == BriefStatus.QUEUED.value)
        statement = (
            select(briefs.c.id)
            .where(briefs.c.retry_group == group.scalar_subquery(), briefs.c.status == BriefStatus.QUEUED.value)
            .order_by(briefs.c.id)
        )
        with self._read() as session:
            return list(session.execute(statement).scalars())

    def crashed_batches(self, *, owner: str | None = None, limit: int = CHUNK) -> list[list[str]]:
        """Running briefs whose lease expired (their process died or was killed), grouped by lease owner: a
        process runs one batch at a time, so each group is the unfinished part of one batch. At most ``limit``
        briefs; only ``owner``'s when given."""
        now = self._now()
        statement = (
            select(briefs.c.id, briefs.c.lease_owner)
            .where(briefs.c.status == BriefStatus.RUNNING.value, _lease_over(now))
            .order_by(briefs.c.lease_owner, briefs.c.id)
            .limit(limit)
        )
        if owner is not None:
            statement = statement.where(briefs.c.lease_owner == owner)
        batches: dict[str, list[str]] = {}
        with self._read() as session:
            for row in session.execute(statement):
                batches.setdefault(row.lease_owner or "", []).append(row.id)
        return list(batches.values())

    def requeue_in_halves(self, brief_ids: Sequence[str]) -> list[list[str]]:
        """Queue the briefs of a batch that did not finish again, split in two halves (bisection).

        Of ``brief_ids`` only those running with an expired lease (a crash, a hard time limit) or queued again
        after an attempt outside any group (a soft time limit) change. Each half of two or more briefs gets
        its own ``retry_group``: a task for one of them claims the whole half, uncounted
        (:meth:`~worker.store.Store.claim_brief`); a half of one brief runs alone and counts its attempts as
        usual. So a poison brief is alone after log2(n) crashes and the others keep running in batches.
        Returns the halves (each in id order; one list when a single brief changed).
        """
        now = self._now()
        again = or_(
            and_(briefs.c.status == BriefStatus.RUNNING.value, _lease_over(now)),
            and_(
                briefs.c.status == BriefStatus.QUEUED.value,
                briefs.c.retry_group.is_(None),
                briefs.c.attempts > 0,
            ),
        )
        with self._write() as session:
            ids = list(
                session.execute(
                    select(briefs.c.id)
                    .where(briefs.c.id.in_(list(brief_ids)), again)
                    .order_by(briefs.c.id)
                    .with_for_update()
                ).scalars()
            )
            middle = (len(ids) + 1) // 2
            halves = [half for half in (ids[:middle], ids[middle:]) if half]
            for half in halves:
                session.execute(
                    update(briefs)
                    .where(briefs.c.id.in_(half), again)
                    .values(
                        status=BriefStatus.QUEUED.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        retry_group=new_retry_group() if len(half) > 1 else None,
                        updated_at=now,
                    )
                )
        return halves

    def running_lease_owners(self) -> set[str]:
        """The distinct lease owners of running briefs (one row per owner, however large its batch)."""
        with self._read() as session:
            rows = session.execute(
                select(briefs.c.lease_owner)
                .where(briefs.c.status == BriefStatus.RUNNING.value, briefs.c.lease_owner.is_not(None))
                .distinct()
            ).scalars()
            return {owner for owner in rows if owner}

    def expire_leases_of(self, owner: str, *, error: str | None = None, live_only: bool = False) -> list[str]:
        """End every lease ``owner`` holds, in one statement (its process is gone); return the brief ids.

        One statement, so that nobody sees part of a dead process's batch expired and the rest still leased
        (a task that halved the part it saw would split the batch into four groups instead of two halves).
        With ``error``, it is recorded as each brief's ``last_error``; with ``live_only``, leases already over
        are left as they are (and not returned).
        """
        now = self._now()
        values: dict[str, Any] = {"lease_expires_at": now, "updated_at": now}
        if error is not None:
            values["last_error"] = error
        mine = and_(briefs.c.status == BriefStatus.RUNNING.value, briefs.c.lease_owner == owner)
        if live_only:
            mine = and_(mine, briefs.c.lease_expires_at > now)
        with self._write() as session:
            ids = list(
                session.execute(select(briefs.c.id).where(mine).order_by(briefs.c.id).with_for_update()).scalars()
            )
            if ids:
                session.execute(update(briefs).where(mine).values(**values))
        return ids


def new_retry_group() -> str:
    return "retry-" + uuid.uuid4().hex[:16]


def _lease_over(now: datetime) -> ColumnElement[bool]:
    return or_(briefs.c.lease_expires_at.is_(None), briefs.c.lease_expires_at <= now)
