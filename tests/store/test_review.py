"""Editorial review in the store (:mod:`worker.store.review`), on SQLite and PostgreSQL: migration 3,
decisions, revisions, send-backs and the regenerated save, optimistic locking between two handles."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from review_helpers import GOOD_BODY, SHORT_BODY, add_article, candidate, edit_article, make_brief, scored_result
from sqlalchemy.pool import NullPool
from store_helpers import FakeClock

from worker.errors import ConflictError, NotFoundError, ReviewError, TransitionError
from worker.results import BriefStatus
from worker.scoring.scorecard import Scorecard
from worker.store import Store

EDITED = GOOD_BODY.replace("ten minutes", "about ten minutes")


def rows(url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


def columns(url: str) -> dict[str, list[tuple[str, str, bool]]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        inspector = sa.inspect(engine)
        return {
            table: sorted(
                (c["name"], type(c["type"]).__name__, bool(c["nullable"])) for c in inspector.get_columns(table)
            )
            for table in sorted(inspector.get_table_names())
        }
    finally:
        engine.dispose()


# -- decisions ----------------------------------------------------------------------------------------------


def test_approve_and_reject_record_who_when_and_why(store: Store, clock: FakeClock) -> None:
    first = add_article(store, 1)
    second = add_article(store, 2)
    clock.advance(60)
    approved = store.approve(first.id, actor="alice", note="  lovely  ")
    assert approved.status == "approved" and approved.revision == 1
    rejected = store.reject(second.brief_id, actor="bob", reason="off topic")
    assert rejected.status == "rejected"
    last = store.list_events(first.id)[-1]
    assert (last.kind, last.actor, last.note, last.from_status, last.to_status) == (
        "approved",
        "alice",
        "lovely",
        "needs_review",
        "approved",
    )
    assert last.created_at == clock.now
    assert store.list_events(second.id)[-1].note == "off topic"


def test_reject_needs_a_reason(store: Store) -> None:
    article = add_article(store, 1)
    with pytest.raises(ReviewError, match="reason is required"):
        store.reject(article.id, actor="bob", reason="   ")
    assert store.get_article(article.id).status == "needs_review"
    assert len(store.list_events(article.id)) == 1


def test_invalid_transitions_are_refused_and_change_nothing(store: Store) -> None:
    article = add_article(store, 1)
    store.approve(article.id, actor="alice")
    with pytest.raises(TransitionError, match="cannot reject article a-rev-1: it is approved"):
        store.reject(article.id, actor="bob", reason="late")
    with pytest.raises(TransitionError, match="cannot edit"):
        edit_article(store, article.id, EDITED)
    with pytest.raises(TransitionError, match="cannot send back"):
        store.send_back(article.id, actor="bob", feedback="again")
    assert [e.kind for e in store.list_events(article.id)] == ["generated", "approved"]
    assert store.get_article(article.id).status == "approved"


def test_unknown_article_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        store.approve("nope", actor="a")


def test_edit_makes_a_new_revision_with_new_scores_and_keeps_the_old(store: Store) -> None:
    article = add_article(store, 1, SHORT_BODY)
    assert article.status == "needs_attention"
    updated = edit_article(store, article.id, GOOD_BODY, actor="carol", note="rewrote it")
    assert (updated.revision, updated.status, updated.body_markdown) == (2, "needs_review", GOOD_BODY)
    assert updated.failing_gates == []
    assert updated.title == "How to repot a houseplant"
    revisions = store.list_revisions(article.id)
    assert [(r.revision, r.source, r.author) for r in revisions] == [(1, "generated", "copydesk"), (2, "edit", "carol")]
    assert revisions[0].body_markdown == SHORT_BODY
    assert revisions[1].note == "rewrote it"
    assert store.get_revision(article.id, 1).failing_gates == ["length", "structure"]
    with pytest.raises(NotFoundError, match=r"revisions: 1, 2"):
        store.get_revision(article.id, 7)


def test_edit_refuses_empty_or_unchanged_text(store: Store) -> None:
    article = add_article(store, 1)
    with pytest.raises(ReviewError, match="empty"):
        edit_article(store, article.id, "  \n")
    with pytest.raises(ReviewError, match="unchanged"):
        edit_article(store, article.id, GOOD_BODY)
    assert len(store.list_revisions(article.id)) == 1


def test_edit_stores_the_quality_it_is_given_or_derives_it_from_the_scores(store: Store) -> None:
    article = add_article(store, 1)
    assert article.quality == scored_result(store.get_brief("rev-1").brief).quality
    given = edit_article(store, article.id, EDITED, quality=0.125)
    assert given.quality == 0.125
    derived = edit_article(store, article.id, SHORT_BODY, revision=2)
    assert derived.quality == Scorecard.from_dict(derived.scores).quality < article.quality


# -- optimistic locking -------------------------------------------------------------------------------------


def test_second_reviewer_on_the_same_revision_gets_a_conflict(store_url: str) -> None:
    with Store(store_url) as setup:
        setup.migrate()
        add_article(setup, 1)
        add_article(setup, 2)
    with Store(store_url) as alice, Store(store_url) as bob:
        seen_by_alice = alice.get_article("a-rev-1")
        seen_by_bob = bob.get_article("a-rev-1")
        assert seen_by_alice.revision == seen_by_bob.revision == 1
        alice.approve("a-rev-1", actor="alice", expected_revision=1, expected_status=seen_by_alice.status)
        with pytest.raises(ConflictError, match="article a-rev-1 changed since you loaded revision 1") as info:
            bob.reject("a-rev-1", actor="bob", reason="meh", expected_revision=1, expected_status=seen_by_bob.status)
        assert "approved by alice" in str(info.value)
        assert bob.get_article("a-rev-1").status == "approved"
        assert [e.actor for e in bob.list_events("a-rev-1")] == ["copydesk", "alice"]

        # edits: the second editor's text never overwrites the first one's
        edit_article(alice, "a-rev-2", EDITED, actor="alice", expected_status="needs_review")
        with pytest.raises(ConflictError, match="changed since you loaded revision 1: it is now revision 2"):
            edit_article(bob, "a-rev-2", EDITED + "\nMore.\n", actor="bob", expected_status="needs_review")
        assert bob.get_article("a-rev-2").body_markdown == EDITED
        assert [r.author for r in bob.list_revisions("a-rev-2")] == ["copydesk", "alice"]


def run_in_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
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


def test_concurrent_edits_of_one_revision_keep_exactly_one(store_url: str) -> None:
    with Store(store_url) as setup:
        setup.migrate()
        add_article(setup, 1)
    handles = [Store(store_url) for _ in range(4)]
    try:
        results = run_in_threads(
            4, lambda i: edit_article(handles[i], "a-rev-1", EDITED + f"\nEditor {i}.\n", actor=f"e{i}")
        )
    finally:
        for handle in handles:
            handle.close()
    assert sum(1 for r in results if isinstance(r, ConflictError)) == 3, results
    (winner,) = [r for r in results if not isinstance(r, Exception)]
    with Store(store_url) as check:
        assert check.get_article("a-rev-1").body_markdown == winner.body_markdown
        assert [r.revision for r in check.list_revisions("a-rev-1")] == [1, 2]
        assert len(check.list_events("a-rev-1")) == 2


# -- send back and the regenerated save ---------------------------------------------------------------------


def test_send_back_queues_the_brief_with_feedback_and_attempts_reset(store: Store) -> None:
    brief = make_brief(1)
    store.add_brief(brief)
    store.claim_brief(brief.brief_id, owner="w", lease_seconds=60, max_attempts=3)
    store.save_article(scored_result(brief), owner="w")
    assert store.get_brief(brief.brief_id).attempts == 1
    with pytest.raises(ReviewError, match="feedback is required"):
        store.send_back(brief.brief_id, actor="ed", feedback=" ")
    article = store.send_back(brief.brief_id, actor="ed", feedback="Mention drainage holes.")
    assert article.status == "regenerating"
    record = store.get_brief(brief.brief_id)
    assert (record.status, record.attempts, record.feedback) == (BriefStatus.QUEUED, 0, "Mention drainage holes.")
    assert store.fresh_queued_briefs(limit=5) == [brief.brief_id]  # batched like a new brief
    event = store.list_events(article.id)[-1]
    assert (event.kind, event.note, event.to_status) == ("sent_back", "Mention drainage holes.", "regenerating")
    with pytest.raises(TransitionError, match="already being regenerated"):
        store.send_back(article.id, actor="ed", feedback="again")


def test_regenerated_draft_updates_the_article_in_place_as_a_new_revision(store: Store, store_url: str) -> None:
    brief = make_brief(1)
    store.add_brief(brief)
    first = store.save_article(scored_result(brief, SHORT_BODY, candidates=[candidate(1, 0), candidate(2, 0)]))
    store.send_back(first.id, actor="ed", feedback="Write the full guide.")
    claimed = store.claim_brief(brief.brief_id, owner="w2", lease_seconds=60, max_attempts=3)
    assert claimed is not None and claimed.feedback == "Write the full guide."
    new = store.save_article(scored_result(brief, GOOD_BODY, candidates=[candidate(1, 0), candidate(1, 1)]), owner="w2")

    assert (new.id, new.revision, new.status, new.body_markdown) == (first.id, 2, "needs_review", GOOD_BODY)
    assert new.created_at == first.created_at
    assert rows(store_url, "SELECT count(*) FROM articles")[0][0] == 1  # one article per brief, still
    revisions = store.list_revisions(first.id)
    assert [(r.revision, r.source, r.author) for r in revisions] == [
        (1, "generated", "copydesk"),
        (2, "regenerated", "w2"),
    ]
    assert revisions[0].body_markdown == SHORT_BODY
    assert revisions[1].note == "Write the full guide."
    event = store.list_events(first.id)[-1]
    assert (event.kind, event.from_status, event.to_status, event.note) == (
        "regenerated",
        "regenerating",
        "needs_review",
        "Write the full guide.",
    )
    record = store.get_brief(brief.brief_id)
    assert (record.status, record.feedback, record.lease_owner) == (BriefStatus.DONE, None, None)
    # every candidate kept: the new attempts continue after the stored ones
    assert [(c["attempt"], c["index"]) for c in store.list_candidates(brief.brief_id)] == [
        (1, 0),
        (2, 0),
        (3, 0),
        (3, 1),
    ]


def test_a_second_article_for_a_brief_not_sent_back_is_still_a_conflict(store: Store) -> None:
    brief = make_brief(1)
    store.add_brief(brief)
    store.save_article(scored_result(brief))
    with pytest.raises(ConflictError, match="already has an article"):
        store.save_article(scored_result(brief, SHORT_BODY))
    assert store.get_article(brief.brief_id).body_markdown == GOOD_BODY
    assert len(store.list_revisions(brief.brief_id)) == 1


def test_send_back_again_after_the_regeneration_failed(store: Store) -> None:
    article = add_article(store, 1)
    store.send_back(article.id, actor="ed", feedback="Shorter.")
    store.claim_brief(article.brief_id, owner="w", lease_seconds=60, max_attempts=3)
    store.fail_brief(article.brief_id, "model crashed", final=True)
    again = store.send_back(article.id, actor="ed", feedback="Shorter, please.")
    assert again.status == "regenerating"
    assert store.get_brief(article.brief_id).status == BriefStatus.QUEUED
    assert [e.kind for e in store.list_events(article.id)] == ["generated", "sent_back", "sent_back"]


def test_rejected_article_can_be_sent_back(store: Store) -> None:
    article = add_article(store, 1)
    store.reject(article.id, actor="ed", reason="bland")
    assert store.send_back(article.id, actor="ed", feedback="More voice.").status == "regenerating"


# -- publishing -------------------------------------------------------------------------------------------


def test_mark_published_once(store: Store) -> None:
    article = add_article(store, 1)
    with pytest.raises(TransitionError, match="publish needs approved"):
        store.mark_published(article.id, actor="pub")
    store.approve(article.id, actor="ed")
    assert store.mark_published(article.id, actor="pub", details={"slug": "x"}) is True
    assert store.mark_published(article.id, actor="pub", details={"slug": "x"}) is False
    kinds = [e.kind for e in store.list_events(article.id)]
    assert kinds == ["generated", "approved", "published"]
    assert store.list_events(article.id)[-1].details == {"slug": "x"}
