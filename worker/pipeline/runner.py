"""Claim briefs from the store, run the pipeline on them, and store what comes out.

This is the one place that connects the ledger to the pipeline; both ``copydesk generate`` (inline) and
the Celery task call :func:`write_briefs`. The store is the source of truth: a brief is written only if
this process claims it, and its article is saved only while this process still holds the lease.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from worker.errors import ConflictError, StoreError
from worker.pipeline.pipeline import BriefOutcome, Pipeline, ProgressCallback
from worker.scoring.memorisation import NEAR_DUPLICATE, StoredArticles, near_duplicate_score
from worker.store import ArticleRecord, Store
from worker.store.article_files import write_article_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOutcome:
    """What happened to one brief id in this run."""

    brief_id: str
    status: str  # the article's status, "failed", or "skipped: <brief status>"
    article: ArticleRecord | None = None
    error: str | None = None


def worker_identity(kind: str = "inline", pid: int | None = None) -> str:
    """A lease owner name unique to this process (or to process ``pid`` of this host)."""
    return f"{kind}@{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def write_briefs(
    brief_ids: Sequence[str],
    *,
    store: Store,
    pipeline: Pipeline,
    owner: str,
    lease_seconds: float,
    progress: ProgressCallback | None = None,
) -> list[WriteOutcome]:
    """Claim, generate, score, select and store the given briefs; one outcome per id, in order."""
    settings = pipeline.settings
    outcomes: dict[str, WriteOutcome] = {}
    ids = list(dict.fromkeys(brief_ids))
    # One transaction claims the whole batch (an id not in the store claims nothing and raises).
    records = store.claim_briefs(
        ids, owner=owner, lease_seconds=lease_seconds, max_attempts=settings.max_brief_attempts
    )
    claimed = [record.brief for record in records if record is not None]
    # an editor's feedback for briefs sent back for a new draft
    feedback = {r.brief.brief_id: r.feedback for r in records if r is not None and r.feedback}
    try:
        for brief_id, record in zip(ids, records, strict=True):
            if record is None:
                outcomes[brief_id] = WriteOutcome(brief_id, f"skipped: {store.get_brief(brief_id).status}")
        results = pipeline.run(claimed, progress, feedback=feedback)
    except Exception as exc:
        # A failed run: give the claimed briefs back to the queue rather than leaving them leased to a run that
        # will not write them.
        for brief in claimed:  # the caller decides about retries
            store.fail_brief(brief.brief_id, f"{type(exc).__name__}: {exc}", final=False)
        raise
    stored = StoredArticles(store)
    for index, result in enumerate(results):
        try:
            _flag_near_duplicate(stored, result)
            outcomes[result.brief.brief_id] = _store_outcome(store, settings.articles_dir, result, owner)
            article = outcomes[result.brief.brief_id].article
            if article is not None:
                stored.add(article.style, article.id, article.brief_id, article.title, article.body_markdown)
        except Exception as exc:
            _requeue_unsaved(store, results[index:], exc)
            raise
    return [outcomes[brief_id] for brief_id in dict.fromkeys(brief_ids)]


def _flag_near_duplicate(stored: StoredArticles, outcome: BriefOutcome) -> None:
    """Add the ``near_duplicate`` entry to the article's scorecard: how much of it a stored article of the
    same style already says (flagged from ``memorisation.DUPLICATE_SHARE`` on; informational)."""
    result = outcome.result
    if result is None:
        return
    nearest = stored.nearest(result.style, result.brief_id, result.body_markdown)
    outcome.result = replace(result, scores={**result.scores, NEAR_DUPLICATE: near_duplicate_score(nearest)})
    if nearest is not None and not outcome.result.scores[NEAR_DUPLICATE]["passed"]:
        logger.warning("brief %s: %s", result.brief_id, outcome.result.scores[NEAR_DUPLICATE]["detail"])


def _requeue_unsaved(store: Store, unsaved: Sequence[BriefOutcome], exc: Exception) -> None:
    """The store failed while saving: hand the briefs not saved yet back to the queue, as far as it lets us."""
    for outcome in unsaved:
        try:
            store.fail_brief(outcome.brief.brief_id, f"{type(exc).__name__}: {exc}", final=False)
        except StoreError as second:
            logger.warning("brief %s stays leased until its lease expires: %s", outcome.brief.brief_id, second)


def _store_outcome(store: Store, articles_dir: Path, outcome: BriefOutcome, owner: str) -> WriteOutcome:
    brief = outcome.brief
    if outcome.result is None:
        store.fail_brief(brief.brief_id, outcome.error or "unknown error", final=True)
        return WriteOutcome(brief.brief_id, "failed", error=outcome.error)
    try:
        article = store.save_article(outcome.result, owner=owner)
    except ConflictError as exc:
        logger.warning("article for brief %s not stored: %s", brief.brief_id, exc)
        return WriteOutcome(brief.brief_id, "skipped: conflict", error=str(exc))
    try:
        path = write_article_file(articles_dir, article, brief)
        store.set_article_file(article.id, str(path))
        article = replace(article, file_path=str(path))  # the record saved above has no file yet
    except (OSError, StoreError) as exc:
        logger.error("article %s stored, but its Markdown file was not written: %s", article.id, exc)
    return WriteOutcome(brief.brief_id, article.status, article)
