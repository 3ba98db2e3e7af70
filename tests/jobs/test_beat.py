"""``copydesk beat`` end to end: a real beat process fires job files through a real worker process (the
tiny model), on the embedded broker and on Redis; a second beat is refused; a duplicated tick and a beat
restart add no run, brief or article; an edited job file takes effect without a restart.

Every wait is bounded (:func:`queue_helpers.wait_until`); processes are killed by their process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from model_fixtures import tiny_model_dir
from queue_helpers import (
    Deployment,
    SessionProcess,
    copydesk_command,
    flush_redis,
    redis_url,
    wait_until,
    write_plugin,
    write_styles,
)

from worker.config import Settings
from worker.errors import BeatLockedError
from worker.store import Store

__all__ = ["tiny_model_dir"]  # fixture used by name

BEAT_EXIT_LOCKED = BeatLockedError.exit_code


@dataclass
class BeatProcess(SessionProcess):
    """One ``copydesk beat``."""

    def log(self, tail: int = 6000) -> str:
        return super().log(tail)

    def wait_for_line(self, text: str, *, timeout: float = 60) -> None:
        def seen() -> bool:
            if text in self.log(0):
                return True
            assert self.alive(), f"beat {self.name} exited with {self.process.returncode}:\n{self.log()}"
            return False

        wait_until(seen, timeout=timeout, message=lambda: f"beat {self.name} never logged {text!r}:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM (warm shutdown: the lock is released), bounded."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"beat {self.name} ignored SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


class BeatDeployment(Deployment):
    """A :class:`Deployment` with a jobs directory and ``copydesk beat`` processes."""

    beats: list[BeatProcess]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir()
        self.settings["COPYDESK_JOBS_DIR"] = str(self.jobs_dir)
        self.beats = []

    def start_beat(self, name: str = "b1", *args: str) -> BeatProcess:
        log_path = self.root / f"beat-{name}-{len(self.beats)}.log"
        command = [*copydesk_command(), "-v", "beat", "--max-interval", "0.5", "--loglevel=INFO", *args]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.process_env(name, {}),
                cwd=self.root,
                start_new_session=True,
            )
        beat = BeatProcess(name, process, log_path)
        self.beats.append(beat)
        return beat

    def write_job(self, name: str, cron: str, *, rows: int = 2, **fields: Any) -> Path:
        data = {
            "schedule": {"cron": cron, "timezone": "UTC", "catch_up": "10m"},
            "defaults": {"category": "quick-cat", "target_words": 50},
            "template": {"id": "{{ row.key }}", "title": "{{ row.title }} ({{ run.time }})"},
            "rows": [{"key": f"r{i}", "title": f"How to plant tomatoes, part {i}"} for i in range(rows)],
            **fields,
        }
        path = self.jobs_dir / f"{name}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(path)  # beat never sees a half-written file
        return path

    def celery_settings(self) -> Settings:
        return Settings(home=self.home, broker_url=self.broker_url, store_url=self.store_url, jobs_dir=self.jobs_dir)

    def send_run_task(self, job: str, slot: datetime) -> None:
        """A duplicated tick: the run message beat sends, sent again through the broker."""
        from worker.jobs.beat import RUN_TASK
        from worker.queue.celery_app import GENERATE_QUEUE, make_celery

        app = make_celery(self.celery_settings())
        try:
            app.send_task(RUN_TASK, args=[job, slot.isoformat()], queue=GENERATE_QUEUE)
        finally:
            app.close()

    def runs_of(self, job: str) -> list[Any]:
        with Store(self.store_url) as store:
            return store.list_runs(job, limit=1000)

    def all_logs(self) -> str:
        beats = "\n".join(f"--- beat {b.name} log tail:\n{b.log(3000)}" for b in self.beats)
        return f"{beats}\n{self.logs()}"


@pytest.fixture
def deployment(tmp_path: Path, tiny_model_dir: Path) -> Iterator[BeatDeployment]:
    dep = BeatDeployment(
        root=tmp_path,
        model_dir=tiny_model_dir,
        styles_dir=write_styles(tmp_path),
        plugin_dir=write_plugin(tmp_path / "plugin"),
        store_url=f"sqlite:///{tmp_path / 'store' / 'copydesk.db'}",
    )
    try:
        yield dep
    finally:
        for beat in dep.beats:
            beat.kill()
        dep.kill_all()


def slot_cron(slot: datetime) -> str:
    """A six-field cron (seconds last) that fires at ``slot`` once a day."""
    return f"{slot.minute} {slot.hour} * * * {slot.second}"


def wait_for_run_settled(dep: BeatDeployment, job: str, slot: datetime, *, timeout: float = 180) -> Any:
    def settled() -> Any:
        with Store(dep.store_url) as store:
            run_id = store.find_run(job, slot)
            if run_id is None:
                return None
            run = store.get_run(run_id)
            return run if run.settled_at is not None else None

    return wait_until(
        settled, timeout=timeout, message=lambda: f"run of {job} for {slot} not settled\n{dep.all_logs()}"
    )


def run_task_successes(dep: BeatDeployment) -> int:
    return sum(line.count("copydesk.run_scheduled_job[") for line in dep.logs(0).splitlines() if "succeeded" in line)


def test_beat_fires_a_job_through_a_worker_and_never_doubles(deployment: BeatDeployment) -> None:
    dep = deployment
    worker = dep.start_worker("w1")
    beat = dep.start_beat("b1")
    beat.wait_for_line("beat: Starting...")

    # a job file added while beat runs is picked up; its slot is a few seconds ahead
    slot = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    dep.write_job("once", slot_cron(slot), auto_approve=True)
    beat.wait_for_line("scheduling job once")
    run = wait_for_run_settled(dep, "once", slot)
    assert run.id == f"run-once-{slot:%Y%m%dT%H%M%SZ}" and run.trigger == "schedule"
    assert (run.status, run.counts.total, run.counts.done) == ("completed", 2, 2)
    assert run.duration_seconds is not None and 0 < run.duration_seconds < 180
    brief_ids = [f"once-{slot:%Y%m%dT%H%M%SZ}-r{i}" for i in range(2)]
    assert sorted(run.info["approved"]) == sorted(f"a-{b}" for b in brief_ids)  # no gates in `quick`: approved

    # a second beat on the same store is refused
    second = dep.start_beat("b2")
    assert second.process.wait(timeout=90) == BEAT_EXIT_LOCKED, second.log()
    assert "only one beat may run per store" in second.log()

    # a duplicated tick: the same run message twice more, through the broker to the worker
    before = run_task_successes(dep)
    dep.send_run_task("once", slot)
    dep.send_run_task("once", slot)
    wait_until(
        lambda: run_task_successes(dep) >= before + 2,
        timeout=90,
        message=lambda: f"the duplicated run tasks were not processed\n{dep.all_logs()}",
    )

    # a restarted beat (killed without warning) takes the lock over at once and does not fire the slot again
    beat.kill()
    restarted = dep.start_beat("b3")
    restarted.wait_for_line(f"job once: the run for {slot.isoformat()} exists")
    assert restarted.stop() == 0
    with Store(dep.store_url) as store:
        assert store.scheduler_lock_holder("copydesk-beat") is None  # released on a warm shutdown

    assert [r.id for r in dep.runs_of("once")] == [run.id]
    assert dep.article_counts() == Counter(dict.fromkeys(brief_ids, 1))
    assert dep.generations() == Counter(dict.fromkeys(brief_ids, 1))  # each brief generated exactly once
    assert sorted(dep.brief_rows()) == sorted(brief_ids)
    assert "Traceback" not in worker.log(0), worker.log()

    # the CLI shows the run
    result = dep.cli("jobs", "history", "once", "--json")
    assert result.exit_code == 0, result.output
    (shown,) = json.loads(result.stdout)
    assert (shown["id"], shown["status"], len(shown["approved"])) == (run.id, "completed", 2)


def test_every_second_job_until_its_file_disables_it(deployment: BeatDeployment) -> None:
    dep = deployment
    dep.start_worker("w1")
    dep.write_job("tick", "* * * * * *", rows=1)
    beat = dep.start_beat("b1")
    wait_until(
        lambda: beat.log(0).count("job tick: sent the run") >= 3,
        timeout=90,
        message=lambda: f"beat did not send 3 runs of an every-second job\n{dep.all_logs()}",
    )
    dep.write_job("tick", "* * * * * *", rows=1, enabled=False)
    beat.wait_for_line("job tick is no longer scheduled")
    log = beat.log(0)
    sent = [
        line.split("sent the run for ", 1)[1].strip() for line in log.splitlines() if "job tick: sent the run" in line
    ]
    wait_until(
        lambda: len(dep.runs_of("tick")) == len(sent) and all(r.settled_at for r in dep.runs_of("tick")),
        timeout=120,
        message=lambda: f"{len(sent)} runs sent, store has {dep.runs_of('tick')}\n{dep.all_logs()}",
    )
    time.sleep(2.5)  # five ticks with the job disabled
    assert "job tick: sent the run" not in beat.log(0)[len(log) :]
    runs = dep.runs_of("tick")
    assert len(runs) == len(sent) == len({r.scheduled_for for r in runs})
    assert all(r.counts.total == 1 and r.counts.done == 1 for r in runs)
    assert sum(dep.article_counts().values()) == len(runs)
    assert beat.stop() == 0


@pytest.mark.redis
def test_beat_on_redis_holds_a_redis_lock(deployment: BeatDeployment) -> None:
    dep = deployment
    dep.broker_url = redis_url(12)
    flush_redis(dep.broker_url)
    dep.start_worker("w1")
    slot = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    dep.write_job("redis-once", slot_cron(slot))
    beat = dep.start_beat("b1")
    beat.wait_for_line("Redis lock 'copydesk:beat-lock:")
    second = dep.start_beat("b2")
    assert second.process.wait(timeout=90) == BEAT_EXIT_LOCKED, second.log()
    assert "holds the scheduler lock copydesk:beat-lock:" in second.log()
    run = wait_for_run_settled(dep, "redis-once", slot)
    assert (run.status, run.counts.done) == ("completed", 2)
    before = run_task_successes(dep)
    dep.send_run_task("redis-once", slot)  # a duplicated tick
    wait_until(lambda: run_task_successes(dep) > before, timeout=90, message=lambda: dep.all_logs())
    assert beat.stop() == 0
    import redis

    client = redis.Redis.from_url(dep.broker_url)
    try:
        assert not client.keys("copydesk:beat-lock:*")  # released
    finally:
        client.close()
    assert len(dep.runs_of("redis-once")) == 1
    assert sum(dep.article_counts().values()) == 2
