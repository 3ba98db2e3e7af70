"""One JSON shape for every error: ``{"error": {"type", "code", "message"}}``.

``type`` is the copydesk error class (or an HTTP problem such as ``Unauthorized``), ``code`` is the exit
code the CLI gives for the same error, ``message`` the same sentence the CLI prints. The HTTP status follows
the error's kind: missing 404, conflict 409, bad input 422, broker or store unavailable 503.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.api.limits import BodyTooLargeError
from worker.errors import (
    BriefError,
    ConfigError,
    ConflictError,
    CopydeskError,
    NotFoundError,
    QueueError,
    ReviewError,
    StyleError,
    TransientStoreError,
    TransitionError,
)

logger = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of decides its HTTP status.
_STATUS: tuple[tuple[type[CopydeskError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (TransitionError, 409),
    (TransientStoreError, 503),
    (QueueError, 503),
    (BriefError, 422),
    (ReviewError, 422),
    (StyleError, 422),
    (ConfigError, 500),
)


class ApiError(Exception):
    """An HTTP-level refusal (no key, wrong role, body too big, bad media type)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def error_body(kind: str, code: int, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message}}


def status_for(exc: CopydeskError) -> int:
    """The HTTP status of a copydesk error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


async def _copydesk_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CopydeskError)
    status = status_for(exc)
    if status >= 500:
        logger.error("request failed: %s", exc)
    return JSONResponse(error_body(type(exc).__name__, exc.exit_code, str(exc)), status_code=status)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(error_body(exc.kind, exc.status, exc.message), status_code=exc.status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'request'}: {err.get('msg', 'invalid')}"
        for err in exc.errors()[:20]
    )
    return JSONResponse(error_body("ValidationError", 422, f"invalid request: {problems}"), status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return JSONResponse(error_body(kind, exc.status_code, str(exc.detail)), status_code=exc.status_code)


async def _too_large(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("PayloadTooLarge", 413, str(exc)), status_code=413, headers={"Connection": "close"})


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error: %s", type(exc).__name__)
    return JSONResponse(error_body("InternalError", 500, "internal error; see the server log"), status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(CopydeskError, _copydesk_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyTooLargeError, _too_large)
    app.add_exception_handler(Exception, _unexpected)
