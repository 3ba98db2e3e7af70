"""Figures for monitoring, read from the store (the source of truth), so every process reports the same.

:meth:`StatsStoreMixin.stats` counts briefs by status and style, articles by status and style, claims
(attempts), candidates' gate failures by gate and style, generated tokens and generation seconds by style,
the age of the oldest queued brief, and webhook deliveries by status. The Prometheus exporter of
``copydesk serve`` (:mod:`worker.api.metrics`) turns them into metrics at each scrape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.results import BriefStatus
from worker.store.schema import articles, briefs, candidates, webhook_deliveries

UNROUTED = "none"  # the style label of a brief with no article yet


@dataclass
class StoreStats:
    briefs: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, style) -> count
    articles: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, style) -> count
    attempts: int = 0
    gate_failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (gate, style) -> candidates
    tokens: dict[str, int] = field(default_factory=dict)  # style -> generated tokens
    generation_seconds: dict[str, float] = field(default_factory=dict)  # style -> seconds
    oldest_queued_seconds: float = 0.0
    webhook_deliveries: dict[str, int] = field(default_factory=dict)  # status -> count


class StatsStoreMixin:
    """Monitoring figures of :class:`~worker.store.Store`."""

    _now: Callable[[], datetime]
    _read: Callable[[], AbstractContextManager[Session]]

    def stats(self) -> StoreStats:
        """Every figure, read in one transaction."""
        now = self._now()
        result = StoreStats()
        style = func.coalesce(articles.c.style, UNROUTED)
        with self._read() as session:
            rows = session.execute(
                select(briefs.c.status, style, func.count())
                .select_from(briefs.outerjoin(articles, articles.c.brief_id == briefs.c.id))
                .group_by(briefs.c.status, style)
            ).all()
            result.briefs = {(status, name): count for status, name, count in rows}
            rows = session.execute(
                select(articles.c.status, articles.c.style, func.count()).group_by(articles.c.status, articles.c.style)
            ).all()
            result.articles = {(status, name): count for status, name, count in rows}
            result.attempts = int(session.execute(select(func.coalesce(func.sum(briefs.c.attempts), 0))).scalar_one())
            generated = session.execute(
                select(
                    style,
                    func.coalesce(func.sum(candidates.c.new_tokens), 0),
                    func.coalesce(func.sum(candidates.c.generation_seconds), 0.0),
                )
                .select_from(candidates.outerjoin(articles, articles.c.brief_id == candidates.c.brief_id))
                .group_by(style)
            ).all()
            result.tokens = {name: int(tokens) for name, tokens, _ in generated}
            result.generation_seconds = {name: float(seconds) for name, _, seconds in generated}
            failures: Counter[tuple[str, str]] = Counter()
            for name, gates in session.execute(
                select(style, candidates.c.failing_gates).select_from(
                    candidates.outerjoin(articles, articles.c.brief_id == candidates.c.brief_id)
                )
            ):
                failures.update((str(gate), name) for gate in gates or [])
            result.gate_failures = dict(failures)
            oldest = session.execute(
                select(func.min(briefs.c.updated_at)).where(briefs.c.status == BriefStatus.QUEUED.value)
            ).scalar()
            rows = session.execute(
                select(webhook_deliveries.c.status, func.count()).group_by(webhook_deliveries.c.status)
            ).all()
            result.webhook_deliveries = {status: count for status, count in rows}
        if oldest is not None:  # a min() over a UTCDateTime column comes back naive on SQLite
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
            result.oldest_queued_seconds = max(0.0, (now - oldest).total_seconds())
        return result
