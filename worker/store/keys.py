"""API keys of the HTTP API: created once, stored hashed, checked on every request.

A key is ``cdk_<id>_<secret>``: ``id`` (12 hex digits) names the row, ``secret`` is 32 random bytes
(URL-safe base64). The store keeps only the SHA-256 of the whole key, so a stolen database reveals no key;
the key itself is returned once, by :meth:`KeyStoreMixin.create_api_key`. A lookup finds the row by its id
and compares the hashes in constant time. A revoked key stays listed (who had it, when it stopped).

Roles are ordered: ``submitter`` (jobs, results, reading articles) < ``editor`` (+ review decisions) <
``admin`` (+ keys, styles promote); a route needs a minimum role.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.orm import Session

from worker.errors import ConflictError, NotFoundError, StoreError
from worker.store.schema import api_keys

logger = logging.getLogger(__name__)

KEY_PREFIX = "cdk_"
_KEY_PATTERN = re.compile(r"^cdk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
_NAME_PATTERN = re.compile(KEY_NAME_PATTERN)


class Role(StrEnum):
    """What a key may do; each role includes the ones below it."""

    SUBMITTER = "submitter"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether a key with this role may use a route that needs ``needed``."""
        return self.rank >= needed.rank


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored key, without its secret."""

    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(key: str) -> str:
    """SHA-256 (hex) of a whole key: what the store keeps."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(key id, key)`` pair."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def check_key_name(name: str) -> str:
    """``name`` when it is a safe key name (letters, digits, ``._@-``, at most 100), else :class:`StoreError`."""
    if not _NAME_PATTERN.fullmatch(name):
        raise StoreError(
            f"invalid key name {name!r}: use 1-100 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def _record(row: Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(row.id, row.name, Role(row.role), row.created_at, row.revoked_at)


class KeyStoreMixin:
    """API key methods of :class:`~worker.store.Store`."""

    _now: Callable[[], datetime]
    _read: Callable[[], AbstractContextManager[Session]]
    _write: Callable[[], AbstractContextManager[Session]]

    def create_api_key(self, name: str, role: Role | str) -> tuple[ApiKeyRecord, str]:
        """Create a key; returns its record and the key itself, which is never stored or shown again.

        :class:`ConflictError` when a key (revoked or not) already has that name.
        """
        role = Role(role)
        check_key_name(name)
        key_id, key = new_key()
        now = self._now()
        with self._write() as session:
            if session.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first() is not None:
                raise ConflictError(f"an API key named {name!r} already exists: choose another name")
            session.execute(
                insert(api_keys).values(
                    id=key_id, name=name, role=role.value, secret_hash=hash_key(key), created_at=now
                )
            )
            row = session.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
        logger.info("API key %s (%s) created with role %s", name, key_id, role)
        return _record(row), key

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self._read() as session:
            rows = session.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)).all()
        return [_record(row) for row in rows]

    def revoke_api_key(self, name_or_id: str) -> ApiKeyRecord:
        """Revoke the key with that name or id (idempotent); :class:`NotFoundError` when there is none."""
        now = self._now()
        match = (api_keys.c.name == name_or_id) | (api_keys.c.id == name_or_id)
        with self._write() as session:
            session.execute(update(api_keys).where(match, api_keys.c.revoked_at.is_(None)).values(revoked_at=now))
            row = session.execute(select(api_keys).where(match)).first()
        if row is None:
            raise NotFoundError(f"no API key named {name_or_id!r}: see `copydesk keys list`")
        logger.info("API key %s (%s) revoked", row.name, row.id)
        return _record(row)

    def authenticate_api_key(self, key: str) -> ApiKeyRecord | None:
        """The active key matching ``key``; ``None`` for a malformed, unknown or revoked key."""
        found = _KEY_PATTERN.fullmatch(key)
        if found is None:
            return None
        with self._read() as session:
            row = session.execute(select(api_keys).where(api_keys.c.id == found.group(1))).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_hash, hash_key(key)):
            return None
        return _record(row)
