"""Tests of :mod:`worker.scoring.wording`: length against the target, repeated n-grams, keywords."""

from __future__ import annotations

import pytest

from worker.scoring.wording import keywords_score, length_score, repetition_value, term_pattern


@pytest.mark.parametrize(
    ("words", "tolerance", "passed"),
    [(50, 0.1, True), (55, 0.1, True), (56, 0.1, False), (45, 0.1, True), (44, 0.1, False), (25, 0.5, True)],
)
def test_length_tolerance(words: int, tolerance: float, passed: bool) -> None:
    score = length_score(words, 50, tolerance)
    assert score.value == pytest.approx(words / 50)
    assert score.passed is passed


def test_repetition_value() -> None:
    assert repetition_value(["a", "b", "c", "d", "a", "b", "c", "d"]) == pytest.approx(1 / 5)
    assert repetition_value(["a", "b", "c"]) == 0.0
    assert repetition_value([f"w{i}" for i in range(100)]) == 0.0


@pytest.mark.parametrize(
    ("keywords", "value"),
    [
        (["cat"], 0.0),  # "concatenate" and "cats" do not contain the word "cat"
        (["Cat", "dog"], 0.5),  # "dog." at the end of a sentence still counts
        (["bike lanes"], 1.0),  # across a line break and in other case
        (["C++"], 1.0),
        (["e-mail"], 1.0),
        (["mail"], 1.0),  # a hyphen is a word boundary: "e-mail" contains the word "mail"
        (["mails"], 0.0),
        ([], 1.0),
    ],
)
def test_keywords_are_word_boundary_aware(keywords: list[str], value: float) -> None:
    text = "We concatenate cats with a dog.\nBike\nLanes and C++ by e-mail, not email."
    score = keywords_score(text, keywords, 0.5)
    assert score.value == value
    assert score.passed is (value >= 0.5)


def test_term_pattern_matches_inner_whitespace() -> None:
    assert term_pattern("bike lanes").search("new Bike\n  Lanes here")
    assert not term_pattern("bike").search("bikes")
