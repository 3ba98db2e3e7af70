"""Article files: YAML front matter + Markdown, atomic writes, safe paths, round trip."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from worker.errors import StoreError
from worker.intake.briefs import Brief
from worker.results import ArticleResult, ArticleStatus
from worker.store import ArticleRecord, Store
from worker.store.article_files import read_article_file, write_article_file

CREATED = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)


def make_brief(**fields: object) -> Brief:
    defaults: dict[str, object] = {
        "id": "b-0123456789abcdef",
        "title": "Fixing a dripping tap",
        "category": "Home",
        "tags": ["diy", "plumbing"],
        "keywords": ["tap", "washer"],
    }
    return Brief(**{**defaults, **fields})


def make_article(**fields: object) -> ArticleRecord:
    defaults: dict[str, object] = {
        "id": "a-b-0123456789abcdef",
        "brief_id": "b-0123456789abcdef",
        "status": "needs_review",
        "title": "Fixing a dripping tap: a café owner's guide",
        "body_markdown": "# Fixing a dripping tap\n\nTurn off the water.\n\n---\n\nThen replace the washer.",
        "style": "plain-howto",
        "adapter_version": "v2",
        "scores": {"readability": {"value": 64.2, "passed": True}, "words": 480, "sentiment": 0.4},
        "failing_gates": [],
        "provenance": {"model": "smollm2"},
        "revision": 1,
        "file_path": None,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    return ArticleRecord(**{**defaults, **fields})  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    article, brief = make_article(), make_brief()
    path = write_article_file(tmp_path, article, brief)
    assert path == tmp_path.resolve() / "plain-howto" / "a-b-0123456789abcdef.md"

    meta, body = read_article_file(path)
    assert meta == {
        "title": article.title,
        "date": dt.date(2026, 3, 1),
        "tags": ["diy", "plumbing"],
        "categories": ["home"],
        "style": "plain-howto",
        "adapter_version": "v2",
        "status": "needs_review",
        "brief_id": "b-0123456789abcdef",
        "article_id": "a-b-0123456789abcdef",
        "scores": {"readability": 64.2, "words": 480, "sentiment": 0.4},
        "failing_gates": [],
        "keywords": ["tap", "washer"],
    }
    assert next(iter(meta)) == "title"
    assert body == article.body_markdown + "\n"


def test_file_layout_is_hugo_and_jekyll_front_matter(tmp_path: Path) -> None:
    path = write_article_file(tmp_path, make_article(), make_brief())
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == "---"
    closing = lines.index("---", 1)
    header = yaml.safe_load("\n".join(lines[1:closing]))
    assert header["title"] == "Fixing a dripping tap: a café owner's guide"
    assert "café" in text  # allow_unicode: not escaped
    assert "date: 2026-03-01\n" in text  # unquoted ISO date, parsed as a date by Hugo and Jekyll
    assert lines[closing + 1] == ""
    assert lines[closing + 2] == "# Fixing a dripping tap"
    assert text.endswith("the washer.\n") and not text.endswith("\n\n")


def test_summary_only_when_provenance_has_one(tmp_path: Path) -> None:
    meta, _ = read_article_file(write_article_file(tmp_path, make_article(), make_brief()))
    assert "summary" not in meta
    article = make_article(provenance={"summary": "  How to stop a tap dripping.  "})
    meta, _ = read_article_file(write_article_file(tmp_path, article, make_brief()))
    assert meta["summary"] == "How to stop a tap dripping."
    assert list(meta)[-1] == "summary"


def test_hostile_title_cannot_break_the_front_matter(tmp_path: Path) -> None:
    article = make_article(title="Line one\n---\nstatus: published # not really")
    meta, body = read_article_file(write_article_file(tmp_path, article, make_brief()))
    assert meta["title"] == article.title
    assert meta["status"] == "needs_review"
    assert body.startswith("# Fixing a dripping tap")


def test_rewrite_replaces_atomically_without_leftovers(tmp_path: Path) -> None:
    brief = make_brief()
    path = write_article_file(tmp_path, make_article(), brief)
    write_article_file(tmp_path, make_article(body_markdown="New body", status="needs_attention"), brief)
    meta, body = read_article_file(path)
    assert (meta["status"], body) == ("needs_attention", "New body\n")
    assert sorted(os.listdir(path.parent)) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("field", "value"),
    [("style", "../escape"), ("style", "a/b"), ("style", ".hidden"), ("id", "../../etc/passwd"), ("id", "a b")],
)
def test_unsafe_names_are_rejected(tmp_path: Path, field: str, value: str) -> None:
    articles_dir = tmp_path / "articles"
    with pytest.raises(StoreError, match="not a safe name"):
        write_article_file(articles_dir, make_article(**{field: value}), make_brief())
    assert not articles_dir.exists() or not any(articles_dir.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["articles"])


def test_symlinked_style_directory_cannot_escape(tmp_path: Path) -> None:
    articles_dir, outside = tmp_path / "articles", tmp_path / "outside"
    articles_dir.mkdir()
    outside.mkdir()
    (articles_dir / "plain-howto").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="outside the articles directory"):
        write_article_file(articles_dir, make_article(), make_brief())
    assert list(outside.iterdir()) == []


def test_article_of_another_brief_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="belongs to brief"):
        write_article_file(tmp_path, make_article(), make_brief(id="someone-else"))


def test_reading_a_file_without_front_matter_fails(tmp_path: Path) -> None:
    plain = tmp_path / "plain.md"
    plain.write_text("# Just markdown\n", encoding="utf-8")
    with pytest.raises(StoreError, match="front matter"):
        read_article_file(plain)
    listy = tmp_path / "list.md"
    listy.write_text("---\n- a\n- b\n---\n\nbody\n", encoding="utf-8")
    with pytest.raises(StoreError, match="not a mapping"):
        read_article_file(listy)
    with pytest.raises(StoreError, match="cannot read"):
        read_article_file(tmp_path / "missing.md")


def test_store_to_file_round_trip(store_url: str, tmp_path: Path) -> None:
    brief = make_brief()
    result = ArticleResult(
        brief_id=brief.brief_id,
        status=ArticleStatus.NEEDS_ATTENTION,
        title="Fixing a dripping tap",
        body_markdown="Body.",
        style="plain-howto",
        adapter_version=None,
        scores={"readability": {"value": 30.0, "passed": False}},
        failing_gates=["readability"],
        provenance={},
    )
    with Store(store_url) as store:
        store.migrate()
        store.add_brief(brief)
        article = store.save_article(result)
        path = write_article_file(tmp_path / "articles", article, store.get_brief(brief.brief_id).brief)
        store.set_article_file(article.id, str(path))
        stored = store.get_article(brief.brief_id)
    assert stored.file_path == str(path)
    meta, body = read_article_file(Path(stored.file_path))
    assert meta["article_id"] == article.id == "a-b-0123456789abcdef"
    assert meta["status"] == "needs_attention"
    assert meta["adapter_version"] is None
    assert meta["failing_gates"] == ["readability"]
    assert meta["scores"] == {"readability": 30.0}
    assert meta["date"] == article.created_at.date()
    assert body == "Body.\n"
    assert replace(stored, file_path=None, updated_at=article.updated_at) == article
