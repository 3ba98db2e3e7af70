"""Tests of :mod:`worker.lab.page_body`: a post's body without site-generator syntax, code blocks kept."""

from __future__ import annotations

from worker.lab.page_body import clean_body, first_heading, with_title_heading


def test_clean_body_keeps_code_blocks_verbatim_and_drops_front_matter_remnants() -> None:
    raw = '---\ntitle: stray\n---\n\nText {{< ref "x" >}} here.\n\n```go\n{{ .Title }} <b>x</b>\n```\n\n\n\n'
    raw += "End &amp; out."
    cleaned = clean_body(raw)
    assert cleaned == "Text  here.\n\n```go\n{{ .Title }} <b>x</b>\n```\n\nEnd & out."


def test_title_heading_is_added_only_when_missing() -> None:
    assert first_heading("\n# A title #\n\nText.") == "A title"
    assert first_heading("## Not level one\n\nText.") is None
    assert with_title_heading("# Given\n\nText.", "Other") == "# Given\n\nText."
    assert with_title_heading("Text.", "Added") == "# Added\n\nText."


def test_an_unresolved_directive_above_the_title_does_not_hide_it() -> None:
    body = "[unresolved: include toc.html]\n# How to wash a pillow\n\nText."
    assert first_heading(body) == "How to wash a pillow"
    assert with_title_heading(body, "How to wash a pillow") == body  # no second title line added
    assert first_heading("[unresolved: include toc.html] and text\n# Title") is None  # not a line of its own
