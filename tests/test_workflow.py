"""The editorial transition table (:mod:`worker.workflow`)."""

from __future__ import annotations

import pytest

from worker.errors import CopydeskError, TransitionError
from worker.results import ArticleStatus
from worker.workflow import Action, check_transition, next_status, review_status

S = ArticleStatus


@pytest.mark.parametrize(
    ("current", "action", "failing", "expected"),
    [
        (S.NEEDS_REVIEW, Action.APPROVE, None, S.APPROVED),
        (S.NEEDS_ATTENTION, Action.APPROVE, None, S.APPROVED),
        (S.NEEDS_REVIEW, Action.REJECT, None, S.REJECTED),
        (S.NEEDS_ATTENTION, Action.REJECT, None, S.REJECTED),
        (S.NEEDS_REVIEW, Action.SEND_BACK, None, S.REGENERATING),
        (S.REJECTED, Action.SEND_BACK, None, S.REGENERATING),
        (S.REGENERATING, Action.SEND_BACK, None, S.REGENERATING),
        (S.NEEDS_REVIEW, Action.EDIT, [], S.NEEDS_REVIEW),
        (S.NEEDS_REVIEW, Action.EDIT, ["length"], S.NEEDS_ATTENTION),
        (S.NEEDS_ATTENTION, Action.EDIT, [], S.NEEDS_REVIEW),
        (S.REGENERATING, Action.REGENERATED, [], S.NEEDS_REVIEW),
        (S.REGENERATING, Action.REGENERATED, ["on_topic"], S.NEEDS_ATTENTION),
        (S.APPROVED, Action.PUBLISH, None, S.PUBLISHED),
    ],
)
def test_allowed_transitions(current: S, action: Action, failing: list[str] | None, expected: S) -> None:
    assert next_status("a-x", current, action, failing) == expected


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (S.APPROVED, Action.APPROVE),
        (S.APPROVED, Action.REJECT),
        (S.APPROVED, Action.EDIT),
        (S.APPROVED, Action.SEND_BACK),
        (S.REJECTED, Action.APPROVE),
        (S.REJECTED, Action.EDIT),
        (S.PUBLISHED, Action.REJECT),
        (S.PUBLISHED, Action.PUBLISH),
        (S.REGENERATING, Action.APPROVE),
        (S.REGENERATING, Action.EDIT),
        (S.NEEDS_REVIEW, Action.PUBLISH),
        (S.NEEDS_REVIEW, Action.REGENERATED),
    ],
)
def test_refused_transitions_say_what_is_allowed(current: S, action: Action) -> None:
    with pytest.raises(TransitionError) as info:
        check_transition("a-x", current, action)
    message = str(info.value)
    assert message.startswith(f"cannot {action} article a-x: it is {current}")
    assert "needs" in message
    assert isinstance(info.value, CopydeskError)
    assert info.value.exit_code == 21  # TransitionError: its own exit code


def test_review_status_follows_the_gates() -> None:
    assert review_status([]) == S.NEEDS_REVIEW
    assert review_status(["length"]) == S.NEEDS_ATTENTION
