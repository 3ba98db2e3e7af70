"""Batch claims (:meth:`worker.store.Store.claim_briefs`) on SQLite and PostgreSQL: the same outcome, brief by
brief, as :meth:`~worker.store.Store.claim_brief` (attempt counting, retry groups, poison give-up), in one
transaction."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from store_helpers import FakeClock

from worker.errors import NotFoundError
from worker.intake.briefs import Brief
from worker.results import BriefStatus
from worker.store import Store
from worker.store.schema import briefs

LEASE = 60.0
MAX = 3

#: name -> the ``briefs`` columns a brief in that state has (all start queued, never attempted)
STATES: dict[str, dict[str, Any]] = {
    "fresh": {},
    "retried": {"attempts": 2, "last_error": "boom"},
    "poison": {"attempts": MAX, "last_error": "killed"},
    "poison-no-error": {"attempts": MAX},
    "poison-in-group": {"attempts": MAX, "retry_group": "retry-g1"},
    "in-group": {"attempts": 1, "retry_group": "retry-g2"},
    "running-live": {"status": "running", "attempts": 1, "lease_owner": "other", "lease": 600},
    "running-expired": {"status": "running", "attempts": 1, "lease_owner": "dead", "lease": -5},
    "running-expired-poison": {"status": "running", "attempts": MAX, "lease_owner": "dead", "lease": -5},
    "done": {"status": "done", "attempts": 1},
    "failed": {"status": "failed", "attempts": MAX},
    "cancelled": {"status": "cancelled"},
}
COMPARED = ("status", "attempts", "lease_owner", "lease_expires_at", "retry_group", "last_error", "updated_at")


def put_briefs(store: Store, clock: FakeClock, prefix: str) -> list[str]:
    """One brief per entry of :data:`STATES`, named ``<prefix><state>``, put in that state."""
    ids = []
    for name, state in STATES.items():
        brief_id = f"{prefix}{name}"
        assert store.add_brief(Brief(id=brief_id, title=f"How to {name}", category="home"))
        values = {k: v for k, v in state.items() if k != "lease"}
        if "lease" in state:
            values["lease_expires_at"] = clock.now + timedelta(seconds=state["lease"])
        if values:
            with store._write() as session:
                session.execute(sa.update(briefs).where(briefs.c.id == brief_id).values(**values))
        ids.append(brief_id)
    return ids


def ledger(store: Store, ids: list[str]) -> list[dict[str, Any]]:
    """The compared columns of each brief, in the order of ``ids``."""
    with store._read() as session:
        rows = {row.id: row for row in session.execute(sa.select(briefs).where(briefs.c.id.in_(ids)))}
    return [{column: getattr(rows[brief_id], column) for column in COMPARED} for brief_id in ids]


def test_a_batch_claim_changes_each_brief_as_one_claim_at_a_time_would(store: Store, clock: FakeClock) -> None:
    one_by_one = put_briefs(store, clock, "a-")
    batch = put_briefs(store, clock, "b-")
    clock.advance(1)

    singles = [store.claim_brief(b, owner="me", lease_seconds=LEASE, max_attempts=MAX) for b in one_by_one]
    claims = store.claim_briefs(batch, owner="me", lease_seconds=LEASE, max_attempts=MAX)

    assert [c is not None for c in claims] == [s is not None for s in singles]
    assert [c.id for c in claims if c] == [s.id.replace("a-", "b-", 1) for s in singles if s]
    assert ledger(store, batch) == ledger(store, one_by_one)
    by_name = dict(zip(STATES, claims, strict=True))
    assert {name for name, c in by_name.items() if c is not None} == {
        "fresh",
        "retried",
        "poison-in-group",
        "in-group",
        "running-expired",
    }
    assert by_name["fresh"] is not None and by_name["fresh"].attempts == 1
    assert by_name["in-group"] is not None and by_name["in-group"].attempts == 1  # uncounted, group ended
    assert ledger(store, ["b-in-group"])[0]["retry_group"] is None
    assert by_name["running-expired"] is not None and by_name["running-expired"].lease_owner == "me"
    gave_up = store.get_brief("b-poison")
    assert gave_up.status == BriefStatus.FAILED
    assert gave_up.last_error == f"gave up after {MAX} attempts; last error: killed"
    assert store.get_brief("b-poison-no-error").last_error == f"gave up after {MAX} attempts"
    assert store.get_brief("b-running-expired-poison").status == BriefStatus.FAILED
    assert store.get_brief("b-running-live").lease_owner == "other"


def test_records_come_back_in_the_order_asked_and_a_repeated_id_is_claimed_once(store: Store) -> None:
    for n in range(5):
        store.add_brief(Brief(id=f"o-{n}", title=f"How to order {n}", category="home"))

    claims = store.claim_briefs(["o-3", "o-0", "o-4", "o-0"], owner="me", lease_seconds=LEASE, max_attempts=MAX)

    assert [c.id if c else None for c in claims] == ["o-3", "o-0", "o-4", "o-0"]
    assert store.get_brief("o-0").attempts == 1
    assert store.get_brief("o-1").status == BriefStatus.QUEUED


def test_an_id_not_in_the_store_claims_nothing(store: Store) -> None:
    store.add_brief(Brief(id="known", title="How to be known", category="home"))

    with pytest.raises(NotFoundError, match="missing"):
        store.claim_briefs(["known", "missing"], owner="me", lease_seconds=LEASE, max_attempts=MAX)

    record = store.get_brief("known")
    assert record.status == BriefStatus.QUEUED and record.attempts == 0 and record.lease_owner is None


def test_arguments_are_checked(store: Store) -> None:
    for kwargs in ({"owner": ""}, {"lease_seconds": 0}, {"max_attempts": 0}):
        with pytest.raises(ValueError):
            store.claim_briefs(["x"], **{"owner": "me", "lease_seconds": LEASE, "max_attempts": MAX, **kwargs})


def test_two_workers_claiming_overlapping_batches_each_brief_goes_to_one(store_url: str) -> None:
    ids = [f"c-{n:03d}" for n in range(120)]
    with Store(store_url) as setup:
        setup.migrate()
        for brief_id in ids:
            setup.add_brief(Brief(id=brief_id, title=f"How to share {brief_id}", category="home"))
    batches = [ids[:80], list(reversed(ids[40:]))]  # 40 in common, asked for in opposite orders
    stores = [Store(store_url), Store(store_url)]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def claim(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].claim_briefs(batches[i], owner=f"w{i}", lease_seconds=LEASE, max_attempts=MAX)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for s in stores:
        s.close()

    assert not [r for r in results if isinstance(r, Exception)], results
    won = [[c.id for c in result if c] for result in results]
    assert sorted(won[0] + won[1]) == ids  # every brief claimed, none twice
    with Store(store_url) as check:
        assert all(check.get_brief(b).attempts == 1 for b in ids)
        owners = {b: check.get_brief(b).lease_owner for b in ids}
    assert all(owners[b] == "w0" for b in won[0]) and all(owners[b] == "w1" for b in won[1])
