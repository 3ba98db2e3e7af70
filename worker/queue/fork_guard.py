"""Keeps the store connections of a worker's main process out of the pool processes it forks.

Celery's prefork pool forks new pool processes from the worker's main process at any moment: at start, when a
process died (SIGKILL, a task cancelled after a broker connection loss, the hard time limit) and after
``worker_max_tasks_per_child``. The main process uses the store too, from the reconciler thread and the hard
time limit handler. A process forked while another thread of its parent is inside a SQLite write transaction
inherits SQLite's in-process lock bookkeeping: every write it attempts afterwards waits for the busy timeout
(30 s) and fails with "database is locked", for as long as the process lives. The worker stays up and keeps
receiving tasks, and each one is retried as a transient store error without writing anything. (With
PostgreSQL, a child that closes a connection it inherited ends the parent's session.)

So the main process uses the store only inside :func:`main_process_store`: it holds a lock that every fork of
the process also takes (``os.register_at_fork``), and closes the store's connections before letting go, so
that a fork never copies an open connection, let alone a transaction.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.store import Store

logger = logging.getLogger(__name__)

FORK_WAIT_S = 60.0
"""How long a fork waits for the store work of the main process to finish before it forks anyway."""

_lock = threading.RLock()
_held_by_fork: list[bool] = []


def _before_fork() -> None:
    started = time.monotonic()
    acquired = _lock.acquire(timeout=FORK_WAIT_S)
    _held_by_fork.append(acquired)
    if not acquired:
        logger.warning(
            "forking although the store work of this process has not ended after %.0f s; "
            "the new process may be unable to write to the store",
            time.monotonic() - started,
        )


def _after_fork_in_parent() -> None:
    if _held_by_fork.pop():
        _lock.release()


def _after_fork_in_child() -> None:
    global _lock  # the parent's lock may be held by a thread that does not exist here
    _lock = threading.RLock()
    _held_by_fork.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


@contextmanager
def main_process_store(open_store: Callable[[], Store]) -> Iterator[Store]:
    """The store from ``open_store()``, used with no fork of this process in between and closed afterwards."""
    with _lock:
        store = open_store()
        try:
            yield store
        finally:
            store.close()
