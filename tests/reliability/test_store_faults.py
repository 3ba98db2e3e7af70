"""Store faults: the store refuses a worker's writes for a few seconds, at the claim and at the article write.

A real ``copydesk worker`` (prefork, embedded broker, tiny model) generates a job of three briefs. Its test
hooks (:mod:`store_fault_helpers`) stop the worker right before its first claim and again right after its
first generation, before the article is stored; each time the test injects the fault, lets the worker go on
into it, and lifts the fault a few seconds later:

* SQLite: the test holds the store's write lock (``BEGIN IMMEDIATE``) while the worker's busy timeout is
  0.5 s, so its writes fail with "database is locked";
* PostgreSQL: a private server (on a free port, never the shared one) is stopped (``pg_ctl stop -m fast``)
  and started again.

Each failed store call must surface as ``TransientStoreError``, the task must retry with backoff, and the
job must complete with exactly one article per brief, each with its Markdown file recorded, and no
worker process lost.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import Deployment, make_briefs, write_briefs
from store_fault_helpers import (
    Gate,
    PrivatePostgres,
    count_in_logs,
    deploy,
    pool_deaths,
    private_postgres,
    reliability_files,
    settle,
    sqlite_write_lock,
)

from worker.store import JobCounts

__all__ = ["deploy", "private_postgres", "reliability_files", "tiny_model_dir"]  # fixtures used by name

OUTAGE_S = 4.0
BRIEFS = 3

ROWS = {
    "sqlite": (
        "SQLite store locked for 4 s at the claim and at the article write",
        "test holds the write lock (BEGIN IMMEDIATE); worker busy timeout 0.5 s; hooks stop the worker right "
        "before its first claim and after its first generation",
    ),
    "postgresql": (
        "PostgreSQL stopped for 4 s at the claim and at the article write",
        "private server stopped (pg_ctl stop -m fast) and restarted; hooks stop the worker right before its "
        "first claim and after its first generation",
    ),
}
CHECKED = (
    "both failures are TransientStoreError and retried with backoff; job completed; one article per brief, "
    "each with its file; worker and pool alive"
)


@contextlib.contextmanager
def outage(backend: str, d: Deployment, server: PrivatePostgres | None) -> Iterator[None]:
    """The store refuses writes (SQLite) or is gone (PostgreSQL) for the duration of the block."""
    if backend == "sqlite":
        with sqlite_write_lock(d.home / "copydesk.db"):
            yield
    else:
        assert server is not None
        server.stop()
        try:
            yield
        finally:
            server.start()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_outage_at_the_claim_and_at_the_article_write(
    backend: str,
    deploy: Callable[..., Deployment],
    request: pytest.FixtureRequest,
    ledger: Ledger,
    tmp_path: Path,
) -> None:
    server: PrivatePostgres | None = None
    store_url = None
    if backend == "postgresql":
        server = request.getfixturevalue("private_postgres")
        store_url = server.url
        schema = f"sf_{int(time.time() * 1000)}"
        engine = sa.create_engine(store_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        finally:
            engine.dispose()
        store_url = f"{store_url}?options=-csearch_path%3D{schema}"
    fault, injection = ROWS[backend]
    row = ledger.row("store faults", fault, injection=injection, checked=CHECKED)

    d = deploy(store_url=store_url, flush_size=BRIEFS, max_brief_attempts=3)
    claim_gate, save_gate = Gate.make(tmp_path, "claim"), Gate.make(tmp_path, "save")
    worker = d.start_worker(
        COPYDESK_TEST_CLAIM_GATE=str(claim_gate.path),
        COPYDESK_TEST_SAVE_GATE=str(save_gate.path),
        COPYDESK_TEST_SQLITE_BUSY_MS="500",
    )
    seen_pool: set[int] = set(worker.pool_pids())
    records = make_briefs(f"sf-{backend}", BRIEFS)
    ids = [r["id"] for r in records]
    job_id = d.submit(write_briefs(tmp_path / "briefs.yaml", records))["job_id"]

    faults = 0
    for gate in (claim_gate, save_gate):
        gate.wait_ready(d)
        pool_deaths(worker, seen_pool)
        with outage(backend, d, server):
            faults += 1
            gate.open()
            time.sleep(OUTAGE_S)

    job = settle(d, job_id, timeout=90)
    counts = d.article_counts()
    lost, duplicates = lost_and_duplicated(counts, ids)
    crashes = (0 if worker.alive() else 1) + len(pool_deaths(worker, seen_pool))
    row.add(runs=1, faults=faults, briefs=len(ids), lost=lost, duplicates=duplicates, crashes=crashes)

    assert job.counts == JobCounts(total=BRIEFS, done=BRIEFS), (job, d.brief_rows(), d.logs())
    assert (lost, duplicates, crashes) == (0, 0, 0), (counts, d.brief_rows(), d.logs())
    log = worker.log(0)
    assert count_in_logs(d, "transient store error") >= 2, log  # both faults met, as transient errors
    assert log.count("retry: Retry in") >= 2, log  # and both retried by Celery with a countdown
    files = d.sql("SELECT brief_id, file_path FROM articles")
    assert all(r["file_path"] and Path(r["file_path"]).is_file() for r in files), files
    rows = d.brief_rows()
    assert all(rows[b]["status"] == "done" and rows[b]["lease_owner"] is None for b in ids), rows


# ------------------------------------------------------------------------------------------------ regression (unit)


def test_a_task_releases_the_leases_its_own_process_left_behind(tmp_path: Path) -> None:
    """Regression: when the store failed at the article write and again at the requeue, the run's briefs stayed
    leased to its own process, and the retry skipped them as "leased to a live worker" until the lease
    expired (30 min). A task now first ends the leases its own process still holds."""
    from worker.intake.briefs import Brief
    from worker.pipeline.runner import worker_identity
    from worker.store import Store
    from worker.tasks.write import release_own_leases

    me, other = worker_identity("celery"), worker_identity("celery", 1)
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.migrate()
        for n in range(3):
            store.add_brief(Brief(id=f"b-{n}", title=f"How to fix thing {n}", category="home"))
        for brief_id, owner in (("b-0", me), ("b-1", me), ("b-2", other)):
            assert store.claim_brief(brief_id, owner=owner, lease_seconds=600, max_attempts=3) is not None

        assert release_own_leases(store, me) == 2
        assert release_own_leases(store, me) == 0  # nothing left to release
        again = store.claim_brief("b-0", owner=me, lease_seconds=600, max_attempts=3)
        assert again is not None and again.attempts == 2
        assert store.claim_brief("b-2", owner=me, lease_seconds=600, max_attempts=3) is None  # someone else's
        assert store.get_brief("b-2").lease_owner == other
