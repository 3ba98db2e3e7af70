"""Key administration over HTTP (admin keys only), the same store methods as ``copydesk keys``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from worker.api.auth import requires
from worker.store import ApiKeyRecord, Role, Store
from worker.store.keys import KEY_NAME_PATTERN

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(requires(Role.ADMIN))])

KeyName = Annotated[str, PathParam(min_length=1, max_length=200, description="Key name or id.")]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=KEY_NAME_PATTERN, description="Who or what uses the key: letters, digits, ._@-")
    role: Role = Role.SUBMITTER


def key_dict(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


@router.get("", summary="List API keys (never the keys themselves)")
def list_keys(request: Request) -> list[dict[str, Any]]:
    return [key_dict(k) for k in _store(request).list_api_keys()]


@router.post("", status_code=201, summary="Create an API key; the key is in this answer only")
def create_key(request: Request, new: NewKey) -> dict[str, Any]:
    record, key = _store(request).create_api_key(new.name, new.role)
    return key_dict(record) | {"key": key}


@router.post("/{name}/revoke", summary="Revoke an API key")
def revoke_key(request: Request, name: KeyName) -> dict[str, Any]:
    return key_dict(_store(request).revoke_api_key(name))
