"""Runs of job files in the store (:mod:`worker.jobs.job_runs`, :mod:`worker.store.runs`): idempotent creation,
settling, auto-approval, the single-scheduler locks and migration 4 — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.pool import NullPool
from store_helpers import FakeClock
from typer.testing import CliRunner

from worker.cli.main import app
from worker.errors import JobFileError, NotFoundError
from worker.jobs.beat import BeatLockedError, RedisLock, StoreLock
from worker.jobs.job_files import load_job
from worker.jobs.job_runs import TRIGGER_MANUAL, TRIGGER_SCHEDULE, settle_run, start_run
from worker.results import ArticleResult, ArticleStatus
from worker.store import Store, latest_version, migrations
from worker.store.runs import run_id_for

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 2, 7, 0, 5, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


class Published(list[str]):
    def __call__(self, ids: list[str]) -> int:
        self.extend(ids)
        return len(ids)


def write_job(directory: Path, name: str = "daily", **fields: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "schedule": {"cron": "0 7 * * *", "timezone": "Europe/London"},
        "template": {"id": "{{ row.k }}", "title": "{{ row.t }}", "target_words": "{{ row.w }}"},
        "rows": [
            {"k": "a", "t": "How to plant tomatoes", "w": 100},
            {"k": "b", "t": "Why caches make programs fast", "w": "lots"},
            {"k": "c", "t": "Ten things to pack for a hike", "w": 120},
        ],
        **fields,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def article_for(brief_id: str, *, failing: list[str] | None = None) -> ArticleResult:
    status = ArticleStatus.NEEDS_ATTENTION if failing else ArticleStatus.NEEDS_REVIEW
    return ArticleResult(
        brief_id=brief_id,
        status=status,
        title=f"Article {brief_id}",
        body_markdown="# Title\n\nBody.",
        style="plain-howto",
        adapter_version=None,
        scores={},
        failing_gates=failing or [],
        provenance={"test": True},
    )


# -- creating runs ------------------------------------------------------------------------------------------


def test_start_run_records_briefs_problems_and_publishes_once(store: Store, tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path / "jobs"))
    published = Published()
    outcome = start_run(job, SLOT, store=store, publish=published, trigger=TRIGGER_SCHEDULE)
    ids = ["daily-20260302T070000Z-a", "daily-20260302T070000Z-c"]
    assert outcome.created and outcome.run_id == run_id_for("daily", "20260302T070000Z") == "run-daily-20260302T070000Z"
    assert published == ids
    assert [(p.record, p.field) for p in outcome.problems] == [("rows record 2", "target_words")]
    run = store.get_run(outcome.run_id)
    assert (run.job_name, run.scheduled_for, run.trigger, run.status) == ("daily", SLOT, "schedule", "in_progress")
    assert run.counts.total == 2 and run.counts.queued == 2 and run.invalid_records == 1
    assert run.info["problems"] == [
        {"file": str(job.path), "record": "rows record 2", "field": "target_words", "message": "must be a whole number"}
    ]
    assert run.info["job_sha256"] == job.sha256 and run.info["timezone"] == "Europe/London"
    assert store.get_job(outcome.run_id).kind == "scheduled"  # `copydesk status RUN` and `results RUN` work too
    assert [r.brief_id for r in store.job_results(outcome.run_id)] == ids

    # a duplicated tick, a redelivered task, a restarted beat: nothing is added, nothing published
    again = start_run(job, SLOT.astimezone(job.schedule.zone), store=store, publish=published, trigger=TRIGGER_SCHEDULE)
    assert not again.created and again.run_id == outcome.run_id and published == ids
    assert len(store.list_runs("daily")) == 1 and store.count_by_status()["queued"] == 2


def test_concurrent_starts_of_one_slot_create_one_run(store_url: str, tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path / "jobs"))
    with Store(store_url) as setup:
        setup.migrate()
    stores = [Store(store_url) for _ in range(4)]
    published = Published()
    barrier = threading.Barrier(4)
    outcomes: list[Any] = [None] * 4

    def start(i: int) -> None:
        barrier.wait(timeout=30)
        outcomes[i] = start_run(job, SLOT, store=stores[i], publish=published, trigger=TRIGGER_SCHEDULE)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for s in stores:
        s.close()
    assert sum(o.created for o in outcomes) == 1, outcomes
    assert {o.run_id for o in outcomes} == {"run-daily-20260302T070000Z"}
    assert sorted(published) == ["daily-20260302T070000Z-a", "daily-20260302T070000Z-c"]
    with Store(store_url) as check:
        assert check.get_run("run-daily-20260302T070000Z").counts.total == 2


def test_a_run_with_no_valid_brief_is_failed_and_settled(store: Store, tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path / "jobs", rows=[{"k": "x", "t": "Bad", "w": "many"}]))
    outcome = start_run(job, SLOT, store=store, publish=Published(), trigger=TRIGGER_MANUAL)
    run = store.get_run(outcome.run_id)
    assert run.status == "failed" and run.settled_at is not None and run.counts.total == 0
    assert run.trigger == "manual" and run.invalid_records == 1


def test_settling_records_duration_and_auto_approves_only_passing_drafts(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    job = load_job(write_job(tmp_path / "jobs", auto_approve=True, rows=[
        {"k": k, "t": f"Brief {k}", "w": 100} for k in ("a", "b", "c")
    ]))  # fmt: skip
    outcome = start_run(job, SLOT, store=store, publish=Published(), trigger=TRIGGER_SCHEDULE)
    a, b, c = (f"daily-20260302T070000Z-{k}" for k in "abc")
    clock.advance(30)
    store.save_article(article_for(a))
    store.save_article(article_for(b, failing=["on_topic"]))
    assert settle_run(store, outcome.run_id) is None  # c is still queued: not settled, but a is approved
    assert store.get_article(a).status == "approved"
    assert store.get_article(b).status == "needs_attention"
    assert store.get_run(outcome.run_id).info["approved"] == ["a-" + a]
    events = store.list_events("a-" + a)
    assert events[-1].kind == "approved" and events[-1].actor == "scheduler:daily"
    clock.advance(60)
    store.fail_brief(c, "model crashed", final=True)
    clock.advance(600)  # looking later does not make the run longer
    settled = settle_run(store, outcome.run_id)
    assert settled is not None and settled.status == "completed"
    assert settled.duration_seconds == pytest.approx(90.0)
    assert (settled.counts.done, settled.counts.needs_attention, settled.counts.failed) == (1, 1, 1)
    assert settle_run(store, outcome.run_id) is None  # once


def test_auto_approve_is_off_unless_set_and_never_overrides_an_editor(store: Store, tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path / "jobs", rows=[{"k": "a", "t": "Brief a", "w": 100}]))
    outcome = start_run(job, SLOT, store=store, publish=Published(), trigger=TRIGGER_SCHEDULE)
    store.save_article(article_for("daily-20260302T070000Z-a"))
    settled = settle_run(store, outcome.run_id)
    assert settled is not None and settled.info["approved"] == []
    assert store.get_article("daily-20260302T070000Z-a").status == "needs_review"

    job = load_job(write_job(tmp_path / "jobs", name="auto", auto_approve=True, rows=[{"k": "a", "t": "A", "w": 100}]))
    outcome = start_run(job, SLOT, store=store, publish=Published(), trigger=TRIGGER_SCHEDULE)
    store.save_article(article_for("auto-20260302T070000Z-a"))
    store.reject("auto-20260302T070000Z-a", actor="editor", reason="off brief")
    settled = settle_run(store, outcome.run_id)
    assert settled is not None and settled.info["approved"] == []
    assert store.get_article("auto-20260302T070000Z-a").status == "rejected"


def test_runs_are_listed_latest_first(store: Store, tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path / "jobs"))
    for day in (2, 3, 4):
        start_run(job, SLOT.replace(day=day), store=store, publish=Published(), trigger=TRIGGER_SCHEDULE)
    assert [r.scheduled_for.day for r in store.list_runs("daily")] == [4, 3, 2]
    assert store.list_runs("other") == []
    assert store.latest_runs()["daily"].scheduled_for.day == 4
    assert store.find_run("daily", SLOT.replace(day=3)) == "run-daily-20260303T070000Z"
    assert store.find_run("daily", SLOT.replace(day=5)) is None


# -- the single-scheduler locks -----------------------------------------------------------------------------


def test_store_lock_refuses_a_second_scheduler(store: Store, clock: FakeClock) -> None:
    first = StoreLock(store, "beat@elsewhere:1", ttl=30)
    second = StoreLock(store, "beat@elsewhere:2", ttl=30)
    first.acquire()
    with pytest.raises(BeatLockedError, match=r"another copydesk beat \(beat@elsewhere:1\)"):
        second.acquire()
    clock.advance(20)
    assert first.renew()
    clock.advance(20)  # 40 s after the start but only 20 s after the heartbeat: still held
    with pytest.raises(BeatLockedError):
        second.acquire()
    clock.advance(31)  # the first beat stopped heartbeating: its lock expired
    second.acquire()
    assert not first.renew()  # the first beat finds out it lost the lock
    first.release()  # releasing someone else's lock does nothing
    assert store.scheduler_lock_holder("copydesk-beat").owner == "beat@elsewhere:2"  # type: ignore[union-attr]
    second.release()
    assert store.scheduler_lock_holder("copydesk-beat") is None


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def test_store_lock_of_a_dead_local_process_is_taken_over_at_once(store: Store) -> None:
    StoreLock(store, f"beat@{socket.gethostname()}:{dead_pid()}", ttl=300).acquire()
    StoreLock(store, f"beat@{socket.gethostname()}:{os.getpid()}", ttl=300).acquire()
    with pytest.raises(BeatLockedError):
        StoreLock(store, "beat@other-host:1", ttl=300).acquire()


@pytest.mark.redis
def test_redis_lock_refuses_a_second_scheduler_and_takes_over_from_a_dead_one() -> None:
    key = f"copydesk:test-lock:{os.getpid()}"
    first = RedisLock("redis://127.0.0.1:6379/14", "beat@elsewhere:1", key=key, ttl=30)
    second = RedisLock("redis://127.0.0.1:6379/14", "beat@elsewhere:2", key=key, ttl=30)
    try:
        first.acquire()
        with pytest.raises(BeatLockedError, match="holds the scheduler lock"):
            second.acquire()
        assert first.renew() and not second.renew()
        first.release()
        second.acquire()
        assert not first.renew()
        second.release()
        local_dead = RedisLock("redis://127.0.0.1:6379/14", f"beat@{socket.gethostname()}:{dead_pid()}", key=key)
        local_dead.acquire()
        taker = RedisLock("redis://127.0.0.1:6379/14", f"beat@{socket.gethostname()}:{os.getpid()}", key=key)
        taker.acquire()
        assert taker.renew() and not local_dead.renew()
        taker.release()
    finally:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/14").delete(key)


# -- migration 4 ----------------------------------------------------------------------------------------------


def columns(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        inspector = sa.inspect(engine)
        return {
            table: (
                sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
                sorted(i["name"] for i in inspector.get_indexes(table)),
            )
            for table in ("jobs", "scheduler_locks")
        }
    finally:
        engine.dispose()


def make_version_3_store(url: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        migrations.schema_migrations.create(conn)
        for migration in migrations.MIGRATIONS[:3]:
            migration.apply(conn)
            conn.execute(
                sa.insert(migrations.schema_migrations).values(
                    version=migration.version, name=migration.name, applied_at=T0
                )
            )
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, kind, status, cancel_requested, invalid_records, created_at, updated_at) "
                "VALUES ('job-old', 'submit', 'completed', false, 0, :t, :t)"
            ),
            {"t": T0.replace(tzinfo=None)},
        )
    engine.dispose()


def test_migration_4_gives_a_version_3_store_the_fresh_schema(tmp_path: Path) -> None:
    fresh_url, old_url = f"sqlite:///{tmp_path / 'fresh.db'}", f"sqlite:///{tmp_path / 'old.db'}"
    with Store(fresh_url) as s:
        s.migrate()
    make_version_3_store(old_url)
    with Store(old_url) as s:
        assert s.migrate() == list(range(4, latest_version() + 1))
        assert s.get_job("job-old").status == "completed"
        assert s.list_runs() == []
    assert columns(old_url) == columns(fresh_url)


@pytest.mark.postgres
def test_migration_4_on_postgresql(postgres_schema_url: str) -> None:
    make_version_3_store(postgres_schema_url)
    with Store(postgres_schema_url) as s:
        assert s.migrate() == list(range(4, latest_version() + 1))
        assert s.get_job("job-old").status == "completed"
        assert s.acquire_scheduler_lock("x", "me", ttl=5) is None
    migrated = columns(postgres_schema_url)
    names = {name for name, _, _ in migrated["jobs"][0]}
    assert {"job_name", "scheduled_for", "trigger", "started_at", "settled_at", "run_info"} <= names
    assert "ix_jobs_job_name_scheduled_for" in migrated["jobs"][1]


# -- the CLI without a worker ---------------------------------------------------------------------------------


def test_jobs_run_history_and_show_commands(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    write_job(jobs)
    env = {
        "COPYDESK_JOBS_DIR": str(jobs),
        "COPYDESK_HOME": str(tmp_path / "home"),
        "COPYDESK_BROKER_URL": None,
        "COPYDESK_STORE_URL": None,
        "COLUMNS": "250",
    }
    runner = CliRunner()
    result = runner.invoke(app, ["jobs", "run", "daily", "--at", "2026-03-02T07:00:00+00:00", "--json"], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == "run-daily-20260302T070000Z" and summary["created"] and summary["enqueued"] == 2
    assert summary["left_out"] == 1 and "rows record 2, field 'target_words'" in result.stderr
    result = runner.invoke(app, ["jobs", "run", "daily", "--at", "2026-03-02T08:00:00+01:00"], env=env)
    assert result.exit_code == 0 and "already exists; nothing added" in result.output
    result = runner.invoke(app, ["jobs", "run", "daily", "--at", "2026-03-02T07:00"], env=env)
    assert result.exit_code == 2 and "no UTC offset" in result.output
    result = runner.invoke(app, ["jobs", "run", "nope"], env=env)
    assert result.exit_code == JobFileError.exit_code and "no job file nope.yaml" in result.output

    result = runner.invoke(app, ["jobs", "history", "daily", "--json"], env=env)
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)
    assert (run["id"], run["status"], run["trigger"], run["left_out"]) == (
        summary["run_id"],
        "in_progress",
        "manual",
        1,
    )
    assert run["counts"]["queued"] == 2
    result = runner.invoke(app, ["jobs", "history", "daily"], env=env)
    assert result.exit_code == 0 and "run-daily-20260302T070000Z" in result.output and "running" in result.output
    result = runner.invoke(app, ["jobs", "show", summary["run_id"]], env=env)
    assert result.exit_code == 0, result.output
    assert "rows record 2, field 'target_words': must be a whole number" in result.output
    assert "daily-20260302T070000Z-a" in result.output
    result = runner.invoke(app, ["jobs", "show", "run-nope"], env=env)
    assert result.exit_code == NotFoundError.exit_code and "does not exist" in result.output
    result = runner.invoke(app, ["jobs", "list", "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["kind"] == "scheduled"
