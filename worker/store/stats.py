"""Figures for monitoring, read from the store (the source of truth), so every process reports the same.

:meth:`StatsStoreMixin.stats` counts briefs by status and style, articles by status and style, claims
(attempts), candidates' gate failures by gate and style, generated tokens, generation and scoring seconds by style,
the age of the oldest queued brief, and webhook deliveries by status. :class:`StoreCollector` turns them (and
the broker's queue depths) into Prometheus metrics at each scrape, for ``copydesk serve``'s ``/metrics``
(:mod:`worker.api.metrics`) and a worker's own port (:mod:`worker.tasks.metrics`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.errors import CopydeskError
from worker.results import BriefStatus
from worker.store.schema import articles, briefs, candidates, webhook_deliveries

logger = logging.getLogger(__name__)

QUEUES = ("generate", "train")
UNROUTED = "none"  # the style label of a brief with no article yet


@dataclass
class StoreStats:
    briefs: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, style) -> count
    articles: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, style) -> count
    attempts: int = 0
    gate_failures: dict[tuple[str, str], int] = field(default_factory=dict)  # (gate, style) -> candidates
    tokens: dict[str, int] = field(default_factory=dict)  # style -> generated tokens
    generation_seconds: dict[str, float] = field(default_factory=dict)  # style -> seconds
    scoring_seconds: dict[str, float] = field(default_factory=dict)  # style -> seconds (articles' provenance)
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
            result.scoring_seconds = _scoring_seconds(session)
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


def _scoring_seconds(session: Session) -> dict[str, float]:
    """Seconds spent scoring, by style: each article's share of its batch's scoring (``timings_s.score_s`` in
    its provenance, written by the pipeline), summed."""
    totals: dict[str, float] = {}
    for name, provenance in session.execute(select(articles.c.style, articles.c.provenance)):
        timings = provenance.get("timings_s") if isinstance(provenance, dict) else None
        seconds = timings.get("score_s") if isinstance(timings, dict) else None
        if isinstance(seconds, int | float) and math.isfinite(seconds):
            totals[name] = totals.get(name, 0.0) + float(seconds)
    return totals


class StatsSource(Protocol):
    def stats(self) -> StoreStats: ...


class StoreCollector(Collector):
    """The store's and the broker's figures, read at each scrape."""

    def __init__(self, store: StatsSource, celery: Any) -> None:
        self.store = store
        self.celery = celery

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.store.stats()
        except CopydeskError as exc:
            logger.warning("metrics: the store could not be read: %s", exc)
            up = GaugeMetricFamily("copydesk_store_up", "1 when the store answered this scrape.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("copydesk_store_up", "1 when the store answered this scrape.")
        up.add_metric([], 1)
        yield up
        yield _gauge("copydesk_briefs", "Briefs by ledger status and style (none: not written yet).",
                     ["status", "style"], stats.briefs)  # fmt: skip
        yield _gauge("copydesk_articles", "Articles by review status and style.", ["status", "style"], stats.articles)
        written = CounterMetricFamily("copydesk_articles_written", "Articles written, by style.", labels=["style"])
        by_style: dict[str, int] = {}
        for (_status, style), count in stats.articles.items():
            by_style[style] = by_style.get(style, 0) + count
        for style, count in sorted(by_style.items()):
            written.add_metric([style], count)
        yield written
        attempts = CounterMetricFamily("copydesk_brief_attempts", "Claims of briefs by workers (attempts).")
        attempts.add_metric([], stats.attempts)
        yield attempts
        yield _counter("copydesk_gate_failures", "Candidates failing a gate, by gate and style.",
                       ["gate", "style"], stats.gate_failures)  # fmt: skip
        yield _counter("copydesk_generation_tokens", "Tokens generated (all candidates), by style.",
                       ["style"], {(k,): v for k, v in stats.tokens.items()})  # fmt: skip
        yield _counter("copydesk_generation_seconds", "Seconds spent generating candidates, by style.",
                       ["style"], {(k,): v for k, v in stats.generation_seconds.items()})  # fmt: skip
        yield _counter("copydesk_scoring_seconds", "Seconds spent scoring drafts, by style.",
                       ["style"], {(k,): v for k, v in stats.scoring_seconds.items()})  # fmt: skip
        oldest = GaugeMetricFamily("copydesk_oldest_queued_brief_age_seconds", "Age of the oldest queued brief.")
        oldest.add_metric([], stats.oldest_queued_seconds)
        yield oldest
        yield _counter("copydesk_webhook_deliveries", "Webhook deliveries by status (pending, delivered, failed).",
                       ["status"], {(k,): v for k, v in stats.webhook_deliveries.items()})  # fmt: skip
        yield self._queue_depth()

    def _queue_depth(self) -> Metric:
        depth = GaugeMetricFamily("copydesk_queue_depth", "Messages waiting in each broker queue.", labels=["queue"])
        try:
            with self.celery.connection_for_read() as connection:
                channel = connection.default_channel
                for queue in QUEUES:
                    declared = channel.queue_declare(queue=queue, passive=True)
                    depth.add_metric([queue], declared.message_count)
        except Exception as exc:  # a broker that does not answer leaves the metric empty
            logger.warning("metrics: queue depth unavailable: %s", exc)
        return depth


def _gauge(name: str, doc: str, labels: list[str], values: dict[Any, Any]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _counter(name: str, doc: str, labels: list[str], values: dict[Any, Any]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family
