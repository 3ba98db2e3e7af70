"""Job expiry: a job's completion window, as in OpenAI's and Anthropic's batch APIs.

A job submitted with a completion window (``24h``) gets ``jobs.expires_at`` = its creation + the window. Once
that passes, :meth:`ExpiryStoreMixin.expire_jobs` (run by the worker's reconciler) marks the job's briefs that
have not started (``queued``) ``expired``; running ones may finish. A queued brief that another live job also
holds (one with no window, or a later one) is left queued: it is written for that job. When every brief has
settled the job's derived status is ``expired`` (``completed`` when none had to expire), and its results carry
each brief's status. Without a window a job never expires.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from worker.errors import ConfigError, NotFoundError
from worker.results import BriefStatus
from worker.store.schema import briefs, job_items, jobs

logger = logging.getLogger(__name__)

_WINDOW = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=30)
EXPIRED_ERROR = "expired: the job's completion window passed before this brief started"


def parse_completion_window(text: str) -> timedelta:
    """``"24h"``, ``"90m"``, ``"2d"``, ``"30s"`` as a :class:`timedelta` (1 s to 30 days); :class:`ConfigError`."""
    found = _WINDOW.fullmatch(text)
    window = timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)]) if found else None
    if window is None or not timedelta(seconds=1) <= window <= MAX_WINDOW:
        raise ConfigError(
            f"invalid completion window {text!r}: write a number and a unit (s, m, h, d), e.g. 24h, between 1s and 30d"
        )
    return window


def _held_by_a_live_job(job_id: str, now: datetime) -> ColumnElement[bool]:
    """The brief also belongs to another job, not being cancelled, whose window has not passed (or that has
    none): it is still wanted, so it stays queued (the rule ``cancel_job`` follows for shared briefs)."""
    other = job_items.alias("other")
    return (
        select(other.c.brief_id)
        .join(jobs, jobs.c.id == other.c.job_id)
        .where(
            other.c.brief_id == briefs.c.id,
            other.c.job_id != job_id,
            jobs.c.cancel_requested.is_(False),
            or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > now),
        )
        .exists()
    )


class ExpiryStoreMixin:
    """Expiry methods of :class:`~worker.store.Store`."""

    _now: Callable[[], datetime]
    _write: Callable[[], AbstractContextManager[Session]]

    def set_completion_window(self, job_id: str, window: timedelta) -> datetime:
        """The job expires ``window`` after it was created; returns that moment."""
        with self._write() as session:
            created = session.execute(select(jobs.c.created_at).where(jobs.c.id == job_id)).scalar()
            if created is None:
                raise NotFoundError(f"job {job_id!r} does not exist; list jobs with `copydesk jobs list`")
            expires_at: datetime = created + window
            session.execute(update(jobs).where(jobs.c.id == job_id).values(expires_at=expires_at))
        return expires_at

    def expire_jobs(self) -> dict[str, int]:
        """Expire the queued briefs of every unfinished job whose window has passed; ``{job id: briefs expired}``
        for the jobs where some expired now."""
        now = self._now()
        expired: dict[str, int] = {}
        with self._write() as session:
            due = session.execute(
                select(jobs.c.id).where(
                    jobs.c.expires_at.is_not(None), jobs.c.expires_at <= now, jobs.c.finished_at.is_(None)
                )
            ).scalars()
            for job_id in list(due):
                members = select(job_items.c.brief_id).where(job_items.c.job_id == job_id)
                result = session.execute(
                    update(briefs)
                    .where(
                        briefs.c.id.in_(members),
                        briefs.c.status == BriefStatus.QUEUED.value,
                        ~_held_by_a_live_job(job_id, now),
                    )
                    .values(status=BriefStatus.EXPIRED.value, last_error=EXPIRED_ERROR, updated_at=now)
                )
                if result.rowcount:
                    expired[job_id] = int(result.rowcount)
        for job_id, count in expired.items():
            logger.info("job %s: completion window passed, %d brief(s) expired", job_id, count)
        return expired
