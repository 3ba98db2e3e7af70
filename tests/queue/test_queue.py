"""The queue: submit, status, cancel and results against real ``copydesk worker`` processes, and the
job ledger and reconciler underneath them.

Worker tests start ``copydesk worker`` as real subprocesses (prefork pool) with the tiny random model, on the
embedded SQLite broker, Redis and RabbitMQ, and crash them with SIGKILL; see :mod:`queue_helpers`. Briefs
are routed to test styles with one candidate per attempt, ``target_words`` 50 and at most 64 new tokens.
The unit tests at the end run the job store (SQLite and PostgreSQL) and the reconciler in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from model_fixtures import tiny_model_dir
from queue_helpers import (
    RABBITMQ_URL,
    Deployment,
    DeploymentFiles,
    assert_one_article_each,
    flush_redis,
    iter_task_ids_received,
    kill_pid,
    make_briefs,
    redis_url,
    reset_rabbitmq,
    shared_broker_lock,
    wait_until,
    write_briefs,
    write_plugin,
    write_styles,
)
from sqlalchemy.pool import NullPool
from store_helpers import T0, FakeClock, fresh_postgres_schema

import worker.store.jobs as jobs_module
from worker.config import Settings
from worker.errors import NotFoundError
from worker.intake.briefs import Brief
from worker.queue.celery_app import celery_config, make_celery
from worker.queue.reconciler import (
    expire_dead_local_leases,
    owner_is_dead_here,
    purge_consumed_messages,
    reconcile_once,
)
from worker.queue.submit import publish
from worker.results import ArticleResult, ArticleStatus, BriefStatus
from worker.store import JobCounts, JobStatus, Store, latest_version
from worker.store import migrations as store_migrations
from worker.store.jobs import derive_status
from worker.store.schema import define_schema_migrations, define_v1, new_metadata

__all__ = ["tiny_model_dir"]  # fixture used by name

REDIS_DB = 5  # flushed at the start of every Redis test

E2E_VALID = [
    *make_briefs("e2e", 3),
    {"id": "e2e-strict", "title": "How to tile a bathroom wall", "category": "strict-cat", "target_words": 50},
    {"id": "e2e-nostyle", "title": "A brief pinned to a style nobody wrote", "style": "nope", "target_words": 50},
]
E2E_RECORDS = [*E2E_VALID, {"id": "e2e-invalid", "target_words": 50}]  # no title: reported, never enqueued
E2E_WRITTEN = ["e2e-0", "e2e-1", "e2e-2", "e2e-strict"]


@pytest.fixture(scope="module")
def queue_files(tmp_path_factory: pytest.TempPathFactory) -> DeploymentFiles:
    root = tmp_path_factory.mktemp("queue-files")
    return DeploymentFiles(write_styles(root), write_plugin(root / "plugin"))


def new_deployment(
    root: Path,
    model_dir: Path,
    files: DeploymentFiles,
    *,
    broker: str = "embedded",
    store_url: str | None = None,
    **settings: object,
) -> Deployment:
    """A deployment on ``broker`` (``embedded``, ``redis`` on a flushed DB or ``rabbitmq`` with fresh queues)."""
    broker_url = None
    if broker == "redis":
        broker_url = redis_url(REDIS_DB)
        flush_redis(broker_url)
    elif broker == "rabbitmq":
        reset_rabbitmq(RABBITMQ_URL)
        broker_url = RABBITMQ_URL
    else:
        assert broker == "embedded", broker
    return Deployment(
        root,
        model_dir,
        files.styles,
        files.plugin,
        store_url or f"sqlite:///{root / 'home' / 'copydesk.db'}",
        broker_url,
        settings={f"COPYDESK_{key.upper()}": str(value) for key, value in settings.items()},
    )


@pytest.fixture
def deploy(tmp_path: Path, tiny_model_dir: Path, queue_files: DeploymentFiles) -> Iterator[Callable[..., Deployment]]:
    """Makes deployments; every worker they started is SIGKILLed (whole process group) afterwards."""
    made: list[Deployment] = []
    locked: list[bool] = []
    with contextlib.ExitStack() as stack:

        def make(*, broker: str = "embedded", **kwargs: Any) -> Deployment:
            if broker != "embedded" and not locked:
                stack.enter_context(shared_broker_lock())
                locked.append(True)
            root = tmp_path / f"deployment-{len(made)}"
            deployment = new_deployment(root, tiny_model_dir, queue_files, broker=broker, **kwargs)
            made.append(deployment)
            return deployment

        try:
            yield make
        finally:
            for deployment in made:
                deployment.kill_all()


# ---------------------------------------------------------------------------------------- end to end


def check_end_to_end(d: Deployment, submitted: dict[str, Any]) -> None:
    """The e2e file's job ran to completion: one article per written brief, one error line for the rest."""
    job_id = submitted["job_id"]
    assert submitted["enqueued"] == len(E2E_VALID), submitted
    assert submitted["invalid"] == 1, submitted
    assert submitted["published"] is True, submitted
    assert submitted["already_done"] == [] and submitted["already_queued"] == [], submitted

    status = d.status(job_id)
    assert status["status"] == "completed", status
    counts = status["counts"]
    assert counts == {
        "total": 5,
        "queued": 0,
        "running": 0,
        "done": 3,
        "needs_attention": 1,
        "failed": 1,
        "cancelled": 0,
        "expired": 0,
    }, status
    assert status["invalid_records"] == 1 and status["finished_at"] is not None, status

    lines = d.results(job_id)
    assert [line["custom_id"] for line in lines] == [r["id"] for r in E2E_VALID]
    by_id = {line["custom_id"]: line for line in lines}
    for brief_id in ("e2e-0", "e2e-1", "e2e-2"):
        line = by_id[brief_id]
        assert line["brief_status"] == "done" and line["error"] is None, line
        article = line["article"]
        assert article["status"] == "needs_review" and article["style"] == "quick", article
        assert article["body_markdown"].strip() and article["failing_gates"] == [], article
        assert article["file"] and Path(article["file"]).is_file(), article
    strict = by_id["e2e-strict"]
    assert strict["brief_status"] == "done" and strict["error"] is None, strict
    assert strict["article"]["status"] == "needs_attention", strict
    assert strict["article"]["failing_gates"] == ["on_topic"], strict
    failed = by_id["e2e-nostyle"]
    assert failed["brief_status"] == "failed" and "article" not in failed, failed
    assert "nope" in failed["error"], failed

    assert_one_article_each(d, E2E_WRITTEN)
    assert sum(d.article_counts().values()) == len(E2E_WRITTEN)
    generations = d.generations()
    assert all(generations[r["id"]] == 1 for r in E2E_VALID), f"generated more than once: {generations}"


@dataclass(frozen=True)
class EmbeddedRun:
    deployment: Deployment
    e2e_file: Path
    e2e: dict[str, Any]
    cancel: dict[str, Any]
    cancel_output: str
    status_before_worker: dict[str, Any]


@pytest.fixture(scope="module")
def embedded_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, queue_files: DeploymentFiles
) -> Iterator[EmbeddedRun]:
    """On the embedded broker, with no worker running: submit the e2e file, submit a second job and cancel
    it; then start a worker, let it finish the first job and consume every message, and stop it."""
    root = tmp_path_factory.mktemp("embedded")
    d = new_deployment(root, tiny_model_dir, queue_files, stale_after=60)  # no duplicate messages to drain
    try:
        e2e_file = write_briefs(root / "e2e.yaml", E2E_RECORDS)
        cancel_file = write_briefs(root / "cancel.yaml", make_briefs("cx", 3))
        e2e = d.submit(e2e_file)
        cancel = d.submit(cancel_file)
        cancelled = d.cli("cancel", cancel["job_id"])
        assert cancelled.exit_code == 0, cancelled.output
        status_before = d.status(e2e["job_id"])
        d.start_worker()
        d.wait_for_job(e2e["job_id"], timeout=120)
        wait_until(
            lambda: d.embedded_broker_messages(visible_only=True) == 0,
            timeout=30,
            message=lambda: f"the worker left messages in the embedded broker\n{d.logs()}",
        )
        d.kill_all()
        yield EmbeddedRun(d, e2e_file, e2e, cancel, cancelled.stdout, status_before)
    finally:
        d.kill_all()


def test_end_to_end_on_the_embedded_broker(embedded_run: EmbeddedRun) -> None:
    before = embedded_run.status_before_worker
    assert before["status"] == "in_progress" and before["counts"]["queued"] == 5, before
    check_end_to_end(embedded_run.deployment, embedded_run.e2e)
    workers = embedded_run.deployment.cli("workers")  # no remote control on the embedded broker: a clear error
    assert workers.exit_code != 0 and "does not support Celery remote control" in workers.stderr, workers.output


@pytest.mark.redis
def test_end_to_end_on_redis(deploy: Callable[..., Deployment], tmp_path: Path) -> None:
    d = deploy(broker="redis")
    d.start_worker()
    submitted = d.submit(write_briefs(tmp_path / "e2e.yaml", E2E_RECORDS))
    d.wait_for_job(submitted["job_id"], timeout=120)
    check_end_to_end(d, submitted)


@pytest.mark.rabbitmq
def test_end_to_end_on_rabbitmq(deploy: Callable[..., Deployment], tmp_path: Path) -> None:
    d = deploy(broker="rabbitmq")
    d.start_worker()
    submitted = d.submit(write_briefs(tmp_path / "e2e.yaml", E2E_RECORDS))
    d.wait_for_job(submitted["job_id"], timeout=120)
    check_end_to_end(d, submitted)


def test_resubmitting_a_file_reports_written_briefs_and_writes_no_second_article(
    embedded_run: EmbeddedRun, tmp_path: Path
) -> None:
    source = embedded_run.deployment
    home = tmp_path / "deployment" / "home"
    shutil.copytree(source.home, home)  # a private copy: the other tests read the original
    d = Deployment(
        tmp_path / "deployment",
        source.model_dir,
        source.styles_dir,
        source.plugin_dir,
        f"sqlite:///{home / 'copydesk.db'}",
    )
    articles_before, candidates_before = d.article_counts(), d.candidate_count()
    messages_before = d.embedded_broker_messages()

    result = d.cli("submit", str(embedded_run.e2e_file), "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["job_id"] != embedded_run.e2e["job_id"]
    assert again["already_done"] == E2E_WRITTEN, again
    assert again["already_queued"] == [], again
    assert again["enqueued"] == 1, again  # only the failed brief is queued again (its attempts reset)
    for brief_id in E2E_WRITTEN:
        assert f"already written: brief {brief_id} has an article" in result.stderr, result.stderr
    assert d.embedded_broker_messages() == messages_before + 1, "only the requeued brief may be published"
    assert d.article_counts() == articles_before
    assert d.candidate_count() == candidates_before
    status = d.status(again["job_id"])
    assert status["status"] == "in_progress", status
    assert status["counts"] == {
        "total": 5,
        "queued": 1,
        "running": 0,
        "done": 3,
        "needs_attention": 1,
        "failed": 0,
        "cancelled": 0,
        "expired": 0,
    }, status
    rows = d.brief_rows()
    assert rows["e2e-nostyle"]["status"] == "queued" and rows["e2e-nostyle"]["attempts"] == 0, rows


def test_cancelled_briefs_are_never_written(embedded_run: EmbeddedRun) -> None:
    d = embedded_run.deployment
    job_id = embedded_run.cancel["job_id"]
    assert embedded_run.cancel["enqueued"] == 3
    assert f"job {job_id}: 3 brief(s) cancelled; status cancelled" in embedded_run.cancel_output
    status = d.status(job_id)
    assert status["status"] == "cancelled", status
    assert status["counts"]["cancelled"] == 3 and status["counts"]["total"] == 3, status
    ids = ["cx-0", "cx-1", "cx-2"]
    rows = d.brief_rows()
    for brief_id in ids:
        assert rows[brief_id]["status"] == "cancelled", rows[brief_id]
        assert rows[brief_id]["attempts"] == 0, rows[brief_id]
    counts = d.article_counts()
    assert not any(counts[b] for b in ids), counts
    assert not any(d.generations()[b] for b in ids), d.runs()
    results = d.results(job_id)
    assert [(r["custom_id"], r["brief_status"]) for r in results] == [(b, "cancelled") for b in ids]
    assert all(r["error"] == "cancelled before it started" for r in results), results


# --------------------------------------------------------------------------------------------- crashes


def lease_pid(owner: str) -> int:
    return int(owner.rsplit(":", 1)[1])


@pytest.mark.parametrize("broker", ["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def test_sigkill_of_the_whole_worker_and_of_a_pool_child_loses_nothing(
    broker: str, deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Kill the whole first worker mid-generation, restart, then kill the new worker's pool child
    mid-generation: without another restart every brief ends with exactly one article."""
    d = deploy(broker=broker, flush_size=2)
    records = make_briefs("kill", 4)
    ids = [r["id"] for r in records]
    slow = {"COPYDESK_TEST_RUN_DELAY": "1"}  # a batch stays running >= 1 s after generating: it cannot finish
    first = d.start_worker("first", **slow)  # between the poll that sees it running and the kill
    job_id = d.submit(write_briefs(tmp_path / "kill.yaml", records))["job_id"]

    # 1. SIGKILL the whole worker (main process and pool) while a batch is being generated.
    interrupted = wait_until(
        d.running, timeout=90, message=lambda: f"no brief started running\n{d.logs()}", interval=0.05
    )
    first.kill()
    rows = d.brief_rows()
    assert all(rows[b]["status"] == "running" for b in interrupted), rows  # leases of dead processes remain

    # 2. A new worker; SIGKILL its pool child while it generates, and do not restart anything.
    second = d.start_worker("second", **slow)

    def child_generating() -> dict[str, str]:
        pool = set(second.pool_pids())
        return {b: owner for b, owner in d.running().items() if lease_pid(owner) in pool}

    generating = wait_until(
        child_generating, timeout=90, message=lambda: f"the second worker generated nothing\n{d.logs()}", interval=0.05
    )
    victim = lease_pid(next(iter(generating.values())))
    kill_pid(victim)
    assert second.alive(), "killing a pool child must not stop the worker"

    job = d.wait_for_job(job_id, timeout=150)
    assert job.counts == JobCounts(total=4, done=4), job
    assert_one_article_each(d, ids)
    rows = d.brief_rows()
    for brief_id in [*interrupted, *generating]:
        assert rows[brief_id]["attempts"] >= 2, rows[brief_id]  # taken again after the crash
    assert second.alive() and victim not in second.pool_pids()
    assert d.job(job_id).status == "completed"


def test_a_poison_brief_fails_and_the_others_complete(deploy: Callable[..., Deployment], tmp_path: Path) -> None:
    d = deploy(max_brief_attempts=2, flush_size=4)
    poison = {
        "id": "poison",
        "title": "CRASH-ME how to bring down a worker",
        "category": "quick-cat",
        "target_words": 50,
    }
    records = [poison, *make_briefs("ok", 3)]
    d.start_worker(COPYDESK_TEST_CRASH_ON_TITLE="CRASH-ME")
    job_id = d.submit(write_briefs(tmp_path / "poison.yaml", records))["job_id"]

    job = d.wait_for_job(job_id, timeout=150)
    assert job.counts == JobCounts(total=4, done=3, failed=1), job
    rows = d.brief_rows()
    assert rows["poison"]["status"] == "failed", rows["poison"]
    assert rows["poison"]["last_error"].startswith("gave up after 2 attempts"), rows["poison"]
    assert_one_article_each(d, ["ok-0", "ok-1", "ok-2"])
    assert d.article_counts()["poison"] == 0
    runs = [run["briefs"] for run in d.runs() if "poison" in run["briefs"]]
    # its first attempt was batched; the crashed batch is retried in halves (ok-0 + ok-1, ok-2 + poison: not
    # counted), then alone (counted): max_brief_attempts counted tries
    assert [sorted(run) for run in runs] == [["ok-0", "ok-1", "ok-2", "poison"], ["ok-2", "poison"], ["poison"]], runs
    assert [d.generations()[f"ok-{i}"] for i in range(3)] == [2, 2, 3], d.runs()  # lost with the poison
    results = {r["custom_id"]: r for r in d.results(job_id)}
    assert "gave up after 2 attempts" in results["poison"]["error"], results["poison"]


@pytest.mark.redis
def test_a_task_outliving_the_redis_visibility_timeout_writes_one_article(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Redis delivers the unacknowledged message again after 2 s while the first copy still runs; the copy
    finds the brief leased to a live process and does nothing."""
    d = deploy(broker="redis", visibility_timeout=2)
    worker = d.start_worker(concurrency=2, COPYDESK_TEST_RUN_DELAY="6")
    job_id = d.submit(write_briefs(tmp_path / "slow.yaml", make_briefs("slow", 1)))["job_id"]

    job = d.wait_for_job(job_id, timeout=90)
    assert job.counts == JobCounts(total=1, done=1), job
    received = list(iter_task_ids_received(worker.log(0)))
    redelivered = {task_id for task_id in received if received.count(task_id) > 1}
    assert redelivered, f"no message was delivered twice:\n{worker.log()}"
    assert_one_article_each(d, ["slow-0"])
    assert d.generations()["slow-0"] == 1, d.runs()
    log = worker.log(0)
    # The copy skips either before claiming (the brief is leased to a live process) or at the claim.
    assert "'leased to celery@" in log or "skipped: running" in log, worker.log()


@pytest.mark.redis
@pytest.mark.postgres
def test_two_workers_share_one_job_without_duplicates_or_losses(
    deploy: Callable[..., Deployment], postgres_schema_url: str, tmp_path: Path
) -> None:
    d = deploy(broker="redis", store_url=postgres_schema_url, flush_size=3)
    workers = [d.start_worker(name, wait=False) for name in ("alpha", "beta")]
    for w in workers:
        w.wait_ready()
    listed = d.cli("workers", "--json")
    assert listed.exit_code == 0, listed.output
    assert {name.split("@")[0]: queues for name, queues in json.loads(listed.stdout).items()} == {
        "alpha": ["generate", "train"],
        "beta": ["generate", "train"],
    }
    records = make_briefs("pair", 12)
    ids = [r["id"] for r in records]
    job_id = d.submit(write_briefs(tmp_path / "pair.yaml", records))["job_id"]

    job = d.wait_for_job(job_id, timeout=150)
    assert job.counts == JobCounts(total=12, done=12), job
    assert_one_article_each(d, ids)
    generations = d.generations()
    assert {b: generations[b] for b in ids} == dict.fromkeys(ids, 1), f"generated twice or never: {d.runs()}"
    by_worker = {run["worker"] for run in d.runs()}
    assert by_worker == {"alpha", "beta"}, f"both workers should have generated: {d.runs()}"
    assert all(w.alive() for w in workers)


# ---------------------------------------------------------------------------------- job store (unit)


LEASE = 60.0


def brief(n: int | str, **fields: Any) -> Brief:
    return Brief(id=f"b-{n}", title=f"How to fix thing number {n}", category="home", **fields)


def items(*briefs: Brief) -> list[tuple[Brief, str | None]]:
    return [(b, "test.yaml") for b in briefs]


def article_for(brief_id: str, status: ArticleStatus = ArticleStatus.NEEDS_REVIEW) -> ArticleResult:
    return ArticleResult(
        brief_id=brief_id,
        status=status,
        title=f"Title of {brief_id}",
        body_markdown=f"# Title of {brief_id}\n\nBody.\n",
        style="plain-howto",
        adapter_version=None,
        scores={"words": {"value": 3, "passed": True}},
        failing_gates=[] if status == ArticleStatus.NEEDS_REVIEW else ["length"],
        provenance={"test": True},
        candidates=[],
    )


def write(store: Store, brief_id: str, status: ArticleStatus = ArticleStatus.NEEDS_REVIEW) -> None:
    assert store.claim_brief(brief_id, owner="w", lease_seconds=LEASE, max_attempts=3) is not None
    store.save_article(article_for(brief_id, status), owner="w")


def test_create_job_records_briefs_and_counts(store: Store) -> None:
    submission = store.create_job(items(brief(1), brief(2), brief(3)), description="three")
    assert submission.new == ["b-1", "b-2", "b-3"] and submission.to_publish == ["b-1", "b-2", "b-3"]
    job = store.get_job(submission.job_id)
    assert job.status == JobStatus.IN_PROGRESS and job.kind == "submit" and job.description == "three"
    assert job.counts == JobCounts(total=3, queued=3)
    assert job.finished_at is None
    assert store.get_brief("b-1").job_id == submission.job_id

    empty = store.create_job(items())
    assert store.get_job(empty.job_id).status == JobStatus.FAILED  # no valid brief
    store.set_invalid_records(empty.job_id, 4)
    assert store.get_job(empty.job_id).invalid_records == 4
    with pytest.raises(NotFoundError):
        store.get_job("job-missing")


def test_job_counts_are_disjoint_and_the_job_completes(store: Store, clock: FakeClock) -> None:
    job_id = store.create_job(items(*(brief(i) for i in range(5)))).job_id
    write(store, "b-0")
    write(store, "b-1", ArticleStatus.NEEDS_ATTENTION)
    store.claim_brief("b-2", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.claim_brief("b-3", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("b-3", "boom", final=True)
    job = store.get_job(job_id)
    assert job.counts == JobCounts(total=5, queued=1, running=1, done=1, needs_attention=1, failed=1)
    assert job.counts.settled == 3 and job.status == JobStatus.IN_PROGRESS

    store.save_article(article_for("b-2"), owner="w")
    store.claim_brief("b-4", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("b-4", "boom", final=True)
    clock.advance(5)
    job = store.get_job(job_id)
    assert job.counts == JobCounts(total=5, done=2, needs_attention=1, failed=2)
    assert job.status == JobStatus.COMPLETED and job.finished_at == clock.now
    clock.advance(5)
    assert store.get_job(job_id).finished_at == clock.now - timedelta(seconds=5)  # recorded once
    assert [j.id for j in store.list_jobs()] == [job_id]


def job_item_notes(url: str, job_id: str) -> dict[str, str]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT brief_id, note FROM job_items WHERE job_id = :j"), {"j": job_id})
            return {row.brief_id: row.note for row in rows}
    finally:
        engine.dispose()


def test_resubmission_notes(store: Store, store_url: str) -> None:
    first = store.create_job(items(*(brief(i) for i in range(5))))
    write(store, "b-0")  # done
    store.claim_brief("b-1", owner="w", lease_seconds=LEASE, max_attempts=3)  # running
    store.claim_brief("b-3", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("b-3", "boom", final=True)  # failed
    store.create_job(items(brief(4)))
    store.cancel_job(first.job_id)  # b-2 cancelled (b-4 belongs to a live second job too: left queued)

    again = store.create_job(items(*(brief(i) for i in range(5)), brief(9)))
    assert again.new == ["b-9"]
    assert again.already_done == ["b-0"]
    assert again.already_queued == ["b-1", "b-4"]
    assert again.requeued == ["b-2", "b-3"]
    assert again.to_publish == ["b-9", "b-2", "b-3"]
    for brief_id in ("b-2", "b-3", "b-4"):
        record = store.get_brief(brief_id)
        assert record.status == BriefStatus.QUEUED and record.attempts == 0 and record.last_error is None
    assert store.get_brief("b-1").status == BriefStatus.RUNNING  # left alone
    assert store.get_job(again.job_id).counts == JobCounts(total=6, queued=4, running=1, done=1)
    assert job_item_notes(store_url, again.job_id) == {
        "b-0": "already_done",
        "b-1": "already_queued",
        "b-2": "requeued",
        "b-3": "requeued",
        "b-4": "already_queued",
        "b-9": "new",
    }


def test_cancel_job(store: Store) -> None:
    job_id = store.create_job(items(brief(1), brief(2), brief(3))).job_id
    write(store, "b-1")
    store.claim_brief("b-2", owner="w", lease_seconds=LEASE, max_attempts=3)
    assert store.cancel_job(job_id) == 1  # only b-3 had not started
    assert store.get_brief("b-3").status == BriefStatus.CANCELLED
    assert store.get_brief("b-3").last_error == "cancelled before it started"
    job = store.get_job(job_id)
    assert job.status == JobStatus.CANCELLING and job.counts == JobCounts(total=3, running=1, done=1, cancelled=1)
    assert store.claim_brief("b-3", owner="w", lease_seconds=LEASE, max_attempts=3) is None
    store.save_article(article_for("b-2"), owner="w")  # a running brief finishes
    job = store.get_job(job_id)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    assert store.cancel_job(job_id) == 0
    with pytest.raises(NotFoundError):
        store.cancel_job("job-missing")


def test_job_results_keep_submission_order(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "CHUNK", 2)  # several pages, and recording in several chunks
    order = [7, 3, 9, 1, 5]
    job_id = store.create_job(items(*(brief(i) for i in order))).job_id
    write(store, "b-9")
    store.claim_brief("b-1", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("b-1", "model exploded", final=True)
    results = list(store.job_results(job_id))
    assert [r.brief_id for r in results] == [f"b-{i}" for i in order]
    by_id = {r.brief_id: r for r in results}
    assert by_id["b-9"].status == "done" and by_id["b-9"].article is not None
    assert by_id["b-9"].article.brief_id == "b-9" and by_id["b-9"].error is None
    assert by_id["b-1"].status == "failed" and by_id["b-1"].article is None
    assert by_id["b-1"].error == "model exploded"
    assert by_id["b-7"].status == "queued" and by_id["b-7"].article is None
    with pytest.raises(NotFoundError):
        list(store.job_results("job-missing"))


def test_fresh_queued_briefs_leave_out_attempted_ones(store: Store, clock: FakeClock) -> None:
    for i in range(5):
        store.create_job(items(brief(i)))
        clock.advance(1)
    store.claim_brief("b-1", owner="w", lease_seconds=LEASE, max_attempts=3)  # running
    store.claim_brief("b-2", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("b-2", "crash", final=False)  # queued again, but attempted: runs alone
    assert store.get_brief("b-2").status == BriefStatus.QUEUED
    assert store.fresh_queued_briefs(limit=10) == ["b-0", "b-3", "b-4"]
    assert store.fresh_queued_briefs(limit=10, exclude="b-0") == ["b-3", "b-4"]
    assert store.fresh_queued_briefs(limit=2) == ["b-0", "b-3"]
    assert store.fresh_queued_briefs(limit=2, exclude="b-0") == ["b-3", "b-4"]
    assert store.fresh_queued_briefs(limit=0) == []


@pytest.mark.parametrize(
    ("stored", "cancel_requested", "counts", "expected"),
    [
        ("validating", False, JobCounts(total=2, queued=2), "validating"),
        ("failed", False, JobCounts(), "failed"),
        ("in_progress", False, JobCounts(total=2, queued=1, done=1), "in_progress"),
        ("in_progress", False, JobCounts(total=2, running=2), "in_progress"),
        ("in_progress", False, JobCounts(total=3, done=1, needs_attention=1, failed=1), "completed"),
        ("in_progress", True, JobCounts(total=2, running=1, cancelled=1), "cancelling"),
        ("in_progress", True, JobCounts(total=2, done=1, cancelled=1), "cancelled"),
        ("completed", False, JobCounts(total=1, done=1), "completed"),
        ("cancelled", True, JobCounts(total=1, cancelled=1), "cancelled"),
    ],
)
def test_derive_status(stored: str, cancel_requested: bool, counts: JobCounts, expected: str) -> None:
    assert derive_status(stored, cancel_requested, counts) == expected


def test_idempotency_key_returns_the_first_job(store: Store, store_url: str) -> None:
    first = store.create_job(items(brief(1)), idempotency_key="nightly-2026-03-01")
    again = store.create_job(items(brief(1), brief(2)), idempotency_key="nightly-2026-03-01")
    assert again.job_id == first.job_id and again.to_publish == []
    assert store.find_job_by_key("nightly-2026-03-01") == first.job_id
    assert store.find_job_by_key("other") is None
    assert store.get_job(first.job_id).idempotency_key == "nightly-2026-03-01"
    assert store.get_job(first.job_id).counts.total == 1
    with pytest.raises(NotFoundError):
        store.get_brief("b-2")  # nothing was added
    assert len(store.list_jobs()) == 1


def schema_of(url: str) -> dict[str, Any]:
    """Tables with their columns, primary keys, foreign keys, indexes and unique constraints."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        inspector = sa.inspect(engine)
        described: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            described[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(table)
                ],
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted(
                    (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                    for fk in inspector.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
                ),
                "unique": sorted(
                    (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
                ),
            }
        return described
    finally:
        engine.dispose()


@pytest.fixture
def second_store_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty store on the same backend as ``store_url``."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second' / 'copydesk.db'}"
        return
    with fresh_postgres_schema("t_second") as url:
        yield url


def test_a_version_1_store_migrated_to_version_2_matches_a_fresh_one(
    store_url: str, second_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store as copydesk with only migration 1 left it, holding a brief.
    v1 = new_metadata()
    migrations_table = define_schema_migrations(v1)
    define_v1(v1)
    Store(store_url).close()  # creates the SQLite file's directory
    engine = sa.create_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            v1.create_all(conn)
            conn.execute(
                sa.insert(migrations_table).values(version=1, name=store_migrations.MIGRATIONS[0].name, applied_at=T0)
            )
            old_brief = brief(1)
            conn.execute(
                sa.insert(v1.tables["briefs"]).values(
                    id=old_brief.brief_id,
                    payload=old_brief.model_dump(mode="json"),
                    content_hash="0" * 64,
                    status="queued",
                    attempts=0,
                    created_at=T0,
                    updated_at=T0,
                )
            )
    finally:
        engine.dispose()

    with monkeypatch.context() as patch:  # copydesk as of version 2 (later migrations may exist)
        patch.setattr(store_migrations, "MIGRATIONS", store_migrations.MIGRATIONS[:2])
        with Store(store_url) as old:
            assert old.schema_version() == 1
            assert old.migrate() == [2]
            assert old.schema_version() == 2
        with Store(second_store_url) as fresh:
            assert fresh.migrate() == [1, 2]
        migrated, created = schema_of(store_url), schema_of(second_store_url)
        assert {"schema_migrations", "briefs", "articles", "candidates", "jobs", "job_items"} == set(migrated)
        assert migrated == created

    # Both end the same after any later migrations too, and the old brief is usable in a job.
    later = list(range(3, latest_version() + 1))
    with Store(store_url) as old, Store(second_store_url) as fresh:
        assert old.migrate() == later and fresh.migrate() == later
        assert old.get_brief("b-1").status == BriefStatus.QUEUED
        submission = old.create_job(items(brief(1), brief(2)))
        assert submission.already_queued == ["b-1"] and submission.new == ["b-2"]
        assert old.get_job(submission.job_id).counts == JobCounts(total=2, queued=2)
    assert schema_of(store_url) == schema_of(second_store_url)


# ----------------------------------------------------------------------------------- reconciler (unit)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_owner_is_dead_here() -> None:
    host = socket.gethostname()
    gone = dead_pid()
    assert owner_is_dead_here(f"celery@{host}:{gone}", host)
    assert not owner_is_dead_here(f"celery@{host}:{os.getpid()}", host)
    assert not owner_is_dead_here(f"celery@{host}:1", host)  # alive (init), maybe not ours: not dead
    assert not owner_is_dead_here(f"celery@other-host:{gone}", host)  # cannot tell for another host
    assert not owner_is_dead_here(f"celery@{host}:abc", host)
    assert not owner_is_dead_here("inline", host)
    assert not owner_is_dead_here("", host)


def test_expire_dead_local_leases(store: Store, clock: FakeClock) -> None:
    host = socket.gethostname()
    gone = dead_pid()
    store.create_job(items(brief(1), brief(2), brief(3), brief(4)))
    owners = {
        "b-1": f"celery@{host}:{gone}",
        "b-2": f"celery@{host}:{os.getpid()}",
        "b-3": f"celery@elsewhere:{gone}",
    }
    for brief_id, owner in owners.items():
        assert store.claim_brief(brief_id, owner=owner, lease_seconds=LEASE, max_attempts=3) is not None
    assert store.running_lease_owners() == set(owners.values())

    assert expire_dead_local_leases(store, host) == 1
    assert expire_dead_local_leases(store, host) == 1  # still running under the dead owner until taken
    taken = store.claim_brief("b-1", owner="new", lease_seconds=LEASE, max_attempts=3)
    assert taken is not None and taken.attempts == 2
    assert expire_dead_local_leases(store, host) == 0
    for brief_id in ("b-2", "b-3"):
        assert store.claim_brief(brief_id, owner="new", lease_seconds=LEASE, max_attempts=3) is None
    assert store.get_brief("b-4").status == BriefStatus.QUEUED
    assert store.expire_leases_of("someone-else") == []


def test_reconcile_once_republishes_stale_and_expired_briefs_once(tmp_path: Path) -> None:
    host = socket.gethostname()
    settings = Settings(home=tmp_path / "home", broker_url=None, stale_after=0.5)
    published: list[list[str]] = []

    def publish_ids(ids: list[str]) -> int:
        published.append(ids)
        return len(ids)

    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.migrate()
        store.create_job(items(brief(1), brief(2), brief(3)))
        store.claim_brief("b-2", owner=f"celery@{host}:{dead_pid()}", lease_seconds=LEASE, max_attempts=3)
        store.claim_brief("b-3", owner=f"celery@{host}:{os.getpid()}", lease_seconds=LEASE, max_attempts=3)

        report = reconcile_once(store, settings, publish_ids, "redis://unused")
        assert (report.expired_leases, report.requeued_halves, report.republished, report.purged_messages) == (
            1,
            1,
            0,
            0,
        )
        assert published == [["b-2"]]  # its crashed batch, requeued; b-1 is not stale yet; b-3 is leased to a live one
        record = store.get_brief("b-2")  # its lease is over: queued again, the attempt counted
        assert record.status == BriefStatus.QUEUED and record.lease_owner is None and record.attempts == 1

        report = reconcile_once(store, settings, publish_ids, "redis://unused")
        assert report.republished == 0 and len(published) == 1  # not again on every pass

        time.sleep(0.6)
        report = reconcile_once(store, settings, publish_ids, "redis://unused")
        assert published[-1] == ["b-1", "b-2"] and report.republished == 2 and report.expired_leases == 0
        reconcile_once(store, settings, publish_ids, "redis://unused")
        assert len(published) == 2  # just published: their stale clocks restarted
        assert store.get_brief("b-3").status == BriefStatus.RUNNING


def test_touch_briefs_requeues_expired_leases_only(store: Store, clock: FakeClock) -> None:
    store.create_job(items(brief(1), brief(2), brief(3), brief(4)))
    store.claim_brief("b-1", owner="old", lease_seconds=10, max_attempts=3)
    store.claim_brief("b-2", owner="live", lease_seconds=100, max_attempts=3)
    write(store, "b-3")
    clock.advance(20)  # b-1's lease is over, b-2's is not
    store.touch_briefs(["b-1", "b-2", "b-3", "b-4"])
    one, two, three, four = (store.get_brief(f"b-{i}") for i in range(1, 5))
    assert one.status == BriefStatus.QUEUED and one.lease_owner is None and one.attempts == 1
    assert one.updated_at == clock.now
    assert two.status == BriefStatus.RUNNING and two.lease_owner == "live"
    assert three.status == BriefStatus.DONE
    assert four.status == BriefStatus.QUEUED and four.updated_at == clock.now
    assert store.stale_briefs(queued_before=clock.now, now=clock.now) == []
    assert store.fresh_queued_briefs(limit=5) == ["b-4"]  # attempted before: b-1 runs alone
    taken = store.claim_brief("b-1", owner="new", lease_seconds=10, max_attempts=3)
    assert taken is not None and taken.attempts == 2


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sqla_broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """kombu's SQLAlchemy transport: the embedded SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqla+sqlite:///{(tmp_path / 'home' / 'broker.db').resolve()}"
    return "sqla+" + request.getfixturevalue("postgres_schema_url")


def test_purge_consumed_messages_on_an_sqlalchemy_broker(sqla_broker_url: str, tmp_path: Path) -> None:
    embedded = sqla_broker_url.startswith("sqla+sqlite")
    app = make_celery(Settings(home=tmp_path / "home", broker_url=None if embedded else sqla_broker_url))
    url = app.conf.broker_url
    assert url == sqla_broker_url
    assert purge_consumed_messages(url) == 0  # no broker tables yet
    assert publish(app, ["b-1", "b-2", "b-3"]) == 3
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("generate")
        for _ in range(2):
            queue.get(timeout=5).ack()
        queue.close()
    database = sa.create_engine(url.split("+", 1)[1], poolclass=NullPool)
    try:
        with database.connect() as conn:
            rows = conn.execute(sa.text("SELECT visible, count(*) FROM kombu_message GROUP BY visible")).all()
        assert {bool(visible): count for visible, count in rows} == {False: 2, True: 1}
        assert purge_consumed_messages(url) == 2
        assert purge_consumed_messages(url) == 0
        with database.connect() as conn:
            assert [bool(v) for v in conn.execute(sa.text("SELECT visible FROM kombu_message")).scalars()] == [True]
    finally:
        database.dispose()
    assert purge_consumed_messages("redis://127.0.0.1:6379/5") == 0
    assert purge_consumed_messages("amqp://guest:guest@127.0.0.1:5672//") == 0


def test_submit_with_the_broker_down_keeps_the_briefs_queued(tmp_path: Path, tiny_model_dir: Path) -> None:
    files = DeploymentFiles(tmp_path / "styles", tmp_path / "plugin")
    d = new_deployment(tmp_path / "d", tiny_model_dir, files)
    d.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    result = d.cli("submit", str(write_briefs(tmp_path / "b.yaml", make_briefs("down", 2))), "--json")
    assert result.exit_code == 8, result.output
    summary = json.loads(result.stdout)
    assert summary["published"] is False and summary["enqueued"] == 2
    assert "a worker will publish them" in result.stderr
    assert "cannot reach the broker at redis://127.0.0.1:1/0" in result.stderr
    assert d.job(summary["job_id"]).counts == JobCounts(total=2, queued=2)


def test_celery_config_visibility_timeout_and_logs(tmp_path: Path) -> None:
    default = celery_config(
        Settings(broker_url="redis://127.0.0.1:6379/5", task_time_limit=30, task_soft_time_limit=20, lease_seconds=40)
    )
    assert default["broker_transport_options"]["visibility_timeout"] == 60
    short = celery_config(Settings(broker_url="redis://127.0.0.1:6379/5", visibility_timeout=2.5))
    options = short["broker_transport_options"]
    assert options["visibility_timeout"] == 3
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] <= 3
    embedded = celery_config(Settings(home=tmp_path, broker_url=None))
    assert embedded["broker_transport_options"] == {}
    assert embedded["worker_redirect_stdouts"] is False  # the CLI's log handler writes to stderr


def test_the_worker_main_process_preloads_the_model_libraries() -> None:
    """What a pool process imports on its first task is imported once, before the fork (see preload_libraries)."""
    code = (
        "import sys, json\n"
        "from worker.tasks.write import PRELOADED_MODULES, preload_libraries\n"
        "before = [m for m in PRELOADED_MODULES if m in sys.modules]\n"
        "done = preload_libraries()\n"
        "loaded = [m for m in PRELOADED_MODULES if m in sys.modules]\n"
        "print(json.dumps({'before': before, 'done': done, 'loaded': loaded}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "transformers.models.llama.modeling_llama" not in report["before"]  # the worker module stays light
    assert report["done"] == report["loaded"]
    assert {"torch", "transformers.models.llama.modeling_llama", "peft", "sentence_transformers"} <= set(
        report["loaded"]
    )
