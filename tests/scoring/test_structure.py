"""Tests of :mod:`worker.scoring.structure`: the expectations of each content type, over the text corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.intake.briefs import ContentType
from worker.scoring.markdown import parse_blocks
from worker.scoring.structure import STRUCTURE_EXPECTATIONS, shape_of, structure_score

TEXTS = Path(__file__).parent.parent / "data" / "texts"


@pytest.mark.parametrize(
    ("name", "content_type", "value"),
    [
        ("howto_repot_houseplant", "how-to", 1.0),
        ("howto_repot_houseplant", "news", 0.0),  # only 2 paragraphs: the rest is lists
        ("news_bike_lanes", "news", 1.0),
        ("news_bike_lanes", "how-to", 0.0),  # no headings, no steps
        ("news_bike_lanes", "explainer", 0.5),  # paragraphs but no headings
        ("news_bike_lanes", "listicle", 0.0),
        ("news_bike_lanes", "review", 1.0),  # >= 3 paragraphs is enough for a review
        ("listicle_morning_habits", "listicle", 1.0),
        ("listicle_morning_habits", "how-to", 0.0),  # one heading, bullets are not steps
        ("review_travel_kettle", "review", 1.0),
        ("deepdive_page_cache", "explainer", 1.0),
        ("degenerate_loop", "explainer", 0.5),
        ("empty_ish", "review", 0.0),
    ],
)
def test_structure_table(name: str, content_type: str, value: float) -> None:
    markdown = (TEXTS / f"{name}.md").read_text(encoding="utf-8")
    score = structure_score(parse_blocks(markdown), ContentType(content_type))
    assert score.value == value, score.detail
    assert score.passed is (value == 1.0)


@pytest.mark.parametrize(
    ("content_type", "markdown", "value"),
    [
        ("how-to", "# Fix it\n\n## Step 1: look\n\nLook.\n\n## Step 2: fix\n\nFix.", 1.0),
        ("how-to", "# Fix it\n\n## Look\n\nLook.\n\n- fix\n- test\n", 0.5),  # bullets are not steps
        ("review", "# The kettle\n\nShort.\n\n## Verdict\n\nGood.", 1.0),
        ("review", "# The kettle\n\nShort.\n\n## Design\n\nGood.", 0.0),
        ("listicle", "# Ideas\n\n## One\n\nA.\n\n## Two\n\nB.\n\n## Three\n\nC.", 1.0),
        ("explainer", "Title\n=====\n\nOne.\n\nSub\n---\n\nTwo.\n\nThree.", 1.0),  # setext headings
    ],
)
def test_structure_of_small_documents(content_type: str, markdown: str, value: float) -> None:
    assert structure_score(parse_blocks(markdown), ContentType(content_type)).value == value


def test_every_content_type_has_structure_expectations() -> None:
    assert set(STRUCTURE_EXPECTATIONS) == set(ContentType)


def test_shape_counts_steps_verdicts_and_items() -> None:
    markdown = "# T\n\n## Step 1: a\n\nA.\n\n## Verdict\n\nB.\n\n1. one\n2. two\n- bullet\n"
    shape = shape_of(parse_blocks(markdown))
    assert (shape.headings, shape.subheadings, shape.verdict_heading) == (3, 2, True)
    assert (shape.step_headings, shape.numbered_items, shape.steps, shape.list_items) == (1, 2, 3, 3)
    assert shape.paragraphs == 2
