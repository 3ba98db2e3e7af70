"""The store stage: the ledger of briefs and the articles written for them (SQLAlchemy 2).

The database is the source of truth; queues only carry brief ids. Tables (see :mod:`.schema`):

* ``schema_migrations``: applied migrations (:mod:`.migrations`, run with :meth:`Store.migrate`).
* ``briefs``: one row per brief id with its validated payload, ledger status, attempts and lease.
* ``articles``: at most one per brief, enforced by a UNIQUE ``brief_id``; id ``"a-" + brief id``
  (:func:`article_id_for`).
* ``candidates``: every generated candidate of a brief, unique per (brief, attempt, index).
* ``article_revisions``, ``article_events``: every text an article had and every editorial decision
  (:mod:`.history`, written by the decisions of :mod:`.review`); ``briefs.feedback`` carries an editor's
  feedback to the next draft; ``articles.quality`` is what the review queue's ``worst`` order sorts by
  (:mod:`.review_queue`).

Brief lifecycle: ``add_brief`` (queued) -> ``claim_brief`` (running, leased, attempt counted) ->
``save_article`` (done) or ``fail_brief`` (queued again or failed). A running brief whose lease expired
can be claimed again; after ``max_attempts`` claims it is marked failed. An editor's ``send_back`` queues a
done brief again; its next ``save_article`` updates the article in place as a new revision.

Errors: a locked or unreachable database raises :class:`~worker.errors.TransientStoreError`; missing
ids raise :class:`~worker.errors.NotFoundError`; a second article for a brief, or saving under a lost
lease, raises :class:`~worker.errors.ConflictError`; anything else the database refuses raises
:class:`~worker.errors.StoreError`.
"""

from worker.store.core import Store, utc_now
from worker.store.jobs import BriefResult, JobCounts, JobRecord, JobStatus, Submission
from worker.store.keys import ApiKeyRecord, Role
from worker.store.migrations import MIGRATIONS, Migration, latest_version
from worker.store.records import ArticleRecord, BriefRecord, StoredText, article_id_for, content_hash

__all__ = [
    "MIGRATIONS",
    "ApiKeyRecord",
    "ArticleRecord",
    "BriefRecord",
    "BriefResult",
    "JobCounts",
    "JobRecord",
    "JobStatus",
    "Migration",
    "Role",
    "Store",
    "StoredText",
    "Submission",
    "article_id_for",
    "content_hash",
    "latest_version",
    "utc_now",
]
