"""Prometheus metrics at ``GET /metrics`` of ``copydesk serve`` (prometheus-client).

Two sources. The store's figures (:class:`worker.store.stats.StoreCollector`) are read at each scrape, so they are the
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
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from worker.store import Store
from worker.store.stats import StoreCollector

logger = logging.getLogger(__name__)

API_REQUESTS = Counter(
    "copydesk_api_requests", "HTTP API requests by route template, method and status.", ["route", "method", "status"]
)


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
