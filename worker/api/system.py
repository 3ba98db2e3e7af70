"""System routes: health (store, broker, workers), the styles, and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from worker.api.auth import requires
from worker.config import Settings
from worker.errors import CopydeskError
from worker.store import Role, Store

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["system"], dependencies=[Depends(requires(Role.SUBMITTER))])
metrics_router = APIRouter(tags=["system"], dependencies=[Depends(requires(Role.SUBMITTER))])

BROKER_TIMEOUT = 2.0


def _check_store(store: Store) -> dict[str, Any]:
    try:
        return {"ok": True, "schema_version": store.schema_version()}
    except CopydeskError as exc:
        return {"ok": False, "error": str(exc)}


def _check_broker(celery: Any) -> dict[str, Any]:
    from worker.queue.celery_app import is_embedded

    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # any transport error means "unreachable"
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "embedded": is_embedded(celery.conf.broker_url)}


def _check_workers(celery: Any) -> dict[str, Any]:
    from worker.queue.celery_app import is_embedded

    if is_embedded(celery.conf.broker_url):
        return {"ok": None, "note": "the embedded broker cannot list workers (no broadcast)"}
    try:
        replies = celery.control.ping(timeout=BROKER_TIMEOUT) or []
    except Exception as exc:  # a broker error while asking
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "workers": names}


@router.get("/health", summary="Store, broker and workers reachable")
def health(request: Request) -> JSONResponse:
    checks = {
        "store": _check_store(request.app.state.store),
        "broker": _check_broker(request.app.state.celery),
        "workers": _check_workers(request.app.state.celery),
    }
    healthy = all(check["ok"] is not False for check in checks.values())
    return JSONResponse({"ok": healthy, **checks}, status_code=200 if healthy else 503)


@router.get("/styles", summary="The styles and the adapter version each serves")
def styles(request: Request) -> list[dict[str, Any]]:
    from worker.styles.catalog import StyleCatalog

    settings: Settings = request.app.state.settings
    catalog = StyleCatalog.for_settings(settings)
    return [
        {
            "name": name,
            "description": style.description,
            "adapter_version": style.adapter,  # served on the configured base model
            "adapter_versions": style.served,  # per base model id ("*": every base model)
            "gates": style.gates,
        }
        for name, style in sorted(catalog.styles.items())
    ]


@metrics_router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
def metrics(request: Request) -> Response:
    from worker.api.metrics import render

    body, content_type = render(request.app.state.metrics)
    return Response(body, media_type=content_type)
