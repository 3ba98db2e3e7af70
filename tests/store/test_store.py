"""The store stage: migrations, the brief ledger, articles and candidates, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool
from store_helpers import T0, FakeClock

from worker.config import Settings
from worker.errors import ConflictError, NotFoundError, StoreError, TransientStoreError
from worker.intake.briefs import Brief
from worker.results import ArticleResult, ArticleStatus, BriefStatus, CandidateResult
from worker.store import Store, article_id_for, latest_version
from worker.store.engine import parse_url, translate_errors

LEASE = 60.0
ALL_VERSIONS = list(range(1, latest_version() + 1))


def make_brief(n: int, **fields: Any) -> Brief:
    return Brief(id=f"brief-{n}", title=f"How to fix thing number {n}", category="home", tags=["diy"], **fields)


def make_result(
    brief_id: str,
    *,
    status: ArticleStatus = ArticleStatus.NEEDS_REVIEW,
    style: str = "plain-howto",
    candidates: list[CandidateResult] | None = None,
) -> ArticleResult:
    if candidates is None:
        candidates = [make_candidate(1, 0, selected=True), make_candidate(1, 1, passed=False)]
    return ArticleResult(
        brief_id=brief_id,
        status=status,
        title=f"Title of {brief_id}",
        body_markdown=f"# Title of {brief_id}\n\nBody with ünïcode.\n",
        style=style,
        adapter_version="v3",
        scores={"readability": {"value": 61.5, "passed": True}, "words": 612},
        failing_gates=[] if status == ArticleStatus.NEEDS_REVIEW else ["readability"],
        provenance={"model": "smollm2", "seed": 7, "nested": {"a": [1, 2]}},
        candidates=candidates,
    )


def make_candidate(attempt: int, index: int, *, passed: bool = True, selected: bool = False) -> CandidateResult:
    return CandidateResult(
        attempt=attempt,
        index=index,
        text=f"candidate {attempt}.{index}",
        scores={"words": 100 + index},
        failing_gates=[] if passed else ["length"],
        passed=passed,
        selected=selected,
        seed=2**40 + index,
        new_tokens=321,
        generation_seconds=1.25,
    )


def raw_count(url: str, table: str) -> int:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def run_in_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``n`` threads released together; return results (or raised exceptions)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def runner(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# -- migrations ---------------------------------------------------------------------------------------------


def test_migrate_creates_schema_and_is_idempotent(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.schema_version() == 0
        assert store.migrate() == ALL_VERSIONS
        assert store.schema_version() == latest_version() == len(ALL_VERSIONS)
        assert store.migrate() == []
        assert store.migrate() == []
    assert raw_count(store_url, "schema_migrations") == len(ALL_VERSIONS)
    engine = sa.create_engine(store_url, poolclass=NullPool)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"schema_migrations", "briefs", "articles", "candidates"} <= tables


def test_concurrent_migrations_record_the_version_once(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(4)]
    try:
        results = run_in_threads(4, lambda i: stores[i].migrate())
    finally:
        for s in stores:
            s.close()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(results) == [[], [], [], ALL_VERSIONS]
    assert raw_count(store_url, "schema_migrations") == len(ALL_VERSIONS)


_MIGRATE_SCRIPT = """
import json, sys, time
from worker.store import Store
url, start_at = sys.argv[1], float(sys.argv[2])
store = Store(url)
time.sleep(max(0.0, start_at - time.time()))
print(json.dumps(store.migrate()))
"""


def test_concurrent_migrations_from_separate_processes(store_url: str) -> None:
    start_at = time.time() + 1.0  # every process imports first, then all migrate at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_SCRIPT, store_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    assert sorted(json.loads(out) for out, _err in outputs) == [[], [], ALL_VERSIONS]
    assert raw_count(store_url, "schema_migrations") == len(ALL_VERSIONS)


def test_migrate_refuses_a_newer_schema(store: Store, store_url: str) -> None:
    engine = sa.create_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', :t)"),
                {"t": T0.replace(tzinfo=None)},
            )
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="version 99"):
        store.migrate()


def test_unmigrated_store_says_to_migrate(store_url: str) -> None:
    with Store(store_url) as store, pytest.raises(StoreError, match="migration") as info:
        store.get_brief("brief-1")
    assert not isinstance(info.value, (NotFoundError, TransientStoreError))


def test_sqlite_connection_settings_and_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "copydesk.db"
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
        engine = store._engine
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    assert path.is_file()


def test_from_settings_uses_the_effective_store_url(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with Store.from_settings(settings) as store:
        assert store.migrate() == ALL_VERSIONS
    assert (tmp_path / "home" / "copydesk.db").is_file()


def test_unsupported_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        Store("mysql://localhost/db")
    with pytest.raises(StoreError, match="invalid store URL"):
        Store("not a url")


# -- error mapping ------------------------------------------------------------------------------------------


def test_connection_refused_is_transient() -> None:
    with Store("postgresql+psycopg://postgres@127.0.0.1:1/test") as store, pytest.raises(TransientStoreError):
        store.count_by_status()


def test_database_locked_is_transient() -> None:
    error = sa_exc.OperationalError("UPDATE briefs", {}, sqlite3.OperationalError("database is locked"))
    with pytest.raises(TransientStoreError, match="retry"), translate_errors(parse_url("sqlite:///x.db")):
        raise error


def test_sqlite_lock_held_by_another_process_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
    impatient = Store(f"sqlite:///{path}")
    # runs after the store's own connect hook: wait 50 ms instead of 30 s for this test
    sa.event.listen(impatient._engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout = 50"))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with impatient, pytest.raises(TransientStoreError, match="locked"):
            impatient.add_brief(make_brief(1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store(f"sqlite:///{path}") as store:
        assert store.add_brief(make_brief(1)) is True


# -- briefs -------------------------------------------------------------------------------------------------


def test_add_brief_is_idempotent(store: Store, store_url: str, clock: FakeClock) -> None:
    brief = make_brief(1, keywords=["faucet", "leak"])
    assert store.add_brief(brief, source="briefs.csv:3", job_id="job-1") is True
    clock.advance(10)
    assert store.add_brief(brief, source="other.csv:9", job_id="job-2") is False
    assert store.add_brief(make_brief(1, notes="different content, same id")) is False
    assert raw_count(store_url, "briefs") == 1

    record = store.get_brief("brief-1")
    assert record.brief == brief
    assert record.status is BriefStatus.QUEUED
    assert (record.attempts, record.lease_owner, record.lease_expires_at, record.last_error) == (0, None, None, None)
    assert (record.source, record.job_id) == ("briefs.csv:3", "job-1")
    assert record.created_at == record.updated_at == T0
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset() == timedelta(0)


def test_derived_brief_ids_round_trip(store: Store) -> None:
    brief = Brief(title="An explainer without an id")
    assert store.add_brief(brief)
    assert store.get_brief(brief.brief_id).brief == brief


def test_get_unknown_brief_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        store.get_brief("nope")


def test_claim_leases_and_counts_attempts(store: Store, clock: FakeClock) -> None:
    store.add_brief(make_brief(1))
    first = store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=3)
    assert first is not None
    assert (first.status, first.attempts, first.lease_owner) == (BriefStatus.RUNNING, 1, "w1")
    assert first.lease_expires_at == T0 + timedelta(seconds=LEASE)

    clock.advance(LEASE - 1)
    assert store.claim_brief("brief-1", owner="w2", lease_seconds=LEASE, max_attempts=3) is None
    assert store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=3) is None
    assert store.get_brief("brief-1").attempts == 1

    clock.advance(1)  # the lease has now expired
    second = store.claim_brief("brief-1", owner="w2", lease_seconds=LEASE, max_attempts=3)
    assert second is not None
    assert (second.attempts, second.lease_owner) == (2, "w2")
    assert store.renew_lease("brief-1", owner="w1", lease_seconds=LEASE) is False
    clock.advance(30)
    assert store.renew_lease("brief-1", owner="w2", lease_seconds=LEASE) is True
    assert store.get_brief("brief-1").lease_expires_at == clock.now + timedelta(seconds=LEASE)


def test_only_one_of_many_concurrent_claims_wins(store_url: str, clock: FakeClock) -> None:
    with Store(store_url, clock=clock) as setup:
        setup.migrate()
        setup.add_brief(make_brief(1))
    workers = [Store(store_url, clock=clock) for _ in range(6)]
    try:
        results = run_in_threads(
            6, lambda i: workers[i].claim_brief("brief-1", owner=f"w{i}", lease_seconds=LEASE, max_attempts=5)
        )
    finally:
        for w in workers:
            w.close()
    assert not [r for r in results if isinstance(r, Exception)], results
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    with Store(store_url) as check:
        record = check.get_brief("brief-1")
    assert (record.attempts, record.lease_owner) == (1, winners[0].lease_owner)


def test_poison_brief_fails_after_max_attempts(store: Store, clock: FakeClock) -> None:
    store.add_brief(make_brief(1))
    for attempt in (1, 2):
        record = store.claim_brief("brief-1", owner=f"w{attempt}", lease_seconds=LEASE, max_attempts=2)
        assert record is not None and record.attempts == attempt
        clock.advance(LEASE + 1)  # the worker died: its lease expires
    assert store.claim_brief("brief-1", owner="w3", lease_seconds=LEASE, max_attempts=2) is None
    record = store.get_brief("brief-1")
    assert record.status is BriefStatus.FAILED
    assert record.attempts == 2
    assert record.last_error == "gave up after 2 attempts"
    assert (record.lease_owner, record.lease_expires_at) == (None, None)


def test_poison_brief_keeps_its_last_error(store: Store) -> None:
    store.add_brief(make_brief(1))
    assert store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=1) is not None
    store.fail_brief("brief-1", "CUDA out of memory", final=False)
    assert store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=1) is None
    record = store.get_brief("brief-1")
    assert record.status is BriefStatus.FAILED
    assert record.last_error == "gave up after 1 attempts; last error: CUDA out of memory"


def test_claim_returns_none_for_settled_briefs(store: Store) -> None:
    for n in (1, 2):
        store.add_brief(make_brief(n))
    store.claim_brief("brief-1", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.save_article(make_result("brief-1"), owner="w")
    store.fail_brief("brief-2", "bad input", final=True)
    for brief_id in ("brief-1", "brief-2"):
        assert store.claim_brief(brief_id, owner="w", lease_seconds=LEASE, max_attempts=3) is None
    assert store.get_brief("brief-1").status is BriefStatus.DONE
    assert store.get_brief("brief-2").status is BriefStatus.FAILED
    with pytest.raises(NotFoundError):
        store.claim_brief("missing", owner="w", lease_seconds=LEASE, max_attempts=3)


def test_claim_rejects_bad_arguments(store: Store) -> None:
    store.add_brief(make_brief(1))
    with pytest.raises(ValueError):
        store.claim_brief("brief-1", owner="", lease_seconds=LEASE, max_attempts=3)
    with pytest.raises(ValueError):
        store.claim_brief("brief-1", owner="w", lease_seconds=0, max_attempts=3)
    with pytest.raises(ValueError):
        store.claim_brief("brief-1", owner="w", lease_seconds=LEASE, max_attempts=0)
    assert store.get_brief("brief-1").attempts == 0


def test_fail_brief_requeues_or_fails(store: Store) -> None:
    store.add_brief(make_brief(1))
    store.claim_brief("brief-1", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("brief-1", "timeout", final=False)
    record = store.get_brief("brief-1")
    assert (record.status, record.last_error, record.lease_owner, record.lease_expires_at) == (
        BriefStatus.QUEUED,
        "timeout",
        None,
        None,
    )
    again = store.claim_brief("brief-1", owner="w", lease_seconds=LEASE, max_attempts=3)
    assert again is not None and again.attempts == 2
    store.fail_brief("brief-1", "adapter missing", final=True)
    record = store.get_brief("brief-1")
    assert (record.status, record.last_error) == (BriefStatus.FAILED, "adapter missing")
    with pytest.raises(NotFoundError):
        store.fail_brief("missing", "x", final=True)


def test_fail_brief_leaves_done_briefs_alone(store: Store) -> None:
    store.add_brief(make_brief(1))
    store.save_article(make_result("brief-1"))
    store.fail_brief("brief-1", "late failure", final=True)
    record = store.get_brief("brief-1")
    assert (record.status, record.last_error) == (BriefStatus.DONE, None)


def test_stale_briefs(store: Store, clock: FakeClock) -> None:
    store.add_brief(make_brief(1))  # queued at T0: stale
    store.add_brief(make_brief(2))  # claimed at T0, lease to T0+60: expired at T0+100
    store.claim_brief("brief-2", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.add_brief(make_brief(3))  # done: never stale
    store.save_article(make_result("brief-3"))
    clock.advance(90)
    store.add_brief(make_brief(4))  # queued at T0+90: recent
    store.add_brief(make_brief(5))  # claimed at T0+90, live lease
    store.claim_brief("brief-5", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.add_brief(make_brief(6))  # requeued at T0+90 after a failure: recent
    store.fail_brief("brief-6", "retry me", final=False)

    stale = store.stale_briefs(queued_before=T0 + timedelta(seconds=30), now=T0 + timedelta(seconds=100))
    assert stale == ["brief-1", "brief-2"]
    later = store.stale_briefs(queued_before=T0 + timedelta(seconds=200), now=T0 + timedelta(seconds=200))
    assert sorted(later) == ["brief-1", "brief-2", "brief-4", "brief-5", "brief-6"]
    assert store.stale_briefs(queued_before=T0, now=T0) == []


def test_count_by_status(store: Store) -> None:
    assert store.count_by_status() == {s.value: 0 for s in BriefStatus}
    for n in range(1, 5):
        store.add_brief(make_brief(n))
    store.claim_brief("brief-1", owner="w", lease_seconds=LEASE, max_attempts=3)
    store.save_article(make_result("brief-2"))
    store.fail_brief("brief-3", "x", final=True)
    assert store.count_by_status() == {
        "queued": 1,
        "running": 1,
        "done": 1,
        "failed": 1,
        "cancelled": 0,
        "expired": 0,
    }


# -- articles -----------------------------------------------------------------------------------------------


def test_save_article_stores_article_candidates_and_marks_done(store: Store, clock: FakeClock) -> None:
    store.add_brief(make_brief(1))
    store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=3)
    clock.advance(5)
    result = make_result("brief-1")
    article = store.save_article(result, owner="w1")

    assert article.id == "a-brief-1" == article_id_for("brief-1")
    assert article.brief_id == "brief-1"
    assert article.status == "needs_review"
    assert (article.title, article.body_markdown, article.style) == (result.title, result.body_markdown, "plain-howto")
    assert (article.scores, article.failing_gates, article.provenance) == (result.scores, [], result.provenance)
    assert (article.adapter_version, article.revision, article.file_path) == ("v3", 1, None)
    assert article.created_at == T0 + timedelta(seconds=5)
    assert store.get_article("a-brief-1") == article
    assert store.get_article("brief-1") == article

    brief = store.get_brief("brief-1")
    assert (brief.status, brief.lease_owner, brief.lease_expires_at) == (BriefStatus.DONE, None, None)

    stored = store.list_candidates("brief-1")
    assert [(c["attempt"], c["index"], c["selected"], c["passed"]) for c in stored] == [
        (1, 0, True, True),
        (1, 1, False, False),
    ]
    assert stored[0]["seed"] == 2**40
    assert stored[1]["failing_gates"] == ["length"]
    assert stored[1]["scores"] == {"words": 101}
    assert stored[0]["generation_seconds"] == pytest.approx(1.25)
    assert store.list_candidates("brief-2") == []


def test_second_article_for_a_brief_is_a_conflict(store: Store, store_url: str) -> None:
    store.add_brief(make_brief(1))
    first = store.save_article(make_result("brief-1"))
    duplicate = make_result("brief-1", status=ArticleStatus.NEEDS_ATTENTION, candidates=[make_candidate(2, 0)])
    with pytest.raises(ConflictError, match="already has an article"):
        store.save_article(duplicate)
    assert raw_count(store_url, "articles") == 1
    assert len(store.list_candidates("brief-1")) == 2  # the duplicate's candidate was rolled back
    assert store.get_article("brief-1") == first


def test_database_enforces_one_article_per_brief(store: Store, store_url: str) -> None:
    store.add_brief(make_brief(1))
    store.save_article(make_result("brief-1"))
    engine = sa.create_engine(store_url, poolclass=NullPool)
    insert = sa.text(
        "INSERT INTO articles (id, brief_id, status, title, body_markdown, style, scores, failing_gates,"
        " provenance, revision, created_at, updated_at) VALUES ('sneaky', 'brief-1', 'needs_review', 't', 'b',"
        " 's', '{}', '[]', '{}', 1, :t, :t)"
    )
    try:
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as conn:
            conn.execute(insert, {"t": T0})
    finally:
        engine.dispose()
    assert raw_count(store_url, "articles") == 1


def test_concurrent_saves_create_one_article(store_url: str) -> None:
    with Store(store_url) as setup:
        setup.migrate()
        setup.add_brief(make_brief(1))
    workers = [Store(store_url) for _ in range(4)]
    try:
        results = run_in_threads(4, lambda i: workers[i].save_article(make_result("brief-1")))
    finally:
        for w in workers:
            w.close()
    assert sum(1 for r in results if isinstance(r, ConflictError)) == 3, results
    assert raw_count(store_url, "articles") == 1
    assert raw_count(store_url, "candidates") == 2


def test_save_under_a_lost_lease_is_a_conflict(store: Store, store_url: str, clock: FakeClock) -> None:
    store.add_brief(make_brief(1))
    store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=3)
    clock.advance(LEASE + 1)
    store.claim_brief("brief-1", owner="w2", lease_seconds=LEASE, max_attempts=3)
    with pytest.raises(ConflictError, match="no longer leased"):
        store.save_article(make_result("brief-1"), owner="w1")
    assert raw_count(store_url, "articles") == 0
    assert store.get_brief("brief-1").lease_owner == "w2"
    assert store.save_article(make_result("brief-1"), owner="w2").brief_id == "brief-1"


def test_save_article_is_atomic(store: Store, store_url: str) -> None:
    store.add_brief(make_brief(1))
    store.claim_brief("brief-1", owner="w1", lease_seconds=LEASE, max_attempts=3)
    broken = make_result("brief-1", candidates=[make_candidate(1, 0), make_candidate(1, 0)])  # same index twice
    with pytest.raises(StoreError) as info:
        store.save_article(broken, owner="w1")
    assert not isinstance(info.value, ConflictError)
    assert raw_count(store_url, "articles") == 0
    assert raw_count(store_url, "candidates") == 0
    with pytest.raises(NotFoundError):
        store.get_article("brief-1")
    brief = store.get_brief("brief-1")
    assert (brief.status, brief.lease_owner) == (BriefStatus.RUNNING, "w1")
    assert store.save_article(make_result("brief-1"), owner="w1").id == "a-brief-1"


def test_save_article_for_unknown_or_cancelled_brief(store: Store, store_url: str) -> None:
    with pytest.raises(NotFoundError):
        store.save_article(make_result("missing"))
    store.add_brief(make_brief(1))
    engine = sa.create_engine(store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE briefs SET status = 'cancelled'"))
    finally:
        engine.dispose()
    with pytest.raises(ConflictError, match="cancelled"):
        store.save_article(make_result("brief-1"))
    assert raw_count(store_url, "articles") == 0


def test_list_articles_filters_and_orders(store: Store, clock: FakeClock) -> None:
    specs = [
        (1, ArticleStatus.NEEDS_REVIEW, "plain-howto"),
        (2, ArticleStatus.NEEDS_ATTENTION, "plain-howto"),
        (3, ArticleStatus.NEEDS_REVIEW, "upbeat-listicle"),
        (4, ArticleStatus.NEEDS_REVIEW, "plain-howto"),
    ]
    for n, status, style in specs:
        store.add_brief(make_brief(n))
        store.save_article(make_result(f"brief-{n}", status=status, style=style))
        clock.advance(1)

    def ids(records: list[Any]) -> list[str]:
        return [r.brief_id for r in records]

    assert ids(store.list_articles()) == ["brief-4", "brief-3", "brief-2", "brief-1"]
    assert ids(store.list_articles(status="needs_review")) == ["brief-4", "brief-3", "brief-1"]
    assert ids(store.list_articles(status=ArticleStatus.NEEDS_ATTENTION)) == ["brief-2"]
    assert ids(store.list_articles(style="plain-howto")) == ["brief-4", "brief-2", "brief-1"]
    assert ids(store.list_articles(status="needs_review", style="plain-howto")) == ["brief-4", "brief-1"]
    assert ids(store.list_articles(limit=2)) == ["brief-4", "brief-3"]
    assert store.list_articles(status="published") == []
    with pytest.raises(ValueError):
        store.list_articles(limit=0)
    # the near-duplicate check's light read: the same articles of a style, newest first, text columns only
    texts = store.recent_article_texts(style="plain-howto", limit=2)
    assert [(t.brief_id, t.id) for t in texts] == [
        (r.brief_id, r.id) for r in store.list_articles(style="plain-howto")
    ][:2]
    assert [t.body_markdown for t in texts] == [
        r.body_markdown for r in store.list_articles(style="plain-howto", limit=2)
    ]
    assert store.recent_article_texts(style="no-such-style", limit=5) == []
    with pytest.raises(ValueError):
        store.recent_article_texts(style="plain-howto", limit=0)


def test_set_article_file(store: Store, clock: FakeClock) -> None:
    store.add_brief(make_brief(1))
    article = store.save_article(make_result("brief-1"))
    clock.advance(3)
    store.set_article_file(article.id, "/srv/articles/plain-howto/a-brief-1.md")
    updated = store.get_article(article.id)
    assert updated.file_path == "/srv/articles/plain-howto/a-brief-1.md"
    assert updated.updated_at == article.updated_at + timedelta(seconds=3)
    assert replace(updated, file_path=None, updated_at=article.updated_at) == article
    with pytest.raises(NotFoundError):
        store.set_article_file("a-missing", "/x.md")


def test_get_unknown_article_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get_article("a-nothing")


def test_long_brief_ids_get_safe_article_ids() -> None:
    long_id = "b" * 128
    article_id = article_id_for(long_id)
    assert article_id.startswith("a-") and len(article_id) == 34
    assert article_id_for("b-0123abcd") == "a-b-0123abcd"
