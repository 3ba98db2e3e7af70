"""The review queue (:mod:`worker.store.review_queue`), on SQLite and PostgreSQL: filters, the oldest and
worst orders (by the stored ``articles.quality``), and reading every article in pages."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from review_helpers import GOOD_BODY, SHORT_BODY, add_article, make_brief, scored_result
from store_helpers import FakeClock

from worker.errors import NotFoundError, ReviewError
from worker.store import Store
from worker.store.review import quality_of


def test_review_queue_filters_and_orders(store: Store, clock: FakeClock) -> None:
    add_article(store, 1)  # passes every gate
    clock.advance(1)
    add_article(store, 2, SHORT_BODY)  # fails two gates: the worst
    clock.advance(1)
    add_article(store, 3, GOOD_BODY.replace("## Tips", "## Notes"))
    clock.advance(1)
    approved = add_article(store, 4)
    store.approve(approved.id, actor="ed")
    job = store.create_job([(make_brief(1), None), (make_brief(2), None)], kind="submit")

    def ids(found: list[Any]) -> list[str]:
        return [a.brief_id for a in found]

    assert ids(store.review_queue()) == ["rev-1", "rev-2", "rev-3"]
    worst = store.review_queue(order="worst")
    assert ids(worst)[0] == "rev-2"
    qualities = [quality_of(a) for a in worst]
    assert qualities == sorted(qualities)
    assert ids(store.review_queue(statuses=["approved"])) == ["rev-4"]
    assert ids(store.review_queue(job_id=job.job_id)) == ["rev-1", "rev-2"]
    assert store.review_queue(style="upbeat-lifestyle") == []
    assert ids(store.review_queue(limit=1)) == ["rev-1"]
    with pytest.raises(ReviewError, match="unknown order"):
        store.review_queue(order="random")
    with pytest.raises(NotFoundError, match="job"):
        store.review_queue(job_id="job-missing")


def test_iter_articles_reads_every_page(store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.store.review_queue as review_module

    monkeypatch.setattr(review_module, "_PAGE", 2)
    for n in range(5):
        add_article(store, n)
        clock.advance(1)
    assert [a.brief_id for a in store.iter_articles(["needs_review"])] == [f"rev-{n}" for n in range(5)]


def test_worst_order_sorts_by_the_stored_quality_not_by_the_scores(store: Store, clock: FakeClock) -> None:
    # Articles with the same scores: the quality each was saved with decides the order.
    for n, quality in ((1, 0.5), (2, 0.25), (3, 0.5), (4, None)):
        brief = make_brief(n)
        store.add_brief(brief, source="test")
        store.save_article(replace(scored_result(brief), quality=quality))
        clock.advance(1)
    worst = store.review_queue(order="worst")
    assert [a.brief_id for a in worst] == ["rev-2", "rev-1", "rev-3", "rev-4"]
    assert worst[-1].quality == scored_result(make_brief(4)).quality  # no quality given: derived from the scores
    assert [a.brief_id for a in store.review_queue(order="worst", limit=2)] == ["rev-2", "rev-1"]


def test_a_quality_that_is_not_a_number_is_stored_as_zero(store: Store) -> None:
    brief = make_brief(1)
    store.add_brief(brief, source="test")
    assert store.save_article(replace(scored_result(brief), quality=float("nan"))).quality == 0.0
