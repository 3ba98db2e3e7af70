"""Unit tests of :mod:`worker.pipeline.prompts`: rendering, the sandbox, strictness and template hashes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from worker.config import PROJECT_ROOT
from worker.errors import PromptError
from worker.intake.briefs import Brief, ContentType
from worker.pipeline.prompts import PromptRenderer
from worker.styles.catalog import Style

TEMPLATES = PROJECT_ROOT / "templates"
INJECTIONS = ["{{ 7*7 }}", "{% for x in [1,2] %}LOOP{{ x }}{% endfor %}", "{{ ''.__class__.__mro__ }}"]
INJECTION_TEXT = " ".join(INJECTIONS)


@pytest.fixture(scope="module")
def renderer() -> PromptRenderer:
    return PromptRenderer(TEMPLATES)


@pytest.fixture
def style() -> Style:
    return Style(name="calm", description="d", system_prompt="  You are calm.  \n")


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(TEMPLATES, tmp_path / "templates"))


def full_brief(content_type: ContentType, **fields: object) -> Brief:
    values: dict[str, object] = {
        "title": "Composting in small gardens",
        "content_type": content_type,
        "audience": "beginners",
        "category": "gardening",
        "tags": ["compost", "garden"],
        "keywords": ["compost bin", "kitchen scraps"],
        "target_words": 250,
        "tone": "friendly",
        "notes": "Mention what cannot go in.",
    }
    values.update(fields)
    return Brief(**values)  # type: ignore[arg-type]


def touch_later(path: Path) -> None:
    """Move the file's mtime forward, so that a cache keyed on mtime cannot miss the change."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize("content_type", list(ContentType))
def test_every_content_type_renders(renderer: PromptRenderer, style: Style, content_type: ContentType) -> None:
    prompt = renderer.render(full_brief(content_type), style)
    assert prompt.template == f"prompts/{content_type.value}.j2"
    assert len(prompt.template_hash) == 16
    int(prompt.template_hash, 16)
    assert prompt.system == "You are calm."
    for expected in (
        "Title: Composting in small gardens",
        "Audience: beginners",
        "Tone: friendly",
        "Category: gardening",
        "Use these keywords: compost bin, kitchen scraps",
        "Topics: compost, garden",
        "about 250 words",
        "Notes from the editor: Mention what cannot go in.",
        "Markdown",
    ):
        assert expected in prompt.user
    assert "Feedback" not in prompt.user
    assert prompt.user == prompt.user.strip()
    assert prompt.messages() == [
        {"role": "system", "content": "You are calm."},
        {"role": "user", "content": prompt.user},
    ]


def test_optional_lines_are_left_out(renderer: PromptRenderer, style: Style) -> None:
    prompt = renderer.render(Brief(title="Bare", content_type="news"), style)
    for absent in ("Category:", "Use these keywords", "Topics:", "Notes from the editor", "Feedback"):
        assert absent not in prompt.user
    assert "Title: Bare" in prompt.user


def test_messages_without_system_prompt(renderer: PromptRenderer) -> None:
    prompt = renderer.render(Brief(title="Bare"), Style(name="bare", description="d"))
    assert prompt.system == ""
    assert [m["role"] for m in prompt.messages()] == ["user"]


def test_feedback_appears_when_given(renderer: PromptRenderer, style: Style) -> None:
    prompt = renderer.render(full_brief(ContentType.HOW_TO), style, feedback="Shorter intro, please.")
    assert "Feedback on the previous draft, address it: Shorter intro, please." in prompt.user


@pytest.mark.parametrize("content_type", list(ContentType))
def test_template_syntax_in_brief_fields_is_never_evaluated(
    renderer: PromptRenderer, style: Style, content_type: ContentType
) -> None:
    brief = full_brief(
        content_type,
        title=INJECTION_TEXT,
        audience=INJECTION_TEXT,
        category=INJECTION_TEXT,
        tone=INJECTION_TEXT,
        notes=INJECTION_TEXT,
        tags=INJECTIONS,
        keywords=INJECTIONS,
    )
    prompt = renderer.render(brief, style, feedback=INJECTION_TEXT)
    for injection in INJECTIONS:
        # title, audience, category, tone (those three lowercased), notes, feedback, tags and keywords
        assert prompt.user.lower().count(injection.lower()) >= 8, injection
        assert injection in prompt.user
    assert "49" not in prompt.user
    assert "LOOP1" not in prompt.user
    assert "<class" not in prompt.user
    assert "object" not in prompt.user


def test_template_syntax_in_system_prompt_is_not_evaluated(renderer: PromptRenderer) -> None:
    style = Style(name="calm", description="d", system_prompt="Be calm. {{ 7*7 }}")
    assert renderer.render(Brief(title="x"), style).system == "Be calm. {{ 7*7 }}"


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ brief.__class__ }}",
        "{{ brief.items.__self__.__class__.__mro__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{% set x = brief.tags.append('owned') %}{{ brief.tags }}",
        "{{ brief.update({'title': 'owned'}) }}",
        "{{ ''.format.__globals__ }}",
    ],
)
def test_sandbox_escape_raises_prompt_error(tmp_path: Path, style: Style, attack: str) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "explainer.j2").write_text(f"Write.\n{attack}\n", encoding="utf-8")
    with pytest.raises(PromptError) as exc:
        PromptRenderer(tmp_path).render(Brief(title="x"), style)
    assert "prompts/explainer.j2" in str(exc.value)


def test_undefined_variable_raises_prompt_error(tmp_path: Path, style: Style) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "news.j2").write_text("Title: {{ brief.titel }} {{ nothing }}\n", encoding="utf-8")
    with pytest.raises(PromptError, match="titel"):
        PromptRenderer(tmp_path).render(Brief(title="x", content_type="news"), style)


def test_template_syntax_error_raises_prompt_error(tmp_path: Path, style: Style) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "news.j2").write_text("{% if %}\n", encoding="utf-8")
    with pytest.raises(PromptError, match="failed to render"):
        PromptRenderer(tmp_path).render(Brief(title="x", content_type="news"), style)


def test_missing_template_names_the_path(tmp_path: Path, style: Style) -> None:
    (tmp_path / "prompts").mkdir()
    with pytest.raises(PromptError) as exc:
        PromptRenderer(tmp_path).render(Brief(title="x", content_type="review"), style)
    assert str(tmp_path / "prompts" / "review.j2") in str(exc.value)
    assert "content type 'review'" in str(exc.value)


def test_missing_partial_is_a_prompt_error(templates_copy: Path, style: Style) -> None:
    (templates_copy / "prompts" / "_brief.j2").unlink()
    with pytest.raises(PromptError) as exc:
        PromptRenderer(templates_copy).render(Brief(title="x"), style)
    assert "prompts/_brief.j2" in str(exc.value)
    assert "prompts/explainer.j2 includes" in str(exc.value)


def test_template_hash_is_stable_and_differs_per_template(renderer: PromptRenderer) -> None:
    other = PromptRenderer(TEMPLATES)
    names = [f"prompts/{t.value}.j2" for t in ContentType]
    hashes = [renderer.template_hash(name) for name in names]
    assert hashes == [other.template_hash(name) for name in names]
    assert len(set(hashes)) == len(names)


def test_template_hash_changes_when_the_template_changes(templates_copy: Path, style: Style) -> None:
    brief = Brief(title="x", content_type="how-to")
    before = PromptRenderer(templates_copy).render(brief, style)
    path = templates_copy / "prompts" / "how-to.j2"
    path.write_text(path.read_text() + "Add a FAQ section.\n")
    after = PromptRenderer(templates_copy).render(brief, style)
    assert "Add a FAQ section." in after.user
    assert after.template_hash != before.template_hash


def test_template_hash_changes_when_a_partial_changes(templates_copy: Path, style: Style) -> None:
    brief = Brief(title="x", content_type="listicle")
    before = PromptRenderer(templates_copy).render(brief, style).template_hash
    (templates_copy / "prompts" / "_extra.j2").write_text("{# a new shared partial #}\n")
    added = PromptRenderer(templates_copy).render(brief, style).template_hash
    partial = templates_copy / "prompts" / "_brief.j2"
    partial.write_text(partial.read_text().replace("Tone:", "Voice:"))
    changed = PromptRenderer(templates_copy).render(brief, style)
    assert len({before, added, changed.template_hash}) == 3
    assert "Voice: neutral" in changed.user


def test_hash_follows_a_template_edited_while_the_renderer_runs(templates_copy: Path, style: Style) -> None:
    """A long-running worker re-reads an edited template; the provenance hash must follow the edit."""
    renderer = PromptRenderer(templates_copy)
    brief = Brief(title="x", content_type="news")
    before = renderer.render(brief, style)
    path = templates_copy / "prompts" / "news.j2"
    path.write_text(path.read_text() + "Quote one source.\n")
    touch_later(path)
    after = renderer.render(brief, style)
    assert "Quote one source." in after.user
    assert after.template_hash != before.template_hash
    assert after.template_hash == PromptRenderer(templates_copy).template_hash("prompts/news.j2")
