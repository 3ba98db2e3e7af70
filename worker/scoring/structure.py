"""Structure: what a draft's Markdown shape must show for its content type (headings, steps, list items, ...)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.intake.briefs import ContentType
from worker.scoring.markdown import Block
from worker.scoring.scores import Score, round_value

_STEP_HEADING = re.compile(r"^step\s+\d+\b", re.IGNORECASE)
_VERDICT_HEADING = re.compile(
    r"\b(verdict|conclusions?|bottom line|final thoughts|summary|should you buy|takeaways?|wrap[- ]up|"
    r"our take|the upshot|recommendation)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Shape:
    """What the structure expectations look at."""

    headings: int
    subheadings: int  # level 2 and deeper
    verdict_heading: bool
    numbered_items: int
    step_headings: int  # "Step 1: ..." headings count as numbered steps
    list_items: int
    paragraphs: int

    @property
    def steps(self) -> int:
        return self.numbered_items + self.step_headings


def shape_of(blocks: Sequence[Block]) -> Shape:
    headings = [block for block in blocks if block.kind == "heading" and block.text]
    items = [block for block in blocks if block.kind == "item"]
    return Shape(
        headings=len(headings),
        subheadings=sum(1 for block in headings if block.level >= 2),
        verdict_heading=any(_VERDICT_HEADING.search(block.text) for block in headings),
        numbered_items=sum(1 for block in items if block.ordered),
        step_headings=sum(1 for block in headings if _STEP_HEADING.match(block.text)),
        list_items=len(items),
        paragraphs=sum(1 for block in blocks if block.kind == "paragraph"),
    )


@dataclass(frozen=True)
class Expectation:
    description: str
    check: Callable[[Shape], bool]


STRUCTURE_EXPECTATIONS: dict[ContentType, tuple[Expectation, ...]] = {
    ContentType.HOW_TO: (
        Expectation(">= 2 headings", lambda s: s.headings >= 2),
        Expectation("a numbered list of >= 2 steps", lambda s: s.steps >= 2),
    ),
    ContentType.LISTICLE: (
        Expectation(">= 3 list items or >= 3 subheadings", lambda s: s.list_items >= 3 or s.subheadings >= 3),
    ),
    ContentType.EXPLAINER: (
        Expectation(">= 2 headings", lambda s: s.headings >= 2),
        Expectation(">= 3 paragraphs", lambda s: s.paragraphs >= 3),
    ),
    ContentType.NEWS: (Expectation(">= 3 paragraphs", lambda s: s.paragraphs >= 3),),
    ContentType.REVIEW: (
        Expectation(
            ">= 2 headings incl. a verdict-like heading, or >= 3 paragraphs",
            lambda s: (s.headings >= 2 and s.verdict_heading) or s.paragraphs >= 3,
        ),
    ),
}


def structure_score(blocks: Sequence[Block], content_type: ContentType) -> Score:
    expectations = STRUCTURE_EXPECTATIONS[content_type]
    shape = shape_of(blocks)
    missing = [exp.description for exp in expectations if not exp.check(shape)]
    value = (len(expectations) - len(missing)) / len(expectations)
    met = f"{len(expectations) - len(missing)}/{len(expectations)} {content_type.value} expectations met"
    detail = met if not missing else f"{met}; missing: {'; '.join(missing)}"
    return Score("structure", round_value(value), 0.0, 1.0, not missing, detail)
