"""The reconciler: makes the broker agree with the store again after crashes and lost messages.

One pass (:func:`reconcile_once`):

1. ends the leases held by worker processes on this host that no longer exist (a SIGKILLed worker's
   briefs become claimable at once instead of after ``lease_seconds``);
2. queues the unfinished briefs of each crashed batch (running briefs whose lease expired, grouped by the
   process that held them) again in two halves, and publishes one message per half: a task for a brief of a
   half claims the whole half, so a crash costs one more round in batches, not a round per brief, and a
   poison brief is alone after log2(batch size) crashes (:meth:`~worker.store.Store.requeue_in_halves`);
3. publishes again the briefs queued for longer than ``stale_after`` without being claimed, the longest
   waiting first and at most ``republish_limit`` per pass (a message is a hint: a task for one fresh brief
   claims a whole batch of them, so a long backlog needs no message per brief on every pass); each goes back
   to the end of the line (the embedded broker forgets messages a killed worker held; Redis forgets queued
   messages when it restarts without persistence);
4. on the embedded broker, deletes consumed message rows so its tables do not grow.

Workers run a pass when they start and then every ``reconcile_interval`` seconds. Duplicate messages are
harmless: a task for a brief that is done or leased to a live worker does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import create_engine, inspect, text

from worker.config import Settings
from worker.errors import CopydeskError
from worker.store import Store, utc_now

logger = logging.getLogger(__name__)


REPUBLISH_LIMIT = 256  # stale briefs published again per pass, at most
CRASHED_LIMIT = 1024  # briefs of crashed batches requeued per pass, at most


@dataclass(frozen=True)
class ReconcileReport:
    expired_leases: int
    republished: int
    purged_messages: int
    requeued_halves: int = 0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead_here(owner: str, host: str) -> bool:
    """True for a lease owner ``kind@host:pid`` on this host whose process is gone."""
    _, _, where = owner.partition("@")
    owner_host, _, pid = where.rpartition(":")
    return owner_host == host and pid.isdigit() and not process_alive(int(pid))


def expire_dead_local_leases(store: Store, host: str | None = None) -> int:
    """End the leases of every process on this host that is gone, a whole batch per statement; return how many."""
    host = host or socket.gethostname()
    owners = {owner for owner in store.running_lease_owners() if owner_is_dead_here(owner, host)}
    expired = 0
    for owner in sorted(owners):
        ids = store.expire_leases_of(owner)
        if ids:
            logger.warning("lease owner %s is gone; its %d brief(s) can be taken again", owner, len(ids))
        expired += len(ids)
    return expired


def purge_consumed_messages(broker_url: str) -> int:
    """Delete delivered rows of kombu's SQLAlchemy transport; 0 for other brokers."""
    if not broker_url.startswith(("sqla+", "sqlalchemy+")):
        return 0
    engine = create_engine(broker_url.split("+", 1)[1])
    try:
        with engine.begin() as conn:  # any database kombu's transport runs on, not only SQLite
            if not inspect(conn).has_table("kombu_message"):
                return 0
            return int(conn.execute(text("DELETE FROM kombu_message WHERE visible = :no"), {"no": False}).rowcount)
    finally:
        engine.dispose()


def requeue_crashed_batches(store: Store, publish: Callable[[list[str]], int], *, limit: int = CRASHED_LIMIT) -> int:
    """Queue each crashed batch again in halves and publish one brief id per half; return how many halves."""
    halves = [half for batch in store.crashed_batches(limit=limit) for half in store.requeue_in_halves(batch)]
    if halves:
        publish([half[0] for half in halves])
        logger.warning(
            "requeued %d brief(s) of crashed batches in %d half/halves: %s",
            sum(map(len, halves)),
            len(halves),
            ", ".join(str(len(half)) for half in halves),
        )
    return len(halves)


def reconcile_once(
    store: Store,
    settings: Settings,
    publish: Callable[[list[str]], int],
    broker_url: str,
    *,
    republish_limit: int = REPUBLISH_LIMIT,
    clock: Callable[[], datetime] = utc_now,
) -> ReconcileReport:
    expired = expire_dead_local_leases(store)
    halves = requeue_crashed_batches(store, publish)
    now = clock()
    stale = store.stale_briefs(
        queued_before=now - timedelta(seconds=settings.stale_after), now=now, limit=republish_limit
    )
    if stale:
        publish(stale)
        store.touch_briefs(stale)
        logger.info("republished %d stale brief(s)", len(stale))
    purged = purge_consumed_messages(broker_url)
    return ReconcileReport(expired, len(stale), purged, halves)


class ReconcilerThread(threading.Thread):
    """Runs :func:`reconcile_once` now and then every ``interval`` seconds until stopped."""

    def __init__(self, interval: float, run_once: Callable[[], ReconcileReport]) -> None:
        super().__init__(name="copydesk-reconciler", daemon=True)
        self.interval = interval
        self.run_once = run_once
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.run_once()
            except (CopydeskError, OSError) as exc:  # a broker or store outage: try again next pass
                logger.warning("reconciler pass failed: %s", exc)
            except Exception:
                logger.exception("reconciler pass failed unexpectedly")
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
