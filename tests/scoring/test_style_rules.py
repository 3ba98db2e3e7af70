"""Tests of :mod:`worker.scoring.style_rules`: heading case, and the order of the violations listed."""

from __future__ import annotations

import pytest

from worker.scoring.markdown import parse_blocks, strip_markdown
from worker.scoring.style_rules import heading_case_problem, style_rules_score
from worker.styles.catalog import StyleRules


@pytest.mark.parametrize(
    ("heading", "case", "ok"),
    [
        ("How to repot a houseplant", "sentence", True),
        ("Using the API with JavaScript", "sentence", True),  # acronyms and mixed case are ignored
        ("How to Repot a Houseplant", "sentence", False),
        ("how to repot a houseplant", "sentence", False),
        ("How to Repot a Houseplant", "title", True),
        ("How to repot a houseplant", "title", False),
        ("The Best Way to Learn", "title", True),
        ("iPhone Tips for Travellers", "title", True),
        ("Using the API with JavaScript", "title", True),  # small words may stay lowercase
        ("Using the API With JavaScript", "title", True),
        ("Using the API for Quick tests", "title", False),
        ("Where the Money Goes to", "title", False),  # the last word is always capitalised
        ("Installing Python on Windows", "sentence", False),  # proper nouns: a known false positive
    ],
)
def test_heading_case(heading: str, case: str, ok: bool) -> None:
    problem = heading_case_problem(heading, case)
    assert (problem is None) is ok, problem


def test_heading_violations_come_last_and_name_the_heading() -> None:
    markdown = "## How to Repot a Houseplant\n\nUse rubbish bags."
    rules = StyleRules(banned_terms=["rubbish"], heading_case="sentence")
    score = style_rules_score(parse_blocks(markdown), strip_markdown(markdown), rules)
    assert score.value == 2 and not score.passed
    assert score.detail == (
        "banned term 'rubbish' used 1x; heading 'How to Repot a Houseplant' is not sentence case: looks Title Cased"
    )
