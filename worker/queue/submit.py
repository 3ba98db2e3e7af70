"""Submitting briefs through the queue: the store first, then only brief ids on the broker.

Submitting records the job and every valid brief in the store (status ``queued``), then publishes one
message per brief id. If the broker is down, nothing is lost: the briefs stay queued in the store and a
worker's reconciler publishes them once it runs. The broker is a delivery hint; the store is the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from worker.errors import QueueError
from worker.intake.briefs import Brief
from worker.intake.loading import BriefProblem, SourcedBrief, iter_brief_file
from worker.queue.celery_app import GENERATE_QUEUE, WRITE_TASK, prepare_embedded_broker
from worker.store import Store, Submission

logger = logging.getLogger(__name__)

PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def publish(app: Celery, brief_ids: Iterable[str]) -> int:
    """Send one ``write_brief`` message per id; :class:`QueueError` when the broker cannot be reached."""
    count = 0
    try:
        prepare_embedded_broker(app)
        with app.producer_or_acquire() as producer:
            for brief_id in brief_ids:
                app.send_task(
                    WRITE_TASK,
                    args=[brief_id],
                    queue=GENERATE_QUEUE,
                    producer=producer,
                    retry=True,
                    retry_policy=PUBLISH_RETRY,
                )
                count += 1
    except (KombuOperationalError, OSError) as exc:
        raise QueueError(
            f"cannot reach the broker at {_safe(app.conf.broker_url)} after publishing {count} message(s): {exc}"
        ) from exc
    return count


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class FileBriefs:
    """Iterates the briefs of several files once, collecting problems on the side (streaming)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths
        self.problems: list[BriefProblem] = []
        self.duplicates = 0

    def __iter__(self) -> Iterator[tuple[Brief, str | None]]:
        seen: set[str] = set()
        for path in self.paths:
            for item in iter_brief_file(path):
                if isinstance(item, BriefProblem):
                    self.problems.append(item)
                    continue
                yield from self._unique(item, seen)

    def _unique(self, item: SourcedBrief, seen: set[str]) -> Iterator[tuple[Brief, str | None]]:
        brief_id = item.brief.brief_id
        if brief_id in seen:
            self.problems.append(
                BriefProblem(item.file, item.record, "id", f"duplicate brief id {brief_id!r} in this submission")
            )
            return
        seen.add(brief_id)
        yield item.brief, item.source


def submit(
    paths: Sequence[Path],
    *,
    store: Store,
    app: Celery,
    description: str | None = None,
    completion_window: timedelta | None = None,
) -> tuple[Submission, list[BriefProblem], QueueError | None]:
    """Record the valid briefs of ``paths`` as one job and publish them.

    Returns the submission, the problems of the invalid records (never enqueued), and the broker error if
    publishing failed (the briefs are still safely queued in the store). With ``completion_window``, briefs
    not started when it has passed expire (:mod:`worker.store.expiry`).
    """
    briefs = FileBriefs(paths)
    submission = store.create_job(briefs, kind="submit", description=description or ", ".join(map(str, paths)))
    store.set_invalid_records(submission.job_id, len(briefs.problems))
    if completion_window is not None:
        store.set_completion_window(submission.job_id, completion_window)
    try:
        publish(app, submission.to_publish)
    except QueueError as exc:
        logger.warning("job %s recorded but not published: %s", submission.job_id, exc)
        return submission, briefs.problems, exc
    logger.info("job %s: published %d brief(s)", submission.job_id, len(submission.to_publish))
    return submission, briefs.problems, None
