"""The editorial workflow: which action an article's status allows, and the status it leads to.

```
needs_review ─┬─ approve ──> approved ── publish (copydesk export) ──> published
needs_attention ┼─ reject (reason) ──> rejected ── send back ──┐
              ├─ edit ──> needs_review | needs_attention      │
              └─ send back (feedback) ──> regenerating <───────┘
regenerating ── new draft stored by a worker ──> needs_review | needs_attention
```

An edit stays in review: its status follows the recomputed gates (``needs_review`` when every gate of the
style passes, else ``needs_attention``). A send-back of an article already ``regenerating`` is allowed only
when its brief failed or was cancelled (the first regeneration never finished). Everything else is refused
with a :class:`~worker.errors.TransitionError` that says what the status allows.

Every action is recorded as an ``article_events`` row; every text an article ever had is an
``article_revisions`` row (see :mod:`worker.store.review`).
"""

from __future__ import annotations

from enum import StrEnum

from worker.errors import TransitionError
from worker.results import ArticleStatus


class Action(StrEnum):
    """What a reviewer (or the worker, for ``regenerated``) does to an article."""

    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"
    SEND_BACK = "send back"
    PUBLISH = "publish"
    REGENERATED = "regenerated"


class EventKind(StrEnum):
    """The ``kind`` of an ``article_events`` row."""

    GENERATED = "generated"  # revision 1 stored by the pipeline
    APPROVED = "approved"
    REJECTED = "rejected"
    EDITED = "edited"  # a new revision written by an editor
    SENT_BACK = "sent_back"  # feedback recorded, brief queued again
    REGENERATED = "regenerated"  # a new revision stored by the pipeline after a send-back
    PUBLISHED = "published"  # first export


IN_REVIEW = (ArticleStatus.NEEDS_REVIEW, ArticleStatus.NEEDS_ATTENTION)

#: action -> the statuses it may start from
ALLOWED_FROM: dict[Action, tuple[ArticleStatus, ...]] = {
    Action.APPROVE: IN_REVIEW,
    Action.REJECT: IN_REVIEW,
    Action.EDIT: IN_REVIEW,
    Action.SEND_BACK: (*IN_REVIEW, ArticleStatus.REJECTED, ArticleStatus.REGENERATING),
    Action.PUBLISH: (ArticleStatus.APPROVED,),
    Action.REGENERATED: (ArticleStatus.REGENERATING,),
}

_FIXED_TARGET: dict[Action, ArticleStatus] = {
    Action.APPROVE: ArticleStatus.APPROVED,
    Action.REJECT: ArticleStatus.REJECTED,
    Action.SEND_BACK: ArticleStatus.REGENERATING,
    Action.PUBLISH: ArticleStatus.PUBLISHED,
}


def review_status(failing_gates: list[str] | tuple[str, ...]) -> ArticleStatus:
    """The review status of a draft: ``needs_review`` when no gate fails, else ``needs_attention``."""
    return ArticleStatus.NEEDS_ATTENTION if failing_gates else ArticleStatus.NEEDS_REVIEW


def check_transition(article_id: str, current: str, action: Action) -> None:
    """Raise :class:`TransitionError` unless ``action`` is allowed on an article in status ``current``."""
    allowed = ALLOWED_FROM[action]
    if current in allowed:
        return
    wanted = " or ".join(str(status) for status in allowed)
    raise TransitionError(f"cannot {action} article {article_id}: it is {current}, and {action} needs {wanted}")


def next_status(article_id: str, current: str, action: Action, failing_gates: list[str] | None = None) -> ArticleStatus:
    """The status after ``action``; edits and regenerations follow ``failing_gates``."""
    check_transition(article_id, current, action)
    if action in _FIXED_TARGET:
        return _FIXED_TARGET[action]
    return review_status(failing_gates or [])
