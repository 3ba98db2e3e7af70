"""Tests of :mod:`worker.scoring.text`: words, sentences, syllables and the readability counts."""

from __future__ import annotations

import pytest

from worker.scoring.text import count_text, language_root, sentences, syllables, words


@pytest.mark.parametrize(
    ("word", "count"), [("the", 1), ("make", 1), ("gives", 1), ("table", 2), ("crowded", 2), ("beautiful", 3)]
)
def test_english_syllables(word: str, count: int) -> None:
    assert syllables(word, "en") == count


def test_words_keep_inner_apostrophes_and_hyphens() -> None:
    assert words("Don't split well-known words; snake_case splits.") == [
        "Don't",
        "split",
        "well-known",
        "words",
        "snake",
        "case",
        "splits",
    ]


def test_a_block_boundary_ends_a_sentence() -> None:
    assert sentences(["One. Two!", "Three", "..."]) == ["One.", "Two!", "Three"]


def test_counts_and_language_roots() -> None:
    counts = count_text(["The cat sat. A beautiful day."], "en")
    assert (counts.words, counts.sentences, counts.polysyllables) == (6, 2, 1)
    assert counts.words_per_sentence == 3.0
    assert [language_root(code) for code in ("en", "en_US", "en-GB", "EN")] == ["en"] * 4
