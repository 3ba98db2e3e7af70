"""Wording: length against the brief's target, repeated word n-grams, and the brief's keywords."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from worker.scoring.scores import Score, round_value

REPETITION_N = 4


def length_score(word_count: int, target_words: int, tolerance: float) -> Score:
    ratio = round_value(word_count / target_words)
    passed = round(abs(ratio - 1), 9) <= tolerance  # float noise: 55/50 - 1 is 0.10000000000000009
    allowed = f"{1 - tolerance:.2f}..{1 + tolerance:.2f}"
    detail = f"{word_count} words, {ratio:.2f}x target {target_words} (allowed {allowed})"
    return Score("length", ratio, 0.0, None, passed, detail)


def repetition_value(tokens: Sequence[str], n: int = REPETITION_N) -> float:
    """Share of word n-grams that repeat an earlier one: ``1 - distinct / total`` (0.0 below n words)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def repetition_score(tokens: Sequence[str], maximum: float) -> Score:
    lowered = [token.lower() for token in tokens]
    counts = Counter(zip(*(lowered[i:] for i in range(REPETITION_N)), strict=False))  # the word 4-grams, once
    total = max(len(lowered) - REPETITION_N + 1, 0)
    value = round_value(1 - len(counts) / total if total else 0.0)  # repetition_value, from the same counts
    top = counts.most_common(1)
    example = f"; most repeated: {' '.join(top[0][0])!r} x{top[0][1]}" if top and top[0][1] > 1 else ""
    detail = f"{value:.0%} of word {REPETITION_N}-grams repeated (max {maximum:.0%}){example}"
    return Score("repetition", value, 0.0, 1.0, value <= maximum, detail)


@lru_cache(maxsize=4096)
def term_pattern(term: str) -> re.Pattern[str]:
    """Case-insensitive, word-boundary-aware pattern for a term; inner whitespace matches any whitespace."""
    body = r"\s+".join(re.escape(part) for part in term.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def keywords_score(text: str, keywords: Sequence[str], minimum: float) -> Score:
    if not keywords:
        return Score("keywords", 1.0, 0.0, 1.0, True, "no keywords in the brief")
    missing = [keyword for keyword in keywords if not term_pattern(keyword).search(text)]
    value = round_value((len(keywords) - len(missing)) / len(keywords))
    detail = f"{len(keywords) - len(missing)}/{len(keywords)} keywords found (min {minimum:.0%})"
    if missing:
        detail += f"; missing: {', '.join(missing)}"
    return Score("keywords", value, 0.0, 1.0, value >= minimum, detail)
