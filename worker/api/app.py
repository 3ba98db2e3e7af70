"""The FastAPI application of ``copydesk serve``.

:func:`create_app` is a factory (``uvicorn worker.api.app:create_app --factory``): it reads the settings,
opens and migrates the store, and builds the Celery app used to publish brief ids. JSON only; the OpenAPI
schema is at ``/openapi.json`` and its pages at ``/docs``, the only paths that need no key. Every request
is logged with its route, status, duration and the key's name (never the key), and counted in the
``copydesk_api_requests`` metric (``GET /metrics``).
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker import __version__
from worker.api import articles, errors, jobs, keys, system
from worker.api.limits import BodyLimit
from worker.api.metrics import API_REQUESTS, registry_for
from worker.config import Settings, load_settings
from worker.store import Store

logger = logging.getLogger(__name__)

PUBLIC_PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over the configured store and broker."""
    from worker.queue.celery_app import make_celery

    settings = settings or load_settings()
    store = Store.from_settings(settings)
    store.migrate()
    app = FastAPI(
        title="copydesk",
        version=__version__,
        description="Briefs in, styled and scored articles out. Every route needs an API key "
        "(`Authorization: Bearer <key>`, from `copydesk keys create`).",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.celery = make_celery(settings)
    app.state.metrics = registry_for(store, app.state.celery)
    routers = (jobs.router, articles.readers, articles.editors, keys.router, system.router, system.metrics_router)
    for router in routers:
        app.include_router(router)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(RequestLog)
    return app


class RequestLog:
    """Logs every request (outermost middleware, plain ASGI): method, path, status, seconds, key name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            API_REQUESTS.labels(template, scope["method"], str(status)).inc()
            key = scope.get("state", {}).get("key")
            logger.info(
                "%s %s -> %d in %.3f s (key %s)",
                scope["method"],
                scope["path"],
                status,
                time.perf_counter() - started,
                key.name if key is not None else "none",
            )
