"""Submitting briefs through the queue: the store first, then only brief ids on the broker.

Submitting records the job and every valid brief in the store (status ``queued``), then publishes one
message per brief id. If the broker is down, nothing is lost: the briefs stay queued in the store and a
worker's reconciler publishes them once it runs. The broker is a delivery hint; the store is the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.transport import sqlalchemy as sqla_transport
from sqlalchemy.exc import SQLAlchemyError

from worker.errors import QueueError, StyleError
from worker.intake.briefs import Brief
from worker.intake.loading import iter_brief_file
from worker.intake.problems import BriefProblem
from worker.intake.validation import SourcedBrief
from worker.queue.celery_app import GENERATE_QUEUE, WRITE_TASK, prepare_embedded_broker
from worker.store import Store, Submission
from worker.styles.catalog import StyleCatalog

logger = logging.getLogger(__name__)

PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


def publish(app: Celery, brief_ids: Iterable[str]) -> int:
    """Send one ``write_brief`` message per id; :class:`QueueError` when the broker cannot be reached.

    On the embedded broker the message rows are inserted ``COMMIT_EVERY`` to a transaction
    (:func:`batched_inserts`) instead of one commit (one fsync) per message.
    """
    count = 0
    try:
        prepare_embedded_broker(app)
        with app.producer_or_acquire() as producer, batched_inserts(producer.channel):
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
    except (KombuOperationalError, SQLAlchemyError, OSError) as exc:
        raise QueueError(
            f"cannot reach the broker at {_safe(app.conf.broker_url)} after publishing {count} message(s): {exc}"
        ) from exc
    return count


COMMIT_EVERY = 500  # messages per transaction on the embedded broker (short enough not to starve the workers)


@contextmanager
def batched_inserts(channel: Any, every: int = COMMIT_EVERY) -> Iterator[None]:
    """On kombu's SQLAlchemy transport, insert the messages published inside the block ``every`` to a
    transaction; a no-op on other transports.

    kombu's ``Channel._put`` commits each message on its own: on the embedded SQLite broker that is one
    fsync, ~24 ms, per brief (4 minutes for 10,000). Here the channel's ``_put`` adds the row to its session
    and the block commits every ``every`` rows and at its end (the same rows, JSON bodies as before). If
    the block fails, the rows not committed yet are rolled back and the error propagates: those briefs
    stay queued in the store and the reconciler publishes them.
    """
    if not isinstance(channel, sqla_transport.Channel):
        yield
        return
    pending = 0
    queues: dict[str, Any] = {}

    def put(queue: str, payload: Any, **_: Any) -> None:
        nonlocal pending
        if queue not in queues:
            queues[queue] = channel._get_or_create(queue)
        channel.session.add(channel.message_cls(sqla_transport.dumps(payload), queues[queue]))
        pending += 1
        if pending >= every:
            commit()

    def commit() -> None:
        # A failure must not reach kombu's retry, which would publish the next message on a fresh channel and
        # drop the rows of this transaction without a word: QueueError is not a connection error to it.
        nonlocal pending
        try:
            channel.session.commit()
        except SQLAlchemyError as exc:
            channel.session.rollback()
            raise QueueError(f"the embedded broker did not store {pending} message(s): {exc}") from exc
        pending = 0

    channel._put = put
    try:
        yield
        commit()
    except BaseException:
        channel.session.rollback()
        raise
    finally:
        del channel._put


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class FileBriefs:
    """Iterates the briefs of several files once, collecting problems on the side (streaming).

    ``names`` gives a file the name its briefs' ``source`` and its problems carry instead of its path (the API
    names the request, not the temporary file it was streamed to)."""

    def __init__(
        self, paths: Sequence[Path], catalog: StyleCatalog | None = None, names: Mapping[Path, str] | None = None
    ) -> None:
        self.paths = paths
        self.catalog = catalog
        self.names = dict(names or {})
        self.problems: list[BriefProblem] = []
        self.unknown_pins: list[BriefProblem] = []
        self.duplicates = 0

    def __iter__(self) -> Iterator[tuple[Brief, str | None]]:
        seen: set[str] = set()
        for path in self.paths:
            name = self.names.get(path)
            for item in iter_brief_file(path):
                if name is not None:
                    item = replace(item, file=name)
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
        if self.catalog is not None:
            self.unknown_pins += self.catalog.pin_problems([item])
        yield item.brief, item.source


def load_catalog(styles_dir: Path) -> tuple[StyleCatalog | None, str | None]:
    """The catalog that pinned styles are checked against, or ``None`` and why not: the styles may live on the
    workers only, and then their catalog decides (both front doors submit with this)."""
    try:
        return StyleCatalog.load(styles_dir), None
    except StyleError as exc:
        logger.info("pinned styles not checked: %s", exc)
        return None, str(exc)


@dataclass
class Recorded:
    """A submission recorded in the store (every valid brief ``queued``), before it is published."""

    submission: Submission
    problems: list[BriefProblem]
    """The invalid records: never enqueued."""
    unknown_pins: list[BriefProblem] = field(default_factory=list)
    """Briefs pinned to a style this machine's catalog does not have: enqueued all the same (the workers'
    catalog decides, and fails such a brief naming the style)."""
    pins_unchecked: str | None = None
    """Why pinned styles were not checked (no catalog could be loaded here), or ``None``."""


def record(
    paths: Sequence[Path],
    *,
    store: Store,
    description: str | None = None,
    catalog: StyleCatalog | None = None,
    completion_window: timedelta | None = None,
    styles_dir: Path | None = None,
    names: Mapping[Path, str] | None = None,
    job_id: str | None = None,
) -> Recorded:
    """Record the valid briefs of ``paths`` as one job, queued in the store; nothing is published yet. With
    ``completion_window``, briefs not started when it has passed expire (:mod:`worker.store.expiry`). With
    ``styles_dir`` (and no ``catalog``), pinned styles are checked against :func:`load_catalog` of it; ``names``
    as in :class:`FileBriefs`; ``job_id`` when the caller chose it (default: a new one)."""
    pins_unchecked = None
    if catalog is None and styles_dir is not None:
        catalog, pins_unchecked = load_catalog(styles_dir)
    briefs = FileBriefs(paths, catalog, names)
    shown = ", ".join(briefs.names.get(path, str(path)) for path in paths)
    submission = store.create_job(briefs, kind="submit", description=description or shown, job_id=job_id)
    store.set_invalid_records(submission.job_id, len(briefs.problems))
    if completion_window is not None:
        store.set_completion_window(submission.job_id, completion_window)
    return Recorded(submission, briefs.problems, briefs.unknown_pins, pins_unchecked)


def publish_job(app: Celery, submission: Submission) -> None:
    """Publish a recorded job's briefs; :class:`QueueError` when the broker refuses (the briefs stay queued in
    the store, and a worker's reconciler publishes them)."""
    try:
        publish(app, submission.to_publish)
    except QueueError as exc:
        logger.warning("job %s recorded but not published: %s", submission.job_id, exc)
        raise QueueError(
            f"{exc}; the briefs are saved in job {submission.job_id} and a worker will publish them"
        ) from exc
    logger.info("job %s: published %d brief(s)", submission.job_id, len(submission.to_publish))


def submit(
    paths: Sequence[Path],
    *,
    store: Store,
    app: Celery,
    description: str | None = None,
    completion_window: timedelta | None = None,
) -> Recorded:
    """:func:`record` the briefs of ``paths`` as one job, then :func:`publish_job` it (which may raise)."""
    recorded = record(paths, store=store, description=description, completion_window=completion_window)
    publish_job(app, recorded.submission)
    return recorded
