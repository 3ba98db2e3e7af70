"""Claiming a batch of briefs in one transaction (:meth:`ClaimStoreMixin.claim_briefs`).

The same rules as :meth:`worker.store.Store.claim_brief`, brief by brief: a queued brief, or a running one
whose lease expired, is leased to the owner and its attempt counted (not counted, and its group ended, when it
is queued in a retry group); a claimable brief that already used ``max_attempts`` outside any group is marked
failed instead (poison brief); anything else is left alone. Only the number of round trips and commits
changes: one transaction for the whole batch instead of one per brief.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, case, cast, literal, or_, select, update

from worker.errors import NotFoundError
from worker.results import BriefStatus
from worker.store.records import BriefRecord, brief_record
from worker.store.schema import briefs

logger = logging.getLogger(__name__)

CLAIM_CHUNK = 500  # ids per statement (well under SQLite's bound-parameter limit)


class ClaimStoreMixin:
    """Batch claims of :class:`worker.store.Store` (it provides ``_write``, ``_now`` and ``_claimable``)."""

    _write: Any
    _now: Any
    _claimable: Any

    def claim_briefs(
        self, brief_ids: Sequence[str], *, owner: str, lease_seconds: float, max_attempts: int
    ) -> list[BriefRecord | None]:
        """Claim each of ``brief_ids`` as :meth:`~worker.store.Store.claim_brief` would, all in one transaction;
        one record (claimed) or ``None`` (not claimable, or given up) per id, in order.

        Rows are locked in id order, so two workers claiming overlapping batches cannot deadlock. An id that is
        not in the store raises :class:`NotFoundError` and nothing changes (no brief of the batch is claimed).
        """
        if not owner:
            raise ValueError("owner must be a non-empty string")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        ids = list(dict.fromkeys(brief_ids))
        now = self._now()
        claimed: dict[str, BriefRecord] = {}
        with self._write() as session:
            for start in range(0, len(ids), CLAIM_CHUNK):
                chunk = ids[start : start + CLAIM_CHUNK]
                present = set(
                    session.execute(
                        select(briefs.c.id).where(briefs.c.id.in_(chunk)).order_by(briefs.c.id).with_for_update()
                    ).scalars()
                )
                unknown = [brief_id for brief_id in chunk if brief_id not in present]
                if unknown:
                    raise NotFoundError(f"brief {unknown[0]!r} is not in the store")
                for row in session.execute(self._claim_statement(chunk, now, owner, lease_seconds, max_attempts)):
                    claimed[row.id] = brief_record(row)
                rest = [brief_id for brief_id in chunk if brief_id not in claimed]
                if rest:
                    for brief_id in session.execute(self._give_up_statement(rest, now, max_attempts)).scalars():
                        logger.warning("brief %s failed: gave up after %d attempts", brief_id, max_attempts)
        return [claimed.get(brief_id) for brief_id in brief_ids]

    def _claim_statement(
        self, ids: list[str], now: datetime, owner: str, lease_seconds: float, max_attempts: int
    ) -> Any:
        grouped = briefs.c.retry_group.is_not(None)  # a half of a crashed batch: this claim is not counted
        return (
            update(briefs)
            .where(briefs.c.id.in_(ids), self._claimable(now), or_(briefs.c.attempts < max_attempts, grouped))
            .values(
                status=BriefStatus.RUNNING.value,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=briefs.c.attempts + case((grouped, 0), else_=1),
                retry_group=None,
                updated_at=now,
            )
            .returning(*briefs.c)
        )

    def _give_up_statement(self, ids: list[str], now: datetime, max_attempts: int) -> Any:
        return (
            update(briefs)
            .where(
                briefs.c.id.in_(ids),
                self._claimable(now),
                briefs.c.attempts >= max_attempts,
                briefs.c.retry_group.is_(None),
            )
            .values(
                status=BriefStatus.FAILED.value,
                lease_owner=None,
                lease_expires_at=None,
                last_error=give_up_message(),
                updated_at=now,
            )
            .returning(briefs.c.id)
        )


def give_up_message() -> ColumnElement[str]:
    """``gave up after N attempts`` (and the brief's last error, when it has one), computed in the database."""
    gave_up = literal("gave up after ") + cast(briefs.c.attempts, String) + literal(" attempts")
    return case(
        (briefs.c.last_error.is_(None), gave_up),
        else_=gave_up + literal("; last error: ") + briefs.c.last_error,
    )


__all__ = ["ClaimStoreMixin", "give_up_message"]
