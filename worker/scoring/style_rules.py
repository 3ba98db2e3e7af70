"""The style guide's rules: banned and preferred terms, a required disclaimer, and the case of headings."""

from __future__ import annotations

import re
from collections.abc import Sequence

from worker.scoring.markdown import Block, strip_inline
from worker.scoring.scores import Score
from worker.scoring.text import word_set
from worker.scoring.wording import term_pattern
from worker.styles.catalog import StyleRules

SMALL_WORDS = word_set("a an and as at but by en for from if in into nor of off on or per so the to up via vs with yet")
_MIN_TITLE_LIKE = 2  # later capitalised words (4+ letters) that make a heading look Title Cased


def _case_words(heading: str) -> list[str]:
    return re.findall(r"[^\W\d_][\w'’-]*", heading)


def _is_plain_word(word: str) -> bool:
    """A word whose case says something: not an acronym (API) nor mixed case (iPhone, JavaScript)."""
    return not (word.isupper() and len(word) > 1) and not any(ch.isupper() for ch in word[1:])


def _sentence_case_problem(tokens: Sequence[str]) -> str | None:
    long_words = [word for word in tokens[1:] if _is_plain_word(word) and len(word) >= 4]
    if len(long_words) >= _MIN_TITLE_LIKE and all(word[0].isupper() for word in long_words):
        return "looks Title Cased"
    return None


def _title_case_problem(tokens: Sequence[str]) -> str | None:
    last = len(tokens) - 1
    lowered = [
        word
        for position, word in enumerate(tokens[1:], start=1)
        if _is_plain_word(word) and word[0].islower() and (position == last or word.lower() not in SMALL_WORDS)
    ]
    return f"lowercase word(s) {', '.join(lowered)}" if lowered else None


def heading_case_problem(heading: str, case: str) -> str | None:
    """Why ``heading`` breaks ``case`` ("sentence" or "title"), or ``None``."""
    tokens = _case_words(heading)
    if not tokens:
        return None
    if tokens[0][0].islower() and _is_plain_word(tokens[0]):
        return "starts with a lowercase letter"
    return _sentence_case_problem(tokens) if case == "sentence" else _title_case_problem(tokens)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("’", "'")).strip().lower()


def style_rule_violations(blocks: Sequence[Block], text: str, rules: StyleRules) -> list[str]:
    """Every violation of the style guide, in a stable order: banned, preferred, disclaimer, headings."""
    found: list[str] = []
    for term in rules.banned_terms:
        if hits := len(term_pattern(term).findall(text)):
            found.append(f"banned term {term!r} used {hits}x")
    for avoid, prefer in rules.preferred_terms.items():
        remaining = term_pattern(prefer).sub(" ", text) if avoid.lower() in prefer.lower() else text
        if hits := len(term_pattern(avoid).findall(remaining)):
            found.append(f"{avoid!r} used {hits}x instead of {prefer!r}")
    disclaimer = rules.required_disclaimer
    if disclaimer and _normalise(strip_inline(disclaimer)) not in _normalise(text):
        found.append("required disclaimer missing")
    if rules.heading_case:
        for block in blocks:
            if block.kind == "heading" and (problem := heading_case_problem(block.text, rules.heading_case)):
                found.append(f"heading {block.text!r} is not {rules.heading_case} case: {problem}")
    return found


def style_rules_score(blocks: Sequence[Block], text: str, rules: StyleRules) -> Score:
    violations = style_rule_violations(blocks, text, rules)
    detail = "no violations" if not violations else "; ".join(violations)
    return Score("style_rules", float(len(violations)), 0.0, None, not violations, detail)
