"""Request body limit, applied before the body is read.

:class:`BodyLimit` is plain ASGI middleware: a request whose ``Content-Length`` exceeds the limit gets 413
without a byte of its body read; a chunked body (no length) is counted while it streams, and at the first
chunk over the limit the client gets 413 and the app reading it gets :class:`BodyTooLargeError`. So an
oversized body never sits in memory, whatever the client claims.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """The body grew past the limit while streaming."""


def too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (api_max_body_bytes): split the job into smaller ones"


class BodyLimit:
    """Refuse (413) request bodies over ``limit`` bytes, by header first, then by counting."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            logger.info(
                "refused %s %s: Content-Length %d over %d", scope["method"], scope["path"], declared, self.limit
            )
            await _send_413(send, self.limit)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, answering 413 ourselves the moment the streamed body passes the limit.

        The app sees :class:`BodyTooLargeError` from ``receive``; whatever it sends afterwards is dropped, so
        the client gets this 413 and not the app's reaction to a broken body.
        """
        received = 0
        started = responded = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if responded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def counting_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    if not started and not responded:
                        logger.info("refused %s %s: body over %d bytes", scope["method"], scope["path"], self.limit)
                        await _send_413(send, self.limit)
                        responded = True
                    raise BodyTooLargeError(too_large_message(self.limit))
            return message

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLargeError:
            if not responded:
                raise


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body: dict[str, Any] = {"error": {"type": "PayloadTooLarge", "code": 413, "message": too_large_message(limit)}}
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
