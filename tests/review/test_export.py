"""Export of approved articles (:mod:`worker.review.export`): Markdown for Hugo and Jekyll that parses back to
the same front matter, standalone HTML (escaped, styled), JSONL with scores and provenance; exported
articles become published; exporting again writes the same files and adds no event."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from review_helpers import GOOD_BODY, add_article
from store_helpers import FakeClock
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import PROJECT_ROOT, Settings
from worker.errors import ReviewError
from worker.review.export import Exporter, body_without_title, markdown_to_html, slugify
from worker.store import Store

EXPORTED_AT = datetime(2026, 4, 2, 9, 30, 15, tzinfo=UTC)
TEMPLATES = PROJECT_ROOT / "templates"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url, clock=FakeClock()) as s:
        s.migrate()
        yield s


def approved(store: Store, n: int | str, body: str = GOOD_BODY, **fields: Any) -> str:
    article = add_article(store, n, body, **fields)
    store.approve(article.id, actor="chief")
    return article.id


def exporter(store: Store, output_format: str = "md", layout: str = "hugo") -> Exporter:
    return Exporter(
        store, TEMPLATES, output_format=output_format, layout=layout, actor="pub", clock=lambda: EXPORTED_AT
    )


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Parse a ``---`` front matter file the way static site generators do (YAML between the first two
    ``---`` lines)."""
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(header)
    assert isinstance(meta, dict)
    return meta, body.removeprefix("\n")


def test_slugify() -> None:
    assert slugify("How to Repot a Houseplant!", "a-1") == "how-to-repot-a-houseplant"
    assert slugify("Crème brûlée — à la maison", "a-1") == "creme-brulee-a-la-maison"
    assert slugify("¿¡!?", "a-x_1") == "a-x-1"
    assert len(slugify("word " * 40, "a")) <= 80


def test_body_without_title() -> None:
    assert body_without_title("# Title\n\nText.\n") == "Text.\n"
    assert body_without_title("No title\n") == "No title\n"


@pytest.mark.parametrize("layout", ["hugo", "jekyll"])
def test_markdown_round_trip_hugo_and_jekyll(store: Store, tmp_path: Path, layout: str) -> None:
    article_id = approved(store, 1, title="How to repot a houseplant", tags=["plants", "diy"], category="home")
    report = exporter(store, "md", layout).export(tmp_path)
    (path,) = report.written
    if layout == "hugo":
        assert path == tmp_path / "content" / "posts" / "how-to-repot-a-houseplant.md"
    else:
        assert path == tmp_path / "_posts" / "2026-04-02-how-to-repot-a-houseplant.md"
    meta, body = split_front_matter(path.read_text(encoding="utf-8"))
    article = store.get_article(article_id)
    expected: dict[str, Any] = {
        "title": "How to repot a houseplant",
        "date": EXPORTED_AT,
        "slug": "how-to-repot-a-houseplant",
        **({"draft": False} if layout == "hugo" else {"layout": "post"}),
        "tags": ["plants", "diy"],
        "categories": ["home"],
        "keywords": ["pot", "soil"],
        "article_id": article_id,
        "brief_id": "rev-1",
        "style": "plain-howto",
        "adapter_version": None,
        "revision": 1,
        "approved_by": "chief",
        "scores": {name: score["value"] for name, score in article.scores.items()},
    }
    assert meta == expected
    assert list(meta) == list(expected)  # title first, as the generators' own archetypes write it
    assert "\ndate: 2026-04-02T09:30:15Z\n" in path.read_text()  # an unquoted RFC 3339 timestamp
    assert body == body_without_title(GOOD_BODY)
    assert article.status == "published"
    assert report.published == [article_id]


def test_exporting_again_is_idempotent(store: Store, tmp_path: Path) -> None:
    first_id = approved(store, 1)
    report = exporter(store).export(tmp_path)
    (path,) = report.written
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    events = len(store.list_events(first_id))

    later = Exporter(store, TEMPLATES, actor="pub", clock=lambda: datetime(2027, 1, 1, tzinfo=UTC))
    assert later.export(tmp_path, statuses=["approved"]).exported == []  # nothing approved is left
    again = later.export(tmp_path, statuses=["published"])
    assert again.exported == [first_id]
    assert (again.written, again.unchanged, again.published) == ([], [path], [])
    assert path.read_bytes() == content  # the date and slug of the first export are kept
    assert path.stat().st_mtime_ns == mtime  # not even rewritten
    assert len(store.list_events(first_id)) == events
    assert [e.kind for e in store.list_events(first_id)].count("published") == 1

    # another format later uses the same date and slug
    later_html = Exporter(
        store, TEMPLATES, output_format="html", actor="pub", clock=lambda: datetime(2027, 1, 1, tzinfo=UTC)
    )
    html = later_html.export(tmp_path / "html", statuses=["published"])
    assert [p.name for p in html.written] == [path.name.replace(".md", ".html")]
    jekyll = Exporter(store, TEMPLATES, layout="jekyll", actor="pub", clock=lambda: datetime(2027, 1, 1, tzinfo=UTC))
    (post,) = jekyll.export(tmp_path / "j", statuses=["published"]).written
    assert post.name.startswith("2026-04-02-")


def test_two_articles_with_the_same_title_get_distinct_slugs(store: Store, tmp_path: Path) -> None:
    same = GOOD_BODY.replace("# How to repot a houseplant", "# Same title")
    approved(store, 1, same)
    approved(store, 2, same)
    report = exporter(store).export(tmp_path)
    names = {p.name for p in report.written}
    assert len(names) == 2 and "same-title.md" in names
    (other,) = names - {"same-title.md"}
    assert other.startswith("same-title-") and other.endswith(".md")
    approved(store, 3, same)  # after the first two were published
    (third,) = exporter(store).export(tmp_path).written
    assert third.name not in names
    assert len(list((tmp_path / "content" / "posts").iterdir())) == 3


def test_html_is_standalone_escaped_and_styled(store: Store, tmp_path: Path) -> None:
    hostile = (
        "# Tips & <tricks>\n\nA <script>alert(1)</script> paragraph with [a link](javascript:alert(2)).\n\n"
        "| tool | use |\n|---|---|\n| trowel | digging |\n"
    )
    approved(store, 1, hostile, title="Tips & <tricks>", tags=["<b>"])
    (path,) = exporter(store, "html").export(tmp_path).written
    assert path == tmp_path / "tips-tricks.html"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "<style>" in html and "max-width: 42rem" in html
    assert "<title>Tips &amp; &lt;tricks&gt;</title>" in html
    assert "<h1>Tips &amp; &lt;tricks&gt;</h1>" in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html
    assert "<table>" in html and "<td>trowel</td>" in html
    assert '<time datetime="2026-04-02T09:30:15Z">2026-04-02</time>' in html
    assert "approved by chief" in html


def test_markdown_to_html_escapes_raw_html() -> None:
    assert markdown_to_html("<img src=x onerror=alert(1)>") == "<p>&lt;img src=x onerror=alert(1)&gt;</p>\n"


def test_jsonl_has_scores_and_provenance_and_merges(store: Store, tmp_path: Path) -> None:
    first = approved(store, 1)
    exporter(store, "jsonl").export(tmp_path)
    second = approved(store, 2)
    report = exporter(store, "jsonl").export(tmp_path)
    assert report.exported == [second]
    lines = [json.loads(line) for line in (tmp_path / "articles.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [first, second]  # the first export's line is kept
    record = lines[0]
    article = store.get_article(first)
    assert record["scores"] == article.scores
    assert record["provenance"] == article.provenance
    assert record["body_markdown"] == GOOD_BODY
    assert record["brief"]["id"] == "rev-1"
    assert (record["approved_by"], record["date"], record["revision"]) == ("chief", "2026-04-02T09:30:15Z", 1)
    before = (tmp_path / "articles.jsonl").read_bytes()
    exporter(store, "jsonl").export(tmp_path, statuses=["published"])
    assert (tmp_path / "articles.jsonl").read_bytes() == before


def test_only_approved_or_published_can_be_exported(store: Store, tmp_path: Path) -> None:
    add_article(store, 1)
    with pytest.raises(ReviewError, match="only approved or published"):
        exporter(store).export(tmp_path, statuses=["needs_review"])
    assert exporter(store).export(tmp_path).exported == []
    assert not tmp_path.joinpath("content").exists()
    with pytest.raises(ReviewError, match="unknown export format"):
        Exporter(store, TEMPLATES, output_format="pdf")
    with pytest.raises(ReviewError, match="unknown layout"):
        Exporter(store, TEMPLATES, layout="zola")


def test_output_templates_are_sandboxed(store: Store, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "output").mkdir(parents=True)
    (templates / "output" / "article.md.j2").write_text("{{ article.__class__.__mro__ }}")
    approved(store, 1)
    with pytest.raises(ReviewError, match="sandbox"):
        Exporter(store, templates, actor="pub").export(tmp_path / "out")
    assert store.get_article("rev-1").status == "approved"  # nothing published when rendering failed


def test_export_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.from_settings(Settings(home=home)) as store:
        store.migrate()
        approved(store, 1)
    env = {"COPYDESK_HOME": str(home), "COPYDESK_STORE_URL": None, "COPYDESK_CONFIG": None, "COPYDESK_REVIEWER": None}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        runner = CliRunner()
        out = tmp_path / "site"
        first = runner.invoke(
            app,
            ["export", "--to", str(out), "--layout", "jekyll", "--as", "pat", "--json"],
            env=env,
        )
        assert first.exit_code == 0, first.output
        summary = json.loads(first.stdout)
        assert summary["published"] == ["a-rev-1"] and len(summary["written"]) == 1
        assert Path(summary["written"][0]).parent == out / "_posts"
        second = runner.invoke(
            app, ["export", "--to", str(out), "--layout", "jekyll", "--status", "published"], env=env
        )
        assert second.exit_code == 0, second.output
        assert "0 file(s) written, 1 unchanged; 0 newly published" in " ".join(second.stdout.split())
        bad = runner.invoke(app, ["export", "--to", str(out), "--format", "pdf"], env=env)
        assert bad.exit_code == 2  # a usage error, as every --format
        assert "unknown format 'pdf'" in " ".join(bad.stderr.replace("│", " ").split())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    with Store.from_settings(Settings(home=home)) as store:
        published = [e for e in store.list_events("rev-1") if e.kind == "published"]
        assert [(e.actor, e.details["layout"]) for e in published] == [("pat", "jekyll")]
