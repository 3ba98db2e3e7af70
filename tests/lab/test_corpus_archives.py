"""Real blog archives: code kept byte for byte (over the shared OpenTelemetry archive), and every class of damage
a real archive showed, on small archives of our own under tests/data/archives/."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from worker.cli.main import app
from worker.lab.corpus import load_corpus
from worker.lab.corpus_style import routing_weights, voice_traits
from worker.lab.corpus_tokens import length_report
from worker.lab.front_matter import split_front_matter
from worker.lab.page_body import clean_page
from worker.styles.catalog import Style, StyleCatalog, Targets

REPO = Path(__file__).resolve().parents[2]
ARCHIVES = REPO / "tests" / "data" / "archives"
SHARED = REPO.parent / "shared" / "corpora" / "opentelemetry-blog"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="the shared corpora folder is absent")
_PARSER = MarkdownIt("commonmark").enable("table")


def code_of(text: str) -> list[tuple[str, str]]:
    """Every code block and code span of a Markdown text, in order, as markdown-it parses them."""
    found: list[tuple[str, str]] = []
    for token in _PARSER.parse(text):
        if token.type in ("fence", "code_block"):
            found.append(("block", token.content))
        found.extend(("span", child.content) for child in token.children or [] if child.type == "code_inline")
    return found


def _in_shortcode_arguments(body: str) -> list[tuple[str, str]]:
    """Code spans the parser finds inside a shortcode's arguments (attrlink=`...`): site syntax, not code."""
    lines = [line for line in body.split("\n") if line.lstrip().startswith(("{{<", "{{%"))]
    return [item for line in lines for item in code_of(line)]


@needs_shared
def test_no_code_is_lost_or_altered_in_the_shared_archive() -> None:
    checked = 0
    for path in sorted(SHARED.rglob("*.md")):
        _, data, body = split_front_matter(path.read_text(encoding="utf-8"))
        expected = code_of(body)
        for item in _in_shortcode_arguments(body):
            expected.remove(item)
        assert code_of(clean_page(body, params=data).text) == expected, path
        checked += len(expected)
    assert checked > 2000


@needs_shared
def test_the_shared_archive_keeps_its_posts_with_dates_and_authors() -> None:
    corpus = load_corpus(SHARED)
    assert corpus.files_seen == 265
    assert len(corpus.articles) > 200
    assert all(article.date for article in corpus.articles)
    assert sum(1 for article in corpus.articles if article.extra.get("authors")) > 200
    assert not any("](" in name for a in corpus.articles for name in a.extra.get("authors", []))
    reasons = {s.reason.split(" (")[0] for s in corpus.skipped}
    assert "redirect stub" not in reasons


def test_go_present_directives_inline_the_archive_file_or_leave_a_placeholder() -> None:
    article = load_corpus(ARCHIVES / "go-blog").articles[0]
    body = article.body
    assert "as in this example:\n\n```go\nfunc gen(nums ...int) <-chan int {\n" in body
    assert "OMIT" not in body and "// HL" not in body and 'import "fmt"' not in body
    assert body.count("```go") == 1 and "func main" not in body  # only the named lines
    assert '[unresolved: play "pipelines/missing.go"]' in body
    assert article.warnings == ('directive file or lines not found: play "pipelines/missing.go"',)
    assert '<div class="note">Raw text kept.</div>' in body  # raw keeps its literal text
    assert (article.inlined, article.placeholders) == (1, 1)
    assert "`<int>`" in body  # a code span with angle brackets is left alone


def test_go_blog_authors_from_by_and_a_loose_date() -> None:
    article = load_corpus(ARCHIVES / "go-blog").articles[0]
    assert article.extra["authors"] == ["Sameer Ajmani", "Rob Pike"]  # by: list, a Markdown link gives the name
    assert (article.date, article.date_source) == ("2014-03-13", "front matter date")  # 2014-3-13


def test_toml_archive_with_dates_only_in_path() -> None:
    corpus = load_corpus(ARCHIVES / "toml-paths")
    found = {a.id: (a.date, a.date_source, a.front_matter) for a in corpus.articles}
    assert found == {
        "first-steps": ("2023-03-06", "front matter path", "toml"),
        "a-second-look": ("2022-11-30", "front matter path", "toml"),
    }


@pytest.fixture(scope="module")
def damaged():  # type: ignore[no-untyped-def]
    return load_corpus(ARCHIVES / "hugo-damage")


def test_hidden_text_never_leaks_and_code_is_kept(damaged) -> None:  # type: ignore[no-untyped-def]
    body = next(a for a in damaged.articles if a.id == "hidden").body
    assert "editor's note" not in body and "hidden: true" not in body and "<!--" not in body
    assert "Use `Option<T>`, `<metric path>` and `{{< param x >}}` as written." in body
    assert "Alert text stays." in body and "{{<" not in body.replace("`{{< param x >}}`", "")
    assert '```go\nfmt.Println("<b>highlighted</b>")\n```' in body
    assert "[unresolved: mystery-widget id=3]" in body


def test_skips_are_right_both_ways(damaged) -> None:  # type: ignore[no-untyped-def]
    reasons = {s.path: s.reason for s in damaged.skipped}
    assert "content/posts/short-with-aliases.md" not in reasons  # aliases and a short real body: kept
    assert reasons["content/posts/empty-alias.md"] == "redirect stub (aliases and an empty body)"
    assert reasons["README.md"].startswith("not a post (no front matter")
    assert reasons["content/posts/crosspost.md"].startswith("cross-post stub (canonical_url:")


def test_a_template_generated_series_keeps_its_first_post(damaged) -> None:  # type: ignore[no-untyped-def]
    kept = [a.id for a in damaged.articles if a.id.startswith("release")]
    assert kept == ["release-1-2-0"]
    for later in ("content/posts/release-1-3-0.md", "content/posts/release-1-4-1.md"):
        reason = next(s.reason for s in damaged.skipped if s.path == later)
        assert reason.startswith("exact duplicate of content/posts/release-1-2-0.md (numbers and dates aside")


def test_markdown_link_author_gives_the_name(damaged) -> None:  # type: ignore[no-untyped-def]
    article = next(a for a in damaged.articles if a.id == "hidden")
    assert article.extra["authors"] == ["Ana Lima"]
    assert article.brief.notes == "Author: Ana Lima."


def test_posts_without_front_matter_are_kept_when_the_archive_says_so(tmp_path: Path) -> None:
    text = (ARCHIVES / "hugo-damage" / "README.md").read_text()
    (tmp_path / "notes.md").write_text(text)
    assert load_corpus(tmp_path).articles == []
    (tmp_path / "copydesk-corpus.yaml").write_text("posts_without_front_matter: true\n")
    assert [a.id for a in load_corpus(tmp_path).articles] == ["notes"]


def test_a_symlink_loop_is_a_skip_not_a_traceback(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b.md", tmp_path / "a.md")
    os.symlink(tmp_path / "a.md", tmp_path / "b.md")
    corpus = load_corpus(tmp_path)
    assert {s.path: s.reason for s in corpus.skipped} == {"a.md": "symbolic link loop", "b.md": "symbolic link loop"}


def test_min_words_counts_the_body_not_the_added_title(tmp_path: Path) -> None:
    words = " ".join(f"word{i}" for i in range(58))
    (tmp_path / "p.md").write_text(f"---\ntitle: Four more title words\n---\n{words}\n")
    assert load_corpus(tmp_path).skipped[0].reason == "near-empty page (58 words, fewer than 60)"


# ------------------------------------------------------------------------------------------- see what you train on


def test_inspect_lists_kept_articles_and_the_archive_figures() -> None:
    result = CliRunner().invoke(
        app, ["corpus", "inspect", str(ARCHIVES / "hugo-damage"), "--list", "--no-tokens", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["skipped_by_reason"] == {
        "exact duplicate": 2,
        "cross-post stub": 1,
        "not a post": 1,
        "redirect stub": 1,
    }
    assert report["dates"] == {"found": 3, "sources": {"front matter date": 3}}
    assert report["authors"]["names"] == {"Ana Lima": 1}
    assert (report["directives_inlined"], report["placeholders"], report["articles_with_warnings"]) == (1, 1, 1)
    hidden = next(row for row in report["kept_articles"] if row["id"] == "hidden")
    assert hidden["date_source"] == "front matter date" and hidden["authors"] == ["Ana Lima"]
    assert hidden["warnings"] == ["shortcode not resolved: mystery-widget id=3"]
    assert hidden["tokens"] is None


def test_show_prints_the_brief_and_the_body_training_sees() -> None:
    corpus = load_corpus(ARCHIVES / "go-blog")
    result = CliRunner().invoke(app, ["corpus", "show", str(ARCHIVES / "go-blog"), "pipelines", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["body"] == corpus.articles[0].body
    assert shown["brief"] == corpus.articles[0].brief.content_dict()
    missing = CliRunner().invoke(app, ["corpus", "show", str(ARCHIVES / "go-blog"), "nope"])
    assert missing.exit_code == 10 and "no kept article 'nope'" in missing.output


def test_length_report_counts_what_max_length_cuts() -> None:
    report = length_report([100, 300, 600, 1000], 512)
    assert (report["longer"], report["tokens_cut"], report["max"], report["total"]) == (2, 88 + 488, 1000, 2000)
    assert report["mean_within_max_length"] == (100 + 300 + 512 + 512) / 4
    assert length_report([], 512)["longer"] == 0


# ------------------------------------------------------------------------------------------- a style in one step


def test_styles_new_writes_a_style_from_the_archive_and_refuses_an_existing_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPYDESK_STYLES_DIR", str(tmp_path))
    archive = ARCHIVES / "hugo-damage"
    result = CliRunner().invoke(app, ["styles", "new", "otel-voice", "--corpus", str(archive), "--json"])
    assert result.exit_code == 0, result.output
    style = StyleCatalog.load(tmp_path).get("otel-voice")
    assert "otel-voice" in style.system_prompt and "edit this" in style.system_prompt
    assert "sentences (about" in style.system_prompt  # the voice named from the archive's profile
    assert style.gates == Style.model_fields["gates"].default_factory()  # type: ignore[misc]
    assert style.routing.content_types and max(style.routing.content_types.values()) == 3.0
    assert style.targets.grade != Targets().grade  # from the corpus profile, not the defaults
    again = CliRunner().invoke(app, ["styles", "new", "otel-voice", "--corpus", str(archive)])
    assert again.exit_code != 0 and "already exists" in again.output


def test_routing_weights_scale_with_frequency() -> None:
    assert routing_weights(["Go", "go", "Rust", "", "go"]) == {"go": 3.0, "rust": 1.7}
    assert routing_weights([]) == {}


def _profile(**medians: float) -> dict[str, Any]:
    neutral = {
        "words_per_sentence": 15.0,
        "reading_ease": 60.0,
        "list_share": 0.3,
        "headings_per_100_words": 1.0,
        "second_person": 0.0,
        "first_person": 0.0,
        "sentiment": 0.1,
        "formality": 0.6,
        "exclamations": 0.1,
    }
    return {"features": {name: {"median": value} for name, value in {**neutral, **medians}.items()}}


def test_the_voice_is_named_from_the_profile_medians() -> None:
    assert voice_traits(_profile()) == [
        "medium-length sentences (about 15 words)",
        "plain but precise words",
        "paragraphs, with a list only for parallel items",
        "a heading about every 100 words",
        "no 'I', 'we' or 'you'",
        "a neutral tone",
    ]  # nothing said about register or exclamation marks in the middle ranges
    howto = voice_traits(_profile(words_per_sentence=9.3, reading_ease=92, list_share=0.7, second_person=1.8))
    assert howto[:3] == ["short sentences (about 9 words)", "everyday words", "mostly lists and numbered steps"]
    assert "'you' for the reader" in howto
    dense = voice_traits(_profile(words_per_sentence=22, reading_ease=30, list_share=0.0, formality=0.75))
    assert dense[:3] == ["long sentences (about 22 words)", "technical vocabulary", "paragraphs rather than lists"]
    assert "a formal register" in dense
    cheerful = voice_traits(_profile(sentiment=0.3, formality=0.5, exclamations=0.2, first_person=1.1))
    assert {"an upbeat tone", "a relaxed, conversational register", "an exclamation mark now and then"} <= set(cheerful)
    assert "'we' or 'I'" in cheerful
    assert "no exclamation marks" in voice_traits(_profile(exclamations=0.0))
    assert "few headings" in voice_traits(_profile(headings_per_100_words=0.0))
