"""Reading the articles that wait for an editor: the review queue, and every article of some statuses.

The ``worst`` order sorts by ``articles.quality``, the chosen draft's ``Scorecard.quality`` stored with
the article (migration 5), so the store needs no scoring code to rank drafts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from worker.errors import ReviewError
from worker.store.records import ArticleRecord, article_record
from worker.store.schema import articles, job_items
from worker.workflow import IN_REVIEW

logger = logging.getLogger(__name__)

QUEUE_ORDERS = ("oldest", "worst")
_PAGE = 500


def quality_of(article: ArticleRecord) -> float:
    """The number the ``worst`` order sorts by: the article's stored quality (its draft's Scorecard.quality)."""
    return article.quality


class ReviewQueueStoreMixin:
    """The review queue of :class:`worker.store.Store` (it provides ``_read`` and ``get_job``)."""

    _read: Any

    def review_queue(
        self,
        *,
        statuses: Sequence[str] = IN_REVIEW,
        style: str | None = None,
        job_id: str | None = None,
        order: str = "oldest",
        limit: int | None = None,
    ) -> list[ArticleRecord]:
        """Articles waiting for a decision: ``oldest`` first (created), or ``worst`` first (lowest stored
        quality, then oldest). Filters: statuses, style, job."""
        if order not in QUEUE_ORDERS:
            raise ReviewError(f"unknown order {order!r}: use {' or '.join(QUEUE_ORDERS)}")
        statement = select(articles).where(articles.c.status.in_([str(s) for s in statuses]))
        if style is not None:
            statement = statement.where(articles.c.style == style)
        if job_id is not None:
            self.get_job(job_id)  # type: ignore[attr-defined]  # NotFoundError with a hint
            members = select(job_items.c.brief_id).where(job_items.c.job_id == job_id)
            statement = statement.where(articles.c.brief_id.in_(members))
        ranked = (articles.c.quality,) if order == "worst" else ()
        statement = statement.order_by(*ranked, articles.c.created_at, articles.c.id)
        with self._read() as session:
            found = [article_record(row) for row in session.execute(statement)]
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


__all__ = ["QUEUE_ORDERS", "ReviewQueueStoreMixin", "quality_of"]
