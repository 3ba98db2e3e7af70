"""Unit tests of :mod:`worker.pipeline.cleaning`: raw model output in, tidy Markdown out."""

from __future__ import annotations

import pytest

from worker.pipeline.cleaning import clean_draft, extract_title, trim_unfinished_ending

FALLBACK = "Brief Title"

CASES = [
    pytest.param("# Tea\n\nTea is nice.", "# Tea\n\nTea is nice.\n", id="already-clean"),
    pytest.param(
        "<|im_start|>assistant\nSure, here is your article:\n\n# Tea\n\nTea is nice.<|im_end|>",
        "# Tea\n\nTea is nice.\n",
        id="special-tokens-role-and-preamble",
    ),
    pytest.param(
        "Certainly! Here's a guide for you.\n# Tea\n\nTea is nice.", "# Tea\n\nTea is nice.\n", id="two-preambles"
    ),
    pytest.param("assistant:\n\n# Tea\n\nTea is nice.", "# Tea\n\nTea is nice.\n", id="role-line-with-colon"),
    pytest.param(
        "# Tea\n\nTea is nice.\nassistant\nMore tea.", "# Tea\n\nTea is nice.\nMore tea.\n", id="role-line-inside"
    ),
    pytest.param("# Tea\n\nText with <|endoftext|>token.", "# Tea\n\nText with token.\n", id="inline-special-token"),
    pytest.param("Title: Green tea guide\n\nTea is nice.", "# Green tea guide\n\nTea is nice.\n", id="title-label"),
    pytest.param("**Title:** Green tea guide\n\nTea is nice.", "# Green tea guide\n\nTea is nice.\n", id="bold-label"),
    pytest.param(
        "**Title: Green tea guide**\n\nTea is nice.", "# Green tea guide\n\nTea is nice.\n", id="all-bold-label"
    ),
    pytest.param("# Title: Green tea\n\nTea is nice.", "# Green tea\n\nTea is nice.\n", id="label-in-heading"),
    pytest.param(
        "Title: **Green tea guide**\n\nTea is nice.", "# Green tea guide\n\nTea is nice.\n", id="bold-title-value"
    ),
    pytest.param(
        "# Tea\n\n**Why it matters**\n\nTea is nice.\n\n**Steps**:\n\n1. Boil water.",
        "# Tea\n\n## Why it matters\n\nTea is nice.\n\n## Steps\n\n1. Boil water.\n",
        id="bold-lines-become-headings",
    ),
    pytest.param("#Tea\n\n##Steps ##\n\nBoil water.", "# Tea\n\n## Steps\n\nBoil water.\n", id="heading-spacing"),
    pytest.param("Tea is nice.\n\nMore tea.", f"# {FALLBACK}\n\nTea is nice.\n\nMore tea.\n", id="missing-title-added"),
    pytest.param(
        "## Intro\n\nTea is nice.", f"# {FALLBACK}\n\n## Intro\n\nTea is nice.\n", id="h2-first-is-not-a-title"
    ),
    pytest.param("", f"# {FALLBACK}\n", id="empty"),
    pytest.param("<|im_end|>\n\n", f"# {FALLBACK}\n", id="only-tokens"),
    pytest.param("# Tea\n\nTea is nice. It is warm and", "# Tea\n\nTea is nice.\n", id="cut-sentence"),
    pytest.param(
        "# Tea\n\n1. Boil water.\n2. Steep the leaves for three min",
        "# Tea\n\n1. Boil water.\n",
        id="unfinished-numbered-item",
    ),
    pytest.param(
        "# Tea\n\n## Steps\n\n1. Boil water.\n2. Steep the leaves for three min",
        "# Tea\n\n## Steps\n\n1. Boil water.\n",
        id="unfinished-item-under-heading",
    ),
    pytest.param(
        "# Tea\n\n## What you need\n\n- A kettle\n- Loose leaves\n- A strain",
        "# Tea\n\n## What you need\n\n- A kettle\n- Loose leaves\n",
        id="complete-items-without-full-stops-are-kept",
    ),
    pytest.param(
        "# Tea\n\nIntro.\n\n## Steps\n\n1. Steep the leaves for three min",
        "# Tea\n\nIntro.\n",
        id="only-item-unfinished-drops-its-heading",
    ),
    pytest.param("# Tea\n\nGood tea.\n\n## Tips\n\n## More\n\n", "# Tea\n\nGood tea.\n", id="trailing-empty-headings"),
    pytest.param(
        "# Tea\n\nGood tea.\n\n## Tips\n\nBrew it hot and", "# Tea\n\nGood tea.\n", id="heading-left-empty-by-trim"
    ),
    pytest.param('# Tea\n\nShe said "stop." Then we', '# Tea\n\nShe said "stop."\n', id="closing-quote-kept"),
    pytest.param("# Tea\n\nIs it good? Yes! And", "# Tea\n\nIs it good? Yes!\n", id="question-and-exclamation"),
    pytest.param("# Tea\n\nHere is why:", "# Tea\n\nHere is why:\n", id="colon-ends-cleanly"),
    pytest.param(
        "# Tea\n\nOne.\n\n\n\n\nTwo.\n   \n\n\nThree.", "# Tea\n\nOne.\n\nTwo.\n\nThree.\n", id="blank-lines-collapsed"
    ),
    pytest.param("# Tea\r\n\r\nTea is nice.\r\n", "# Tea\n\nTea is nice.\n", id="crlf"),
    pytest.param("# Tea   \n\nTea is nice.   ", "# Tea\n\nTea is nice.\n", id="trailing-spaces"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_clean_draft(raw: str, expected: str) -> None:
    assert clean_draft(raw, FALLBACK) == expected


# A last list item without a full stop cannot be told from a cut one, so cleaning twice may trim again.
IDEMPOTENT = [case for case in CASES if case.id != "complete-items-without-full-stops-are-kept"]


@pytest.mark.parametrize(("raw", "expected"), IDEMPOTENT)
def test_clean_draft_is_idempotent(raw: str, expected: str) -> None:
    assert clean_draft(expected, FALLBACK) == expected


def test_cleaned_draft_never_ends_mid_sentence() -> None:
    raw = "# Tea\n\nIntro one. Intro two\n\n## Steps\n\n- Boil.\n- Pour the\n"
    cleaned = clean_draft(raw, FALLBACK)
    assert cleaned == "# Tea\n\nIntro one. Intro two\n\n## Steps\n\n- Boil.\n"
    assert cleaned.endswith(".\n")


def test_trim_keeps_a_finished_text() -> None:
    text = "# Tea\n\nTea is nice.\n\n## Steps\n\n1. Boil water."
    assert trim_unfinished_ending(text) == text


def test_trim_of_a_title_only_text() -> None:
    assert trim_unfinished_ending("# Tea\n\n## Empty\n") == "# Tea"


def test_trim_of_a_single_unfinished_block_drops_it() -> None:
    assert trim_unfinished_ending("# Tea\n\nno sentence ends here") == "# Tea"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("# Green tea\n\nText.", "Green tea"),
        ("Intro\n## Sub\n# Real title  \n", "Real title"),
        ("## Only a sub heading\n\nText.", FALLBACK),
        ("#NoSpace\n", FALLBACK),
        ("# \n\nText.", FALLBACK),
        ("", FALLBACK),
    ],
)
def test_extract_title(markdown: str, expected: str) -> None:
    assert extract_title(markdown, FALLBACK) == expected


def test_extract_title_of_a_cleaned_draft() -> None:
    assert extract_title(clean_draft("Title: Green tea guide\n\nTea.", FALLBACK), FALLBACK) == "Green tea guide"
