"""Tests of :mod:`worker.scoring.tone`: sentiment per sentence and the formality word lists."""

from __future__ import annotations

from worker.scoring.tone import formality_counts, formality_value, sentiment_value


def test_formality_is_bounded_and_deterministic() -> None:
    chatty = "Hey, you're gonna love this! I totally can't wait, we'll have so much fun! 😊"
    formal = (
        "The allocation of resources within the organisation is determined by the committee, in accordance "
        "with the regulations governing the administration of public expenditure."
    )
    assert 0.0 <= formality_value(chatty) < 0.2
    assert 0.8 < formality_value(formal) <= 1.0
    assert formality_value(formal) == formality_value(formal)
    assert formality_value("") == 0.5


def test_sentiment_is_the_mean_over_sentences() -> None:
    assert sentiment_value([]) == 0.0
    happy, sad = sentiment_value(["I love this wonderful kettle."]), sentiment_value(["This awful kettle broke."])
    assert happy > 0.5 and sad < -0.3
    assert sentiment_value(["I love this wonderful kettle.", "This awful kettle broke."]) == (happy + sad) / 2


def test_formality_counts_cues() -> None:
    counts = formality_counts("However, the administration was wonderful! :)")
    assert counts.words == 5
    assert counts.formal >= 3  # however, the, administration
    assert counts.deictic >= 2  # the exclamation mark and the emoticon
