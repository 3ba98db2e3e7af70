"""Broker faults on Redis: restarts while briefs are queued and while they run (with and without persistence),
dropped client connections mid-task, and the broker down at submit time.

Every test runs against one private ``redis-server`` (:class:`queue_helpers.RedisServer`, on a free port; the
shared Redis is never touched) and one ``copydesk worker`` on it that lives through all the faults: a worker
that does not come back from a broker fault counts as a crash. Batches stay running for a second after they
are generated (``COPYDESK_TEST_RUN_DELAY``), so that a fault can land while they run. Queued briefs are
published again by the reconciler after ``COPYDESK_STALE_AFTER`` (3 s here). Figures come from the store
(articles per brief, brief statuses), Redis (messages queued before and after a restart) and the process table.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import (
    Deployment,
    RedisServer,
    WorkerProcess,
    make_briefs,
    wait_until,
    write_briefs,
    write_plugin,
    write_style,
)

from worker.queue.fork_guard import main_process_store
from worker.store import JobCounts, Store

__all__ = ["tiny_model_dir"]  # fixture used by name

pytestmark = pytest.mark.redis  # a private redis-server binary, not the shared server

AREA = "broker faults"
SEED = random.SystemRandom().randrange(2**32)


@dataclass
class BrokerRig:
    redis: RedisServer
    d: Deployment
    worker: WorkerProcess
    submitted: int = 0

    def briefs(self, prefix: str, count: int) -> tuple[Path, list[str]]:
        records = make_briefs(f"{prefix}{self.submitted}", count)
        self.submitted += 1
        path = write_briefs(self.d.root / f"{prefix}-{self.submitted}.yaml", records)
        return path, [r["id"] for r in records]

    def figures(self, ids: list[str]) -> tuple[int, int, int]:
        """Lost, duplicated (store) and crashed (the worker's main process is gone)."""
        lost, duplicates = lost_and_duplicated(self.d.article_counts(), ids)
        return lost, duplicates, 0 if self.worker.alive() else 1

    def context(self) -> str:
        return f"seed {SEED}; briefs {self.d.brief_rows()}\n{self.d.logs()}\n--- redis log:\n{self.redis.log()}"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[BrokerRig]:
    root = tmp_path_factory.mktemp("broker-faults")
    styles = root / "styles"
    write_style(styles, "quick", gates=[], max_new_tokens=32)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer(root / "redis"))
        d = Deployment(
            root / "d",
            tiny_model_dir,
            styles,
            write_plugin(root / "plugin"),
            f"sqlite:///{root / 'd' / 'home' / 'copydesk.db'}",
            redis.url(0),
            settings={"COPYDESK_FLUSH_SIZE": "2", "COPYDESK_STALE_AFTER": "3"},
        )
        stack.callback(d.kill_all)
        worker = d.start_worker("broker", COPYDESK_TEST_RUN_DELAY="1", **d.phase_env())
        print(f"broker faults: seed {SEED}")
        yield BrokerRig(redis, d, worker)


def wait_running(rig: BrokerRig, ids: list[str]) -> dict[str, str]:
    return wait_until(
        lambda: {b: o for b, o in rig.d.running().items() if b in ids},
        timeout=120,
        message=lambda: f"none of {ids} started running\n{rig.context()}",
        interval=0.05,
    )


@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "aof-persistence"])
def test_redis_restart_while_briefs_are_queued_and_while_they_run(
    rig: BrokerRig, persistent: bool, ledger: Ledger
) -> None:
    """SIGKILL Redis and start it again on the same port right after a submit (messages queued in Redis, not
    consumed), then again while a batch runs. Without persistence the restart empties Redis: the reconciler
    must publish the briefs again. With an append-only file (fsync always) the messages survive."""
    if rig.redis.persistent != persistent:  # (not counted as a fault)
        rig.redis.crash()
        rig.redis.start(persistent=persistent)
    mode = "AOF persistence" if persistent else "no persistence"
    path, ids = rig.briefs("restart", 6)
    summary = rig.d.submit(path)
    job_id = summary["job_id"]

    queued_before = rig.redis.queued_messages()
    rig.redis.restart()  # 1. while queued
    queued_after = rig.redis.queued_messages()
    wait_running(rig, ids)
    rig.redis.restart()  # 2. while a batch runs

    job = rig.d.wait_for_job(job_id, timeout=150)
    lost, duplicates, crashed = rig.figures(ids)
    for when, fault in (("queued", "while briefs are queued"), ("running", "while a batch runs")):
        ledger.row(
            AREA,
            f"Redis restart {fault} ({mode})",
            injection=f"redis-server SIGKILLed and started again on the same port, {mode}"
            + (", right after submit (messages in Redis, not consumed)" if when == "queued" else ""),
            checked="every brief of the job done with exactly one article; the worker reconnects by itself",
        ).add(runs=1, faults=1, briefs=len(ids), lost=lost, duplicates=duplicates, crashes=crashed)
    print(f"restart ({mode}): {queued_before} message(s) queued before, {queued_after} after")
    assert (lost, duplicates, crashed) == (0, 0, 0), rig.context()
    assert job.counts == JobCounts(total=len(ids), done=len(ids)), rig.context()
    assert queued_before > 0, "the fault must hit queued messages"
    if not persistent:
        assert queued_after == 0, "a restart without persistence empties Redis"


def test_dropped_client_connections_mid_task(rig: BrokerRig, ledger: Ledger) -> None:
    """``CLIENT KILL TYPE normal`` and ``pubsub`` (every connection the worker and the CLI hold) three times,
    each at a random moment while a batch of the job runs."""
    rng = random.Random(SEED)
    path, ids = rig.briefs("drop", 6)
    job_id = rig.d.submit(path)["job_id"]
    drops, closed = 0, 0
    for _ in range(3):
        wait_running(rig, ids)
        time.sleep(rng.uniform(0.0, 0.8))
        closed += rig.redis.drop_clients()
        drops += 1
        if rig.d.job(job_id).status == "completed":
            break
    job = rig.d.wait_for_job(job_id, timeout=150)
    lost, duplicates, crashed = rig.figures(ids)
    ledger.row(
        AREA,
        "dropped client connections mid-task",
        injection="CLIENT KILL TYPE normal + pubsub on the Redis server at random moments while a batch runs",
        checked="every brief of the job done with exactly one article; the worker reconnects by itself",
    ).add(runs=1, faults=drops, briefs=len(ids), lost=lost, duplicates=duplicates, crashes=crashed)
    print(f"dropped connections: {drops} drop(s), {closed} connection(s) closed")
    assert closed > 0, "no connection was dropped"
    assert (lost, duplicates, crashed) == (0, 0, 0), rig.context()
    assert job.counts == JobCounts(total=len(ids), done=len(ids)), rig.context()


def test_broker_down_at_submit_keeps_the_briefs_and_loses_none_once_it_is_back(rig: BrokerRig, ledger: Ledger) -> None:
    """Redis is down when ``copydesk submit`` runs: the briefs are recorded in the store and the command fails
    with exit code 8 and a message that names the broker; once Redis is back the worker writes every brief."""
    rig.redis.crash()
    path, ids = rig.briefs("down", 4)
    result = rig.d.cli("submit", str(path), "--json")
    summary = json.loads(result.stdout)
    stored = rig.d.job(summary["job_id"]).counts
    clear = (
        result.exit_code == 8
        and f"cannot reach the broker at {rig.redis.url(0)}" in result.stderr
        and "a worker will publish them" in result.stderr
    )
    rig.redis.start()
    job = rig.d.wait_for_job(summary["job_id"], timeout=150)
    lost, duplicates, crashed = rig.figures(ids)
    ledger.row(
        AREA,
        "broker down at submit",
        injection="redis-server stopped (SIGKILL) before copydesk submit; started again afterwards",
        checked="submit records every brief (queued) and exits 8 naming the broker; once Redis is back every "
        "brief is done with exactly one article",
    ).add(runs=1, faults=1, briefs=len(ids), lost=lost, duplicates=duplicates, crashes=crashed + (not clear))
    assert clear, f"exit {result.exit_code}: {result.stderr}"
    assert summary["published"] is False and summary["enqueued"] == len(ids), summary
    assert stored == JobCounts(total=len(ids), queued=len(ids)), stored
    assert (lost, duplicates, crashed) == (0, 0, 0), rig.context()
    assert job.counts == JobCounts(total=len(ids), done=len(ids)), rig.context()


def test_a_pool_process_forked_while_the_main_process_writes_to_the_store_can_write(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Regression (the cause of workers that stayed up, received tasks and wrote nothing after a broker fault):
    a connection loss terminates the running task, the pool forks a new process, and the reconciler thread,
    seeing the dead process, ends its leases in a SQLite write transaction at the same moment. A process forked
    inside that transaction inherits SQLite's in-process lock state and can never write ("database is locked"
    after the 30 s busy timeout, on every task). Store work of the main process runs in ``main_process_store``,
    which forks wait for. Here a thread holds a write transaction in it while the main thread forks."""
    path = tmp_path / "copydesk.db"
    Store(f"sqlite:///{path}").migrate()  # WAL mode, as the store runs
    in_transaction, release = threading.Event(), threading.Event()

    def reconciler_pass() -> None:
        with main_process_store(lambda: Store(f"sqlite:///{path}")):
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE briefs SET attempts = attempts WHERE 0")
            in_transaction.set()
            release.wait(10)
            conn.execute("COMMIT")
            conn.close()

    thread = threading.Thread(target=reconciler_pass)
    thread.start()
    assert in_transaction.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the new pool process: one write, with a short busy timeout
        code = 1
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=3)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
            code = 0
        finally:
            os._exit(code)
    waited = time.monotonic() - started
    _, status = os.waitpid(pid, 0)
    thread.join(10)
    wrote = os.waitstatus_to_exitcode(status) == 0
    ledger.row(
        AREA,
        "pool process forked during a store write of the main process",
        injection="os.fork() while another thread holds a SQLite write transaction (what a broker connection loss "
        "and the reconciler do together)",
        checked="the fork waits for the transaction; the new process can write to the store (a process that "
        "cannot counts as a crash)",
    ).add(runs=1, faults=1, crashes=0 if wrote else 1)
    assert waited >= 0.2, "the fork did not wait for the store work of the main process"
    assert wrote, "the forked process could not write to the store"
