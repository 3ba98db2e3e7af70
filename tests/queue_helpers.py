"""Helpers for the queue tests: real ``copydesk worker`` subprocesses, brief files and test-only hooks.

A :class:`Deployment` is one copydesk installation as an operator would run it: a home directory, a store,
a broker (embedded SQLite, Redis or RabbitMQ) and any number of ``copydesk worker`` processes, each started
in its own session so that a test can SIGKILL a whole worker (main process and pool) with one
``os.killpg``. The CLI commands (submit, status, cancel, results) run in-process through Typer's runner
with the deployment's environment.

Test-only hooks live in a ``sitecustomize.py`` written into a temporary directory that only the worker
processes get on their ``PYTHONPATH``; production code has no hook. With ``COPYDESK_TEST_HOOKS=1`` it wraps
:meth:`worker.pipeline.pipeline.Pipeline.run` to

* append ``{"pid", "worker", "briefs"}`` to ``$COPYDESK_TEST_RUN_LOG`` for every batch generated (so a test
  can tell which process generated which brief, and how often);
* ``os._exit(1)`` when a brief title contains ``$COPYDESK_TEST_CRASH_ON_TITLE`` (a poison brief);
* sleep ``$COPYDESK_TEST_RUN_DELAY`` seconds after generating, before the articles are stored (a slow batch
  that stays running for a while, without burning CPU);

and sets Celery's ``worker_lost_wait`` to ``$COPYDESK_TEST_WORKER_LOST_WAIT`` (how long the pool waits for the
result of a job whose process died before it declares the job lost: 10 s by default, a long time in a test).

For the reliability suite (kills at chosen points, broker faults) it also has, inert unless set:

* ``$COPYDESK_TEST_PHASE_LOG``: every pool process appends ``{"t", "pid", "worker", "phase", "briefs"}`` at each
  step of a batch: ``generate`` (before the pipeline runs), ``generated``, then per article ``save`` (ready,
  nothing written), ``insert`` (the article row inserted inside the save transaction, not committed),
  ``file`` (committed, Markdown file not written yet) and ``stored``; :meth:`Deployment.phases` reads it;
* ``$COPYDESK_TEST_WRITE_DELAY``: seconds to pause at ``save``, ``insert`` and ``file``, so that a SIGKILL can
  land inside the final write;

:class:`RedisServer` is a private ``redis-server`` on a free port (a deployment takes its :meth:`RedisServer.url`
as ``broker_url``) that a test can crash, restart with or without persistence, and whose client connections it
can drop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
import yaml
from click.testing import Result
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from worker.cli.main import app as cli_app
from worker.store import JobRecord, Store

REDIS_HOST = "redis://127.0.0.1:6379"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
QUEUE_NAMES = ("generate", "train")

PLUGIN = '''"""Test-only hooks for copydesk worker processes (written by tests/queue_helpers.py)."""

import os

if os.environ.get("COPYDESK_TEST_HOOKS") == "1":
    import json
    import time

    from worker.pipeline.pipeline import Pipeline

    _original_run = Pipeline.run

    def _run(self, briefs, *args, **kwargs):
        briefs = list(briefs)
        if briefs:
            log = os.environ.get("COPYDESK_TEST_RUN_LOG")
            if log:
                line = {"pid": os.getpid(), "worker": os.environ.get("COPYDESK_TEST_WORKER", ""),
                        "briefs": [b.brief_id for b in briefs]}
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line) + "\\n")
            marker = os.environ.get("COPYDESK_TEST_CRASH_ON_TITLE")
            if marker and any(marker in b.title for b in briefs):
                os._exit(1)
        outcomes = _original_run(self, briefs, *args, **kwargs)
        delay = float(os.environ.get("COPYDESK_TEST_RUN_DELAY") or 0)
        if briefs and delay:
            time.sleep(delay)
        return outcomes

    Pipeline.run = _run

    lost_wait = os.environ.get("COPYDESK_TEST_WORKER_LOST_WAIT")
    if lost_wait:
        from worker.queue.celery_app import app

        app.conf.worker_lost_wait = float(lost_wait)

    # Phase log and write pauses (reliability suite): inert unless COPYDESK_TEST_PHASE_LOG is set.
    _phase_log = os.environ.get("COPYDESK_TEST_PHASE_LOG")
    if _phase_log:
        import worker.pipeline.runner as _phase_runner
        from worker.store.core import Store as _PhaseStore

        _write_pause = float(os.environ.get("COPYDESK_TEST_WRITE_DELAY") or 0)

        def _phase(name, brief_ids, pause=0.0):
            line = {"t": time.time(), "pid": os.getpid(), "worker": os.environ.get("COPYDESK_TEST_WORKER", ""),
                    "phase": name, "briefs": list(brief_ids)}
            with open(_phase_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\\n")
            if pause:
                time.sleep(pause)

        _phase_inner_run = Pipeline.run

        def _phase_run(self, briefs, *args, **kwargs):
            briefs = list(briefs)
            if not briefs:
                return _phase_inner_run(self, briefs, *args, **kwargs)
            ids = [b.brief_id for b in briefs]
            _phase("generate", ids)
            outcomes = _phase_inner_run(self, briefs, *args, **kwargs)
            _phase("generated", ids)
            return outcomes

        Pipeline.run = _phase_run

        _phase_save = _PhaseStore.save_article

        def _phase_save_article(self, result, *args, **kwargs):
            _phase("save", [result.brief_id], _write_pause)  # the article is ready; nothing written yet
            return _phase_save(self, result, *args, **kwargs)

        _PhaseStore.save_article = _phase_save_article

        _phase_insert = _PhaseStore._insert_article

        def _phase_insert_article(session, result, *args, **kwargs):
            _phase_insert(session, result, *args, **kwargs)
            _phase("insert", [result.brief_id], _write_pause)  # inside the transaction, not committed

        _PhaseStore._insert_article = staticmethod(_phase_insert_article)

        _phase_file = _phase_runner.write_article_file

        def _phase_write_file(articles_dir, article, brief, *args, **kwargs):
            _phase("file", [brief.brief_id], _write_pause)  # committed; the Markdown file not written yet
            path = _phase_file(articles_dir, article, brief, *args, **kwargs)
            _phase("stored", [brief.brief_id])
            return path

        _phase_runner.write_article_file = _phase_write_file
'''


# ------------------------------------------------------------------------------------------------ files


def write_plugin(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(PLUGIN)
    return directory


def write_style(styles_dir: Path, name: str, *, gates: list[str], max_new_tokens: int, **targets: Any) -> Path:
    """A test style: one candidate per attempt, routed by the category ``<name>-cat``."""
    directory = styles_dir / name
    directory.mkdir(parents=True)
    data: dict[str, Any] = {
        "name": name,
        "description": f"queue test style {name}",
        "system_prompt": "You write short articles.",
        "routing": {"categories": {f"{name}-cat": 3}},
        "gates": gates,
        "generation": {"candidates": 1, "max_new_tokens": max_new_tokens},
        "adapter": None,
    }
    if targets:
        data["targets"] = targets
    (directory / "style.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


def write_styles(root: Path) -> Path:
    """``quick`` passes every draft (no gates); ``strict`` fails its on_topic gate (needs_attention)."""
    styles = root / "styles"
    write_style(styles, "quick", gates=[], max_new_tokens=64)
    write_style(styles, "strict", gates=["on_topic"], max_new_tokens=64, min_on_topic=0.99)
    return styles


TITLES = (
    "How to plant tomatoes",
    "Why caches make programs fast",
    "Ten things to pack for a hike",
    "How to fix a leaking tap",
    "What a compiler does with your code",
    "Five weekend trips by train",
    "How to repot a houseplant",
    "Why databases use indexes",
    "How to bake bread at home",
    "What makes a good password",
    "How bicycles stay upright",
    "Seven ways to save water",
)


def make_briefs(prefix: str, count: int, *, target_words: int = 50, **fields: Any) -> list[dict[str, Any]]:
    """``count`` valid briefs ``<prefix>-<i>`` routed to the ``quick`` style."""
    return [
        {
            "id": f"{prefix}-{i}",
            "title": f"{TITLES[i % len(TITLES)]} ({prefix} {i})",
            "category": "quick-cat",
            "target_words": target_words,
            **fields,
        }
        for i in range(count)
    ]


def write_briefs(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"briefs": list(records)}, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------- brokers


@contextlib.contextmanager
def shared_broker_lock(timeout: float = 900) -> Iterator[None]:
    """Hold a machine-wide lock while a test uses the shared Redis database or RabbitMQ queues, so that two
    pytest runs on one machine (two engineers, or an editor's runner) take turns instead of flushing each
    other's messages."""
    path = Path(tempfile.gettempdir()) / "copydesk-queue-tests.lock"
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"another test run held {path} for {timeout:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def redis_url(db: int) -> str:
    return f"{REDIS_HOST}/{db}"


def flush_redis(url: str) -> None:
    """Empty the Redis database of ``url`` (fails when Redis is down: no skip)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def reset_rabbitmq(url: str = RABBITMQ_URL) -> None:
    """Delete copydesk's queues (messages and bindings of earlier runs); the worker declares them again."""
    from kombu import Connection

    with Connection(url, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.channel()
        for name in QUEUE_NAMES:
            channel.queue_delete(name)
        channel.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free port under ``directory`` (never the shared one on 6379).

    ``persistent`` starts it with an append-only file fsynced on every write (what it holds survives a
    SIGKILL); otherwise with no persistence at all (a restart empties it). :meth:`crash` SIGKILLs it,
    :meth:`start` starts it again on the same port and directory.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    persistent: bool = False
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, *, persistent: bool | None = None, timeout: float = 30) -> None:
        assert not self.running(), f"redis on port {self.port} is already running"
        if persistent is not None:
            self.persistent = persistent
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                   "--save", "", *persistence, "--protected-mode", "no", "--daemonize", "no",
                   "--logfile", str(self.directory / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.starts += 1
        wait_until(
            self.ping, timeout=timeout, message=lambda: f"redis on port {self.port} did not start:\n{self.log()}"
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ping(self) -> bool:
        import redis

        if not self.running():
            return False
        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def crash(self) -> None:
        """SIGKILL the server (without persistence everything it held is gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def restart(self, *, pause: float = 0.0) -> None:
        self.crash()
        if pause:
            time.sleep(pause)
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=5, socket_timeout=10)

    def drop_clients(self) -> int:
        """Close every client connection (``CLIENT KILL TYPE normal`` and ``pubsub``); how many were closed."""
        client = self.client()
        try:
            killed = 0
            for kind in ("normal", "pubsub"):
                killed += int(client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes") or 0)
            return killed
        finally:
            client.close()

    def queued_messages(self, queue: str = "generate") -> int:
        client = self.client()
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    def log(self, tail: int = 3000) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.crash()


# ----------------------------------------------------------------------------------------------- waiting


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, message: str | Callable[[], str], interval: float = 0.2
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f} s: {text}")
        time.sleep(interval)


@dataclass(frozen=True)
class DeploymentFiles:
    """What every deployment of a test module shares: its styles directory and its test-hook plugin directory."""

    styles: Path
    plugin: Path


# ------------------------------------------------------------------------------------------------ workers


def copydesk_command() -> list[str]:
    script = Path(sys.executable).with_name("copydesk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli.main"]


@dataclass
class SessionProcess:
    """A ``copydesk`` command started in its own session (process group = its pid), logging to ``log_path``."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of its log (all of it with ``tail=0``)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-tail:] if tail else text


@dataclass
class WorkerProcess(SessionProcess):
    """One ``copydesk worker``."""

    def pool_pids(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            assert self.alive(), f"worker {self.name} exited with {self.process.returncode}:\n{self.log()}"
            return " ready." in self.log(0) and bool(self.pool_pids())

        wait_until(ready, timeout=timeout, message=lambda: f"worker {self.name} not ready:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool, as a crash or the OOM killer would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        wait_until(
            lambda: not _group_alive(self.pid),
            timeout=30,
            message=f"processes of worker {self.name} survived SIGKILL",
            interval=0.1,
        )


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        timeout=30,
        message=f"process {pid} survived SIGKILL",
        interval=0.1,
    )


# ------------------------------------------------------------------------------------------------ deployment


@dataclass
class Deployment:
    """A copydesk home with its store and broker, the CLI, and the workers started on it."""

    root: Path
    model_dir: Path
    styles_dir: Path
    plugin_dir: Path
    store_url: str
    broker_url: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.run_log = self.root / "runs.jsonl"
        self.phase_log = self.root / "phases.jsonl"  # written by workers started with phase_env()
        self.config_file = self.root / "copydesk.toml"
        self.config_file.write_text("# queue tests: everything comes from the environment\n")

    # -- environment ---------------------------------------------------------------------------------------

    def copydesk_env(self) -> dict[str, str | None]:
        """``COPYDESK_*`` variables of this deployment (None = unset)."""
        env: dict[str, str | None] = {
            "COPYDESK_HOME": str(self.home),
            "COPYDESK_CONFIG": str(self.config_file),
            "COPYDESK_MODEL": str(self.model_dir),
            "COPYDESK_DTYPE": "float32",
            "COPYDESK_DEVICE": "cpu",
            "COPYDESK_THREADS": "1",
            "COPYDESK_STYLES_DIR": str(self.styles_dir),
            "COPYDESK_DEFAULT_STYLE": "quick",
            "COPYDESK_MAX_ATTEMPTS": "1",
            "COPYDESK_STORE_URL": self.store_url,
            "COPYDESK_BROKER_URL": self.broker_url,
            "COPYDESK_RECONCILE_INTERVAL": "1",
            "COPYDESK_STALE_AFTER": "10",
            "COPYDESK_FLUSH_INTERVAL": "0.2",
            "COPYDESK_DEBUG": None,
        }
        env.update(self.settings)
        return env

    def process_env(self, name: str, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COPYDESK_", "CELERY_"))}
        env.update({k: v for k, v in self.copydesk_env().items() if v is not None})
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(self.plugin_dir), *filter(None, [env.get("PYTHONPATH")])]),
                "PYTHONUNBUFFERED": "1",
                "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1",
                "COLUMNS": "1000",  # rich's log handler: one log record per line
                "COPYDESK_TEST_HOOKS": "1",
                "COPYDESK_TEST_RUN_LOG": str(self.run_log),
                "COPYDESK_TEST_WORKER": name,
                "COPYDESK_TEST_WORKER_LOST_WAIT": "1",
            }
        )
        env.update(extra)
        return env

    # -- workers --------------------------------------------------------------------------------------------

    def start_worker(
        self, name: str = "w1", *, concurrency: int = 1, wait: bool = True, **extra_env: str
    ) -> WorkerProcess:
        log_path = self.root / f"worker-{name}-{len(self.workers)}.log"
        command = [
            *copydesk_command(),
            "-v",
            "worker",
            f"--concurrency={concurrency}",
            f"--name={name}@%h",
            "--loglevel=INFO",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.process_env(name, extra_env),
                cwd=self.root,
                start_new_session=True,
            )
        worker = WorkerProcess(name, process, log_path)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def kill_all(self) -> None:
        """SIGKILL every worker started here (each one even if killing another failed)."""
        failures = []
        for worker in self.workers:
            try:
                worker.kill()
            except Exception as exc:  # report after trying every worker
                failures.append(f"{worker.name}: {exc}")
        assert not failures, failures

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- worker {w.name} (pid {w.pid}) log tail:\n{w.log(tail)}" for w in self.workers)

    # -- CLI and store ---------------------------------------------------------------------------------------

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli_app, list(args), env=self.copydesk_env())

    def submit(self, path: Path) -> dict[str, Any]:
        result = self.cli("submit", str(path), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def results(self, job_id: str) -> list[dict[str, Any]]:
        result = self.cli("results", job_id, "--format", "jsonl")
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def status(self, job_id: str) -> dict[str, Any]:
        result = self.cli("status", job_id, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def store(self) -> Store:
        return Store(self.store_url)

    def job(self, job_id: str) -> JobRecord:
        with self.store() as store:
            return store.get_job(job_id)

    def wait_for_job(
        self, job_id: str, *, timeout: float, status: str = "completed", interval: float = 0.3
    ) -> JobRecord:
        """The job once it has ``status``; each poll counts the job's briefs (a bench of a large job polls less
        often, so that its own queries are not what it measures)."""

        def settled() -> JobRecord | None:
            job = self.job(job_id)
            return job if job.status == status else None

        return wait_until(
            settled,
            timeout=timeout,
            message=lambda: f"job {job_id} is not {status}: {self.job(job_id)}\n{self.logs()}",
            interval=interval,
        )

    def brief_rows(self) -> dict[str, dict[str, Any]]:
        rows = self.sql("SELECT id, status, attempts, lease_owner, last_error FROM briefs")
        return {row["id"]: row for row in rows}

    def running(self) -> dict[str, str]:
        """Running briefs and their lease owners."""
        return {
            row["id"]: row["lease_owner"]
            for row in self.sql("SELECT id, lease_owner FROM briefs WHERE status = 'running'")
        }

    def article_counts(self) -> Counter[str]:
        return Counter(
            {
                row["brief_id"]: row["n"]
                for row in self.sql("SELECT brief_id, count(*) AS n FROM articles GROUP BY brief_id")
            }
        )

    def candidate_count(self) -> int:
        return int(self.sql("SELECT count(*) AS n FROM candidates")[0]["n"])

    def sql(self, statement: str) -> list[dict[str, Any]]:
        engine = sa.create_engine(self.store_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(sa.text(statement))]
        finally:
            engine.dispose()

    def runs(self) -> list[dict[str, Any]]:
        """Every batch the workers started to generate (from the test hook's run log)."""
        if not self.run_log.exists():
            return []
        return [json.loads(line) for line in self.run_log.read_text().splitlines() if line.strip()]

    def phase_env(self, *, write_delay: float = 0.0) -> dict[str, str]:
        """Extra environment for :meth:`start_worker`: the phase log and write pauses."""
        return {"COPYDESK_TEST_PHASE_LOG": str(self.phase_log), "COPYDESK_TEST_WRITE_DELAY": str(write_delay)}

    def phases(self, start: int = 0) -> list[dict[str, Any]]:
        """Phase-log events from index ``start`` on (complete lines only)."""
        if not self.phase_log.exists():
            return []
        text = self.phase_log.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines = lines[:-1]  # a line being written
        return [json.loads(line) for line in lines[start:] if line.strip()]

    def generations(self) -> Counter[str]:
        """How many times each brief was handed to the pipeline."""
        return Counter(brief_id for run in self.runs() for brief_id in run["briefs"])

    def embedded_broker_messages(self, *, visible_only: bool = False) -> int:
        """Message rows of the embedded broker (only those not yet delivered with ``visible_only``)."""
        path = self.home / "broker.db"
        if not path.exists():
            return 0
        engine = sa.create_engine(f"sqlite:///{path}", poolclass=NullPool)
        where = " WHERE visible = 1" if visible_only else ""
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("kombu_message"):
                    return 0
                return int(conn.execute(sa.text(f"SELECT count(*) FROM kombu_message{where}")).scalar_one())
        finally:
            engine.dispose()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_one_article_each(deployment: Deployment, brief_ids: Sequence[str]) -> None:
    counts = deployment.article_counts()
    missing = [b for b in brief_ids if counts[b] == 0]
    doubled = {b: n for b, n in counts.items() if n > 1}
    assert not missing and not doubled, (
        f"articles missing for {missing}, duplicated for {doubled}; briefs: {deployment.brief_rows()}\n"
        f"{deployment.logs()}"
    )


def iter_task_ids_received(log: str) -> Iterator[str]:
    """Task ids of the ``Task ...[id] received`` lines of a worker log."""
    marker = "copydesk.write_brief["
    for line in log.splitlines():
        if marker in line and "] received" in line:
            yield line.split(marker, 1)[1].split("]", 1)[0]
