"""Helpers of the store-fault and poison/hang reliability tests.

* :func:`write_reliability_plugin`: the worker-only ``sitecustomize.py`` of :mod:`queue_helpers` (run log,
  crash-on-title, run delay) plus three more test-only hooks, all inert unless their variable is set:

  - ``COPYDESK_TEST_CLAIM_GATE`` / ``COPYDESK_TEST_SAVE_GATE``: a directory. Before a claim
    (``Store.claim_brief`` or ``Store.claim_briefs``), or after generation and before the article is stored,
    the worker process writes ``ready-<pid>`` there and waits until a file ``go`` exists. A test waits for
    ``ready``, injects its fault (locks the SQLite store, stops PostgreSQL), writes ``go`` and lifts the fault a
    few seconds later: the store call is certain to meet the fault.
  - ``COPYDESK_TEST_HANG_ON_TITLE``: a batch with a brief whose title contains it hangs for ever (sleeping,
    and swallowing the soft time limit), so that only the hard time limit can end it.
  - ``COPYDESK_TEST_SQLITE_BUSY_MS``: SQLite's busy timeout (30 s in production) for the worker, so that a
    lock held for a few seconds makes its store calls fail with "database is locked".

* :class:`PrivatePostgres`: a PostgreSQL server of the test's own on a free port, which a test can stop
  and start (the shared server on 5432 is never touched).
* :func:`publish_raw`: a message put straight onto the ``generate`` queue with kombu (corrupt bodies,
  unknown task names, ill-typed arguments).
* The ``deploy`` fixture: :class:`queue_helpers.Deployment` objects with these hooks; every worker started on
  them is SIGKILLed afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import queue_helpers
from queue_helpers import Deployment, WorkerProcess, flush_redis, redis_url, shared_broker_lock, wait_until

from worker.store import JobRecord

EXTRA_HOOKS = '''"""Test-only hooks of the reliability suite (tests/reliability/store_fault_helpers.py)."""

import os

if os.environ.get("COPYDESK_TEST_HOOKS") == "1":
    import time as _time
    from pathlib import Path as _Path

    def _gate(variable):
        directory = os.environ.get(variable)
        if not directory:
            return
        gate = _Path(directory)
        if (gate / "go").exists():
            return
        (gate / f"ready-{os.getpid()}").write_text(str(_time.time()))
        deadline = _time.monotonic() + 120
        while not (gate / "go").exists() and _time.monotonic() < deadline:
            _time.sleep(0.05)

    busy_ms = os.environ.get("COPYDESK_TEST_SQLITE_BUSY_MS")
    if busy_ms:
        import worker.store.engine as _engine

        _engine.SQLITE_BUSY_TIMEOUT_MS = int(busy_ms)

    from worker.pipeline.pipeline import Pipeline as _Pipeline
    from worker.store import Store as _Store

    _original_claim = _Store.claim_brief

    def _claim(self, *args, **kwargs):
        _gate("COPYDESK_TEST_CLAIM_GATE")
        return _original_claim(self, *args, **kwargs)

    _Store.claim_brief = _claim

    _original_claim_batch = _Store.claim_briefs

    def _claim_batch(self, *args, **kwargs):
        _gate("COPYDESK_TEST_CLAIM_GATE")
        return _original_claim_batch(self, *args, **kwargs)

    _Store.claim_briefs = _claim_batch

    _original_pipeline_run = _Pipeline.run

    def _hang_or_gate(self, briefs, *args, **kwargs):
        briefs = list(briefs)
        marker = os.environ.get("COPYDESK_TEST_HANG_ON_TITLE")
        if marker and any(marker in b.title for b in briefs):
            while True:  # only the hard time limit (SIGKILL) ends this
                try:
                    _time.sleep(3600)
                except BaseException:  # the soft time limit's exception: ignored, as a stuck C call would
                    pass
        outcomes = _original_pipeline_run(self, briefs, *args, **kwargs)
        if briefs:
            _gate("COPYDESK_TEST_SAVE_GATE")
        return outcomes

    _Pipeline.run = _hang_or_gate
'''


def write_reliability_plugin(directory: Path) -> Path:
    """``sitecustomize.py`` = these hooks, then :data:`queue_helpers.PLUGIN` (whose wrapper is outermost, so
    its run log and crash hook see every batch, hung ones included)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(EXTRA_HOOKS + "\n\n" + queue_helpers.PLUGIN)
    return directory


# ------------------------------------------------------------------------------------------------ gates


@dataclass(frozen=True)
class Gate:
    """A directory the worker's gate hook waits on (see the module docstring)."""

    path: Path

    @classmethod
    def make(cls, root: Path, name: str) -> Gate:
        path = root / f"gate-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def ready(self) -> bool:
        return any(self.path.glob("ready-*"))

    def wait_ready(self, d: Deployment, timeout: float = 120) -> None:
        wait_until(self.ready, timeout=timeout, message=lambda: f"no worker reached {self.path.name}\n{d.logs()}")

    def open(self) -> None:
        (self.path / "go").write_text("go")


# ------------------------------------------------------------------------------------------------ faults


@contextlib.contextmanager
def sqlite_write_lock(database: Path) -> Iterator[None]:
    """Hold SQLite's write lock on ``database`` (``BEGIN IMMEDIATE``) until the block ends."""
    import sqlite3

    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise AssertionError(f"PostgreSQL's {name} is not installed: the PostgreSQL fault test needs it")
    return found


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port (run as the ``postgres`` user when we are root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="copydesk-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, cwd=self.root)
        assert result.returncode == 0, f"{command[0]} failed: {result.stdout}\n{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


# ------------------------------------------------------------------------------------------------ messages


def publish_raw(
    broker_url: str,
    body: bytes | str,
    *,
    content_type: str = "application/json",
    headers: dict[str, Any] | None = None,
) -> None:
    """Put one message with exactly this body and these headers on the ``generate`` queue."""
    from kombu import Connection, Exchange, Producer, Queue

    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        Queue("generate", Exchange("generate"), "generate", channel=channel).declare()
        producer = Producer(channel)
        producer.publish(
            body,
            exchange="",
            routing_key="generate",
            content_type=content_type,
            content_encoding="utf-8" if isinstance(body, str) else "binary",
            headers=headers or {},
            serializer=None,
        )
        channel.close()


def task_headers(task: str = "copydesk.write_brief", **extra: Any) -> dict[str, Any]:
    """Celery task-protocol 2 headers."""
    task_id = str(uuid.uuid4())
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "",
        "kwargsrepr": "",
        **extra,
    }


# ------------------------------------------------------------------------------------------------ processes


def pool_deaths(worker: WorkerProcess, seen: set[int]) -> set[int]:
    """Pool processes of ``worker`` seen so far that no longer exist (``seen`` is updated with the live ones)."""
    seen.update(worker.pool_pids())
    return {pid for pid in seen if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE}


# ------------------------------------------------------------------------------------------------ deployments


@pytest.fixture(scope="module")
def reliability_files(tmp_path_factory: pytest.TempPathFactory) -> queue_helpers.DeploymentFiles:
    root = tmp_path_factory.mktemp("reliability-files")
    return queue_helpers.DeploymentFiles(queue_helpers.write_styles(root), write_reliability_plugin(root / "plugin"))


REDIS_DB = 11  # this suite's own Redis database, flushed before use (under the shared broker lock)


@pytest.fixture
def deploy(
    tmp_path: Path, tiny_model_dir: Path, reliability_files: queue_helpers.DeploymentFiles
) -> Iterator[Callable[..., Deployment]]:
    """Makes deployments (``broker`` embedded or redis; ``store_url`` default SQLite under its home); every
    worker they started is SIGKILLed (whole process group) afterwards."""
    made: list[Deployment] = []
    with contextlib.ExitStack() as stack:

        def make(*, broker: str = "embedded", store_url: str | None = None, **settings: object) -> Deployment:
            root = tmp_path / f"deployment-{len(made)}"
            broker_url = None
            if broker == "redis":
                stack.enter_context(shared_broker_lock())
                broker_url = redis_url(REDIS_DB)
                flush_redis(broker_url)
            else:
                assert broker == "embedded", broker
            deployment = Deployment(
                root,
                tiny_model_dir,
                reliability_files.styles,
                reliability_files.plugin,
                store_url or f"sqlite:///{root / 'home' / 'copydesk.db'}",
                broker_url,
                settings={f"COPYDESK_{key.upper()}": str(value) for key, value in settings.items()},
            )
            made.append(deployment)
            return deployment

        try:
            yield make
        finally:
            for deployment in made:
                deployment.kill_all()


def settle(d: Deployment, job_id: str, *, timeout: float) -> JobRecord:
    """Wait up to ``timeout`` s for the job to reach a final status and return it, reached or not (the test
    records what it measured in the ledger before it asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        job = d.job(job_id)
        if job.status in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def embedded_broker_url(d: Deployment) -> str:
    return d.broker_url or f"sqla+sqlite:///{(d.home / 'broker.db').resolve()}"


def count_in_logs(d: Deployment, text: str) -> int:
    return sum(w.log(0).count(text) for w in d.workers)


def elapsed(start: float) -> float:
    return time.monotonic() - start
