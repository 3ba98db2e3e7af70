"""The Celery application: JSON only, late acks, time limits, and the embedded broker by default.

With no ``COPYDESK_BROKER_URL``, the broker is kombu's SQLAlchemy transport on a SQLite file under
``$COPYDESK_HOME`` (no server to install). That transport loses the messages a killed worker was holding;
copydesk does not rely on it: the store's ledger and the reconciler (:mod:`worker.queue.reconciler`) republish
any brief that stays queued or whose lease expired. Redis and RabbitMQ work by URL for several machines.

Run a worker with ``copydesk worker`` (or ``celery -A worker.queue.celery_app worker -Q generate,train``).
"""

from __future__ import annotations

import fcntl
import logging
import math
import threading
from pathlib import Path
from typing import Any

from celery import Celery, Task, signals
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


_prepared: set[str] = set()
_prepare_lock = threading.Lock()


def prepare_embedded_broker(app: Celery) -> None:
    """Create the embedded broker's tables and queue rows once, under a lock file shared by all processes.

    kombu creates them on first use with only an in-process lock: two processes starting at once on a fresh
    ``broker.db`` (two workers, or a worker and ``copydesk submit``) both insert the queue row and one of
    them dies of ``UNIQUE constraint failed: kombu_queue.name``. Done once per process and URL; a no-op for
    other brokers.
    """
    url = app.conf.broker_url
    if not url.startswith(("sqla+sqlite:///", "sqlalchemy+sqlite:///")) or url in _prepared:
        return
    database = Path(url.split(":///", 1)[1])
    with _prepare_lock:
        if url in _prepared:
            return
        database.parent.mkdir(parents=True, exist_ok=True)
        with database.with_name(database.name + ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with app.connection_for_write() as connection:
                    channel = connection.default_channel
                    for queue in app.conf.task_queues:
                        queue(channel).declare()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        _prepared.add(url)


@signals.worker_init.connect
def _prepare_broker_for_worker(sender: Any = None, **_: Any) -> None:
    if sender is not None and getattr(sender, "app", None) is not None:
        prepare_embedded_broker(sender.app)


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


def guarded_strategy(task: Task, app: Celery, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default message strategy, except that a message it cannot turn into a request is rejected.

    Celery drops a message it cannot decode or whose task it does not know, but a JSON body of the wrong
    shape (a string, an object without ``args``) or a malformed header (``eta``) raises ``ValueError`` or
    ``TypeError`` out of the consumer: the whole worker stops ("Unrecoverable error"), and meets the same
    message again when it is restarted. Here such a message is rejected as an invalid task (logged, dropped).
    """
    from celery.exceptions import InvalidTaskError
    from celery.worker.strategy import default
    from kombu.exceptions import ContentDisallowed, DecodeError

    handler = default(task, app, consumer, **kwargs)

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **options: Any) -> Any:
        check_message(message, task.name)  # before Celery reserves a pool slot for the request
        try:
            return handler(message, body, ack, reject, callbacks, **options)
        except (InvalidTaskError, ContentDisallowed, DecodeError):
            raise  # Celery's consumer handles these itself
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
            raise InvalidTaskError(f"malformed {task.name} message: {exc!r}") from exc

    return task_message_handler


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def check_message(message: Any, task_name: str) -> None:
    """Refuse a task-protocol-2 message Celery could not use (other protocols: Celery's own checks) with an
    ``InvalidTaskError`` saying what is wrong.

    The body must be ``[args, kwargs, embed]`` (a list, an object, an object or null), the ``id`` header a
    string and ``timelimit`` absent or ``[soft, hard]`` numbers or nulls: Celery itself assumes all of these.
    Raises kombu's ``DecodeError``/``ContentDisallowed`` for a body it cannot or may not decode.
    """
    from celery.exceptions import InvalidTaskError

    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return
    refused = f"malformed {task_name} message:"
    if not isinstance(headers.get("id"), str):
        raise InvalidTaskError(f"{refused} the id header is missing or not a string")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list | tuple) and len(timelimit) == 2 and all(map(_is_number_or_none, timelimit))
    ):
        raise InvalidTaskError(f"{refused} bad timelimit header {str(timelimit)[:40]!r}")
    payload = message.payload
    if not (
        isinstance(payload, list | tuple)
        and len(payload) == 3
        and isinstance(payload[0], list | tuple)
        and isinstance(payload[1], dict)
        and isinstance(payload[2], dict | None)
    ):
        raise InvalidTaskError(f"{refused} the body is not [args, kwargs, embed]: {str(payload)[:60]!r}")


class CopydeskTask(Task):
    """Base of copydesk's tasks: malformed messages are rejected, never fatal (:func:`guarded_strategy`)."""

    Strategy = "worker.queue.celery_app:guarded_strategy"


def make_celery(settings: Settings) -> Celery:
    app = Celery("copydesk", task_cls=CopydeskTask)
    app.conf.update(celery_config(settings))
    app.conf.copydesk_settings = settings
    if is_embedded(app.conf.broker_url):
        (settings.home).mkdir(parents=True, exist_ok=True)
    app.conf.include = ["worker.tasks.write", "worker.tasks.training", "worker.tasks.webhooks", "worker.tasks.metrics"]
    return app


app = make_celery(load_settings())
