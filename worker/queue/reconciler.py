"""The reconciler: makes the broker agree with the store again after crashes and lost messages.

One pass (:func:`reconcile_once`):

1. ends the leases held by worker processes on this host that no longer exist (a SIGKILLed worker's
   briefs become claimable at once instead of after ``lease_seconds``);
2. publishes again every brief queued for longer than ``stale_after`` without being claimed, and every
   running brief whose lease expired, which goes back to queued so that it is not published again on every
   pass (the embedded broker forgets messages a killed worker held; Redis forgets queued messages when it
   restarts without persistence);
3. on the embedded broker, deletes consumed message rows so its tables do not grow.

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
from datetime import timedelta

from sqlalchemy import create_engine, inspect, text

from worker.config import Settings
from worker.errors import CopydeskError
from worker.store import Store, utc_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    expired_leases: int
    republished: int
    purged_messages: int


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
    host = host or socket.gethostname()
    expired = 0
    for brief_id, owner in store.running_leases():
        if owner_is_dead_here(owner, host) and store.expire_lease(brief_id, owner):
            logger.warning("brief %s: lease owner %s is gone; the brief can be taken again", brief_id, owner)
            expired += 1
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


def reconcile_once(
    store: Store, settings: Settings, publish: Callable[[list[str]], int], broker_url: str
) -> ReconcileReport:
    expired = expire_dead_local_leases(store)
    now = utc_now()
    stale = store.stale_briefs(queued_before=now - timedelta(seconds=settings.stale_after), now=now)
    if stale:
        publish(stale)
        store.touch_briefs(stale)
        logger.info("republished %d stale brief(s)", len(stale))
    purged = purge_consumed_messages(broker_url)
    return ReconcileReport(expired, len(stale), purged)


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
