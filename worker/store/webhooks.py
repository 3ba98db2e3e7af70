"""Webhook endpoints, the deliveries of each event, and every attempt to send one.

An endpoint (``webhook_endpoints``) is a URL, the event types it subscribes to and its signing secret
(``whsec_`` + base64 of 24 random bytes, as the Standard Webhooks specification writes secrets; it is needed to
sign, so it is stored as it is). :meth:`WebhookStoreMixin.record_event` writes one ``webhook_deliveries`` row
per subscribed endpoint; the row's id is the event id the receiver sees in ``webhook-id`` and derives from
the endpoint and the event's key (``job.completed:<job id>``), so recording the same event twice delivers
it once, and every retry of a delivery carries the same id for the receiver to deduplicate on. Each try is
a ``webhook_attempts`` row.

URLs: only ``http`` and ``https``; never a link-local address (``169.254.0.0/16``, ``fe80::/10``: cloud metadata
services answer there) nor a known metadata address, checked on the literal address and on every address the
host name resolves to, unless ``allow_link_local`` (the ``webhook_allow_link_local`` setting).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from worker.errors import NotFoundError, StoreError
from worker.store.schema import webhook_attempts, webhook_deliveries, webhook_endpoints

logger = logging.getLogger(__name__)

DELIVER_TASK = "copydesk.deliver_webhook"
"""The Celery task (``worker.tasks.webhooks``) that sends one delivery; publishers refer to it by this name."""

EVENT_TYPES = (
    "job.completed",
    "job.failed",
    "job.expired",
    "job.cancelled",
    "article.needs_review",
    "article.approved",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the retry window


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    events: list[str]
    secret: str
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    id: str  # the event id (webhook-id)
    endpoint_id: str
    event_type: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    attempt: int
    started_at: datetime
    status_code: int | None
    error: str | None
    seconds: float


def check_webhook_url(url: str, *, allow_link_local: bool = False) -> str:
    """``url`` when it may receive webhooks; :class:`StoreError` saying why not otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"webhook URL {url!r} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise StoreError(f"webhook URL {url!r} must not carry credentials: sign with the endpoint's secret instead")
    if allow_link_local:
        return url
    for address in _addresses(parts.hostname):
        if address.is_link_local or address in _METADATA_ADDRESSES or address.is_multicast or address.is_unspecified:
            raise StoreError(
                f"webhook URL {url!r} points at {address}, a link-local or metadata address: refused "
                "(set webhook_allow_link_local to allow it)"
            )
    return url


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [_unmapped(address)]
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise StoreError(f"webhook host {host!r} does not resolve: {exc}") from exc
    return [_unmapped(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos]


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_events(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise StoreError(f"unknown or no webhook events {unknown}: choose from {', '.join(EVENT_TYPES)}")
    return sorted(set(events))


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def delivery_id(endpoint_id: str, event_key: str) -> str:
    """The event id of ``event_key`` at one endpoint: ``msg_`` + 32 hex digits, stable."""
    return "msg_" + hashlib.sha256(f"{endpoint_id}\n{event_key}".encode()).hexdigest()[:32]


def _endpoint(row: Row[Any]) -> WebhookEndpoint:
    return WebhookEndpoint(row.id, row.url, list(row.events), row.secret, row.created_at, row.disabled_at)


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        row.id,
        row.endpoint_id,
        row.event_type,
        row.payload,
        DeliveryStatus(row.status),
        row.attempts,
        row.created_at,
        row.next_attempt_at,
        row.delivered_at,
    )


class WebhookStoreMixin:
    """Webhook methods of :class:`~worker.store.Store`."""

    _now: Callable[[], datetime]
    _read: Callable[[], AbstractContextManager[Session]]
    _write: Callable[[], AbstractContextManager[Session]]

    def add_webhook(self, url: str, events: Sequence[str], *, allow_link_local: bool = False) -> WebhookEndpoint:
        """Register an endpoint for ``events``; :class:`StoreError` for a refused URL or unknown events."""
        check_webhook_url(url, allow_link_local=allow_link_local)
        chosen = check_events(events)
        endpoint_id = "ep_" + secrets.token_hex(8)
        with self._write() as session:
            session.execute(
                insert(webhook_endpoints).values(
                    id=endpoint_id, url=url, events=chosen, secret=new_secret(), created_at=self._now()
                )
            )
            row = session.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).one()
        logger.info("webhook %s added for %s", endpoint_id, ", ".join(chosen))
        return _endpoint(row)

    def list_webhooks(self, *, include_disabled: bool = False) -> list[WebhookEndpoint]:
        statement = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        if not include_disabled:
            statement = statement.where(webhook_endpoints.c.disabled_at.is_(None))
        with self._read() as session:
            return [_endpoint(row) for row in session.execute(statement)]

    def get_webhook(self, endpoint_id: str) -> WebhookEndpoint:
        with self._read() as session:
            row = session.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).first()
        if row is None:
            raise NotFoundError(f"no webhook {endpoint_id!r}: see `copydesk webhooks list`")
        return _endpoint(row)

    def remove_webhook(self, endpoint_id: str) -> WebhookEndpoint:
        """Disable the endpoint (its deliveries stay recorded); idempotent."""
        with self._write() as session:
            session.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.disabled_at.is_(None))
                .values(disabled_at=self._now())
            )
        return self.get_webhook(endpoint_id)

    def record_event(self, event_type: str, data: dict[str, Any], *, event_key: str) -> list[str]:
        """One pending delivery per active endpoint subscribed to ``event_type``; returns the ids created now.

        The same ``event_key`` recorded again creates nothing (the ids are derived from it).
        """
        check_events([event_type])
        now = self._now()
        created: list[str] = []
        with self._write() as session:
            for endpoint in session.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.disabled_at.is_(None))
            ).all():
                if event_type not in endpoint.events:
                    continue
                message_id = delivery_id(endpoint.id, event_key)
                exists = session.execute(
                    select(webhook_deliveries.c.id).where(webhook_deliveries.c.id == message_id)
                ).first()
                if exists is not None:
                    continue
                payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
                session.execute(
                    insert(webhook_deliveries).values(
                        id=message_id,
                        endpoint_id=endpoint.id,
                        event_type=event_type,
                        payload=payload,
                        status=DeliveryStatus.PENDING.value,
                        attempts=0,
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
                created.append(message_id)
        return created

    def get_delivery(self, message_id: str) -> Delivery:
        with self._read() as session:
            row = session.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == message_id)).first()
        if row is None:
            raise NotFoundError(f"no webhook delivery {message_id!r}")
        return _delivery(row)

    def claim_delivery(self, message_id: str, *, lease_seconds: float) -> Delivery | None:
        """Take a pending, due delivery for one send: its ``next_attempt_at`` moves ``lease_seconds`` ahead, so
        no other task or sweep sends it meanwhile (a sender killed mid-send lets the lease run out, and the
        sweep publishes it again, with the same id). ``None`` when it is not pending, not due, or taken."""
        now = self._now()
        with self._write() as session:
            row = session.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.id == message_id,
                    webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                    webhook_deliveries.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
                .returning(*webhook_deliveries.c)
            ).first()
        return None if row is None else _delivery(row)

    def record_attempt(
        self,
        message_id: str,
        *,
        started_at: datetime,
        status_code: int | None,
        error: str | None,
        seconds: float,
        delivered: bool,
        next_attempt_at: datetime | None,
    ) -> Delivery:
        """Record one try; the delivery becomes delivered, stays pending until ``next_attempt_at``, or fails
        (no next attempt). A delivered delivery never changes again."""
        now = self._now()
        with self._write() as session:
            row = session.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.id == message_id).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no webhook delivery {message_id!r}")
            attempt = row.attempts + 1
            session.execute(
                insert(webhook_attempts).values(
                    delivery_id=message_id,
                    attempt=attempt,
                    started_at=started_at,
                    status_code=status_code,
                    error=error,
                    seconds=seconds,
                )
            )
            if row.status != DeliveryStatus.DELIVERED.value:
                status = (
                    DeliveryStatus.DELIVERED
                    if delivered
                    else DeliveryStatus.PENDING
                    if next_attempt_at is not None
                    else DeliveryStatus.FAILED
                )
                session.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id == message_id)
                    .values(
                        status=status.value,
                        attempts=attempt,
                        next_attempt_at=None if delivered else next_attempt_at,
                        delivered_at=now if delivered else None,
                    )
                )
            else:
                session.execute(
                    update(webhook_deliveries).where(webhook_deliveries.c.id == message_id).values(attempts=attempt)
                )
            updated = session.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == message_id)).one()
        return _delivery(updated)

    def list_deliveries(self, *, endpoint_id: str | None = None, limit: int = 100) -> list[Delivery]:
        statement = (
            select(webhook_deliveries)
            .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id)
            .limit(limit)
        )
        if endpoint_id is not None:
            statement = statement.where(webhook_deliveries.c.endpoint_id == endpoint_id)
        with self._read() as session:
            return [_delivery(row) for row in session.execute(statement)]

    def list_attempts(self, message_id: str) -> list[Attempt]:
        statement = (
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == message_id)
            .order_by(webhook_attempts.c.attempt, webhook_attempts.c.id)
        )
        with self._read() as session:
            return [
                Attempt(r.delivery_id, r.attempt, r.started_at, r.status_code, r.error, r.seconds)
                for r in session.execute(statement)
            ]

    def due_deliveries(self, *, overdue_seconds: float = 0.0, limit: int = 100) -> list[str]:
        """Pending deliveries due for at least ``overdue_seconds`` that nobody holds (for the sweep that
        publishes them again after a lost message or a sender that died)."""
        before = self._now() - timedelta(seconds=overdue_seconds)
        statement = (
            select(webhook_deliveries.c.id)
            .where(
                webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                webhook_deliveries.c.next_attempt_at <= before,
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        with self._read() as session:
            return list(session.execute(statement).scalars())
