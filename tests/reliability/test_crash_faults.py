"""Crashes: SIGKILL the whole worker and single pool children at random points of generation and of the final
write, on the embedded broker and on Redis; after restart and reconciliation every brief has exactly one article.

One deployment per broker runs two ``copydesk worker`` processes (concurrency 1 each, so a whole-worker kill
never stops the work: the other worker carries on while the killed one is restarted). The workers write a phase
log (:mod:`queue_helpers`): ``generate``/``generated`` around the batch's generation, ``save`` (article
ready), ``insert`` (article row inserted, transaction not committed) and ``file`` (committed, Markdown file not
written yet) around each article's write, pausing :data:`WRITE_DELAY` at each write point. A seeded
``random.Random`` (the seed is printed; set ``COPYDESK_RELIABILITY_SEED`` to replay a run) shuffles the kill
plan, picks the write point, and the moment: a uniform offset into the generation or into the pause. After
each kill the phase log tells the phase the victim was really in, and that is what is counted.

``COPYDESK_MAX_BRIEF_ATTEMPTS`` is raised for these deployments: a brief hit by several kills must still be
written (the poison-brief guard has its own tests). Figures come from the store (articles per brief, brief
statuses) and the process table (workers and pool children that died without being killed).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import (
    Deployment,
    RedisServer,
    WorkerProcess,
    kill_pid,
    make_briefs,
    write_briefs,
    write_plugin,
    write_style,
)

__all__ = ["tiny_model_dir"]  # fixture used by name

# Kills per broker: 5 whole-worker and 5 pool-child kills, at 3 + 2 points of generation and of the final write
# on one broker and 2 + 3 on the other, so that each kind and point gets 5 kills over the two brokers.
KILLS = {"embedded": {"generation": 3, "write": 2}, "redis": {"generation": 2, "write": 3}}
WRITE_DELAY = 0.2  # s paused at each write point
GENERATION = {"generate", "generated"}
WRITE_POINTS = ("save", "insert", "file")
WRITE = {*WRITE_POINTS, "stored"}
KINDS = {"worker": "whole worker", "child": "pool child"}
POINTS = {"generation": "mid-generation", "write": "during the final write"}
INJECTION = {
    ("worker", "generation"): "os.killpg(SIGKILL) of a worker's session (main process and pool) at a random moment "
    "of a batch's generation; the worker is restarted",
    ("worker", "write"): "os.killpg(SIGKILL) of a worker's session at a random moment of an article's write: "
    "before the transaction, inside it (row inserted, not committed) or after commit before the Markdown file; "
    "the worker is restarted",
    ("child", "generation"): "SIGKILL of the pool child generating a batch, at a random moment of the generation",
    ("child", "write"): "SIGKILL of the pool child writing an article: before the transaction, inside it or after "
    "commit before the Markdown file",
}
CHECKED = (
    "each brief hit ends done with exactly one article (store); killed workers restarted, pool children replaced, "
    "nothing else died (process table); embedded SQLite broker and Redis, 10 kills each"
)


def crash_seed() -> int:
    return int(os.environ.get("COPYDESK_RELIABILITY_SEED") or random.SystemRandom().randrange(2**32))


def short_styles(root: Path) -> Path:
    """The queue tests' ``quick`` style with shorter drafts (32 new tokens): more kills per minute."""
    styles = root / "styles"
    write_style(styles, "quick", gates=[], max_new_tokens=32)
    return styles


@pytest.fixture
def crash_deployment(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_model_dir: Path
) -> Iterator[tuple[str, Deployment]]:
    broker = request.param
    with contextlib.ExitStack() as stack:
        broker_url = None
        if broker == "redis":
            broker_url = stack.enter_context(RedisServer(tmp_path / "redis")).url(0)
        d = Deployment(
            tmp_path / "d",
            tiny_model_dir,
            short_styles(tmp_path),
            write_plugin(tmp_path / "plugin"),
            f"sqlite:///{tmp_path / 'd' / 'home' / 'copydesk.db'}",
            broker_url,
            settings={
                "COPYDESK_FLUSH_SIZE": "2",
                "COPYDESK_MAX_BRIEF_ATTEMPTS": "20",
                "COPYDESK_STALE_AFTER": "5",
            },
        )
        # The store exists before any worker starts, as in a deployment: the kill loop counts pending briefs
        # with plain SQL, and a worker reports "ready" before its first reconciler pass has migrated the store.
        with d.store() as store:
            store.migrate()
        try:
            yield broker, d
        finally:
            d.kill_all()


@dataclass
class Kill:
    kind: str  # worker | child
    aimed: str  # generation | write
    phase: str  # the phase the victim was in when it died (phase log)
    pid: int
    worker: str
    briefs: list[str]
    offset: float

    @property
    def point(self) -> str:
        return "generation" if self.phase in GENERATION else "write"


@dataclass
class KillLoop:
    """Runs the kill plan against the deployment's two workers, restarting whole workers as they are killed."""

    d: Deployment
    rng: random.Random
    seen: int = 0
    workers: list[WorkerProcess] = field(default_factory=list)
    killed_workers: list[WorkerProcess] = field(default_factory=list)
    killed_children: set[int] = field(default_factory=set)
    pid_worker: dict[int, WorkerProcess] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    starts: dict[int, float] = field(default_factory=dict)
    brief_ids: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    restarts: int = 0
    fed_at: float = 0.0

    def start(self, name: str, *, wait: bool) -> WorkerProcess:
        worker = self.d.start_worker(name, wait=wait, **self.d.phase_env(write_delay=WRITE_DELAY))
        self.workers.append(worker)
        return worker

    def feed(self, minimum: int = 3, batch: int = 4) -> None:
        """Keep some briefs queued or running, so that kills always find work."""
        if time.monotonic() - self.fed_at < 1:
            return
        self.fed_at = time.monotonic()
        pending = self.d.sql("SELECT count(*) AS n FROM briefs WHERE status IN ('queued', 'running')")[0]["n"]
        if pending >= minimum:
            return
        prefix = f"crash{len(self.jobs)}"
        records = make_briefs(prefix, batch)
        path = write_briefs(self.d.root / f"{prefix}.yaml", records)
        self.jobs.append(self.d.submit(path)["job_id"])
        self.brief_ids += [r["id"] for r in records]

    def owner_of(self, pid: int) -> WorkerProcess | None:
        if pid not in self.pid_worker:
            for worker in self.workers:
                if worker.alive() and pid in worker.pool_pids():
                    self.pid_worker[pid] = worker
        return self.pid_worker.get(pid)

    def next_event(self, phase: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.d.phases(self.seen)
            for event in events:
                self.seen += 1
                self.observe(event)
                if event["phase"] == phase and psutil.pid_exists(event["pid"]) and self.owner_of(event["pid"]):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {phase!r} event in {timeout:.0f} s\n{self.d.logs()}")
            self.feed()
            time.sleep(0.02)

    def observe(self, event: dict[str, Any]) -> None:
        if event["phase"] == "generate":
            self.starts[event["pid"]] = event["t"]
        elif event["phase"] == "generated" and event["pid"] in self.starts:
            self.durations.append(event["t"] - self.starts.pop(event["pid"]))

    def generation_estimate(self) -> float:
        return statistics.median(self.durations) if self.durations else 1.0

    def kill(self, kind: str, aimed: str) -> Kill:
        phase = "generate" if aimed == "generation" else self.rng.choice(WRITE_POINTS)
        window = self.generation_estimate() if aimed == "generation" else WRITE_DELAY
        while True:  # aim again if the victim left the chosen phase before the moment came
            event = self.next_event(phase)
            offset = self.rng.uniform(0.05, 0.9) * window
            time.sleep(max(0.0, event["t"] + offset - time.time()))
            pid = event["pid"]
            if self.last_phase(pid) == phase:
                break
        victim = self.owner_of(pid)
        assert victim is not None
        if kind == "worker":
            victim.kill()
            self.killed_workers.append(victim)
            self.workers.remove(victim)
            self.restarts += 1
            self.start(f"{victim.name.split('.')[0]}.{self.restarts}", wait=False)
        else:
            kill_pid(pid)
            self.killed_children.add(pid)
        return Kill(kind, aimed, self.last_phase(pid), pid, victim.name, list(event["briefs"]), offset)

    def last_phase(self, pid: int) -> str:
        """The phase ``pid`` is in: its last phase-log event."""
        events = [e["phase"] for e in self.d.phases(0) if e["pid"] == pid]
        return events[-1] if events else ""

    def unexpected_deaths(self) -> list[str]:
        """Workers and pool children that died without being killed by this loop."""
        dead = [f"worker {w.name} (pid {w.pid})" for w in self.workers if not w.alive()]
        killed = {w.pid for w in self.killed_workers}
        for pid, worker in self.pid_worker.items():
            if worker.pid in killed or pid in self.killed_children or not worker.alive():
                continue
            if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                dead.append(f"pool child {pid} of {worker.name}")
        return dead


def kill_plan(rng: random.Random, broker: str) -> list[tuple[str, str]]:
    """Whole-worker and pool-child kills alternate (a restarted worker gets a kill's time to come up); the points
    of each kind are shuffled."""
    plans = []
    for kind in KINDS:
        points = [point for point, n in KILLS[broker].items() for _ in range(n)]
        rng.shuffle(points)
        plans.append([(kind, point) for point in points])
    rng.shuffle(plans)
    return [kill for pair in zip(*plans, strict=True) for kill in pair]


@pytest.mark.parametrize(
    "crash_deployment", ["embedded", pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)
def test_sigkill_workers_and_pool_children_at_random_points(
    crash_deployment: tuple[str, Deployment], ledger: Ledger
) -> None:
    broker, d = crash_deployment
    seed = crash_seed()
    print(f"crash faults: seed {seed} (COPYDESK_RELIABILITY_SEED={seed} replays the kill plan)")
    rng = random.Random(seed)
    plan = kill_plan(rng, broker)
    loop = KillLoop(d, rng)
    loop.start("a", wait=False)
    loop.start("b", wait=True)
    loop.feed()

    kills = []
    for kind, aimed in plan:
        kills.append(loop.kill(kind, aimed))
        assert all(w.alive() for w in loop.workers if w.pid not in {k.pid for k in loop.killed_workers}), d.logs()
        loop.feed()
    summary = Counter((k.kind, k.point, k.phase) for k in kills)
    print(f"crash faults (seed {seed}): {sum(summary.values())} kills: {dict(summary)}")

    for job_id in loop.jobs:
        d.wait_for_job(job_id, timeout=180)
    for worker in loop.workers:
        worker.wait_ready()
    counts = d.article_counts()
    rows = d.brief_rows()
    deaths = loop.unexpected_deaths()
    for kind in KINDS:
        for point in POINTS:
            hit = [k for k in kills if k.kind == kind and k.point == point]
            briefs = sorted({b for k in hit for b in k.briefs})
            lost, duplicates = lost_and_duplicated(counts, briefs)
            row = ledger.row(
                "crashes",
                f"SIGKILL {KINDS[kind]} {POINTS[point]}",
                injection=INJECTION[(kind, point)],
                checked=CHECKED,
            )
            crashes = len(deaths) if (kind, point) == ("child", "generation") else 0  # counted once per run
            row.add(runs=1, faults=len(hit), briefs=len(briefs), lost=lost, duplicates=duplicates, crashes=crashes)
    lost, duplicates = lost_and_duplicated(counts, loop.brief_ids)
    context = f"seed {seed}; kills {kills}; briefs {rows}\n{d.logs()}"
    assert (lost, duplicates) == (0, 0), context
    assert all(rows[b]["status"] == "done" for b in loop.brief_ids), context
    assert not deaths, f"{deaths}; {context}"


# ------------------------------------------------------------------------------- start-up race (regression)


def _publish_once(home: Path, go: Any, results: Any) -> None:
    from worker.config import Settings
    from worker.queue.celery_app import make_celery
    from worker.queue.submit import publish

    try:
        app = make_celery(Settings(home=home, broker_url=None))
        go.wait(30)
        publish(app, ["race-brief"])
        results.put("ok")
    except BaseException as exc:  # reported to the test, whatever it is
        results.put(f"{type(exc).__name__}: {exc}"[:300])


def test_processes_starting_at_once_on_a_fresh_embedded_broker_do_not_crash(tmp_path: Path, ledger: Ledger) -> None:
    """Regression: kombu creates the embedded broker's tables and queue rows with an in-process lock only, so
    two processes starting together on a fresh broker.db (two workers; a worker and ``submit``) raced and one
    died of ``UNIQUE constraint failed: kombu_queue.name`` or ``table kombu_queue already exists``.
    Eight forked processes publish at the same instant on a fresh broker, three times."""
    import multiprocessing

    import sqlalchemy as sa

    context = multiprocessing.get_context("fork")
    rounds, processes, failures, messages = 3, 8, [], 0
    for round_ in range(rounds):
        home = tmp_path / f"home-{round_}"
        go, results = context.Event(), context.Queue()
        children = [context.Process(target=_publish_once, args=(home, go, results)) for _ in range(processes)]
        for child in children:
            child.start()
        time.sleep(0.3)
        go.set()
        outcomes = [results.get(timeout=60) for _ in children]
        for child in children:
            child.join(timeout=30)
        failures += [o for o in outcomes if o != "ok"]
        engine = sa.create_engine(f"sqlite:///{home / 'broker.db'}")
        with engine.connect() as conn:
            messages += int(conn.execute(sa.text("SELECT count(*) FROM kombu_message")).scalar_one())
        engine.dispose()
    ledger.row(
        "crashes",
        "processes starting at once on a fresh embedded broker",
        injection="8 forked processes publish at the same instant on a new broker.db (3 rounds)",
        checked="no process fails; every message is in the broker",
    ).add(runs=rounds, faults=rounds * processes, briefs=rounds * processes, lost=rounds * processes - messages,
          crashes=len(failures))  # fmt: skip
    assert not failures, failures
    assert messages == rounds * processes
