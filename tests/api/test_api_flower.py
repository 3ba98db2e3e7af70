"""Flower works against the Redis broker (docs/deployment.md): it sees a worker's finished task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from model_fixtures import tiny_model_dir
from queue_helpers import (
    Deployment,
    RedisServer,
    WorkerProcess,
    free_port,
    make_briefs,
    wait_until,
    write_briefs,
    write_plugin,
    write_styles,
)

__all__ = ["tiny_model_dir"]  # fixture used by name


def start_flower(d: Deployment, port: int) -> WorkerProcess:
    log_path = d.root / "flower.log"
    celery = Path(sys.executable).with_name("celery")
    command = [str(celery), "-A", "worker.queue.celery_app", "flower", f"--port={port}", "--address=127.0.0.1"]
    env = d.process_env("flower", {"FLOWER_UNAUTHENTICATED_API": "true"})
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=d.root, start_new_session=True)  # fmt: skip
    flower = WorkerProcess("flower", process, log_path)  # a session process that kill_all SIGKILLs
    d.workers.append(flower)

    def answers() -> bool:
        assert flower.alive(), flower.log()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/workers", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, timeout=60, message=flower.log)
    return flower


def test_flower_reads_a_finished_task_from_the_redis_broker(tmp_path: Path, tiny_model_dir: Path) -> None:
    files = tmp_path / "files"
    with RedisServer(tmp_path / "redis") as redis:
        d = Deployment(
            tmp_path / "d",
            tiny_model_dir,
            write_styles(files),
            write_plugin(files / "plugin"),
            f"sqlite:///{tmp_path / 'd' / 'home' / 'copydesk.db'}",
            redis.url(0),
        )
        port = free_port()
        try:
            flower = start_flower(d, port)
            d.start_worker()
            submitted = d.submit(write_briefs(tmp_path / "b.yaml", make_briefs("fl", 2)))
            d.wait_for_job(submitted["job_id"], timeout=180)

            def finished() -> list[dict[str, Any]]:
                tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=5).json()
                return [t for t in tasks.values() if t["name"] == "copydesk.write_brief" and t["state"] == "SUCCESS"]

            done = wait_until(finished, timeout=60, message=lambda: f"{flower.log()}\n{d.logs()}")
        finally:
            d.kill_all()
    assert done[0]["args"] in ("['fl-0']", "['fl-1']", "('fl-0',)", "('fl-1',)"), done[0]
    assert done[0]["worker"].startswith("w1@") and done[0]["runtime"] > 0, done[0]
