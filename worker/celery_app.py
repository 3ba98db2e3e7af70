"""The Celery application: JSON only, late acks, time limits, and the embedded broker by default.

With no ``COPYDESK_BROKER_URL``, the broker is kombu's SQLAlchemy transport on a SQLite file under
``$COPYDESK_HOME`` (no server to install). That transport loses the messages a killed worker was holding;
copydesk does not rely on it: the store's ledger and the reconciler (:mod:`worker.reconciler`) republish
any brief that stays queued or whose lease expired. Redis and RabbitMQ work by URL for several machines.

Run a worker with ``copydesk worker`` (or ``celery -A worker.celery_app worker -Q generate,train``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from celery import Celery
from kombu import Queue

from worker.config import Settings, load_settings

logger = logging.getLogger(__name__)

GENERATE_QUEUE = "generate"
TRAIN_QUEUE = "train"
WRITE_TASK = "copydesk.write_brief"
TRAIN_TASK = "copydesk.train_style"


def broker_url(settings: Settings) -> str:
    """The configured broker, or the embedded SQLite broker under ``home``."""
    if settings.broker_url:
        return settings.broker_url
    return f"sqla+sqlite:///{(settings.home / 'broker.db').resolve()}"


def is_embedded(url: str) -> bool:
    return url.startswith(("sqla+", "sqlalchemy+"))


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from copydesk's typed configuration."""
    url = broker_url(settings)
    transport_options: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://")):
        # Redelivery of unacknowledged tasks should not happen while the first copy may still run (a copy that
        # does is harmless: the brief is leased). kombu looks for overdue messages every
        # unacked_restore_interval x unacked_restore_throttle seconds (100 s by default): keep that short
        # next to the timeout, or a short timeout would not be honoured.
        visibility = settings.visibility_timeout or settings.task_time_limit * 2
        transport_options["visibility_timeout"] = max(1, math.ceil(visibility))
        transport_options["unacked_restore_interval"] = max(1, min(10, math.ceil(visibility / 10)))
        transport_options["unacked_restore_throttle"] = 1
    return {
        "broker_url": url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,  # the store holds every result; no result backend needed
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # batches are drawn from the store, not from prefetched messages
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "task_queues": (Queue(GENERATE_QUEUE), Queue(TRAIN_QUEUE)),
        "task_default_queue": GENERATE_QUEUE,
        "task_routes": {WRITE_TASK: {"queue": GENERATE_QUEUE}, TRAIN_TASK: {"queue": TRAIN_QUEUE}},
        "worker_send_task_events": True,  # Flower and `celery events` work against the same broker
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # The CLI's log handler writes to sys.stderr; redirected into logging, every log line would be dropped.
        "worker_redirect_stdouts": False,
        "worker_max_tasks_per_child": 1000,
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("copydesk")
    app.conf.update(celery_config(settings))
    app.conf.copydesk_settings = settings
    if is_embedded(app.conf.broker_url):
        (settings.home).mkdir(parents=True, exist_ok=True)
    app.conf.include = ["worker.tasks", "worker.training_tasks"]
    return app


app = make_celery(load_settings())
