"""Unit tests of the :class:`worker.intake.briefs.Brief` model."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from worker.intake.briefs import (
    MAX_LIST_ITEMS,
    MAX_TARGET_WORDS,
    MIN_TARGET_WORDS,
    Brief,
    ContentType,
    derive_brief_id,
)


def error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.value.errors()}


# ------------------------------------------------------------------------------------------------ ids


def test_derived_id_is_deterministic_and_well_formed() -> None:
    first = Brief(title="How to prune roses", tags=["roses"], target_words=250)
    second = Brief(title="How to prune roses", tags=["roses"], target_words=250)
    assert first.id == second.id
    assert first.id is not None
    assert re.fullmatch(r"b-[0-9a-f]{16}", first.id)
    assert first.brief_id == first.id
    assert derive_brief_id(first) == first.id


@pytest.mark.parametrize(
    "change",
    [
        {"title": "How to prune apple trees"},
        {"tags": ["roses", "pruning"]},
        {"target_words": 300},
        {"notes": "Mention gloves."},
        {"content_type": "listicle"},
        {"style": "plain-howto"},
    ],
)
def test_derived_id_depends_on_content(change: dict[str, object]) -> None:
    base = {"title": "How to prune roses", "tags": ["roses"], "target_words": 250}
    assert Brief(**base).id != Brief(**{**base, **change}).id


def test_derived_id_hashes_normalised_content() -> None:
    canonical = Brief(title="Roses", content_type="how-to", tone="friendly", tags=["a", "b"])
    messy = Brief(title="  Roses ", content_type=" Guide ", tone="FRIENDLY", tags="a; b")
    assert messy.id == canonical.id


def test_given_id_is_kept_and_not_hashed() -> None:
    brief = Brief(id="howto-compost-bin", title="Compost")
    assert brief.id == "howto-compost-bin"
    assert Brief(id="other-id", title="Compost").content_dict() == brief.content_dict()
    assert "id" not in brief.content_dict()


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_empty_id_means_derived(empty: str | None) -> None:
    assert Brief(id=empty, title="Compost").id == Brief(title="Compost").id


# -------------------------------------------------------------------------------------- content types


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("how-to", ContentType.HOW_TO),
        ("howto", ContentType.HOW_TO),
        ("how_to", ContentType.HOW_TO),
        ("How To", ContentType.HOW_TO),
        ("guide", ContentType.HOW_TO),
        ("tutorial", ContentType.HOW_TO),
        ("list", ContentType.LISTICLE),
        ("LISTICLE", ContentType.LISTICLE),
        ("explanation", ContentType.EXPLAINER),
        ("news-story", ContentType.NEWS),
        ("product-review", ContentType.REVIEW),
        (" review ", ContentType.REVIEW),
    ],
)
def test_content_type_aliases(given: str, expected: ContentType) -> None:
    assert Brief(title="t", content_type=given).content_type is expected


def test_content_type_default_and_unknown() -> None:
    assert Brief(title="t").content_type is ContentType.EXPLAINER
    with pytest.raises(ValidationError) as exc:
        Brief(title="t", content_type="poem")
    assert error_fields(exc) == {"content_type"}


# ----------------------------------------------------------------------------------------- list fields


@pytest.mark.parametrize("name", ["tags", "keywords"])
def test_list_fields_split_on_semicolons(name: str) -> None:
    brief = Brief(title="t", **{name: " python ;postgres;; ; performance "})
    assert getattr(brief, name) == ["python", "postgres", "performance"]


def test_list_fields_accept_lists_and_none() -> None:
    assert Brief(title="t", tags=["a b", "c;d"]).tags == ["a b", "c;d"]
    assert Brief(title="t", tags=None).tags == []
    assert Brief(title="t").keywords == []


def test_list_field_limits() -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(title="t", tags=["x" * 81])
    assert error_fields(exc) == {"tags.0"}
    with pytest.raises(ValidationError) as exc:
        Brief(title="t", keywords=[f"k{i}" for i in range(MAX_LIST_ITEMS + 1)])
    assert error_fields(exc) == {"keywords"}
    with pytest.raises(ValidationError):
        Brief(title="t", tags=["ok", "  "])
    with pytest.raises(ValidationError):
        Brief(title="t", tags=[1, 2])


# ---------------------------------------------------------------------------------------- target_words


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (250, 250),
        (MIN_TARGET_WORDS, MIN_TARGET_WORDS),
        (MAX_TARGET_WORDS, MAX_TARGET_WORDS),
        (1, MIN_TARGET_WORDS),
        (0, MIN_TARGET_WORDS),
        (-40, MIN_TARGET_WORDS),
        (10**30, MAX_TARGET_WORDS),
        (5000, MAX_TARGET_WORDS),
        ("300", 300),
        (" 700 ", 700),
        ("9000", MAX_TARGET_WORDS),
        ("7", MIN_TARGET_WORDS),
    ],
)
def test_target_words_capped(given: object, expected: int) -> None:
    assert Brief(title="t", target_words=given).target_words == expected


def test_target_words_default() -> None:
    assert Brief(title="t").target_words == 600


@pytest.mark.parametrize("bad", [True, False, "lots", "", "12.5", 12.5, None, [300]])
def test_target_words_must_be_whole_number(bad: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(title="t", target_words=bad)
    assert error_fields(exc) == {"target_words"}


# ------------------------------------------------------------------------------------- text hygiene


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\r", "\x7f", "\x1f"])
@pytest.mark.parametrize("name", ["title", "audience", "category", "tone", "notes"])
def test_control_characters_rejected_in_text(name: str, char: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(**{"title": "t", name: f"before{char}after"})
    assert error_fields(exc) == {name}
    assert "control character" in str(exc.value)


@pytest.mark.parametrize("name", ["tags", "keywords"])
def test_control_characters_rejected_in_list_items(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(title="t", **{name: ["fine", "bell\x07"]})
    assert name in {field.split(".")[0] for field in error_fields(exc)}


def test_newlines_and_tabs_allowed_in_notes() -> None:
    assert Brief(title="t", notes="one\n\ttwo").notes == "one\n\ttwo"


def test_metadata_lowercased_and_stripped() -> None:
    brief = Brief(title="  Mixed Case Title ", audience=" Developers ", category="DataBases", tone="Precise")
    assert (brief.title, brief.audience, brief.category, brief.tone) == (
        "Mixed Case Title",
        "developers",
        "databases",
        "precise",
    )


def test_title_required_and_bounded() -> None:
    with pytest.raises(ValidationError) as exc:
        Brief()  # type: ignore[call-arg]
    assert error_fields(exc) == {"title"}
    for bad in ["", "   ", "x" * 301]:
        with pytest.raises(ValidationError):
            Brief(title=bad)
    with pytest.raises(ValidationError):
        Brief(title="t", notes="x" * 2001)


# -------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "bad",
    [
        "../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        "a..b",
        ".hidden",
        "-flag",
        "has space",
        "x" * 129,
        "{{ 7*7 }}",
        "$(rm -rf)",
        "nul\x00byte",
        "caf\u00e9",
    ],
)
@pytest.mark.parametrize("name", ["id", "style"])
def test_unsafe_names_rejected(name: str, bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(**{"title": "t", name: bad})
    assert error_fields(exc) == {name}


@pytest.mark.parametrize("good", ["howto-compost-bin", "A1", "v1.2_final", "x" * 128])
def test_safe_names_accepted(good: str) -> None:
    brief = Brief(id=good, title="t", style=good)
    assert (brief.id, brief.style) == (good, good)


def test_empty_style_means_none() -> None:
    assert Brief(title="t", style="").style is None


# ------------------------------------------------------------------------------------ strictness, data


def test_extra_fields_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(title="t", colour="blue")  # type: ignore[call-arg]
    assert error_fields(exc) == {"colour"}


def test_brief_is_frozen() -> None:
    brief = Brief(title="t")
    with pytest.raises(ValidationError):
        brief.title = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    "template",
    ["{{ 7*7 }}", "{% for x in range(9) %}{{ x }}{% endfor %}", "${7*7}", "#{7*7}", "{0.__class__}"],
)
def test_template_syntax_is_kept_literally(template: str) -> None:
    brief = Brief(title=template, notes=template, tags=[template], audience=template)
    assert brief.title == template
    assert brief.notes == template
    assert brief.tags == [template]
    assert brief.audience == template.lower()
    assert "49" not in json.dumps(brief.content_dict())  # nothing was evaluated
