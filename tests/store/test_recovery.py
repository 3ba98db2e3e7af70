"""The store's recovery queries: a dead process's leases end in one statement, whole batches only."""

from __future__ import annotations

from store_helpers import FakeClock

from worker.intake.briefs import Brief
from worker.results import BriefStatus
from worker.store import Store

LEASE = 3600.0


def add_briefs(store: Store, count: int) -> None:
    store.create_job(
        [(Brief(id=f"b-{i}", title="How to fix a thing", category="home"), "t.yaml") for i in range(count)]
    )


def test_expire_leases_of_ends_every_lease_of_one_owner_and_no_other(store: Store, clock: FakeClock) -> None:
    add_briefs(store, 5)
    for i in range(3):
        store.claim_brief(f"b-{i}", owner="celery@h:1", lease_seconds=LEASE, max_attempts=3)
    store.claim_brief("b-3", owner="celery@h:2", lease_seconds=LEASE, max_attempts=3)
    assert store.running_lease_owners() == {"celery@h:1", "celery@h:2"}  # one per owner, not per brief

    assert store.expire_leases_of("celery@h:1", error="killed") == ["b-0", "b-1", "b-2"]
    assert store.crashed_batches() == [["b-0", "b-1", "b-2"]]
    assert {store.get_brief(f"b-{i}").last_error for i in range(3)} == {"killed"}
    other = store.get_brief("b-3")
    assert other.lease_expires_at > store._now() and other.last_error is None
    assert store.get_brief("b-4").status == BriefStatus.QUEUED
    assert store.expire_leases_of("celery@h:9") == []


def test_expire_leases_of_leaves_settled_briefs_alone(store: Store, clock: FakeClock) -> None:
    add_briefs(store, 2)
    for i in range(2):
        store.claim_brief(f"b-{i}", owner="celery@h:1", lease_seconds=LEASE, max_attempts=3)
    store.fail_brief("b-1", "bad", final=True)
    assert store.expire_leases_of("celery@h:1") == ["b-0"]
    assert store.get_brief("b-1").status == BriefStatus.FAILED
