"""Poison and hang: briefs and messages that can never succeed must not stop the others.

Real ``copydesk worker`` processes (prefork pool, tiny model, embedded broker unless said otherwise), with the
test hooks of :mod:`store_fault_helpers`:

* a poison brief whose generation kills its pool process every time ends ``failed`` after
  ``max_brief_attempts`` claims, with its error recorded, while the briefs batched with it complete;
* a generation that hangs (and swallows the soft time limit) is killed by the hard time limit; the kill is
  recorded on the brief, its lease ends at once, it is taken again, and after ``max_brief_attempts`` it is
  ``failed`` while the others complete;
* corrupt messages put straight onto the queue (invalid JSON, unknown task, missing or ill-typed arguments,
  a pickle, a body of the wrong shape, no task headers) are dropped by the worker, which keeps running
  (no restart needed) and completes the briefs queued behind them.

Figures are measured from the store (articles per brief), the test hooks' run log and the process table.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from ledger import Ledger, lost_and_duplicated
from model_fixtures import tiny_model_dir
from queue_helpers import Deployment, make_briefs, wait_until, write_briefs
from store_fault_helpers import (
    deploy,
    embedded_broker_url,
    publish_raw,
    reliability_files,
    settle,
    task_headers,
)

from worker.store import JobCounts

__all__ = ["deploy", "reliability_files", "tiny_model_dir"]  # fixtures used by name


def dead_pids(d: Deployment, also: set[int]) -> set[int]:
    """Processes that generated a batch (run log) or were seen in a pool, and are gone now."""
    pids = {run["pid"] for run in d.runs()} | also

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return {pid for pid in pids if gone(pid)}


def poisoned_pids(d: Deployment, brief_id: str) -> set[int]:
    return {run["pid"] for run in d.runs() if brief_id in run["briefs"]}


# ------------------------------------------------------------------------------------------------ poison

POISON_ATTEMPTS = 3


def test_a_brief_that_crashes_its_process_every_time_fails_after_n_attempts(
    deploy: Callable[..., Deployment], ledger: Ledger, tmp_path: Path
) -> None:
    row = ledger.row(
        "poison and hang",
        "brief that kills its worker process on every attempt",
        injection="test hook: os._exit(1) in the pool process whenever the batch holds the poison brief; "
        f"max_brief_attempts {POISON_ATTEMPTS}; batched with 4 good briefs",
        checked=f"poison brief failed after exactly {POISON_ATTEMPTS} counted attempts with its error; its crashed "
        "batch retried in halves (uncounted) until it is alone; the others completed once each; main process alive",
    )
    d = deploy(max_brief_attempts=POISON_ATTEMPTS, flush_size=5)
    poison = {"id": "poison", "title": "CRASH-ME bring a worker down", "category": "quick-cat", "target_words": 50}
    good = make_briefs("good", 4)
    ids = [r["id"] for r in good]
    worker = d.start_worker(COPYDESK_TEST_CRASH_ON_TITLE="CRASH-ME")
    pool_at_start = set(worker.pool_pids())
    job_id = d.submit(write_briefs(tmp_path / "poison.yaml", [poison, *good]))["job_id"]

    job = settle(d, job_id, timeout=120)
    lost, duplicates = lost_and_duplicated(d.article_counts(), ids)
    died = dead_pids(d, pool_at_start | set(worker.pool_pids()))
    poisoned = poisoned_pids(d, "poison")
    crashes = (0 if worker.alive() else 1) + len(died - poisoned)  # deaths the poison did not cause
    row.add(runs=1, faults=len(poisoned), briefs=1 + len(ids), lost=lost, duplicates=duplicates, crashes=crashes)

    assert job.counts == JobCounts(total=5, done=4, failed=1), (job, d.brief_rows(), d.logs())
    assert (lost, duplicates, crashes) == (0, 0, 0), (d.article_counts(), died, poisoned, d.logs())
    rows = d.brief_rows()
    assert rows["poison"]["status"] == "failed" and rows["poison"]["attempts"] == POISON_ATTEMPTS, rows["poison"]
    assert rows["poison"]["last_error"].startswith(f"gave up after {POISON_ATTEMPTS} attempts"), rows["poison"]
    assert d.article_counts()["poison"] == 0
    batches = [run["briefs"] for run in d.runs() if "poison" in run["briefs"]]
    # 5 briefs, then the half good-3 + poison (bisection, not counted), then alone: POISON_ATTEMPTS - 1 times
    assert [len(batch) for batch in batches] == [5, 2] + [1] * (POISON_ATTEMPTS - 1), d.runs()
    assert all(batch == ["poison"] for batch in batches[2:]), batches
    assert poisoned <= died, (poisoned, died)  # each poisoned process really died


# ------------------------------------------------------------------------------------------------ hang

SOFT_LIMIT_S, HARD_LIMIT_S, LEASE_S = 8, 10, 15
HANG_ATTEMPTS = 2


def test_a_generation_hanging_past_the_hard_time_limit_is_killed_recorded_and_failed(
    deploy: Callable[..., Deployment], ledger: Ledger, tmp_path: Path
) -> None:
    row = ledger.row(
        "poison and hang",
        "generation that hangs past the hard time limit",
        injection=f"test hook: the batch holding the brief sleeps for ever and swallows the soft limit; "
        f"soft/hard limit {SOFT_LIMIT_S}/{HARD_LIMIT_S} s, lease {LEASE_S} s, max_brief_attempts {HANG_ATTEMPTS}",
        checked="pool process killed at the hard limit each time; the kill is recorded on the brief; its lease "
        "ends and it is retried alone, then failed; the others completed once each; main process alive",
    )
    d = deploy(
        max_brief_attempts=HANG_ATTEMPTS,
        flush_size=2,
        task_soft_time_limit=SOFT_LIMIT_S,
        task_time_limit=HARD_LIMIT_S,
        lease_seconds=LEASE_S,
    )
    hung = {"id": "hung", "title": "HANG-ME a never-ending story", "category": "quick-cat", "target_words": 50}
    good = make_briefs("calm", 3)
    ids = [r["id"] for r in good]
    worker = d.start_worker(concurrency=2, COPYDESK_TEST_HANG_ON_TITLE="HANG-ME")
    pool_at_start = set(worker.pool_pids())
    job_id = d.submit(write_briefs(tmp_path / "hang.yaml", [hung, *good]))["job_id"]

    job = settle(d, job_id, timeout=150)
    lost, duplicates = lost_and_duplicated(d.article_counts(), ids)
    died = dead_pids(d, pool_at_start | set(worker.pool_pids()))
    hanging = poisoned_pids(d, "hung")
    crashes = (0 if worker.alive() else 1) + len(died - hanging)
    row.add(runs=1, faults=len(hanging), briefs=1 + len(ids), lost=lost, duplicates=duplicates, crashes=crashes)

    log = worker.log(0)
    assert job.counts == JobCounts(total=4, done=3, failed=1), (job, d.brief_rows(), d.logs())
    assert (lost, duplicates, crashes) == (0, 0, 0), (d.article_counts(), died, hanging, d.logs())
    assert log.count(f"Hard time limit ({HARD_LIMIT_S}") == HANG_ATTEMPTS, log
    assert hanging <= died and len(hanging) == HANG_ATTEMPTS, (hanging, died)  # killed each time
    rows = d.brief_rows()
    hung_row = rows["hung"]
    assert hung_row["status"] == "failed" and hung_row["attempts"] == HANG_ATTEMPTS, hung_row
    assert hung_row["last_error"].startswith(f"gave up after {HANG_ATTEMPTS} attempts"), hung_row
    assert f"hard time limit ({HARD_LIMIT_S} s)" in hung_row["last_error"], hung_row  # the kill is recorded
    batches = [run["briefs"] for run in d.runs() if "hung" in run["briefs"]]
    assert all(batch == ["hung"] for batch in batches[1:]), batches


# ------------------------------------------------------------------------------------------------ corrupt

BRIEF = "copydesk.write_brief"


def corrupt_messages(known_id: str) -> list[tuple[str, dict[str, object]]]:
    """(what it is, publish_raw keyword arguments) for each corrupt message."""

    def task(body: object, **headers: object) -> dict[str, object]:
        return {"body": json.dumps(body), "headers": task_headers(**headers)}  # type: ignore[arg-type]

    return [
        ("invalid JSON body", {"body": '[["' + known_id + '"], {}, {', "headers": task_headers()}),
        ("binary garbage body", {"body": bytes(range(256)), "headers": task_headers()}),
        ("unknown task name", task([[known_id], {}, {}], task="copydesk.no_such_task")),
        ("missing arguments", task([[], {}, {}])),
        ("too many arguments", task([[known_id, "extra"], {}, {}])),
        ("unknown keyword argument", task([[], {"brief": known_id}, {}])),
        ("ill-typed argument: object", task([[{"id": known_id}], {}, {}])),
        ("ill-typed argument: number", task([[12345], {}, {}])),
        ("path-like brief id", task([["../../etc/passwd"], {}, {}])),
        ("unknown brief id", task([["no-such-brief"], {}, {}])),
        ("body of the wrong shape: object", task({"unexpected": known_id})),
        ("body of the wrong shape: string", task("write it")),
        ("body of the wrong shape: nulls", task([None, None, None])),
        ("malformed eta header", task([[known_id], {}, {}], eta="not a date")),
        ("malformed time limit header", task([[known_id], {}, {}], timelimit="soon")),
        ("no task headers", {"body": json.dumps([[known_id], {}, {}]), "headers": {}}),
        ("no id header", {"body": json.dumps([[known_id], {}, {}]), "headers": {"lang": "py", "task": BRIEF}}),
        (
            "pickle (not accepted)",
            {
                "body": pickle.dumps(([known_id], {}, {})),
                "content_type": "application/x-python-serialize",
                "headers": task_headers(),
            },
        ),
    ]


@pytest.mark.parametrize("broker", ["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def test_corrupt_messages_on_the_queue_do_not_stop_the_others(
    broker: str, deploy: Callable[..., Deployment], ledger: Ledger, tmp_path: Path
) -> None:
    row = ledger.row(
        "poison and hang",
        "corrupt messages on the queue",
        injection="published straight onto the generate queue with kombu, between two jobs: invalid JSON, binary "
        "garbage, unknown task, missing/extra/unknown/ill-typed arguments, path-like and unknown brief ids, "
        "wrong body shapes, no task headers, a pickle (embedded broker and Redis)",
        checked="every message consumed and dropped; the briefs queued behind them completed once each "
        "(flush size 1, no republishing); main and pool processes never died",
    )
    d = deploy(broker=broker, flush_size=1, stale_after=600)  # each brief needs its own message to be written
    worker = d.start_worker()
    pool_at_start = set(worker.pool_pids())
    before, after = make_briefs(f"before-{broker}", 2), make_briefs(f"after-{broker}", 2)
    ids = [r["id"] for r in [*before, *after]]
    first = d.submit(write_briefs(tmp_path / "before.yaml", before))["job_id"]
    messages = corrupt_messages(before[0]["id"])
    url = d.broker_url or embedded_broker_url(d)
    for _, kwargs in messages:
        publish_raw(url, **kwargs)  # type: ignore[arg-type]
    second = d.submit(write_briefs(tmp_path / "after.yaml", after))["job_id"]

    jobs = [settle(d, job_id, timeout=120) for job_id in (first, second)]
    lost, duplicates = lost_and_duplicated(d.article_counts(), ids)
    died = dead_pids(d, pool_at_start | set(worker.pool_pids()))
    crashes = (0 if worker.alive() else 1) + len(died)
    row.add(runs=1, faults=len(messages), briefs=len(ids), lost=lost, duplicates=duplicates, crashes=crashes)

    assert all(job.counts == JobCounts(total=2, done=2) for job in jobs), (jobs, d.logs())
    assert (lost, duplicates, crashes) == (0, 0, 0), (d.article_counts(), died, d.logs())
    assert set(worker.pool_pids()) == pool_at_start, "the pool must not have been restarted"
    if broker == "embedded":
        wait_until(
            lambda: d.embedded_broker_messages(visible_only=True) == 0,
            timeout=30,
            message=lambda: f"messages left on the embedded broker\n{d.logs()}",
        )
    else:
        import redis

        client = redis.Redis.from_url(d.broker_url or "", socket_connect_timeout=5)
        try:
            wait_until(lambda: client.llen("generate") == 0, timeout=30, message="messages left on Redis")
        finally:
            client.close()


# ------------------------------------------------------------------------------------------------ regression (unit)


def test_a_hard_time_limit_is_recorded_on_the_briefs_of_the_killed_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a generation killed by the hard time limit left no trace on its brief (the reconciler ended
    the lease of the dead process, and the brief finally failed with "gave up after N attempts" and no cause)."""
    from types import SimpleNamespace

    from worker.intake.briefs import Brief
    from worker.pipeline.runner import worker_identity
    from worker.store import Store
    from worker.tasks import write as tasks

    killed, other = worker_identity("celery", 4242), worker_identity("celery", 4343)
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.migrate()
        for n in range(2):
            store.add_brief(Brief(id=f"b-{n}", title=f"How to fix thing {n}", category="home"))
        store.claim_brief("b-0", owner=killed, lease_seconds=600, max_attempts=2)
        store.claim_brief("b-1", owner=other, lease_seconds=600, max_attempts=2)
        monkeypatch.setattr(tasks, "resources", lambda: SimpleNamespace(store=store))

        assert tasks.record_hard_time_limit(4242, 10.0) == 1
        record = store.get_brief("b-0")
        assert record.last_error and record.last_error.startswith("hard time limit (10 s) exceeded"), record
        assert store.get_brief("b-1").last_error is None
        assert store.claim_brief("b-0", owner=other, lease_seconds=600, max_attempts=2) is not None  # lease over
        store.fail_brief("b-0", "x", final=False)
        store.claim_brief("b-0", owner=killed, lease_seconds=600, max_attempts=2)
        store.expire_leases_of(killed)
        assert store.claim_brief("b-0", owner=other, lease_seconds=600, max_attempts=2) is None  # gave up
        assert store.get_brief("b-0").status == "failed"
    assert tasks.write_brief.Request is tasks.WriteBriefRequest


@pytest.mark.parametrize(
    ("headers", "payload", "problem"),
    [
        ({"task": BRIEF, "id": "t"}, [["b-1"], {}, {}], None),
        ({"task": BRIEF, "id": "t", "timelimit": [None, 5]}, [["b-1"], {}, None], None),
        ({}, "protocol 1: Celery's own checks", None),
        ({"task": BRIEF}, [["b-1"], {}, {}], "the id header is missing"),
        ({"task": BRIEF, "id": 7}, [["b-1"], {}, {}], "the id header is missing"),
        ({"task": BRIEF, "id": "t", "timelimit": "soon"}, [["b-1"], {}, {}], "bad timelimit header"),
        ({"task": BRIEF, "id": "t", "timelimit": [1, 2, 3]}, [["b-1"], {}, {}], "bad timelimit header"),
        ({"task": BRIEF, "id": "t", "timelimit": [True, 2]}, [["b-1"], {}, {}], "bad timelimit header"),
        ({"task": BRIEF, "id": "t"}, "write it", "the body is not"),
        ({"task": BRIEF, "id": "t"}, {"unexpected": 1}, "the body is not"),
        ({"task": BRIEF, "id": "t"}, [None, None, None], "the body is not"),
        ({"task": BRIEF, "id": "t"}, [["b-1"], [], {}], "the body is not"),
        ({"task": BRIEF, "id": "t"}, [["b-1"], {}, 3], "the body is not"),
    ],
)
def test_malformed_task_messages_are_recognised_before_celery_reserves_them(
    headers: dict[str, object], payload: object, problem: str | None
) -> None:
    """Regression: such messages raised ValueError/TypeError out of Celery's consumer ("Unrecoverable error":
    the whole worker stopped), or, caught too late, held a pool slot for ever."""
    from types import SimpleNamespace

    from celery.exceptions import InvalidTaskError

    from worker.queue.celery_app import app, check_message

    message = SimpleNamespace(headers=headers, payload=payload)
    if problem is None:
        check_message(message, BRIEF)
    else:
        with pytest.raises(InvalidTaskError, match=f"^malformed {re.escape(BRIEF)} message: {re.escape(problem)}"):
            check_message(message, BRIEF)
    assert all(task.Strategy == "worker.queue.celery_app:guarded_strategy" for task in app.tasks.values())
