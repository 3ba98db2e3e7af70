"""Plain records passed between pipeline stages and the store.

They hold JSON-able values only, so that the same record can be written to SQLite or PostgreSQL, put in
an article's front matter, or printed with ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ArticleStatus(StrEnum):
    """Editorial status of an article (transitions: :mod:`worker.workflow`)."""

    NEEDS_REVIEW = "needs_review"  # the selected draft passed every gate of its style
    NEEDS_ATTENTION = "needs_attention"  # no candidate passed; the best one is stored with its failing gates
    APPROVED = "approved"  # an editor approved it; ready to export
    REJECTED = "rejected"  # an editor rejected it, with a reason
    REGENERATING = "regenerating"  # sent back with feedback; its brief is queued for a new draft
    PUBLISHED = "published"  # exported (copydesk export)


class BriefStatus(StrEnum):
    """Where a brief is in the ledger."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # its job's completion window passed before it started


@dataclass(frozen=True)
class CandidateResult:
    """One generated candidate with its scorecard."""

    attempt: int
    index: int
    text: str
    scores: dict[str, Any]
    failing_gates: list[str]
    passed: bool
    selected: bool
    seed: int
    new_tokens: int
    generation_seconds: float


@dataclass(frozen=True)
class ArticleResult:
    """The outcome of the pipeline for one brief: the chosen article, every candidate, and provenance."""

    brief_id: str
    status: ArticleStatus
    title: str
    body_markdown: str
    style: str
    adapter_version: str | None
    scores: dict[str, Any]
    failing_gates: list[str]
    provenance: dict[str, Any]
    candidates: list[CandidateResult] = field(default_factory=list)
    quality: float | None = None  # the chosen draft's Scorecard.quality (None: the store derives it from scores)
