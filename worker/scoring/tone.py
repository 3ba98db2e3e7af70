"""Tone: sentiment (VADER, per sentence) and formality (an approximate F-score from word lists)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from worker.scoring.scores import Score, in_range, informational
from worker.scoring.text import language_root, word_set, words
from worker.styles.catalog import Targets

# ---------------------------------------------------------------------------------------------------------
# Sentiment


@lru_cache(maxsize=1)
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def sentiment_value(prose_sentences: Sequence[str]) -> float:
    """Mean VADER compound score over sentences, -1..1 (0.0 without sentences).

    Averaging per sentence keeps long texts from saturating at +-1, which whole-text VADER does."""
    if not prose_sentences:
        return 0.0
    analyzer = _vader()
    return sum(analyzer.polarity_scores(s)["compound"] for s in prose_sentences) / len(prose_sentences)


def sentiment_score(prose_sentences: Sequence[str], targets: Targets, language: str) -> Score:
    value = sentiment_value(prose_sentences)
    if language_root(language) != "en":
        return informational("sentiment", value, -1.0, 1.0, f"{value:.2f}; VADER is English-only (informational)")
    return in_range("sentiment", value, targets.sentiment, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Formality
#
# An approximation of Heylighen & Dewaele's F-score, F = (noun + adjective + preposition + article - pronoun
# - verb - adverb - interjection + 100) / 2 over word-class percentages, without a part-of-speech tagger:
# closed classes come from small word lists, open classes from suffix and length cues. It is rescaled
# linearly to 0..1 with F = 25 -> 0, F = 50 -> 0.5 and F = 75 -> 1, which simplifies to
# ``formality = clamp(0.5 + formal_share - deictic_share, 0, 1)``. English only.


ARTICLES = frozenset({"a", "an", "the"})
PREPOSITIONS = word_set(
    "about above across after against along amid among around at before behind below beneath beside "
    "besides between beyond by concerning despite during except for from in inside into near of off on "
    "onto outside over past per regarding since through throughout toward towards under underneath "
    "unlike until upon via with within without"
)
FORMAL_CONNECTIVES = word_set(
    "accordingly consequently furthermore hence however moreover nevertheless nonetheless notwithstanding "
    "therefore thereby thus whereas whereby wherein whereupon"
)
NOUN_ADJECTIVE_SUFFIXES = (
    "tion", "sion", "ment", "ness", "ity", "ance", "ence", "ancy", "ency", "ism", "ist", "ship", "ogy",
    "ure", "al", "ous", "ive", "ic", "able", "ible", "ary",
)  # fmt: skip
SUFFIX_MIN_LENGTH = 7  # shorter words with these endings are too often verbs or function words
LONG_WORD = 10  # long words are overwhelmingly nouns and adjectives
PRONOUNS = word_set(
    "i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself "
    "she her hers herself it its itself they them their theirs themselves this these those something "
    "anything everything nothing someone anyone everyone nobody somebody everybody"
)
VERBS = word_set(
    "be am is are was were been being do does did done doing have has had having can could will would "
    "shall should may might must get gets got getting go goes went going make makes made say says said "
    "know think want need let see look come take give feel try"
)
ADVERBS = word_set(
    "just really very so too now then here there also still even never always again maybe perhaps quite "
    "pretty actually already soon often sometimes usually almost well away back not ever yet"
)
NOT_ADVERBS_IN_LY = word_set(
    "ally apply assembly belly daily early family fly friendly holly italy jelly july likely lily lovely "
    "only rally reply supply ugly"
)
INTERJECTIONS = word_set(
    "ah awesome btw cool gonna gotta guys hey hi hooray kinda lol nope oh okay omg ok oops sorta stuff "
    "super totally ugh wanna whoa wow yay yeah yep"
)
_VERB_CONTRACTION = re.compile(r"^\w+(?:n't|'re|'ve|'ll|'d|'m)$")
_PRONOUN_IS = re.compile(r"^(?:it|that|there|here|what|who|he|she|let|where|how|everyone|nobody)'s$")
_EXCLAMATIONS = re.compile(r"!+")
_EMOTICONS = re.compile(r"(?<!\w)[:;]-?[)(DPp](?!\w)")
_EMOJI_RANGE = re.compile("[\u2600-\U0010ffff]")  # the only characters _is_emoji can accept


def _is_emoji(char: str) -> bool:
    return unicodedata.category(char) == "So" and ord(char) >= 0x2600


@dataclass(frozen=True)
class FormalityCounts:
    """Word-class cues behind the formality value."""

    words: int
    formal: int  # articles, prepositions, formal connectives, noun- and adjective-like words
    deictic: int  # pronouns, verbs, adverbs, interjections, exclamations, emoji

    @property
    def f_score(self) -> float:
        """Approximate Heylighen & Dewaele F-score, 0..100 (50 without words)."""
        if not self.words:
            return 50.0
        return 50 + 50 * (self.formal - self.deictic) / self.words

    @property
    def value(self) -> float:
        """Formality 0..1: the F-score rescaled with 25 -> 0 and 75 -> 1."""
        return min(max((self.f_score - 25) / 50, 0.0), 1.0)


def _is_formal(word: str) -> bool:
    if word in ARTICLES or word in PREPOSITIONS or word in FORMAL_CONNECTIVES:
        return True
    if len(word) >= SUFFIX_MIN_LENGTH and word.endswith(NOUN_ADJECTIVE_SUFFIXES):
        return True
    return len(word) >= LONG_WORD and not word.endswith("ly")


def _deictic_cues(word: str) -> int:
    base = word.split("'")[0]
    verb = base in VERBS or bool(_VERB_CONTRACTION.match(word) or _PRONOUN_IS.match(word))
    adverb = word in ADVERBS or (word.endswith("ly") and len(word) >= 5 and word not in NOT_ADVERBS_IN_LY)
    return int(base in PRONOUNS) + int(verb) + int(adverb) + int(word in INTERJECTIONS)


def formality_counts(text: str, tokens: Sequence[str] | None = None) -> FormalityCounts:
    """Count formal and deictic (context-dependent, informal) cues in plain English text; ``tokens``, when
    given, are ``words(text)`` already split."""
    lowered = [token.lower().replace("’", "'") for token in (words(text) if tokens is None else tokens)]
    formal = sum(1 for token in lowered if _is_formal(token))
    deictic = sum(_deictic_cues(token) for token in lowered)
    deictic += len(_EXCLAMATIONS.findall(text)) + len(_EMOTICONS.findall(text))
    deictic += sum(1 for char in _EMOJI_RANGE.findall(text) if _is_emoji(char))
    return FormalityCounts(len(lowered), formal, deictic)


def formality_value(text: str) -> float:
    """Formality 0 (chatty) .. 1 (formal) of plain English text; 0.5 for text without words."""
    return formality_counts(text).value


def formality_score(
    prose: Sequence[str], targets: Targets, language: str, tokens: Sequence[str] | None = None
) -> Score:
    """Formality of the prose blocks; ``tokens``, when given, are their words already split."""
    counts = formality_counts("\n".join(prose), tokens)
    value = counts.value
    if language_root(language) != "en":
        detail = f"{value:.2f}; word lists are English-only (informational)"
        return informational("formality", value, 0.0, 1.0, detail)
    score = in_range("formality", value, targets.formality, 0.0, 1.0)
    detail = f"{score.detail} (F-score ~{counts.f_score:.0f})"
    return Score(score.name, score.value, score.low, score.high, score.passed, detail)
