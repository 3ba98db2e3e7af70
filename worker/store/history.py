"""The history of an article: every text it had (``article_revisions``) and every decision and change
(``article_events``), written in the transaction of the change they record and never overwritten.

A revision row copies the article's text columns as the change wrote them (:data:`REVISION_COLUMNS`);
an event row says who did what, when, from which status to which, on which revision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from worker.errors import ConflictError, NotFoundError
from worker.results import ArticleResult
from worker.store.records import EventRecord, RevisionRecord, article_quality, event_record, revision_record
from worker.store.schema import article_events, article_revisions, articles, briefs
from worker.workflow import Action, EventKind, next_status

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "copydesk"
REVISION_COLUMNS = ("revision", "title", "body_markdown", "scores", "failing_gates", "status")
"""The ``articles`` columns a revision row keeps a copy of."""


def draft_values(result: ArticleResult, revision: int, status: str) -> dict[str, Any]:
    """The ``articles`` columns a generated draft sets (its text, scores, quality, style and provenance)."""
    return {
        "revision": revision,
        "status": str(status),
        "title": result.title,
        "body_markdown": result.body_markdown,
        "style": result.style,
        "adapter_version": result.adapter_version,
        "scores": result.scores,
        "quality": article_quality(result.quality, result.scores),
        "failing_gates": list(result.failing_gates),
        "provenance": result.provenance,
    }


def record_revision(
    session: Session,
    article_id: str,
    text: Mapping[str, Any],
    *,
    source: str,
    author: str,
    now: datetime,
    note: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Insert the revision row of ``text`` (the article's new column values, :data:`REVISION_COLUMNS` used)."""
    copied = {name: text[name] for name in REVISION_COLUMNS}
    copied["status"] = str(copied["status"])
    copied["failing_gates"] = list(copied["failing_gates"])
    written = {"article_id": article_id, "source": source, "author": author, "note": note, "provenance": provenance}
    session.execute(insert(article_revisions).values(**written, **copied, created_at=now))


def record_event(
    session: Session,
    article: Row[Any] | Mapping[str, Any],
    kind: EventKind,
    to_status: str,
    *,
    actor: str,
    now: datetime,
    revision: int | None = None,
    note: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Insert an event on ``article`` (a row, or a mapping with its ``id``, ``brief_id``, ``status`` and
    ``revision``): from its status to ``to_status``, on its revision unless ``revision`` is given."""
    values = article if isinstance(article, Mapping) else article._mapping
    from_status = values["status"]
    session.execute(
        insert(article_events).values(
            article_id=values["id"],
            brief_id=values["brief_id"],
            kind=str(kind),
            from_status=None if from_status is None else str(from_status),
            to_status=str(to_status),
            revision=values["revision"] if revision is None else revision,
            actor=actor,
            note=note,
            details=details or {},
            created_at=now,
        )
    )


class HistoryStoreMixin:
    """Revisions and events of :class:`worker.store.Store` (it provides ``_read``, ``_now`` and ``get_article``)."""

    _read: Any
    _now: Any

    # -- written with a new draft, inside ``save_article``'s transaction --------------------------------

    def _record_generated(self, session: Session, result: ArticleResult, article_id: str, owner: str | None) -> None:
        """Revision 1 and its ``generated`` event."""
        now = self._now()
        author = owner or SYSTEM_ACTOR
        draft = draft_values(result, 1, str(result.status))
        record_revision(
            session, article_id, draft, source="generated", author=author, provenance=result.provenance, now=now
        )
        new = {"id": article_id, "brief_id": result.brief_id, "status": None, "revision": 1}
        record_event(session, new, EventKind.GENERATED, str(result.status), actor=author, now=now)

    def _store_regenerated(self, session: Session, result: ArticleResult, current: Row[Any], owner: str | None) -> None:
        """Replace a ``regenerating`` article's text with the new draft as its next revision (in place: one
        article per brief). The previous text stays a revision row."""
        now = self._now()
        author = owner or SYSTEM_ACTOR
        status = next_status(current.id, current.status, Action.REGENERATED, list(result.failing_gates))
        feedback = session.execute(select(briefs.c.feedback).where(briefs.c.id == result.brief_id)).scalar()
        draft = draft_values(result, current.revision + 1, str(status))
        changed = session.execute(
            update(articles)
            .where(articles.c.id == current.id, articles.c.revision == current.revision)
            .values(**draft, updated_at=now)
        )
        if changed.rowcount != 1:
            raise ConflictError(f"article {current.id} changed while its new draft was being stored; nothing stored")
        record_revision(
            session,
            current.id,
            draft,
            source="regenerated",
            author=author,
            note=feedback,
            provenance=result.provenance,
            now=now,
        )
        details = {"previous_revision": current.revision}
        record_event(
            session,
            current,
            EventKind.REGENERATED,
            str(status),
            revision=draft["revision"],
            actor=author,
            note=feedback,
            details=details,
            now=now,
        )

    # -- reading --------------------------------------------------------------------------------------

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


__all__ = ["REVISION_COLUMNS", "SYSTEM_ACTOR", "HistoryStoreMixin", "draft_values", "record_event", "record_revision"]
