"""API keys on every route: ``Authorization: Bearer <key>`` (or ``X-API-Key``), and a minimum role.

Every router of the app is built with :func:`requires` as a dependency, so no route answers without a key
of the right role: no key or an unknown or revoked one is 401, a key whose role is too low is 403. The key
that passed is put on ``request.state.key``; logs name it, never the key itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from worker.api.errors import ApiError
from worker.store import ApiKeyRecord, Role, Store

logger = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="An API key from `copydesk keys create`.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, as a header.")


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
    return request.headers.get("x-api-key")


def authenticate(request: Request) -> ApiKeyRecord:
    """The active key of the request; :class:`ApiError` 401 when it has none or a bad one."""
    presented = _presented(request)
    if not presented:
        raise ApiError(401, "Unauthorized", "an API key is required: send 'Authorization: Bearer <key>'")
    store: Store = request.app.state.store
    key = store.authenticate_api_key(presented)
    if key is None:
        raise ApiError(401, "Unauthorized", "the API key is unknown or revoked")
    request.state.key = key
    return key


def requires(role: Role) -> Callable[..., ApiKeyRecord]:
    """A dependency admitting keys of ``role`` or above; declares both key schemes for the OpenAPI schema."""

    def checked(
        request: Request,
        _bearer: HTTPAuthorizationCredentials | None = Depends(bearer),
        _header: str | None = Depends(api_key_header),
    ) -> ApiKeyRecord:
        key = authenticate(request)
        if not key.role.allows(role):
            raise ApiError(403, "Forbidden", f"key {key.name!r} has role {key.role}; this needs {role} or above")
        return key

    checked.required_role = role  # type: ignore[attr-defined]  # read by the every-route test
    return checked
