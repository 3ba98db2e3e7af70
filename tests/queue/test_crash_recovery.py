"""Recovery that keeps batching, and costs that stay flat, on the store (SQLite and PostgreSQL) in-process.

* a crashed batch is queued again in halves; a poison brief in a batch of 64 is isolated within the attempt
  limit while every good brief is written exactly once, in batches (the task's own batch choice,
  :func:`worker.tasks.write.batch_for`, drives the rounds; a "crash" leaves the batch leased to a process
  that is gone, as a SIGKILL does; the real-worker version is in tests/reliability/test_bisection.py);
* the reconciler republishes at most ``republish_limit`` briefs per pass, longest waiting first;
* cancelling a job leaves alone a queued brief that another live job also holds;
* publishing to the embedded broker commits its message rows in batches, not one transaction per message.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session
from store_helpers import FakeClock

from worker.config import Settings
from worker.intake.briefs import Brief
from worker.queue.celery_app import make_celery
from worker.queue.reconciler import ReconcileReport, reconcile_once, requeue_crashed_batches
from worker.queue.submit import COMMIT_EVERY, publish
from worker.results import ArticleResult, ArticleStatus, BriefStatus
from worker.store import JobCounts, JobStatus, Store
from worker.tasks.write import batch_for, take_over_from_dead_holder

LEASE = 60.0
ATTEMPTS = 3
BATCH = 64


def brief(name: str, title: str = "How to fix a thing") -> Brief:
    return Brief(id=name, title=title, category="home")


def items(*briefs: Brief) -> list[tuple[Brief, str | None]]:
    return [(b, "test.yaml") for b in briefs]


def article_for(brief_id: str) -> ArticleResult:
    return ArticleResult(
        brief_id=brief_id,
        status=ArticleStatus.NEEDS_REVIEW,
        title=f"Title of {brief_id}",
        body_markdown=f"# Title of {brief_id}\n\nBody.\n",
        style="plain-howto",
        adapter_version=None,
        scores={},
        failing_gates=[],
        candidates=[],
        provenance={},
    )


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def recovery_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", flush_size=BATCH, flush_interval=0, max_brief_attempts=ATTEMPTS)


class Crashing:
    """Plays the workers: takes messages in order, picks each task's batch as ``write_brief`` does, claims it
    and either "crashes" (the batch holds the poison brief: its process dies with the leases held) or stores an
    article per brief. After a crash the reconciler's pass runs, and the crashed task's own message comes back
    (Redis redelivers an unacknowledged message whose worker was lost)."""

    def __init__(self, store: Store, settings: Settings, poison: str, clock: FakeClock) -> None:
        self.store, self.settings, self.poison, self.clock = store, settings, poison, clock
        self.messages: deque[str] = deque()
        self.rounds: list[list[str]] = []
        self.crashes = 0

    def reconcile(self) -> ReconcileReport:
        return reconcile_once(self.store, self.settings, self.publish, "redis://unused", clock=self.clock)

    def publish(self, ids: list[str]) -> int:
        self.messages.extend(ids)
        return len(ids)

    def run(self, max_tasks: int = 10_000) -> None:
        for _ in range(max_tasks):
            if not self.messages:
                return
            self.task(self.messages.popleft())
        raise AssertionError("the queue never drained")

    def task(self, brief_id: str) -> None:
        record = self.store.get_brief(brief_id)
        if record.status not in (BriefStatus.QUEUED, BriefStatus.RUNNING):
            return
        if record.status == BriefStatus.RUNNING and record.lease_expires_at > self.store._now():
            return  # leased to a live worker
        owner = f"celery@{socket.gethostname()}:{dead_pid()}"  # its process is gone once the round ends
        batch = batch_for(self.store, self.settings, brief_id, record)
        claimed = [
            b
            for b in batch
            if self.store.claim_brief(b, owner=owner, lease_seconds=LEASE, max_attempts=ATTEMPTS) is not None
        ]
        if not claimed:
            return
        self.rounds.append(claimed)
        if self.poison in claimed:
            self.crashes += 1
            self.messages.append(brief_id)  # redelivered
            # the worker's reconciler pass: the dead owner's leases end, its batch is queued again in halves
            self.reconcile()
            return
        for b in claimed:
            self.store.save_article(article_for(b), owner=owner)  # a second article would raise ConflictError


def test_bisection_isolates_a_poison_brief_in_a_batch_of_64(store: Store, clock: FakeClock, tmp_path: Path) -> None:
    names = [f"brief-{i:02d}" for i in range(BATCH - 1)]
    poison = "brief-37x"  # sorts among the others, not at an end
    submission = store.create_job(items(*(brief(n) for n in [*names, poison])))
    workers = Crashing(store, recovery_settings(tmp_path), poison, clock)
    workers.publish(submission.to_publish)
    workers.run()

    job = store.get_job(submission.job_id)
    assert job.status == JobStatus.COMPLETED and job.counts == JobCounts(total=BATCH, done=BATCH - 1, failed=1)
    record = store.get_brief(poison)
    assert record.status == BriefStatus.FAILED and record.attempts == ATTEMPTS, record
    assert record.last_error.startswith(f"gave up after {ATTEMPTS} attempts"), record.last_error
    written = [b for r in workers.rounds if poison not in r for b in r]
    assert sorted(written) == sorted(names)  # every good brief once: none lost, none written twice
    with_poison = [len(r) for r in workers.rounds if poison in r]
    halvings = int(math.log2(BATCH))
    assert with_poison == [BATCH >> k for k in range(halvings)] + [1] * (ATTEMPTS - 1), with_poison
    assert workers.crashes == halvings + ATTEMPTS - 1  # O(log n) extra rounds, not one round per brief
    good_rounds = [len(r) for r in workers.rounds if poison not in r]
    assert sorted(good_rounds) == [1 << k for k in range(halvings)], good_rounds  # the other halves: batches
    assert sorted(store.get_brief(n).attempts for n in names) == [1] * (BATCH - 2) + [2]  # its last partner


def test_a_batch_killed_without_a_poison_brief_finishes_in_two_halves(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    names = [f"brief-{i:02d}" for i in range(BATCH)]
    submission = store.create_job(items(*(brief(n) for n in names)))
    owner = f"celery@{socket.gethostname()}:{dead_pid()}"
    for n in names:  # one batch claimed by a process that was then SIGKILLed
        assert store.claim_brief(n, owner=owner, lease_seconds=LEASE, max_attempts=ATTEMPTS) is not None
    workers = Crashing(store, recovery_settings(tmp_path), "none", clock)
    report = workers.reconcile()
    assert (report.expired_leases, report.requeued_halves) == (BATCH, 2)
    assert list(workers.messages) == [names[0], names[BATCH // 2]]  # one message per half
    workers.run()
    assert workers.rounds == [names[: BATCH // 2], names[BATCH // 2 :]]
    assert store.get_job(submission.job_id).counts == JobCounts(total=BATCH, done=BATCH)
    assert {store.get_brief(n).attempts for n in names} == {1}  # the halves' claims are not counted


def test_requeue_in_halves_leaves_live_and_settled_briefs_alone(store: Store, clock: FakeClock) -> None:
    store.create_job(items(*(brief(f"b-{i}") for i in range(6))))
    for i in range(5):
        store.claim_brief(f"b-{i}", owner="dead", lease_seconds=10, max_attempts=ATTEMPTS)
    store.save_article(article_for("b-0"), owner="dead")  # settled before the crash
    store.renew_lease("b-1", owner="dead", lease_seconds=1000)  # still leased (say, a slow clock)
    clock.advance(20)
    assert store.crashed_batches() == [["b-2", "b-3", "b-4"]]
    halves = store.requeue_in_halves(["b-0", "b-1", "b-2", "b-3", "b-4", "b-5"])
    assert halves == [["b-2", "b-3"], ["b-4"]]  # b-5 was never attempted, b-0 done, b-1 leased
    assert store.retry_group_of("b-2") == ["b-2", "b-3"] == store.retry_group_of("b-3")
    assert store.retry_group_of("b-4") == [] and store.retry_group_of("b-5") == []
    assert store.crashed_batches() == []
    assert store.requeue_in_halves(["b-2", "b-3"]) == []  # already queued in their group: nothing twice
    taken = store.claim_brief("b-3", owner="new", lease_seconds=10, max_attempts=1)
    assert taken is not None and taken.attempts == 1  # not counted, even past max_attempts
    assert store.retry_group_of("b-2") == ["b-2"]  # b-3 left its group when claimed
    assert store.claim_brief("b-4", owner="new", lease_seconds=10, max_attempts=1) is None  # alone: counted
    assert store.get_brief("b-4").status == BriefStatus.FAILED


def test_the_reconciler_republishes_a_bounded_batch_per_pass(store: Store, clock: FakeClock, tmp_path: Path) -> None:
    total, limit = 1000, 100
    store.create_job(items(*(brief(f"b-{i:04d}") for i in range(total))))
    settings = Settings(home=tmp_path / "home", stale_after=300)
    published: list[list[str]] = []

    def record(ids: list[str]) -> int:
        published.append(ids)
        return len(ids)

    def one_pass() -> int:
        return reconcile_once(store, settings, record, "redis://unused", republish_limit=limit, clock=clock).republished

    assert one_pass() == 0  # nothing is stale yet
    clock.advance(301)  # the whole backlog is stale now
    passes = [one_pass() for _ in range(total // limit)]
    assert passes == [limit] * (total // limit) and all(len(ids) <= limit for ids in published)
    assert sorted(b for ids in published for b in ids) == [f"b-{i:04d}" for i in range(total)]  # each once
    assert one_pass() == 0  # all just published: their stale clocks restarted
    clock.advance(301)
    assert one_pass() == limit and published[-1] == [f"b-{i:04d}" for i in range(limit)]  # oldest first


def test_cancelling_a_job_leaves_alone_a_brief_another_live_job_holds(store: Store) -> None:
    first = store.create_job(items(brief("shared"), brief("mine")))
    second = store.create_job(items(brief("shared"), brief("theirs")))
    assert second.already_queued == ["shared"]
    assert store.cancel_job(first.job_id) == 1
    assert store.get_brief("mine").status == BriefStatus.CANCELLED
    assert store.get_brief("shared").status == BriefStatus.QUEUED  # the second job still wants it
    assert store.get_job(first.job_id).status == JobStatus.CANCELLING
    assert store.get_job(second.job_id).counts == JobCounts(total=2, queued=2)
    assert store.cancel_job(second.job_id) == 2  # no live job holds it any more
    assert store.get_brief("shared").status == BriefStatus.CANCELLED
    assert store.get_job(first.job_id).status == JobStatus.CANCELLED
    assert store.get_job(second.job_id).status == JobStatus.CANCELLED


def test_publishing_to_the_embedded_broker_commits_in_batches(tmp_path: Path) -> None:
    count = COMMIT_EVERY * 2 + 7
    app = make_celery(Settings(home=tmp_path / "home", broker_url=None))
    commits: list[Any] = []

    def committed(session: Session) -> None:
        commits.append(session)

    event.listen(Session, "after_commit", committed)
    try:
        assert publish(app, [f"b-{i}" for i in range(count)]) == count
    finally:
        event.remove(Session, "after_commit", committed)
    assert len(commits) <= math.ceil(count / COMMIT_EVERY) + 3, len(commits)  # + the queues' declaration
    engine = sa.create_engine(app.conf.broker_url.split("+", 1)[1])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT payload FROM kombu_message ORDER BY id")).scalars().all()
    engine.dispose()
    assert len(rows) == count
    bodies = [json.loads(row) for row in rows]
    assert all(body["headers"]["task"] == "copydesk.write_brief" for body in bodies)
    assert [body["headers"]["argsrepr"] for body in bodies] == [repr([f"b-{i}"]) for i in range(count)]
    assert all(body["content-type"] == "application/json" for body in bodies)


def test_the_reconciler_leaves_a_live_batch_leased(store: Store, clock: FakeClock, tmp_path: Path) -> None:
    store.create_job(items(*(brief(f"b-{i}") for i in range(4))))
    live = f"celery@{socket.gethostname()}:{os.getpid()}"
    for i in range(4):
        store.claim_brief(f"b-{i}", owner=live, lease_seconds=LEASE, max_attempts=ATTEMPTS)
    published: list[list[str]] = []

    def record(ids: list[str]) -> int:
        published.append(ids)
        return len(ids)

    report = reconcile_once(store, Settings(home=tmp_path / "home"), record, "redis://unused", clock=clock)
    assert (report.expired_leases, report.requeued_halves, published) == (0, 0, [])
    assert requeue_crashed_batches(store, record) == 0
    assert {store.get_brief(f"b-{i}").lease_owner for i in range(4)} == {live}


def test_a_task_meeting_a_crashed_batch_takes_its_half_and_publishes_the_other(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    store.create_job(items(*(brief(f"b-{i}") for i in range(6))))
    for i in range(6):
        store.claim_brief(f"b-{i}", owner="celery@elsewhere:1", lease_seconds=10, max_attempts=ATTEMPTS)
    clock.advance(20)  # another host's worker died: its leases ran out
    published: list[list[str]] = []
    record = store.get_brief("b-4")
    assert record.status == BriefStatus.RUNNING
    batch = batch_for(store, recovery_settings(tmp_path), "b-4", record, publish=published.extend)
    assert batch == ["b-4", "b-3", "b-5"]  # its half, itself first
    assert published == [["b-0", "b-1", "b-2"]]  # the other half gets its message now
    assert store.retry_group_of("b-0") == ["b-0", "b-1", "b-2"]


def test_a_task_meeting_a_batch_of_a_dead_local_process_halves_all_of_it_at_once(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    # A worker SIGKILLed and restarted: its pool process held a 6-brief batch under a lease far from expiry.
    dead = f"celery@{socket.gethostname()}:{dead_pid()}"
    store.create_job(items(*(brief(f"b-{i}") for i in range(7))))
    for i in range(6):
        store.claim_brief(f"b-{i}", owner=dead, lease_seconds=3600, max_attempts=ATTEMPTS)
    live = f"celery@{socket.gethostname()}:{os.getpid()}"
    store.claim_brief("b-6", owner=live, lease_seconds=3600, max_attempts=ATTEMPTS)

    assert take_over_from_dead_holder(store, store.get_brief("b-6")) is None  # its holder is alive
    record = take_over_from_dead_holder(store, store.get_brief("b-4"))
    assert record is not None and record.lease_expires_at <= store._now()
    published: list[list[str]] = []
    batch = batch_for(store, recovery_settings(tmp_path), "b-4", record, publish=published.extend)
    # the whole batch in two halves, never the part of it whose leases happened to be ended first
    assert batch == ["b-4", "b-3", "b-5"]
    assert published == [["b-0", "b-1", "b-2"]]
    assert store.get_brief("b-6").lease_owner == live


def test_a_reconciler_pass_and_a_task_recovering_the_same_crash_make_two_halves(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    dead = f"celery@{socket.gethostname()}:{dead_pid()}"
    store.create_job(items(*(brief(f"b-{i}") for i in range(8))))
    for i in range(8):
        store.claim_brief(f"b-{i}", owner=dead, lease_seconds=3600, max_attempts=ATTEMPTS)
    published: list[list[str]] = []

    def record(ids: list[str]) -> int:
        published.append(ids)
        return len(ids)

    stale = store.get_brief("b-1")  # read by a task before the reconciler's pass
    report = reconcile_once(store, Settings(home=tmp_path / "home"), record, "redis://unused", clock=clock)
    assert (report.expired_leases, report.requeued_halves) == (8, 2)
    taken = take_over_from_dead_holder(store, stale)
    assert taken is not None and taken.status == BriefStatus.QUEUED  # the reconciler was first
    batch = batch_for(store, recovery_settings(tmp_path), "b-1", taken, publish=published.extend)
    assert batch == ["b-1", "b-0", "b-2", "b-3"]
    assert sorted(len(ids) for ids in published) == [2]  # one message per half, from the reconciler only
    assert store.retry_group_of("b-4") == ["b-4", "b-5", "b-6", "b-7"]
