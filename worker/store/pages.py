"""Articles page by page for the HTTP API: filters by status, style, job and time, and an opaque cursor.

Pages are in ``(created_at, id)`` order, newest first. The cursor names the last article of a page; the next
page starts after it, so articles stored meanwhile never shift a page (they are newer: they come first).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from worker.store.records import ArticleRecord, article_record
from worker.store.schema import articles, job_items


@dataclass(frozen=True)
class ArticlePage:
    articles: list[ArticleRecord]
    next_cursor: str | None  # None on the last page


def encode_cursor(article: ArticleRecord) -> str:
    raw = f"{article.created_at.isoformat()}|{article.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor names; :class:`ValueError` for one this store did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, article_id = raw.split("|", 1)
        created = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"invalid cursor {cursor[:40]!r}: pass the next_cursor of the previous page") from exc
    if created.tzinfo is None or not article_id:
        raise ValueError(f"invalid cursor {cursor[:40]!r}: pass the next_cursor of the previous page")
    return created, article_id


class ArticlePagesMixin:
    """Paged article listing of :class:`~worker.store.Store`."""

    _read: Callable[[], AbstractContextManager[Session]]

    def page_articles(
        self,
        *,
        status: str | None = None,
        style: str | None = None,
        job_id: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> ArticlePage:
        """One page of articles, newest first; ``since`` keeps those created at or after it."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        statement = select(articles).order_by(articles.c.created_at.desc(), articles.c.id.desc()).limit(limit + 1)
        if status is not None:
            statement = statement.where(articles.c.status == status)
        if style is not None:
            statement = statement.where(articles.c.style == style)
        if job_id is not None:
            members = select(job_items.c.brief_id).where(job_items.c.job_id == job_id)
            statement = statement.where(articles.c.brief_id.in_(members))
        if since is not None:
            statement = statement.where(articles.c.created_at >= since)
        if cursor is not None:
            created, article_id = decode_cursor(cursor)
            statement = statement.where(
                or_(
                    articles.c.created_at < created,
                    and_(articles.c.created_at == created, articles.c.id < article_id),
                )
            )
        with self._read() as session:
            rows = [article_record(row) for row in session.execute(statement)]
        page = rows[:limit]
        return ArticlePage(page, encode_cursor(page[-1]) if len(rows) > limit else None)
