"""Words, sentences and syllables of plain text, and the counts behind the readability formulas."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import pyphen

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_SILENT_ENDING = re.compile(r"[^aeiouy]e$|[^aeiouysxzcgh]es$|[^aeiouytd]ed$")
_SYLLABIC_LE = re.compile(r"[^aeiouy]les?$")  # "table", "tables"


def word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set (the word lists of the metrics)."""
    return frozenset(text.split())


def words(text: str) -> list[str]:
    """Word tokens: letters and digits, with inner apostrophes and hyphens (``don't``, ``well-known``)."""
    return _WORD.findall(text)


def sentence_words(blocks_text: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Each sentence of :func:`sentences` with its words, split once for every metric that needs both."""
    found: list[tuple[str, list[str]]] = []
    for text in blocks_text:
        for part in _SENTENCE_END.split(text):
            if tokens := _WORD.findall(part):
                found.append((part, tokens))
    return found


def sentences(blocks_text: Iterable[str]) -> list[str]:
    """Sentences of each block; a block boundary always ends a sentence. Sentences without words are dropped."""
    return [sentence for sentence, _ in sentence_words(blocks_text)]


def language_root(language: str) -> str:
    """``en`` for ``en``, ``en_US``, ``en-GB`` or ``EN``."""
    return language.replace("-", "_").split("_")[0].strip().lower()


@lru_cache(maxsize=16)
def _hyphenator(language: str) -> pyphen.Pyphen | None:
    fallback = pyphen.language_fallback(language.replace("-", "_"))
    return pyphen.Pyphen(lang=fallback) if fallback else None


def _vowel_groups(word: str) -> int:
    """English syllables as vowel groups, less a silent final -e, -es or -ed ("make", "gives", "jumped")."""
    w = word.lower()
    count = len(_VOWEL_GROUPS.findall(w))
    if count > 1 and _SILENT_ENDING.search(w) and not _SYLLABIC_LE.search(w):
        count -= 1
    return max(count, 1)


@lru_cache(maxsize=65536)
def syllables(word: str, language: str) -> int:
    """Syllables of one word: hyphenation points + 1 (textstat's fallback method), with English corrected
    upwards by a vowel-group count because the hyphenation dictionary never splits near word ends."""
    hyphenator = _hyphenator(language)
    by_hyphens = len(hyphenator.positions(word.lower())) + 1 if hyphenator else 0
    if language_root(language) == "en" or hyphenator is None:
        return max(by_hyphens, _vowel_groups(word))
    return by_hyphens


@dataclass(frozen=True)
class TextCounts:
    """Counts behind the readability formulas."""

    words: int
    sentences: int
    syllables: int
    polysyllables: int  # words of three or more syllables

    @property
    def words_per_sentence(self) -> float:
        return self.words / self.sentences if self.sentences else 0.0

    @property
    def syllables_per_word(self) -> float:
        return self.syllables / self.words if self.words else 0.0


def count_sentences(found: Sequence[tuple[str, Sequence[str]]], language: str) -> TextCounts:
    """The readability counts of sentences already split (:func:`sentence_words`)."""
    count = syllables  # one lookup; each word's count is cached
    per_word = [count(token, language) for _, tokens in found for token in tokens]
    return TextCounts(len(per_word), len(found), sum(per_word), sum(1 for n in per_word if n >= 3))


def count_text(prose: Sequence[str], language: str) -> TextCounts:
    return count_sentences(sentence_words(prose), language)
