"""The history of an article (:mod:`worker.store.history`): every text it had and every change, on SQLite and
PostgreSQL."""

from __future__ import annotations

from review_helpers import GOOD_BODY, add_article, edit_article

from worker.store import Store


def test_first_save_records_revision_1_and_a_generated_event(store: Store) -> None:
    article = add_article(store, 1)
    (revision,) = store.list_revisions(article.id)
    assert (revision.revision, revision.body_markdown, revision.author) == (1, GOOD_BODY, "copydesk")
    assert revision.provenance == article.provenance
    (event,) = store.list_events(article.brief_id)  # by brief id too
    assert (event.kind, event.from_status, event.to_status, event.revision) == ("generated", None, "needs_review", 1)


def test_revision_rows_survive_any_number_of_changes(store: Store) -> None:
    article = add_article(store, 1)
    texts = [GOOD_BODY]
    for n in range(2, 5):
        body = GOOD_BODY + f"\nChange {n}.\n"
        edit_article(store, article.id, body, revision=n - 1)
        texts.append(body)
    assert [r.body_markdown for r in store.list_revisions(article.id)] == texts
    assert store.get_article(article.id).revision == 4
