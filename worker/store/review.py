"""Editorial review in the store: decisions, revisions and send-backs, with optimistic locking.

Tables (migration 3): ``article_revisions`` holds every text an article ever had, one row per revision,
the current one included; ``article_events`` holds every decision and change (who, when, from which
status to which, on which revision, with the reason, note or feedback). Nothing is ever deleted or
overwritten there. ``briefs.feedback`` carries an editor's feedback to the worker that writes the next draft.

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
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from worker.errors import ConflictError, NotFoundError, ReviewError, TransitionError
from worker.results import ArticleResult, ArticleStatus, BriefStatus
from worker.store.records import (
    ArticleRecord,
    EventRecord,
    RevisionRecord,
    article_record,
    event_record,
    revision_record,
)
from worker.store.schema import article_events, article_revisions, articles, briefs, job_items
from worker.workflow import IN_REVIEW, Action, EventKind, check_transition, next_status

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "copydesk"
QUEUE_ORDERS = ("oldest", "worst")
_PAGE = 500


def quality_of(article: ArticleRecord) -> float:
    """The article's :attr:`Scorecard.quality` (0 when its scores cannot be read)."""
    from worker.scoring.scorecard import Scorecard  # imported on use: scoring pulls in the text metrics

    try:
        return Scorecard.from_dict(article.scores).quality
    except ValueError:
        return 0.0


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


class ReviewStoreMixin:
    """Review operations of :class:`worker.store.Store` (it provides ``_read``, ``_write`` and ``_now``)."""

    _read: Any
    _write: Any
    _now: Any

    # -- rows written with every change ---------------------------------------------------------------

    @staticmethod
    def _record_revision(
        session: Session,
        *,
        article_id: str,
        revision: int,
        title: str,
        body_markdown: str,
        scores: dict[str, Any],
        failing_gates: Sequence[str],
        status: str,
        source: str,
        author: str,
        now: datetime,
        note: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        session.execute(
            insert(article_revisions).values(
                article_id=article_id,
                revision=revision,
                title=title,
                body_markdown=body_markdown,
                scores=scores,
                failing_gates=list(failing_gates),
                status=str(status),
                source=source,
                author=author,
                note=note,
                provenance=provenance,
                created_at=now,
            )
        )

    @staticmethod
    def _record_event(
        session: Session,
        *,
        article_id: str,
        brief_id: str,
        kind: EventKind,
        from_status: str | None,
        to_status: str,
        revision: int,
        actor: str,
        now: datetime,
        note: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        session.execute(
            insert(article_events).values(
                article_id=article_id,
                brief_id=brief_id,
                kind=str(kind),
                from_status=None if from_status is None else str(from_status),
                to_status=str(to_status),
                revision=revision,
                actor=actor,
                note=note,
                details=details or {},
                created_at=now,
            )
        )

    def _record_generated(self, session: Session, result: ArticleResult, article_id: str, owner: str | None) -> None:
        """Revision 1 and its ``generated`` event, inside ``save_article``'s transaction."""
        now = self._now()
        author = owner or SYSTEM_ACTOR
        self._record_revision(
            session,
            article_id=article_id,
            revision=1,
            title=result.title,
            body_markdown=result.body_markdown,
            scores=result.scores,
            failing_gates=result.failing_gates,
            status=str(result.status),
            source="generated",
            author=author,
            provenance=result.provenance,
            now=now,
        )
        self._record_event(
            session,
            article_id=article_id,
            brief_id=result.brief_id,
            kind=EventKind.GENERATED,
            from_status=None,
            to_status=str(result.status),
            revision=1,
            actor=author,
            now=now,
        )

    def _store_regenerated(self, session: Session, result: ArticleResult, current: Row[Any], owner: str | None) -> None:
        """Replace a ``regenerating`` article's text with the new draft as its next revision (in place: one
        article per brief), inside ``save_article``'s transaction. The previous text stays a revision row."""
        now = self._now()
        author = owner or SYSTEM_ACTOR
        status = next_status(current.id, current.status, Action.REGENERATED, list(result.failing_gates))
        feedback = session.execute(select(briefs.c.feedback).where(briefs.c.id == result.brief_id)).scalar()
        revision = current.revision + 1
        changed = session.execute(
            update(articles)
            .where(articles.c.id == current.id, articles.c.revision == current.revision)
            .values(
                status=str(status),
                title=result.title,
                body_markdown=result.body_markdown,
                style=result.style,
                adapter_version=result.adapter_version,
                scores=result.scores,
                failing_gates=list(result.failing_gates),
                provenance=result.provenance,
                revision=revision,
                updated_at=now,
            )
        )
        if changed.rowcount != 1:
            raise ConflictError(f"article {current.id} changed while its new draft was being stored; nothing stored")
        self._record_revision(
            session,
            article_id=current.id,
            revision=revision,
            title=result.title,
            body_markdown=result.body_markdown,
            scores=result.scores,
            failing_gates=result.failing_gates,
            status=str(status),
            source="regenerated",
            author=author,
            note=feedback,
            provenance=result.provenance,
            now=now,
        )
        self._record_event(
            session,
            article_id=current.id,
            brief_id=result.brief_id,
            kind=EventKind.REGENERATED,
            from_status=current.status,
            to_status=str(status),
            revision=revision,
            actor=author,
            note=feedback,
            details={"previous_revision": current.revision},
            now=now,
        )

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
    def _set_status(session: Session, row: Row[Any], status: str, now: datetime) -> None:
        changed = session.execute(
            update(articles)
            .where(articles.c.id == row.id, articles.c.revision == row.revision, articles.c.status == row.status)
            .values(status=str(status), updated_at=now)
        )
        if changed.rowcount != 1:  # cannot happen under the row lock; never overwrite silently all the same
            raise ConflictError(f"article {row.id} changed since you loaded revision {row.revision}; nothing changed")

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
            self._record_event(
                session,
                article_id=row.id,
                brief_id=row.brief_id,
                kind=kind,
                from_status=row.status,
                to_status=str(status),
                revision=row.revision,
                actor=actor,
                note=note,
                now=now,
            )
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
    ) -> ArticleRecord:
        """Store an editor's text as the next revision with its recomputed scores; the status follows the
        gates (``needs_review`` or ``needs_attention``). :class:`ReviewError` for an empty or unchanged text."""
        if not body_markdown.strip():
            raise ReviewError(f"the edited text of article {key} is empty; nothing was saved")
        now = self._now()
        with self._write() as session:
            row = self._load_for_change(session, key, expected_revision, expected_status)
            status = next_status(row.id, row.status, Action.EDIT, list(failing_gates))
            if body_markdown == row.body_markdown:
                raise ReviewError(f"the text of article {row.id} is unchanged; no new revision was saved")
            revision = row.revision + 1
            changed = session.execute(
                update(articles)
                .where(articles.c.id == row.id, articles.c.revision == row.revision, articles.c.status == row.status)
                .values(
                    status=str(status),
                    title=title,
                    body_markdown=body_markdown,
                    scores=scores,
                    failing_gates=list(failing_gates),
                    revision=revision,
                    updated_at=now,
                )
            )
            if changed.rowcount != 1:
                raise ConflictError(f"article {row.id} changed since you loaded revision {row.revision}; not saved")
            self._record_revision(
                session,
                article_id=row.id,
                revision=revision,
                title=title,
                body_markdown=body_markdown,
                scores=scores,
                failing_gates=failing_gates,
                status=str(status),
                source="edit",
                author=actor,
                note=_clean(note),
                now=now,
            )
            self._record_event(
                session,
                article_id=row.id,
                brief_id=row.brief_id,
                kind=EventKind.EDITED,
                from_status=row.status,
                to_status=str(status),
                revision=revision,
                actor=actor,
                note=_clean(note),
                details={"previous_revision": row.revision, "failing_gates": list(failing_gates)},
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
            self._record_event(
                session,
                article_id=row.id,
                brief_id=row.brief_id,
                kind=EventKind.SENT_BACK,
                from_status=row.status,
                to_status=ArticleStatus.REGENERATING.value,
                revision=row.revision,
                actor=actor,
                note=feedback_text,
                now=now,
            )
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
            self._record_event(
                session,
                article_id=row.id,
                brief_id=row.brief_id,
                kind=EventKind.PUBLISHED,
                from_status=row.status,
                to_status=str(status),
                revision=row.revision,
                actor=actor,
                details=details,
                now=now,
            )
        return True

    # -- reading --------------------------------------------------------------------------------------

    def review_queue(
        self,
        *,
        statuses: Sequence[str] = IN_REVIEW,
        style: str | None = None,
        job_id: str | None = None,
        order: str = "oldest",
        limit: int | None = None,
    ) -> list[ArticleRecord]:
        """Articles waiting for a decision: ``oldest`` first (created), or ``worst`` first (lowest
        :attr:`Scorecard.quality`, then oldest). Filters: statuses, style, job."""
        if order not in QUEUE_ORDERS:
            raise ReviewError(f"unknown order {order!r}: use {' or '.join(QUEUE_ORDERS)}")
        statement = select(articles).where(articles.c.status.in_([str(s) for s in statuses]))
        if style is not None:
            statement = statement.where(articles.c.style == style)
        if job_id is not None:
            self.get_job(job_id)  # type: ignore[attr-defined]  # NotFoundError with a hint
            members = select(job_items.c.brief_id).where(job_items.c.job_id == job_id)
            statement = statement.where(articles.c.brief_id.in_(members))
        statement = statement.order_by(articles.c.created_at, articles.c.id)
        with self._read() as session:
            found = [article_record(row) for row in session.execute(statement)]
        if order == "worst":
            found.sort(key=quality_of)  # stable: ties stay oldest first
        return found[:limit] if limit is not None else found

    def iter_articles(self, statuses: Sequence[str]) -> Iterator[ArticleRecord]:
        """Every article with one of ``statuses``, oldest first, read in pages."""
        after: tuple[datetime, str] | None = None
        while True:
            statement = (
                select(articles)
                .where(articles.c.status.in_([str(s) for s in statuses]))
                .order_by(articles.c.created_at, articles.c.id)
                .limit(_PAGE)
            )
            if after is not None:
                statement = statement.where(
                    (articles.c.created_at > after[0])
                    | ((articles.c.created_at == after[0]) & (articles.c.id > after[1]))
                )
            with self._read() as session:
                page = [article_record(row) for row in session.execute(statement)]
            yield from page
            if len(page) < _PAGE:
                return
            after = (page[-1].created_at, page[-1].id)

    def list_revisions(self, key: str) -> list[RevisionRecord]:
        """Every revision of the article, oldest first."""
        article_id = self.get_article(key).id  # type: ignore[attr-defined]
        with self._read() as session:
            rows = session.execute(
                select(article_revisions)
                .where(article_revisions.c.article_id == article_id)
                .order_by(article_revisions.c.revision)
            )
            return [revision_record(row) for row in rows]

    def get_revision(self, key: str, revision: int) -> RevisionRecord:
        """One revision of the article; :class:`NotFoundError` naming the revisions there are."""
        revisions = self.list_revisions(key)
        for record in revisions:
            if record.revision == revision:
                return record
        have = ", ".join(str(r.revision) for r in revisions) or "none"
        raise NotFoundError(f"article {key} has no revision {revision} (revisions: {have})")

    def events_of_kind(self, kind: str) -> list[EventRecord]:
        """Every event of one kind (e.g. ``published``) across articles, oldest first, in one query."""
        with self._read() as session:
            rows = session.execute(
                select(article_events).where(article_events.c.kind == str(kind)).order_by(article_events.c.id)
            )
            return [event_record(row) for row in rows]

    def list_events(self, key: str) -> list[EventRecord]:
        """Every decision and change of the article, oldest first."""
        article_id = self.get_article(key).id  # type: ignore[attr-defined]
        with self._read() as session:
            rows = session.execute(
                select(article_events).where(article_events.c.article_id == article_id).order_by(article_events.c.id)
            )
            return [event_record(row) for row in rows]


__all__ = ["QUEUE_ORDERS", "SYSTEM_ACTOR", "ReviewStoreMixin", "quality_of"]
