"""The webhook delivery task: sends one recorded delivery, signed as the Standard Webhooks specification says.

``deliver_webhook(delivery_id)`` takes the id of a ``webhook_deliveries`` row (the event id), posts its payload
to the endpoint with ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1,`` + base64 of
HMAC-SHA256 over ``id.timestamp.body`` with the endpoint's secret), and records the attempt. A 2xx answer
delivers it; anything else retries after ``webhook_retry_base_seconds`` x 4^(attempt-1) (at most 3 h) until
``webhook_retry_hours`` have passed since the event, then the delivery is failed. Every retry carries the same
event id, so a receiver deduplicates on ``webhook-id``; a delivery already delivered is never sent again. A
send first takes the delivery for ``SEND_LEASE`` seconds, so two copies of its message never send at once. The
worker's reconciler publishes again the deliveries overdue by ``stale_after`` that nobody holds
(:func:`republish_due_deliveries`): a lost message, or a worker killed mid-send, whose event another worker
then sends once more, with the same id. The URL is checked again before each send (a name may resolve
elsewhere by now).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx
from celery import Celery, current_app, shared_task

from worker.config import Settings
from worker.errors import NotFoundError, StoreError
from worker.queue.events import emit, job_settled, publish_deliveries
from worker.store import Store, utc_now
from worker.store.webhooks import DELIVER_TASK, SECRET_PREFIX, Delivery, DeliveryStatus, check_webhook_url

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
SEND_LEASE = SEND_TIMEOUT + 5.0  # a delivery taken for a send is left alone this long (its sender may have died)
MAX_DELAY = 3 * 3600.0
USER_AGENT = "copydesk-webhooks/1"


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64(HMAC-SHA256(key, ``id.timestamp.body``))."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def retry_delay(attempt: int, base: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return min(base * 4 ** (attempt - 1), MAX_DELAY)


def next_attempt(delivery: Delivery, attempt: int, settings: Settings, now: datetime) -> datetime | None:
    """When to try again after ``attempt`` failed; ``None`` once the retry window has passed."""
    at = now + timedelta(seconds=retry_delay(attempt, settings.webhook_retry_base_seconds))
    if at - delivery.created_at > timedelta(hours=settings.webhook_retry_hours):
        return None
    return at


def _settings() -> Settings:
    settings = getattr(current_app.conf, "copydesk_settings", None)
    if settings is None:
        from worker.config import load_settings

        settings = load_settings()
    return settings


@lru_cache(maxsize=1)
def _store() -> Store:
    store = Store.from_settings(_settings())
    store.migrate()
    return store


def send(store: Store, settings: Settings, delivery: Delivery) -> Delivery:
    """Try the delivery once and record the attempt; the updated delivery."""
    endpoint = store.get_webhook(delivery.endpoint_id)
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    started = utc_now()
    clock = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        check_webhook_url(endpoint.url, allow_link_local=settings.webhook_allow_link_local)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(endpoint.secret, delivery.id, timestamp, body),
        }
        response = httpx.post(endpoint.url, content=body, headers=headers, timeout=SEND_TIMEOUT, follow_redirects=False)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except (httpx.HTTPError, StoreError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    delivered = error is None
    now = utc_now()
    after = None if delivered else next_attempt(delivery, delivery.attempts + 1, settings, now)
    updated = store.record_attempt(
        delivery.id,
        started_at=started,
        status_code=status_code,
        error=error,
        seconds=time.perf_counter() - clock,
        delivered=delivered,
        next_attempt_at=after,
    )
    logger.info("webhook %s (%s) attempt %d: %s", delivery.id, delivery.event_type, updated.attempts, error or "ok")
    return updated


@shared_task(name=DELIVER_TASK, bind=True, max_retries=None)
def deliver_webhook(self: Any, message_id: Any) -> dict[str, Any]:
    """Send one webhook delivery (idempotent: a delivered or failed one is left alone)."""
    if not isinstance(message_id, str) or len(message_id) > 64:
        logger.error("ignored a webhook message with a malformed id: %r", str(message_id)[:80])
        return {"ignored": "malformed id"}
    store = _store()
    try:
        delivery = store.get_delivery(message_id)
    except NotFoundError:
        logger.error("ignored a webhook message for unknown delivery %s", message_id)
        return {"ignored": "unknown delivery"}
    if delivery.status != DeliveryStatus.PENDING:
        return {"skipped": str(delivery.status)}
    claimed = store.claim_delivery(message_id, lease_seconds=SEND_LEASE)
    if claimed is None:
        return {"skipped": "not due or being sent"}
    updated = send(store, _settings(), claimed)
    if updated.status == DeliveryStatus.PENDING and updated.next_attempt_at is not None:
        countdown = max(0.0, (updated.next_attempt_at - utc_now()).total_seconds())
        raise self.retry(countdown=countdown)
    return {"status": str(updated.status), "attempts": updated.attempts}


def emit_after_briefs(store: Store, app: Celery, brief_ids: list[str]) -> int:
    """Events after a worker wrote ``brief_ids``: ``article.needs_review`` for each stored draft in review, and
    ``job.completed|failed|cancelled`` for each of their jobs that has settled. Recording an event twice sends
    it once, so calling this again for the same briefs is harmless. A store error is logged, never raised:
    the articles are written whatever happens to their notifications. Returns how many deliveries were queued.
    """
    queued = 0
    try:
        if not store.list_webhooks():
            return 0
        jobs: set[str] = set()
        for brief_id in brief_ids:
            record = store.get_brief(brief_id)
            if record.job_id:
                jobs.add(record.job_id)
            queued += _article_event(store, app, brief_id)
        for job_id in sorted(jobs):
            queued += len(job_settled(store, app, store.get_job(job_id)))
    except StoreError as exc:
        logger.warning("webhook events for briefs %s not recorded: %s", ", ".join(brief_ids[:3]), exc)
    return queued


def _article_event(store: Store, app: Celery, brief_id: str) -> int:
    try:
        article = store.get_article(brief_id)
    except NotFoundError:
        return 0
    if article.status != "needs_review":
        return 0
    data = {"article_id": article.id, "brief_id": brief_id, "revision": article.revision, "style": article.style}
    key = f"article.needs_review:{article.id}:{article.revision}"
    return len(emit(store, app, "article.needs_review", data, event_key=key))


def expire_due_jobs(store: Store, app: Celery) -> dict[str, int]:
    """Expire the jobs whose completion window passed (run by the worker's reconciler) and send ``job.expired``
    for those already settled; the others send it when their last running brief settles. ``{job id: briefs
    expired now}``; a store error is logged and the next pass tries again."""
    try:
        expired = store.expire_jobs()
        for job_id in expired:
            job_settled(store, app, store.get_job(job_id))
    except StoreError as exc:
        logger.warning("expiring jobs failed, will try again: %s", exc)
        return {}
    return expired


def republish_due_deliveries(store: Store, app: Celery, *, overdue_seconds: float) -> int:
    """Publish again the deliveries due for ``overdue_seconds`` and held by nobody: their message was lost, or
    their sender died mid-send (run by the worker's reconciler). A copy that finds the delivery taken does
    nothing, so a delivery merely waiting in a busy queue costs one extra message per ``overdue_seconds``."""
    try:
        due = store.due_deliveries(overdue_seconds=overdue_seconds)
    except StoreError as exc:
        logger.warning("webhook deliveries not swept: %s", exc)
        return 0
    if due:
        publish_deliveries(app, due)
        logger.info("republished %d due webhook deliveries", len(due))
    return len(due)
