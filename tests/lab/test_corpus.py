"""Tests of :mod:`worker.lab.corpus` and :mod:`worker.lab.stylometry`: archives in every layout and front-matter format,
cleaning, metadata mapping, skipped files with their reasons, duplicates, profile and targets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from corpus_fixtures import body, write_archive, write_voice
from typer.testing import CliRunner

from worker.cli.main import app
from worker.intake.briefs import ContentType
from worker.lab.corpus import KEPT, CorpusError, inspect_corpus, load_corpus, require_articles
from worker.lab.stylometry import FEATURE_NAMES, profile_texts, targets_from_profile, text_features
from worker.names import is_safe_name
from worker.styles.catalog import Targets


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="module")
def corpus(archive: Path):  # type: ignore[no-untyped-def]
    return load_corpus(archive)


def by_id(corpus, article_id: str):  # type: ignore[no-untyped-def]
    return next(a for a in corpus.articles if a.id == article_id)


# ------------------------------------------------------------------------------------------- layouts and formats


def test_every_layout_and_front_matter_format_is_read(corpus) -> None:  # type: ignore[no-untyped-def]
    assert sorted(a.id for a in corpus.articles) == [
        "bread",
        "cast-iron",
        "fix-a-squeaky-door",
        "json-post",
        "quiet-keyboards",
    ]
    assert corpus.front_matter_formats() == {"json": 1, "toml": 2, "yaml": 2}
    assert corpus.layouts() == {"jekyll post": 1, "page bundle": 2, "single page": 2}
    assert by_id(corpus, "cast-iron").path == "content/posts/cast-iron/index.md"


def test_hugo_bundle_yaml_metadata_becomes_the_brief(corpus) -> None:  # type: ignore[no-untyped-def]
    article = by_id(corpus, "cast-iron")
    brief = article.brief
    assert brief.title == "How to clean a cast iron pan"
    assert brief.content_type == ContentType.HOW_TO  # inferred from the title
    assert brief.category == "home"  # the first category
    assert brief.tags == ["kitchen", "cast iron", "Cooking", "Kitchen basics"]  # other categories and series
    assert brief.keywords == ["cast iron", "seasoning"]
    assert brief.notes == "Summary: Keep the seasoning. Author: Ana Lima."
    assert brief.target_words == article.words
    assert article.date == "2024-03-02"
    assert article.extra == {"authors": ["Ana Lima"], "series": ["Kitchen basics"]}
    assert {"title", "date", "tags", "categories", "keywords", "description", "authors"} <= article.given


def test_toml_front_matter_with_params_and_a_custom_taxonomy(corpus) -> None:  # type: ignore[no-untyped-def]
    article = by_id(corpus, "bread")
    assert article.front_matter == "toml"
    assert article.date == "2022-01-01"  # from a TOML datetime
    assert article.brief.audience == "home bakers"  # from [params], lower-cased like every brief
    assert article.brief.tone == "curious"
    assert article.brief.tags == ["baking", "science"]  # topics is another taxonomy


def test_json_front_matter(corpus) -> None:  # type: ignore[no-untyped-def]
    article = by_id(corpus, "json-post")
    assert article.front_matter == "json"
    assert article.brief.title == "Five ways to store herbs"
    assert article.brief.content_type == ContentType.LISTICLE  # "Five ..." in the title
    assert article.brief.notes == "Summary: Keep them green."
    assert article.body.startswith("# Five ways to store herbs\n\n")


def test_jekyll_post_takes_date_and_slug_from_the_file_name(corpus) -> None:  # type: ignore[no-untyped-def]
    article = by_id(corpus, "fix-a-squeaky-door")
    assert article.layout == "jekyll post"
    assert article.date == "2023-05-06"
    assert "date" not in article.given
    assert article.brief.title == "Fix a squeaky door"  # from the body's level-1 heading
    assert article.brief.category == "home"  # space-separated Jekyll categories
    assert article.brief.tags == ["doors", "hinges", "diy"]


def test_zola_bundle_with_taxonomies_extra_and_a_dated_folder(corpus) -> None:  # type: ignore[no-untyped-def]
    article = by_id(corpus, "quiet-keyboards")
    assert article.date == "2021-09-10"  # from the folder name: 2021-09-10_quiet-keyboards
    assert article.brief.content_type == ContentType.REVIEW  # [extra] content_type
    assert "content_type" in article.given
    assert article.brief.category == "reviews"
    assert article.brief.notes == "Summary: Typing without the clatter. Author: Sam."


# ------------------------------------------------------------------------------------------- cleaning


def test_bodies_are_cleaned_of_shortcodes_liquid_html_and_remnants(corpus) -> None:  # type: ignore[no-untyped-def]
    cast_iron = by_id(corpus, "cast-iron").body
    for leftover in ("{{", "}}", "<div", "<b>", "<script", "alert(", "<!--"):
        assert leftover not in cast_iron
    assert "Dry it well." in cast_iron  # text inside HTML is kept
    assert "Inner note text stays." in cast_iron  # text inside a paired shortcode is kept
    door = by_id(corpus, "fix-a-squeaky-door").body
    for leftover in ("{%", "%}", "secret draft note", "{:"):
        assert leftover not in door
    assert "```bash\noil --drops 3\n```" in door  # a Liquid highlight block becomes a fenced code block


# ------------------------------------------------------------------------------------------- skipped files


def test_every_skipped_file_has_its_reason(corpus) -> None:  # type: ignore[no-untyped-def]
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert reasons == {
        "_drafts/an-idea.md": "draft (in _drafts/)",
        "_posts/2020-01-01-unpublished.md": "draft (published: false)",
        "content/_index.md": "section list page (_index.md), not an article",
        "content/posts/alias-stub.md": "near-empty page (4 words, fewer than 60)",  # aliases alone: no redirect
        "content/posts/broken-yaml.md": reasons["content/posts/broken-yaml.md"],
        "content/posts/draft.md": "draft (draft: true)",
        "content/posts/latin1.md": "not UTF-8 text",
        "content/posts/never-closed.md": "front matter opened with +++ is never closed",
        "content/posts/old-url.md": "redirect stub (redirect_to: /new-url/)",
        "content/posts/tiny.md": "near-empty page (3 words, fewer than 60)",  # the added title is not counted
        "content/posts/zz-copy-of-cast-iron.md": reasons["content/posts/zz-copy-of-cast-iron.md"],
    }
    assert reasons["content/posts/broken-yaml.md"].startswith("front matter is not valid YAML")
    assert reasons["content/posts/zz-copy-of-cast-iron.md"].startswith(
        "near-duplicate of content/posts/cast-iron/index.md (similarity 0."
    )
    # Non-Markdown files, hidden folders and generator output are not articles and are not reported.
    assert not any(path.startswith((".git", "public")) or path.endswith(".jpg") for path in reasons)
    assert corpus.files_seen == len(corpus.articles) + len(corpus.skipped)


def test_exact_duplicates_and_the_min_words_option(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.md").write_text(f"---\ntitle: {name}\n---\n{body('same')}\n")
    corpus = load_corpus(tmp_path)
    assert [a.id for a in corpus.articles] == ["a"]
    assert corpus.skipped[0].reason == f"exact duplicate of a.md ({KEPT})"
    assert load_corpus(tmp_path, min_words=500).articles == []


def test_symlinks_out_of_the_corpus_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text(body("secret"))
    root = tmp_path / "corpus"
    root.mkdir()
    os.symlink(outside, root / "link.md")
    corpus = load_corpus(root)
    assert corpus.articles == []
    assert corpus.skipped[0].reason == "symbolic link to a file outside the corpus; not followed"


def test_hostile_slugs_become_safe_ids(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text(f"---\ntitle: T\nslug: ../../etc/passwd\n---\n{body('x')}")
    folder = tmp_path / "weird name; rm -rf .." / "index.md"
    folder.parent.mkdir()
    folder.write_text(f"---\ntitle: W\n---\n{body('weird')}")
    ids = sorted(a.id for a in load_corpus(tmp_path).articles)
    assert ids == ["etc-passwd", "weird-name-rm-rf"]  # the front matter's slug, the bundle's folder
    assert all(is_safe_name(i) for i in ids)


def test_duplicate_slugs_get_distinct_ids(tmp_path: Path) -> None:
    for folder in ("2023", "2024"):
        (tmp_path / folder / "post").mkdir(parents=True)
        (tmp_path / folder / "post" / "index.md").write_text(f"---\ntitle: P{folder}\n---\n{body(folder)}")
    corpus = load_corpus(tmp_path)
    assert [a.id for a in corpus.articles] == ["post", "post-2"]
    assert [a.brief.brief_id for a in corpus.articles] == ["post", "post-2"]


def test_corpus_defaults_file(tmp_path: Path) -> None:
    write_voice(tmp_path, "plain", 2)
    (tmp_path / "copydesk-corpus.yaml").write_text("defaults:\n  audience: Beginners\n  tone: friendly\n")
    briefs = [a.brief for a in load_corpus(tmp_path).articles]
    assert {(b.audience, b.tone) for b in briefs} == {("beginners", "friendly")}
    (tmp_path / "copydesk-corpus.yaml").write_text("defaults:\n  colour: red\n")
    with pytest.raises(CorpusError, match="defaults"):
        load_corpus(tmp_path)


def test_missing_folder_and_too_small_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "tiny.md").write_text("---\ntitle: Tiny\n---\nhello")
    with pytest.raises(CorpusError, match=r"0 usable article\(s\).*tiny.md: near-empty"):
        require_articles(load_corpus(tmp_path))


def test_content_hash_changes_with_the_content_only(tmp_path: Path) -> None:
    write_voice(tmp_path, "plain", 3)
    first = load_corpus(tmp_path).content_hash()
    assert load_corpus(tmp_path).content_hash() == first
    (tmp_path / "notes.txt").write_text("not markdown")
    assert load_corpus(tmp_path).content_hash() == first
    write_voice(tmp_path, "plain", 1, start=7)
    assert load_corpus(tmp_path).content_hash() != first


# ------------------------------------------------------------------------------------------- profile


def test_features_tell_the_voices_apart() -> None:
    plain = text_features("# T\n\n" + "Wipe the shelf. It is easy! You can do it. Rinse the cloth.")
    formal = text_features(
        "# T\n\nThe implementation guarantees durability; consequently, the architecture introduces "
        "considerable complexity regarding consistency and recoverability."
    )
    assert set(plain) == set(FEATURE_NAMES)
    assert plain["reading_ease"] > formal["reading_ease"] + 40
    assert plain["grade"] < formal["grade"]
    assert plain["formality"] < formal["formality"]
    assert plain["second_person"] > 0 == formal["second_person"]
    assert plain["exclamations"] == 0.25


def test_profile_and_default_targets(tmp_path: Path) -> None:
    write_voice(tmp_path, "plain", 6)
    texts = [a.body for a in load_corpus(tmp_path).articles]
    profile = profile_texts(texts)
    assert profile["texts"] == 6
    assert sum(row["count"] for row in profile["length_histogram"]) == 6
    targets = targets_from_profile(profile)
    ease = profile["features"]["reading_ease"]
    assert targets["reading_ease"] == [round(ease["p10"] - 5, 2), round(min(121.22, ease["p90"] + 5), 2)]
    assert 0.3 <= targets["length_tolerance"] <= 1.0
    Targets.model_validate(targets)  # the profile's targets are valid style targets


def test_inspect_report(corpus) -> None:  # type: ignore[no-untyped-def]
    report = inspect_corpus(corpus)
    assert (report["files"], report["articles"], report["skipped"]) == (16, 5, 11)
    assert report["coverage"]["title"] == 4  # the Jekyll post's title came from its heading
    assert report["coverage"]["date"] == 3  # two dates came from file or folder names
    assert report["content_types"] == {"explainer": 2, "how-to": 1, "listicle": 1, "review": 1}
    assert set(report["profile"]["features"]) == set(FEATURE_NAMES)
    json.dumps(report)  # JSON-able


def test_corpus_inspect_command(archive: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["corpus", "inspect", str(archive), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["articles"] == 5
    assert {"path": "content/posts/draft.md", "reason": "draft (draft: true)"} in data["skipped_files"]
    table = runner.invoke(app, ["corpus", "inspect", str(archive)], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    for heading in ("field coverage", "length distribution", "readability and tone profile", "skipped files"):
        assert heading in table.output
    missing = runner.invoke(app, ["corpus", "inspect", str(archive / "nope")])
    assert missing.exit_code == CorpusError.exit_code
    assert "does not exist" in missing.output
