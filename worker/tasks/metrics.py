"""Prometheus metrics of a worker alone: ``COPYDESK_METRICS_PORT=9464 copydesk worker``.

When the variable is set, the worker's main process serves the store's and the broker's figures
(:class:`worker.store.stats.StoreCollector`, the same as ``copydesk serve``'s ``/metrics``) on that port of
127.0.0.1 (``COPYDESK_METRICS_ADDRESS`` to change it), for a Prometheus that scrapes workers directly.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, start_http_server

from worker.config import load_settings
from worker.queue.fork_guard import main_process_store
from worker.store import Store
from worker.store.stats import StoreCollector, StoreStats

logger = logging.getLogger(__name__)

PORT_VARIABLE = "COPYDESK_METRICS_PORT"
ADDRESS_VARIABLE = "COPYDESK_METRICS_ADDRESS"


def metrics_port() -> int | None:
    """The port from ``COPYDESK_METRICS_PORT``; ``None`` when unset; a bad value is logged and ignored."""
    value = os.environ.get(PORT_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        logger.error("%s=%r is not a TCP port; worker metrics are off", PORT_VARIABLE, value)
        return None
    return int(value)


class GuardedStats:
    """The store's figures read inside :func:`main_process_store`, so the pool never forks mid-query."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def stats(self) -> StoreStats:
        with main_process_store(lambda: self.store) as store:
            return store.stats()


@signals.worker_ready.connect
def serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    port = metrics_port()
    if port is None or sender is None:
        return
    settings = getattr(sender.app.conf, "copydesk_settings", None) or load_settings()
    registry = CollectorRegistry()
    registry.register(StoreCollector(GuardedStats(Store.from_settings(settings)), sender.app))
    address = os.environ.get(ADDRESS_VARIABLE, "127.0.0.1")
    start_http_server(port, addr=address, registry=registry)
    logger.info("worker metrics on http://%s:%d/metrics", address, port)
