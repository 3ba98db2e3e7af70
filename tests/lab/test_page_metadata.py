"""Tests of :mod:`worker.lab.page_metadata`: content type inference, safe slugs, taxonomies and skip reasons."""

from __future__ import annotations

import pytest

from worker.intake.briefs import ContentType
from worker.lab.page_metadata import infer_content_type, page_title, read_labels, skip_reason, slugify


@pytest.mark.parametrize(
    ("title", "text", "labels", "expected"),
    [
        ("How to fix a tap", "Some text.", [], ContentType.HOW_TO),
        ("Ten gadgets", "Text.", [], ContentType.LISTICLE),
        ("Things", "\n".join(f"- item {i}" for i in range(6)), [], ContentType.LISTICLE),
        ("The new kettle", "Text.", ["Reviews"], ContentType.REVIEW),
        ("Council opens a bridge", "Text.", ["news"], ContentType.NEWS),
        ("Fixing taps", "1. one\n2. two\n3. three\n\nand more words here", [], ContentType.HOW_TO),
        ("Why caches work", "A paragraph.\n\nAnother one.", [], ContentType.EXPLAINER),
    ],
)
def test_content_type_inference(title: str, text: str, labels: list[str], expected: ContentType) -> None:
    assert infer_content_type(title, text, labels) == expected


def test_slugs_are_safe() -> None:
    assert slugify("../..") == "article"
    assert slugify("Ünïcode Ťitle!") == "n-code-itle"


def test_labels_from_front_matter_and_zola_taxonomies() -> None:
    data = {"tags": "a b", "category": "C", "series": ["S"], "taxonomies": {"tags": ["t"], "places": ["P"]}}
    labels = read_labels(data)
    assert labels.tags == ["a", "b", "t"]  # Jekyll: a space-separated string
    assert labels.categories == ["C"]
    assert labels.others == {"series": ["S"], "places": ["P"]}
    assert labels.given() == {"tags", "categories"}


def test_title_falls_back_to_the_heading_then_the_slug() -> None:
    assert page_title({"title": "Given"}, "Heading", "a-slug") == ("Given", True)
    assert page_title({}, "Heading", "a-slug") == ("Heading", False)
    assert page_title({}, None, "a-slug") == ("A slug", False)


def test_skip_reasons() -> None:
    assert skip_reason("blog/_index.md", {}) == "section list page (_index.md), not an article"
    assert skip_reason("post.md", {"draft": True}) == "draft (draft: true)"
    assert skip_reason("post.md", {"title": "ok"}) is None
