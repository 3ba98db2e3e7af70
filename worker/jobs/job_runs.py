"""Runs of job files: expand a job for one scheduled time, record it idempotently, publish its briefs, and
settle it (auto-approval, duration) once every brief is done.

:func:`start_run` is what the ``copydesk.run_scheduled_job`` task (fired by ``copydesk beat``) and
``copydesk jobs run`` do. The run's idempotency key is the job name and the scheduled instant, and every
brief of the run has a deterministic id (:func:`worker.jobs.expansion.run_brief_id`), so running the same slot
again — a duplicated tick, a redelivered task, a restarted beat — finds the run recorded and adds nothing.

:func:`settle_runs` is called after each batch a worker writes and periodically by beat: for a run whose
job file asked for ``auto_approve``, it approves the run's articles that passed every gate (status
``needs_review``) through the review workflow (:meth:`worker.store.Store.approve`, one ``approved`` event
each, actor ``scheduler:<job>``); once every brief of the run has settled, it marks the run settled, which
fixes its duration. Articles that failed a gate (``needs_attention``) are never auto-approved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.errors import CopydeskError, QueueError
from worker.intake.problems import BriefProblem
from worker.jobs.expansion import RunContext, expand, run_stamp
from worker.jobs.job_files import load_job_named
from worker.jobs.job_spec import JobDefinition
from worker.results import ArticleStatus
from worker.store import Store, Submission
from worker.store.runs import RunRecord, run_id_for

logger = logging.getLogger(__name__)

MAX_RECORDED_PROBLEMS = 200
"""A run keeps the first problems of the records it left out (the count is always complete)."""

TRIGGER_SCHEDULE = "schedule"
TRIGGER_MANUAL = "manual"

Publisher = Callable[[list[str]], int]


@dataclass
class RunOutcome:
    """What starting a run did."""

    run_id: str
    job_name: str
    scheduled_for: datetime
    created: bool
    submission: Submission
    problems: list[BriefProblem] = field(default_factory=list)
    over_limit: int = 0

    @property
    def briefs(self) -> int:
        s = self.submission
        return len(s.new) + len(s.already_done) + len(s.already_queued) + len(s.requeued)


def normalise_slot(scheduled_for: datetime) -> datetime:
    """The scheduled instant as runs key it: UTC, whole seconds."""
    if scheduled_for.tzinfo is None:
        raise ValueError("a run's scheduled time must be timezone-aware")
    return scheduled_for.astimezone(UTC).replace(microsecond=0)


def start_run(
    job: JobDefinition, scheduled_for: datetime, *, store: Store, publish: Publisher, trigger: str
) -> RunOutcome:
    """Record the run of ``job`` for ``scheduled_for`` with its briefs and publish them; idempotent.
    :class:`QueueError` when publishing fails (the run and its briefs are recorded all the same)."""
    outcome = record_run(job, scheduled_for, store=store, trigger=trigger)
    if outcome.created:
        publish_run(outcome, publish)
    return outcome


def publish_run(outcome: RunOutcome, publish: Publisher) -> None:
    """Publish a recorded run's briefs; :class:`QueueError` when the broker refuses (a worker's reconciler
    publishes them later)."""
    try:
        publish(outcome.submission.to_publish)
    except QueueError as exc:
        logger.warning("run %s recorded but not published (a worker's reconciler will): %s", outcome.run_id, exc)
        raise QueueError(f"{exc}; the briefs are saved in run {outcome.run_id} and a worker will publish them") from exc


def record_run(job: JobDefinition, scheduled_for: datetime, *, store: Store, trigger: str) -> RunOutcome:
    """Record the run of ``job`` for ``scheduled_for`` with its briefs (nothing published); idempotent."""
    slot = normalise_slot(scheduled_for)
    run_id = run_id_for(job.name, run_stamp(slot))
    existing = store.find_run(job.name, slot)
    if existing is not None:
        logger.info("job %s: the run for %s exists already (%s); nothing added", job.name, slot.isoformat(), existing)
        return RunOutcome(existing, job.name, slot, False, Submission(existing))
    expansion = expand(job, RunContext(job.name, slot, job.timezone))
    for problem in expansion.problems:
        logger.warning("job %s, run %s: left out %s", job.name, run_id, problem)
    info: dict[str, Any] = {
        "job_file": str(job.path),
        "job_sha256": job.sha256,
        "timezone": job.timezone,
        "cron": job.spec.schedule.cron if job.spec.schedule else None,
        "max_briefs": job.spec.limits.max_briefs,
        "over_limit": expansion.over_limit,
        "problems": [asdict(p) for p in expansion.problems[:MAX_RECORDED_PROBLEMS]],
        "problem_count": len(expansion.problems),
        "auto_approve": job.spec.auto_approve,
        "approved": [],
    }
    submission, created = store.create_run(
        run_id=run_id,
        job_name=job.name,
        scheduled_for=slot,
        trigger=trigger,
        items=[(item.brief, item.source) for item in expansion.briefs],
        info=info,
        invalid_records=len(expansion.problems),
        description=job.spec.description or f"job {job.name}",
    )
    outcome = RunOutcome(submission.job_id, job.name, slot, created, submission, expansion.problems)
    outcome.over_limit = expansion.over_limit
    if not created:
        logger.info("job %s: the run for %s was recorded meanwhile; nothing added", job.name, slot.isoformat())
        return outcome
    logger.info(
        "job %s: run %s created with %d brief(s), %d left out",
        job.name,
        run_id,
        len(expansion.briefs),
        len(expansion.problems) + expansion.over_limit,
    )
    return outcome


def start_named_run(
    jobs_dir: Any, name: str, scheduled_for: datetime, *, store: Store, publish: Publisher, trigger: str
) -> RunOutcome:
    """:func:`start_run` for the job file ``<jobs_dir>/<name>.yaml``."""
    return start_run(load_job_named(jobs_dir, name), scheduled_for, store=store, publish=publish, trigger=trigger)


# ------------------------------------------------------------------------------------------- settling


def auto_approve(store: Store, run: RunRecord) -> list[str]:
    """Approve the run's articles that passed every gate, if its job asked for it; the ids approved now."""
    if not run.info.get("auto_approve"):
        return []
    approved: list[str] = []
    actor = f"scheduler:{run.job_name}"
    note = f"auto-approved by job {run.job_name} (run {run.id}): the draft passed every gate of its style"
    for article_id in store.run_article_ids(run.id, [ArticleStatus.NEEDS_REVIEW.value]):
        try:
            article = store.get_article(article_id)
            if article.failing_gates:  # needs_review means no failing gate; never approve one that fails
                continue
            store.approve(article_id, actor=actor, note=note, expected_status=ArticleStatus.NEEDS_REVIEW.value)
        except CopydeskError as exc:  # an editor acted on it first: their decision stands
            logger.info("run %s: article %s not auto-approved: %s", run.id, article_id, exc)
            continue
        approved.append(article_id)
    if approved:
        store.update_run_info(run.id, lambda info: {**info, "approved": [*info.get("approved", []), *approved]})
        logger.info("run %s: auto-approved %d article(s)", run.id, len(approved))
    return approved


def settle_run(store: Store, run_id: str) -> RunRecord | None:
    """Auto-approve what the run allows, then mark it settled if every brief has settled."""
    run = store.get_run(run_id)
    if run.settled_at is not None:
        return None
    auto_approve(store, run)
    settled = store.settle_run(run_id)
    if settled is not None:
        c = settled.counts
        logger.info(
            "run %s settled in %.1f s: %d done, %d need attention, %d failed, %d cancelled",
            run_id,
            settled.duration_seconds or 0.0,
            c.done,
            c.needs_attention,
            c.failed,
            c.cancelled,
        )
    return settled


def settle_runs(store: Store, run_ids: Iterable[str]) -> list[RunRecord]:
    """:func:`settle_run` for each id; a failure on one run is logged and does not stop the others."""
    settled = []
    for run_id in run_ids:
        try:
            record = settle_run(store, run_id)
        except CopydeskError as exc:
            logger.warning("run %s not settled now: %s", run_id, exc)
            continue
        if record is not None:
            settled.append(record)
    return settled


def after_briefs(store: Store, brief_ids: Sequence[str]) -> list[RunRecord]:
    """Settle the open runs holding any of ``brief_ids`` (called after a worker wrote them)."""
    return settle_runs(store, store.open_runs_of_briefs(brief_ids))


def settle_open_runs(store: Store) -> list[RunRecord]:
    """Settle every open run that can be (beat's periodic pass; the CLI before showing runs)."""
    return settle_runs(store, store.open_runs())


__all__ = [
    "TRIGGER_MANUAL",
    "TRIGGER_SCHEDULE",
    "RunOutcome",
    "after_briefs",
    "auto_approve",
    "normalise_slot",
    "publish_run",
    "record_run",
    "settle_open_runs",
    "settle_run",
    "settle_runs",
    "start_named_run",
    "start_run",
]
