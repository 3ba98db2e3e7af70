"""Immutable records the store returns, and the id scheme of articles."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import Row

from worker.errors import StoreError
from worker.intake.briefs import Brief
from worker.results import BriefStatus
from worker.store.migrations import v5_quality

ARTICLE_ID_PREFIX = "a-"
_Record = TypeVar("_Record")
_MAX_PLAIN_BRIEF_ID = 126  # "a-" + id stays within the 128 characters of a safe name


def article_id_for(brief_id: str) -> str:
    """The article id of a brief: ``"a-" + brief_id`` (e.g. ``a-b-3f2a...``), deterministic.

    Prefixing the whole brief id (not only its suffix) keeps the mapping one-to-one for user-chosen ids
    too. Brief ids longer than 126 characters would exceed a safe name, so those become ``"a-"`` and 32
    hex digits of the id's SHA-256.
    """
    if len(brief_id) <= _MAX_PLAIN_BRIEF_ID:
        return ARTICLE_ID_PREFIX + brief_id
    return ARTICLE_ID_PREFIX + hashlib.sha256(brief_id.encode("utf-8")).hexdigest()[:32]


def article_quality(quality: float | None, scores: Mapping[str, Any]) -> float:
    """The number an article is stored with for the review queue's ``worst`` order: ``quality`` (the draft's
    ``Scorecard.quality``) when the caller gives it, else the one migration 5 derives from ``scores``; 0 for
    a number that is not finite."""
    number = quality if quality is not None else v5_quality(scores)
    return number if math.isfinite(number) else 0.0  # the column is NOT NULL, and NaN is stored as NULL


def content_hash(brief: Brief) -> str:
    """SHA-256 (hex) of the brief's canonical content, without its id."""
    canonical = json.dumps(brief.content_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BriefRecord:
    """A brief as the ledger holds it."""

    id: str
    brief: Brief
    status: BriefStatus
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    job_id: str | None
    source: str | None
    created_at: datetime
    updated_at: datetime
    feedback: str | None = None  # an editor's feedback for the next draft (a send-back), until it is stored


@dataclass(frozen=True)
class StoredText:
    """An article's text and who it belongs to: what the near-duplicate check reads, without the scorecard,
    provenance and the rest of the row."""

    id: str
    brief_id: str
    title: str
    body_markdown: str


@dataclass(frozen=True)
class ArticleRecord:
    """A stored article. ``status`` is a plain string: later features add statuses."""

    id: str
    brief_id: str
    status: str
    title: str
    body_markdown: str
    style: str
    adapter_version: str | None
    scores: dict[str, Any]
    failing_gates: list[str]
    provenance: dict[str, Any]
    revision: int
    file_path: str | None
    created_at: datetime
    updated_at: datetime
    quality: float = 0.0  # what the review queue's "worst" order sorts by (the draft's Scorecard.quality)


def _from_row(kind: type[_Record], row: Row[Any], **converted: Any) -> _Record:
    """A record of ``kind`` whose fields are the row's columns of the same names, ``converted`` ones excepted."""
    names = [f.name for f in fields(kind)]  # type: ignore[arg-type]
    return kind(**{name: getattr(row, name) for name in names if name not in converted}, **converted)


def brief_record(row: Row[Any]) -> BriefRecord:
    """Build a :class:`BriefRecord` from a ``briefs`` row."""
    try:
        brief = Brief.model_validate(row.payload)
    except ValidationError as exc:
        raise StoreError(f"brief {row.id!r} in the store no longer validates: {exc}") from exc
    return _from_row(BriefRecord, row, brief=brief, status=BriefStatus(row.status))


def article_record(row: Row[Any]) -> ArticleRecord:
    """Build an :class:`ArticleRecord` from an ``articles`` row."""
    return _from_row(
        ArticleRecord,
        row,
        scores=dict(row.scores),
        failing_gates=list(row.failing_gates),
        provenance=dict(row.provenance),
    )


@dataclass(frozen=True)
class RevisionRecord:
    """One text an article had: ``source`` is ``generated``, ``regenerated`` or ``edit``."""

    article_id: str
    revision: int
    title: str
    body_markdown: str
    scores: dict[str, Any]
    failing_gates: list[str]
    status: str  # the article's status when this revision was stored
    source: str
    author: str
    note: str | None
    provenance: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class EventRecord:
    """One decision or change (``kind``: see :class:`worker.workflow.EventKind`)."""

    id: int
    article_id: str
    brief_id: str
    kind: str
    from_status: str | None
    to_status: str
    revision: int
    actor: str
    note: str | None
    details: dict[str, Any]
    created_at: datetime


def revision_record(row: Row[Any]) -> RevisionRecord:
    """Build a :class:`RevisionRecord` from an ``article_revisions`` row."""
    return _from_row(
        RevisionRecord,
        row,
        scores=dict(row.scores),
        failing_gates=list(row.failing_gates),
        provenance=None if row.provenance is None else dict(row.provenance),
    )


def event_record(row: Row[Any]) -> EventRecord:
    """Build an :class:`EventRecord` from an ``article_events`` row."""
    return _from_row(EventRecord, row, details=dict(row.details))
