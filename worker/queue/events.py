"""Webhook events: recorded in the store, then one ``copydesk.deliver_webhook`` message per delivery.

Every place that raises an event calls :func:`emit`: the CLI and the API for decisions and cancellations,
the workers for drafts stored and jobs settled. Recording is idempotent per event key (the delivery ids
derive from it), so raising the same event twice sends it once. A broker that cannot be reached leaves the
deliveries pending in the store; the workers' reconciler publishes them later. A store error is logged and
never fails the caller: the decision or the article is already stored.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from worker.errors import CopydeskError
from worker.store import Store
from worker.store.webhooks import DELIVER_TASK

logger = logging.getLogger(__name__)


def publish_deliveries(app: Celery, message_ids: list[str]) -> int:
    """Queue one delivery task per id; returns how many were sent."""
    for message_id in message_ids:
        app.send_task(DELIVER_TASK, args=[message_id])
    return len(message_ids)


def emit(store: Store, app: Celery, event_type: str, data: dict[str, Any], *, event_key: str) -> list[str]:
    """Record ``event_type`` for every subscribed endpoint and queue its deliveries; the new event ids."""
    try:
        created = store.record_event(event_type, data, event_key=event_key)
    except CopydeskError as exc:
        logger.warning("webhook event %s not recorded: %s", event_key, exc)
        return []
    try:
        publish_deliveries(app, created)
    except (KombuOperationalError, OSError) as exc:
        logger.warning("webhook event %s recorded, not published (the reconciler will): %s", event_key, exc)
    return created


def article_approved(store: Store, app: Celery, article: Any, actor: str) -> list[str]:
    """``article.approved`` for ``article`` (an :class:`~worker.store.ArticleRecord`) approved by ``actor``."""
    data = {"article_id": article.id, "brief_id": article.brief_id, "revision": article.revision, "by": actor}
    return emit(store, app, "article.approved", data, event_key=f"article.approved:{article.id}:{article.revision}")


def job_settled(store: Store, app: Celery, job: Any) -> list[str]:
    """``job.<status>`` for a job (a :class:`~worker.store.JobRecord`) that has settled; nothing otherwise."""
    event = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}.get(job.status)
    event = event or ("job.expired" if job.status == "expired" else None)
    if event is None:
        return []
    data = {"job_id": job.id, "status": job.status, "counts": vars(job.counts)}
    return emit(store, app, event, data, event_key=f"{event}:{job.id}")
