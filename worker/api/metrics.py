"""Prometheus metrics at ``GET /metrics`` of ``copydesk serve`` (prometheus-client).

Two sources. The store's figures (:meth:`worker.store.Store.stats`) are read at each scrape, so they are the
same whichever process serves them and survive restarts: briefs by status and style, articles by status and
style, attempts, gate failures by gate and style, generated tokens and generation seconds by style, the oldest
queued brief's age, webhook deliveries by status. The broker's queue depth per queue is asked at each scrape
too. API requests by route and status are counted in the serving process; with ``PROMETHEUS_MULTIPROC_DIR``
set (several uvicorn workers) they are written there and summed by prometheus-client's multiprocess
collector.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from worker.errors import CopydeskError
from worker.store import Store

logger = logging.getLogger(__name__)

QUEUES = ("generate", "train")

API_REQUESTS = Counter(
    "copydesk_api_requests", "HTTP API requests by route template, method and status.", ["route", "method", "status"]
)


class StoreCollector(Collector):
    """The store's and the broker's figures, read at each scrape."""

    def __init__(self, store: Store, celery: Any) -> None:
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


def registry_for(store: Store, celery: Any) -> CollectorRegistry:
    """The registry ``/metrics`` serves: this process's counters (or every process's, in multiprocess mode)
    and the store's figures."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(API_REQUESTS)
    registry.register(StoreCollector(store, celery))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
