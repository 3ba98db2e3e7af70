"""Unit tests of :mod:`worker.pipeline.selection`: ranking candidates and adjusting settings for a retry."""

from __future__ import annotations

import pytest

from worker.engine.sampling import RowSettings
from worker.pipeline.selection import Scored, adjust_for_retry, best_candidate, passing_candidate
from worker.scoring.scorecard import Scorecard
from worker.scoring.scores import Score

GATES = ("length", "structure", "repetition", "on_topic")


def card(passed: dict[str, bool], on_topic: float = 0.5) -> Scorecard:
    scores = {
        name: Score(name=name, value=1.0, low=None, high=None, passed=ok, detail="")
        for name, ok in passed.items()
        if name != "on_topic"
    }
    scores["on_topic"] = Score("on_topic", on_topic, 0.3, 1.0, passed.get("on_topic", True), "")
    return Scorecard(scores)


def scored(
    index: int, passed: dict[str, bool], *, attempt: int = 1, on_topic: float = 0.5, gates: tuple[str, ...] = GATES
) -> Scored:
    scorecard = card(passed, on_topic)
    return Scored(attempt, index, f"# Draft {attempt}/{index}\n", scorecard, tuple(scorecard.failing(gates)))


ALL_PASS = dict.fromkeys(GATES, True)


def with_failures(*failing: str, extra: dict[str, bool] | None = None) -> dict[str, bool]:
    passed = {**ALL_PASS, **(extra or {})}
    passed.update(dict.fromkeys(failing, False))
    return passed


def test_scored_passed_follows_failing_gates() -> None:
    assert scored(0, ALL_PASS).passed
    failing = scored(0, with_failures("length"))
    assert not failing.passed
    assert failing.failing_gates == ("length",)


def test_passing_beats_failing_even_with_lower_quality() -> None:
    # The failing one passes many extra (non-gate) scores and is more on topic, so its quality is higher.
    extra = {"sentiment": True, "formality": True, "grade": True, "readability": True, "keywords": True}
    failing = scored(0, with_failures("structure", extra=extra), on_topic=1.0)
    passing = scored(1, with_failures("sentiment", "formality", "grade", extra=extra), on_topic=0.3)
    assert failing.scorecard.quality > passing.scorecard.quality
    assert not failing.passed and passing.passed
    assert best_candidate([failing, passing]) is passing
    assert best_candidate([passing, failing]) is passing
    assert passing_candidate([failing, passing]) is passing


def test_higher_quality_wins_among_passing() -> None:
    low = scored(0, with_failures("grade", extra={"grade": True}))
    high = scored(1, with_failures(extra={"grade": True}))
    assert high.scorecard.quality > low.scorecard.quality
    assert best_candidate([low, high]) is high


def test_on_topic_breaks_otherwise_equal_quality() -> None:
    a = scored(0, ALL_PASS, on_topic=0.4)
    b = scored(1, ALL_PASS, on_topic=0.9)
    assert best_candidate([a, b]) is b


def test_among_failures_quality_then_fewer_failing_gates_win() -> None:
    two_fail = scored(0, with_failures("length", "structure"))
    one_fail = scored(1, with_failures("length"))
    assert best_candidate([two_fail, one_fail]) is one_fail
    assert passing_candidate([two_fail, one_fail]) is None


def test_fewer_failing_gates_break_equal_quality() -> None:
    # Same scores (so the same quality), but the second candidate is judged on fewer gates.
    passed = with_failures("length", "structure")
    many = scored(0, passed, gates=GATES)
    few = scored(1, passed, gates=("length", "on_topic"))
    assert many.scorecard.quality == few.scorecard.quality
    assert best_candidate([many, few]) is few


def test_ties_keep_the_earliest_candidate() -> None:
    candidates = [scored(index, ALL_PASS, attempt=attempt) for attempt in (2, 1) for index in (1, 0)]
    best = best_candidate(candidates)
    assert (best.attempt, best.index) == (1, 0)
    same = [scored(0, ALL_PASS), scored(0, ALL_PASS)]
    assert best_candidate(same) is same[0]


def test_best_candidate_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        best_candidate([])
    assert passing_candidate([]) is None


# --------------------------------------------------------------------------------------------- retries

BASE = RowSettings(temperature=0.7, top_p=0.9, repetition_penalty=1.15, max_new_tokens=300, seed=11)


def test_first_attempt_is_unchanged() -> None:
    assert adjust_for_retry(BASE, 1, ["repetition"]) == BASE


def test_retry_cools_sampling_but_keeps_penalty_when_repetition_passed() -> None:
    second = adjust_for_retry(BASE, 2, ["length"])
    assert second.temperature == pytest.approx(0.55)
    assert second.repetition_penalty == BASE.repetition_penalty
    assert (second.top_p, second.max_new_tokens, second.seed) == (BASE.top_p, BASE.max_new_tokens, BASE.seed)


def test_retry_raises_penalty_when_repetition_failed() -> None:
    second = adjust_for_retry(BASE, 2, ["length", "repetition"])
    third = adjust_for_retry(BASE, 3, ["repetition"])
    assert second.temperature == pytest.approx(0.55)
    assert second.repetition_penalty == pytest.approx(1.25)
    assert third.temperature == pytest.approx(0.4)
    assert third.repetition_penalty == pytest.approx(1.35)


def test_retry_adjustments_are_bounded() -> None:
    late = adjust_for_retry(BASE, 10, ["repetition"])
    assert late.temperature == 0.3
    assert late.repetition_penalty == 1.5


def test_retry_never_warms_a_cool_style_or_weakens_a_strong_penalty() -> None:
    greedy = RowSettings(temperature=0.0, top_p=1.0, repetition_penalty=1.8, max_new_tokens=64, seed=1)
    adjusted = adjust_for_retry(greedy, 3, ["repetition"])
    assert adjusted.temperature == 0.0  # still greedy
    assert adjusted.repetition_penalty == 1.8
    cool = RowSettings(temperature=0.2, top_p=0.9, repetition_penalty=1.45, max_new_tokens=64, seed=1)
    adjusted = adjust_for_retry(cool, 2, ["repetition"])
    assert adjusted.temperature == 0.2
    assert adjusted.repetition_penalty == 1.5


@pytest.mark.parametrize("attempt", range(1, 8))
def test_retry_is_monotonic(attempt: int) -> None:
    now = adjust_for_retry(BASE, attempt, ["repetition"])
    later = adjust_for_retry(BASE, attempt + 1, ["repetition"])
    assert later.temperature <= now.temperature <= BASE.temperature
    assert later.repetition_penalty >= now.repetition_penalty >= BASE.repetition_penalty
