"""Editorial review in the store: decisions, revisions and send-backs, with optimistic locking.

Every change writes its revision and event rows (:mod:`worker.store.history`); the review queue is read
by :mod:`worker.store.review_queue`. ``briefs.feedback`` carries an editor's feedback to the worker that
writes the next draft.

Optimistic locking: a reviewer acts on the revision and status they loaded (``expected_revision`` and
``expected_status``). If anyone changed the article since (a decision, an edit, a new draft), the action is
refused with :class:`~worker.errors.ConflictError` ("article ... changed since you loaded revision N") and
nothing is written. The check and the change happen in one transaction on a row locked for update (on
SQLite the write transaction itself is the lock), and the ``UPDATE`` is conditional on the revision and
status as well.

Allowed transitions are in :mod:`worker.workflow`; a refused one raises
:class:`~worker.errors.TransitionError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from worker.errors import ConflictError, NotFoundError, ReviewError, TransitionError
from worker.results import ArticleStatus, BriefStatus
from worker.store.history import SYSTEM_ACTOR, HistoryStoreMixin, record_event, record_revision
from worker.store.records import ArticleRecord, article_quality, article_record
from worker.store.review_queue import QUEUE_ORDERS, ReviewQueueStoreMixin, quality_of
from worker.store.schema import article_events, articles, briefs
from worker.workflow import Action, EventKind, check_transition, next_status

logger = logging.getLogger(__name__)


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


class ReviewStoreMixin(HistoryStoreMixin, ReviewQueueStoreMixin):
    """Review operations of :class:`worker.store.Store` (it provides ``_read``, ``_write`` and ``_now``)."""

    _read: Any
    _write: Any
    _now: Any

    # -- loading under the optimistic lock ------------------------------------------------------------

    @staticmethod
    def _locked_article(session: Session, key: str) -> Row[Any]:
        for column in (articles.c.id, articles.c.brief_id):
            row = session.execute(select(articles).where(column == key).with_for_update()).first()
            if row is not None:
                return row
        raise NotFoundError(f"no article with id or brief id {key!r} in the store; list them with `copydesk review`")

    @staticmethod
    def _last_event(session: Session, article_id: str) -> Row[Any] | None:
        return session.execute(
            select(article_events).where(article_events.c.article_id == article_id).order_by(article_events.c.id.desc())
        ).first()

    def _load_for_change(
        self, session: Session, key: str, expected_revision: int | None, expected_status: str | None
    ) -> Row[Any]:
        row = self._locked_article(session, key)
        stale_revision = expected_revision is not None and row.revision != expected_revision
        stale_status = expected_status is not None and row.status != str(expected_status)
        if stale_revision or stale_status:
            loaded = expected_revision if expected_revision is not None else row.revision
            last = self._last_event(session, row.id)
            by = f" ({last.kind} by {last.actor} at {last.created_at:%Y-%m-%d %H:%M:%S} UTC)" if last else ""
            raise ConflictError(
                f"article {row.id} changed since you loaded revision {loaded}: it is now revision {row.revision}, "
                f"{row.status}{by}; nothing was changed: reload it and decide again"
            )
        return row

    @staticmethod
    def _change(session: Session, row: Row[Any], values: dict[str, Any], refused: str) -> None:
        """Update the article only if it is still at the loaded revision and status (:class:`ConflictError`
        ending with ``refused`` otherwise; under the row lock it cannot happen, but never overwrite silently)."""
        changed = session.execute(
            update(articles)
            .where(articles.c.id == row.id, articles.c.revision == row.revision, articles.c.status == row.status)
            .values(**values)
        )
        if changed.rowcount != 1:
            raise ConflictError(f"article {row.id} changed since you loaded revision {row.revision}; {refused}")

    def _set_status(self, session: Session, row: Row[Any], status: str, now: datetime) -> None:
        self._change(session, row, {"status": str(status), "updated_at": now}, "nothing changed")

    @staticmethod
    def _get(session: Session, article_id: str) -> ArticleRecord:
        return article_record(session.execute(select(articles).where(articles.c.id == article_id)).one())

    # -- decisions ------------------------------------------------------------------------------------

    def _decide(
        self,
        key: str,
        action: Action,
        kind: EventKind,
        *,
        actor: str,
        note: str | None,
        expected_revision: int | None,
        expected_status: str | None,
    ) -> ArticleRecord:
        now = self._now()
        with self._write() as session:
            row = self._load_for_change(session, key, expected_revision, expected_status)
            status = next_status(row.id, row.status, action)
            self._set_status(session, row, status, now)
            record_event(session, row, kind, str(status), actor=actor, note=note, now=now)
            return self._get(session, row.id)

    def approve(
        self,
        key: str,
        *,
        actor: str,
        note: str | None = None,
        expected_revision: int | None = None,
        expected_status: str | None = None,
    ) -> ArticleRecord:
        """Approve the article (id or brief id) in review; ``note`` is optional."""
        return self._decide(
            key,
            Action.APPROVE,
            EventKind.APPROVED,
            actor=actor,
            note=_clean(note),
            expected_revision=expected_revision,
            expected_status=expected_status,
        )

    def reject(
        self,
        key: str,
        *,
        actor: str,
        reason: str,
        expected_revision: int | None = None,
        expected_status: str | None = None,
    ) -> ArticleRecord:
        """Reject the article in review; a non-blank ``reason`` is required (:class:`ReviewError`)."""
        reason_text = _clean(reason)
        if reason_text is None:
            raise ReviewError(f"a reason is required to reject article {key}: say what is wrong with it")
        return self._decide(
            key,
            Action.REJECT,
            EventKind.REJECTED,
            actor=actor,
            note=reason_text,
            expected_revision=expected_revision,
            expected_status=expected_status,
        )

    def edit_article(
        self,
        key: str,
        *,
        actor: str,
        title: str,
        body_markdown: str,
        scores: dict[str, Any],
        failing_gates: Sequence[str],
        expected_revision: int,
        expected_status: str | None = None,
        note: str | None = None,
        quality: float | None = None,
    ) -> ArticleRecord:
        """Store an editor's text as the next revision with its recomputed scores and ``quality`` (the
        draft's ``Scorecard.quality``; ``None``: derived from ``scores`` as migration 5 does); the status
        follows the gates (``needs_review`` or ``needs_attention``). :class:`ReviewError` for an empty or
        unchanged text."""
        if not body_markdown.strip():
            raise ReviewError(f"the edited text of article {key} is empty; nothing was saved")
        now = self._now()
        with self._write() as session:
            row = self._load_for_change(session, key, expected_revision, expected_status)
            status = next_status(row.id, row.status, Action.EDIT, list(failing_gates))
            if body_markdown == row.body_markdown:
                raise ReviewError(f"the text of article {row.id} is unchanged; no new revision was saved")
            text = {
                "revision": row.revision + 1,
                "status": str(status),
                "title": title,
                "body_markdown": body_markdown,
                "scores": scores,
                "quality": article_quality(quality, scores),
                "failing_gates": list(failing_gates),
            }
            self._change(session, row, {**text, "updated_at": now}, "not saved")
            record_revision(session, row.id, text, source="edit", author=actor, note=_clean(note), now=now)
            details = {"previous_revision": row.revision, "failing_gates": list(failing_gates)}
            record_event(
                session,
                row,
                EventKind.EDITED,
                str(status),
                revision=text["revision"],
                actor=actor,
                note=_clean(note),
                details=details,
                now=now,
            )
            return self._get(session, row.id)

    def send_back(
        self,
        key: str,
        *,
        actor: str,
        feedback: str,
        expected_revision: int | None = None,
        expected_status: str | None = None,
    ) -> ArticleRecord:
        """Send the article back for a new draft: record the feedback on its brief, queue the brief again
        (attempts reset) and mark the article ``regenerating``, in one transaction. The caller then
        publishes the brief id. When the worker stores the new draft, ``save_article`` updates this article
        in place as its next revision; the current text stays a revision row."""
        feedback_text = _clean(feedback)
        if feedback_text is None:
            raise ReviewError(f"feedback is required to send article {key} back: say what the next draft must change")
        now = self._now()
        with self._write() as session:
            row = self._load_for_change(session, key, expected_revision, expected_status)
            check_transition(row.id, row.status, Action.SEND_BACK)
            brief_status = session.execute(select(briefs.c.status).where(briefs.c.id == row.brief_id)).scalar_one()
            if row.status == ArticleStatus.REGENERATING and brief_status not in (
                BriefStatus.FAILED.value,
                BriefStatus.CANCELLED.value,
            ):
                raise TransitionError(
                    f"article {row.id} is already being regenerated (its brief is {brief_status}); wait for the new "
                    "draft, or send it back again if that brief fails"
                )
            self._set_status(session, row, ArticleStatus.REGENERATING, now)
            session.execute(
                update(briefs)
                .where(briefs.c.id == row.brief_id)
                .values(
                    status=BriefStatus.QUEUED.value,
                    attempts=0,
                    last_error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    feedback=feedback_text,
                    updated_at=now,
                )
            )
            regenerating = ArticleStatus.REGENERATING.value
            record_event(session, row, EventKind.SENT_BACK, regenerating, actor=actor, note=feedback_text, now=now)
            return self._get(session, row.id)

    def mark_published(self, key: str, *, actor: str, details: dict[str, Any] | None = None) -> bool:
        """Approved -> published with a ``published`` event; ``False`` (and nothing written) when it already
        is published, so that exporting again adds no event. :class:`TransitionError` for other statuses."""
        now = self._now()
        with self._write() as session:
            row = self._locked_article(session, key)
            if row.status == ArticleStatus.PUBLISHED:
                return False
            status = next_status(row.id, row.status, Action.PUBLISH)
            self._set_status(session, row, status, now)
            record_event(session, row, EventKind.PUBLISHED, str(status), actor=actor, details=details, now=now)
        return True


__all__ = ["QUEUE_ORDERS", "SYSTEM_ACTOR", "ReviewStoreMixin", "quality_of"]
