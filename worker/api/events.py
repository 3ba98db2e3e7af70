"""Webhook events raised by API routes: recorded in the store, then one delivery task queued per endpoint.

The deliveries are sent by the ``copydesk.deliver_webhook`` task (``worker.tasks.webhooks``), published by name.
A failure to record or publish is logged and never fails the request: the decision is already stored.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from worker.errors import CopydeskError
from worker.store import Store
from worker.store.webhooks import DELIVER_TASK

logger = logging.getLogger(__name__)


def notify(request: Request, event_type: str, data: dict[str, Any], *, event_key: str) -> list[str]:
    """Record ``event_type`` for the subscribed endpoints and queue the deliveries; the event ids."""
    store: Store = request.app.state.store
    try:
        created = store.record_event(event_type, data, event_key=event_key)
        for message_id in created:
            request.app.state.celery.send_task(DELIVER_TASK, args=[message_id])
    except (CopydeskError, OSError) as exc:
        logger.warning("webhook event %s not queued: %s", event_key, exc)
        return []
    return created
