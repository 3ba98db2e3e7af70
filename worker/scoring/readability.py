"""Readability: Flesch reading ease and Flesch-Kincaid grade (gates), Gunning fog and SMOG (informational).

The Flesch constants come from textstat's per-language table; syllables are counted by :mod:`worker.scoring.text`
(textstat's English path would try to download NLTK's CMU dictionary). See ``docs/scoring.md``.
"""

from __future__ import annotations

import math

from textstat.backend.utils import get_lang_cfg

from worker.scoring.scores import Score, in_range, informational, round_value
from worker.scoring.text import TextCounts, language_root
from worker.styles.catalog import Targets

FK_GRADE_MIN = -3.4  # one-syllable words in one-word sentences: 0.39 + 11.8 - 15.59


def _flesch_constants(language: str) -> tuple[float, float, float]:
    """Flesch reading ease base and weights for the language, from textstat's per-language table."""
    root = language_root(language)
    return (
        get_lang_cfg(root, "fre_base"),
        get_lang_cfg(root, "fre_sentence_length"),
        get_lang_cfg(root, "fre_syll_per_word"),
    )


def readability_scores(counts: TextCounts, targets: Targets, language: str) -> list[Score]:
    """Flesch reading ease and Flesch-Kincaid grade (gates) and Gunning fog and SMOG (informational)."""
    base, per_sentence_word, per_syllable = _flesch_constants(language)
    ease_max = base - per_sentence_word - per_syllable  # one-syllable words in one-word sentences
    if counts.words == 0:
        return [
            Score("readability", 0.0, None, round_value(ease_max), False, "no prose to measure"),
            Score("grade", 0.0, FK_GRADE_MIN, None, False, "no prose to measure"),
            informational("gunning_fog", 0.0, 0.0, None, "no prose to measure"),
            informational("smog", 0.0, 0.0, None, "no prose to measure"),
        ]
    wps, spw = counts.words_per_sentence, counts.syllables_per_word
    ease = base - per_sentence_word * wps - per_syllable * spw
    grade = 0.39 * wps + 11.8 * spw - 15.59
    fog = 0.4 * (wps + 100 * counts.polysyllables / counts.words)
    smog = 1.043 * math.sqrt(30 * counts.polysyllables / counts.sentences) + 3.1291
    return [
        in_range("readability", ease, targets.reading_ease, None, round_value(ease_max)),
        in_range("grade", grade, targets.grade, FK_GRADE_MIN, None),
        informational("gunning_fog", fog, 0.0, None, f"Gunning fog index {fog:.1f} (informational)"),
        informational("smog", smog, 0.0, None, f"SMOG grade {smog:.1f} (informational)"),
    ]
