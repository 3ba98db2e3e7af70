"""``copydesk beat``: Celery beat firing the job files of ``jobs/``, one scheduler at a time.

:class:`JobScheduler` is a Celery beat scheduler (``celery.beat.Scheduler``) whose schedule is built from
the job files, not from ``beat_schedule``. On every tick (at most ``max_interval`` seconds apart, 5 by
default) it

1. renews its single-scheduler lock (below) every ``ttl / 6`` seconds, and stops beat if it was lost;
2. re-reads the job files when any of them changed (name, size or modification time), so an edited,
   added, disabled or deleted job file takes effect within one tick, without a restart;
3. for each job whose next slot is due, sends ``copydesk.run_scheduled_job(job_name, scheduled_for_iso)``
   unless the store already has the run of that slot. Slots that fell due together (beat was stopped or
   blocked) are coalesced into the latest one; slots older than the job's ``catch_up`` window are missed
   (logged). When beat starts, the latest slot within ``catch_up`` fires if its run is not in the store,
   so a restart neither loses nor repeats a run. If the broker refuses the message, the slot is retried on
   the next tick;
4. every ``SETTLE_INTERVAL`` seconds, settles open runs (auto-approval, duration).

Nothing is persisted by beat itself (no ``celerybeat-schedule`` file): the store's runs are the memory.

**Single scheduler.** Before starting, beat takes a lock that its ticks keep alive (``LOCK_TTL`` seconds,
renewed every tick): with a Redis broker a Redis key (``SET NX PX``, renewed and released only by its
owner), otherwise a row in the store's ``scheduler_locks`` table — so on the embedded default a second
``copydesk beat`` on the same store is refused, and with RabbitMQ and PostgreSQL it is refused on every
machine sharing the store. A lock whose owner stopped heartbeating is taken over after the TTL, at once
when the owner was a process of this host that no longer exists. The runs' idempotency keys make a
duplicated tick harmless even so.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from celery.beat import Scheduler
from kombu.exceptions import OperationalError as KombuOperationalError

from worker.config import Settings
from worker.errors import BeatLockedError, CopydeskError
from worker.jobs.cron import CronSchedule
from worker.jobs.job_files import job_files, read_job
from worker.jobs.job_runs import normalise_slot, settle_open_runs
from worker.jobs.job_spec import JobDefinition
from worker.queue.celery_app import GENERATE_QUEUE
from worker.queue.reconciler import owner_is_dead_here
from worker.store import Store, utc_now

logger = logging.getLogger(__name__)

RUN_TASK = "copydesk.run_scheduled_job"
LOCK_NAME = "copydesk-beat"
LOCK_TTL = 30.0
SETTLE_INTERVAL = 30.0
DEFAULT_MAX_INTERVAL = 5.0
RETRY_DELAY = 5.0
_EPSILON = timedelta(microseconds=1)


# -------------------------------------------------------------------------------------------------- locks


class SchedulerLock(Protocol):
    owner: str
    ttl: float
    lost: bool

    def acquire(self) -> None: ...
    def renew(self) -> bool: ...
    def release(self) -> None: ...
    def describe(self) -> str: ...


def _gone(owner: str) -> bool:
    return owner_is_dead_here(owner, socket.gethostname())


class StoreLock:
    """The lock as a ``scheduler_locks`` row of the store (embedded broker, RabbitMQ)."""

    def __init__(self, store: Store, owner: str, *, ttl: float = LOCK_TTL, name: str = LOCK_NAME) -> None:
        self.store, self.owner, self.ttl, self.name = store, owner, ttl, name
        self.lost = False

    def acquire(self) -> None:
        holder = self.store.acquire_scheduler_lock(self.name, self.owner, ttl=self.ttl, owner_is_gone=_gone)
        if holder is not None:
            age = (utc_now() - holder.heartbeat_at).total_seconds()
            raise BeatLockedError(
                f"another copydesk beat ({holder.owner}) is scheduling jobs on this store (last heartbeat "
                f"{age:.0f} s ago); only one beat may run per store. Stop it first, or, if it died on another "
                f"machine, wait until its lock expires at {holder.expires_at:%H:%M:%S} UTC"
            )

    def renew(self) -> bool:
        return self.store.renew_scheduler_lock(self.name, self.owner, ttl=self.ttl)

    def release(self) -> None:
        self.store.release_scheduler_lock(self.name, self.owner)

    def describe(self) -> str:
        return f"store lock {self.name!r} ({self.ttl:g} s heartbeat expiry)"


_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisLock:
    """The lock as a Redis key with an expiry (``SET NX PX``), for a Redis broker."""

    def __init__(self, url: str, owner: str, *, key: str, ttl: float = LOCK_TTL) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self.owner, self.ttl, self.key = owner, ttl, key
        self.lost = False

    def acquire(self) -> None:
        from redis.exceptions import RedisError

        try:
            if self.client.set(self.key, self.owner, nx=True, px=int(self.ttl * 1000)):
                return
            holder = (self.client.get(self.key) or b"").decode()
            if holder == self.owner or (holder and _gone(holder)):
                # our own stale lock, or its owner process is gone: take it over (compare-and-delete first)
                self.client.eval(_RELEASE, 1, self.key, holder)
                if self.client.set(self.key, self.owner, nx=True, px=int(self.ttl * 1000)):
                    logger.warning("scheduler lock %s taken over from %s (its process is gone)", self.key, holder)
                    return
                holder = (self.client.get(self.key) or b"").decode()
            remaining = max(self.client.pttl(self.key), 0) / 1000
        except RedisError as exc:
            raise BeatLockedError(f"cannot take the scheduler lock in Redis: {exc}") from exc
        raise BeatLockedError(
            f"another copydesk beat ({holder or 'unknown'}) holds the scheduler lock {self.key} in Redis; only one "
            f"beat may run. Stop it first, or, if it died on another machine, wait {remaining:.0f} s for the lock "
            "to expire"
        )

    def renew(self) -> bool:
        return bool(self.client.eval(_RENEW, 1, self.key, self.owner, int(self.ttl * 1000)))

    def release(self) -> None:
        from redis.exceptions import RedisError

        try:
            self.client.eval(_RELEASE, 1, self.key, self.owner)
        except RedisError as exc:
            logger.warning("scheduler lock %s not released (it expires in %g s): %s", self.key, self.ttl, exc)
        finally:
            self.client.close()

    def describe(self) -> str:
        return f"Redis lock {self.key!r} ({self.ttl:g} s expiry)"


def make_lock(settings: Settings, store: Store, owner: str, *, ttl: float = LOCK_TTL) -> SchedulerLock:
    """A Redis lock for a Redis broker, else a lock row in the store."""
    url = settings.broker_url or ""
    if url.startswith(("redis://", "rediss://")):
        scope = hashlib.sha256(settings.effective_store_url.encode()).hexdigest()[:16]
        return RedisLock(url, owner, key=f"copydesk:beat-lock:{scope}", ttl=ttl)
    return StoreLock(store, owner, ttl=ttl)


# ---------------------------------------------------------------------------------------------- scheduler


@dataclass
class Plan:
    """One scheduled job as beat tracks it: its definition, schedule and next slot (UTC)."""

    job: JobDefinition
    schedule: CronSchedule
    catch_up: float
    next_slot: datetime


def build_plans(jobs_dir: Path, now: datetime, old: dict[str, Plan] | None = None) -> tuple[dict[str, Plan], list[str]]:
    """Plans of the enabled, scheduled, valid job files; and one message per job file left out.

    A job whose file did not change keeps its plan (and next slot); a new or changed one starts at the
    first slot within its catch-up window, which fires unless its run is already in the store.
    """
    old = old or {}
    plans: dict[str, Plan] = {}
    notes: list[str] = []
    for path in job_files(jobs_dir):
        job, problems = read_job(path)
        if job is None:
            notes.append(f"{path.name} is not scheduled: {'; '.join(str(p) for p in problems[:3])}")
            continue
        if job.spec.schedule is None or not job.spec.enabled:
            continue
        if job.name in plans:
            notes.append(f"{path.name} is not scheduled: job {job.name} is defined twice")
            continue
        previous = old.get(job.name)
        if previous is not None and previous.job.sha256 == job.sha256:
            plans[job.name] = Plan(job, previous.schedule, previous.catch_up, previous.next_slot)
            continue
        schedule = job.spec.schedule.cron_schedule()
        catch_up = job.spec.schedule.catch_up
        first = schedule.next_after(now - timedelta(seconds=catch_up) - _EPSILON)
        plans[job.name] = Plan(job, schedule, catch_up, first)
    return plans, notes


def due_slot(plan: Plan, now: datetime) -> tuple[datetime | None, datetime, int, int]:
    """``(slot to fire or None, next slot after it, coalesced, missed)`` for ``plan`` at ``now``."""
    if plan.next_slot > now:
        return None, plan.next_slot, 0, 0
    window = now - timedelta(seconds=plan.catch_up)
    slot, missed = plan.next_slot, 0
    if slot < window:
        missed = 1  # at least; the exact count could be huge for a frequent schedule
        slot = plan.schedule.next_after(window - _EPSILON)
    latest, coalesced = None, 0
    while slot <= now:
        if latest is not None:
            coalesced += 1
        latest = slot
        slot = plan.schedule.next_after(slot)
    return latest, slot, coalesced, missed


class JobScheduler(Scheduler):
    """Celery beat scheduler over the job files (see the module docstring)."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        self.settings: Settings = app.conf.copydesk_settings
        self.lock: SchedulerLock | None = app.conf.get("copydesk_beat_lock")
        self.plans: dict[str, Plan] = {}
        self._signature: tuple[Any, ...] | None = None
        self._store: Store | None = None
        self._last_settle = 0.0
        self._last_renewed = time.monotonic()
        kwargs.pop("schedule_filename", None)
        super().__init__(app, *args, **kwargs)

    # -- celery.beat.Scheduler interface ---------------------------------------------------------------

    def setup_schedule(self) -> None:
        self._reload(force=True)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._keep_lock():
            raise SystemExit(BeatLockedError.exit_code)
        self._reload()
        now = utc_now()
        delay = self.max_interval
        for plan in self.plans.values():
            delay = min(delay, self._run_due(plan, now))
        if time.monotonic() - self._last_settle >= SETTLE_INTERVAL:
            self._last_settle = time.monotonic()
            try:
                settle_open_runs(self.store)
            except CopydeskError as exc:
                logger.warning("could not settle open runs: %s", exc)
        if self.lock is not None:
            delay = min(delay, self.lock.ttl / 3)
        return max(delay, 0.05)

    def sync(self) -> None:  # nothing to persist: the store holds the runs
        pass

    def close(self) -> None:
        super().close()
        if self._store is not None:
            self._store.close()

    @property
    def info(self) -> str:
        lock = self.lock.describe() if self.lock is not None else "no lock"
        return f"    . jobs -> {self.settings.jobs_dir} ({lock})"

    # -- internals -------------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.from_settings(self.settings)
            self._store.migrate()
        return self._store

    def _keep_lock(self) -> bool:
        lock = self.lock
        if lock is None or time.monotonic() - self._last_renewed < lock.ttl / 6:
            return True  # renewed recently enough: one write every ttl/6 seconds, not every tick
        try:
            if lock.renew():
                self._last_renewed = time.monotonic()
                return True
            logger.error("beat lost its scheduler lock to another scheduler; stopping")
        except Exception as exc:  # a store or Redis outage: we still hold the lock until it could expire
            if time.monotonic() - self._last_renewed < lock.ttl * 0.8:
                logger.warning("could not renew the scheduler lock (will retry): %s", exc)
                return True
            logger.error("could not renew the scheduler lock for %.0f s; stopping: %s", lock.ttl, exc)
        lock.lost = True
        return False

    def _jobs_signature(self) -> tuple[Any, ...]:
        signature = []
        for path in job_files(self.settings.jobs_dir):
            try:
                stat = path.stat()
            except OSError:
                continue
            signature.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(signature)

    def _reload(self, *, force: bool = False) -> None:
        signature = self._jobs_signature()
        if not force and signature == self._signature:
            return
        self._signature = signature
        plans, notes = build_plans(self.settings.jobs_dir, utc_now(), self.plans)
        for note in notes:
            logger.error("%s", note)
        added = sorted(set(plans) - set(self.plans))
        removed = sorted(set(self.plans) - set(plans))
        for name in added:
            logger.info(
                "scheduling job %s: %s, next run %s", name, plans[name].schedule.describe(), _local(plans[name])
            )
        for name in removed:
            logger.info("job %s is no longer scheduled", name)
        for name in sorted(set(plans) & set(self.plans)):
            if plans[name].job.sha256 != self.plans[name].job.sha256:
                logger.info(
                    "job %s changed: %s, next run %s", name, plans[name].schedule.describe(), _local(plans[name])
                )
        self.plans = plans

    def _run_due(self, plan: Plan, now: datetime) -> float:
        """Fire the plan's due slot, if any; seconds until it next needs attention."""
        slot, following, coalesced, missed = due_slot(plan, now)
        if slot is not None:
            if missed:
                logger.warning(
                    "job %s: slots older than its catch-up window (%g s) were missed", plan.job.name, plan.catch_up
                )
            if coalesced:
                logger.warning(
                    "job %s: %d earlier due slot(s) coalesced into %s", plan.job.name, coalesced, slot.isoformat()
                )
            if not self._fire(plan.job.name, slot):
                plan.next_slot = slot
                return RETRY_DELAY
        plan.next_slot = following
        return max((following - utc_now()).total_seconds(), 0.0)

    def _fire(self, name: str, slot: datetime) -> bool:
        """Send the run task for ``slot`` unless its run exists; ``False`` when it must be retried."""
        slot = normalise_slot(slot)
        try:
            existing = self.store.find_run(name, slot)
        except CopydeskError as exc:
            logger.warning("job %s: cannot check the store for the run of %s, will retry: %s", name, slot, exc)
            return False
        if existing is not None:
            logger.info("job %s: the run for %s exists (%s); not sent again", name, slot.isoformat(), existing)
            return True
        try:
            self.app.send_task(
                RUN_TASK,
                args=[name, slot.isoformat()],
                queue=GENERATE_QUEUE,
                producer=self.producer,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
                headers={"celery_beat_task": True},
            )
        except (KombuOperationalError, OSError) as exc:
            logger.error("job %s: cannot send the run for %s, will retry: %s", name, slot.isoformat(), exc)
            return False
        logger.info("job %s: sent the run for %s", name, slot.isoformat())
        return True


def _local(plan: Plan) -> str:
    return plan.schedule.local(plan.next_slot).isoformat()


def next_runs(job: JobDefinition, count: int, *, after: datetime | None = None) -> list[datetime]:
    """The next ``count`` slots of ``job`` (UTC); ``[]`` for a job without a schedule."""
    schedule = job.schedule
    if schedule is None:
        return []
    return schedule.upcoming(after or datetime.now(UTC), count)


__all__ = [
    "LOCK_TTL",
    "RUN_TASK",
    "BeatLockedError",
    "JobScheduler",
    "Plan",
    "RedisLock",
    "StoreLock",
    "build_plans",
    "due_slot",
    "make_lock",
    "next_runs",
]
