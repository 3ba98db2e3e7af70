"""Export approved articles: Markdown for Hugo or Jekyll, standalone HTML, or JSONL; exported articles
become ``published``.

Formats and layouts (``DIR`` is ``--to``):

* ``md`` + ``hugo``: ``DIR/content/posts/<slug>.md``; ``md`` + ``jekyll``: ``DIR/_posts/YYYY-MM-DD-<slug>.md``.
  YAML front matter (``---``) that both generators read as it is: ``title``, ``date`` (RFC 3339, UTC),
  ``slug``, ``tags``, ``categories``, ``keywords``, ``summary`` when the provenance carries one,
  ``draft: false`` (Hugo) or ``layout: post`` (Jekyll), and copydesk's own fields (``article_id``,
  ``brief_id``, ``style``, ``adapter_version``, ``revision``, ``approved_by``, ``scores``), which the
  generators keep as page parameters. The body is the article without its ``# title`` line (the theme prints
  the title).
* ``html``: ``DIR/<slug>.html``, a standalone page with a small readable stylesheet.
* ``jsonl``: ``DIR/articles.jsonl``, one line per article with its full scores, provenance and brief; lines
  of articles exported before are kept (merged by article id).

Output templates are Jinja2 files under ``templates/output/`` (``article.md.j2``, ``article.html.j2``),
rendered in the immutable sandbox; autoescaping is on for HTML templates. Markdown becomes HTML with
``markdown-it-py`` (CommonMark + tables) with raw HTML disabled, so an article cannot inject markup.

Idempotent: the publication date and slug are fixed at the first export (kept in the ``published`` event),
a file whose content would not change is not rewritten, and an article already published gets no new event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup

from worker.errors import ReviewError, StoreError
from worker.files import write_if_changed
from worker.results import ArticleStatus
from worker.store import ArticleRecord, Store
from worker.store.records import EventRecord
from worker.workflow import EventKind

logger = logging.getLogger(__name__)

FORMATS = ("md", "html", "jsonl")
LAYOUTS = ("hugo", "jekyll")
EXPORTABLE = (ArticleStatus.APPROVED.value, ArticleStatus.PUBLISHED.value)
OUTPUT_SUBDIR = "output"
JSONL_NAME = "articles.jsonl"
MAX_SLUG = 80
FILE_MODE = 0o644


def slugify(title: str, fallback: str) -> str:
    """A URL slug: ASCII lowercase letters, digits and single hyphens, at most 80 characters."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    slug = slug[:MAX_SLUG].rstrip("-")
    return slug or re.sub(r"[^a-z0-9]+", "-", fallback.lower()).strip("-") or "article"


def body_without_title(markdown: str) -> str:
    """The Markdown body without its leading ``# title`` line (themes print the title from front matter)."""
    lines = markdown.replace("\r\n", "\n").split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip() + "\n"


def format_date(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: what Hugo, Jekyll and YAML all read as a timestamp."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _FrontMatterDumper(yaml.SafeDumper):
    """Dumps datetimes as plain RFC 3339 timestamps (``2026-03-01T12:00:00Z``)."""


def _represent_datetime(dumper: yaml.SafeDumper, value: datetime) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", format_date(value))


_FrontMatterDumper.add_representer(datetime, _represent_datetime)


def dump_front_matter(fields: dict[str, Any]) -> str:
    """YAML for a ``---`` block (no delimiters), keys in the given order."""
    return yaml.dump(fields, Dumper=_FrontMatterDumper, allow_unicode=True, sort_keys=False, default_flow_style=False)


def markdown_to_html(markdown: str) -> str:
    """CommonMark (+ tables) to HTML; raw HTML in the Markdown is escaped, unsafe link schemes refused."""
    from markdown_it import MarkdownIt

    return (
        MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        .enable("table")
        .render(markdown)
    )


def _score_values(scores: dict[str, Any]) -> dict[str, Any]:
    return {name: (score.get("value") if isinstance(score, dict) else score) for name, score in scores.items()}


@dataclass(frozen=True)
class Publication:
    """What fixes an article's exported form: its publication date and slug (from the first export)."""

    date: datetime
    slug: str
    approved_by: str | None


@dataclass
class ExportReport:
    """What one export did."""

    exported: list[str] = field(default_factory=list)  # article ids
    published: list[str] = field(default_factory=list)  # articles that became published now
    written: list[Path] = field(default_factory=list)  # files created or changed
    unchanged: list[Path] = field(default_factory=list)  # files that already had this content


class Exporter:
    """Renders and writes articles in one format and layout, and marks them published."""

    def __init__(
        self,
        store: Store,
        templates_dir: Path,
        *,
        output_format: str = "md",
        layout: str = "hugo",
        actor: str = "copydesk",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if output_format not in FORMATS:
            raise ReviewError(f"unknown export format {output_format!r}: use {', '.join(FORMATS)}")
        if layout not in LAYOUTS:
            raise ReviewError(f"unknown layout {layout!r}: use {' or '.join(LAYOUTS)}")
        self.store = store
        self.format = output_format
        self.layout = layout
        self.actor = actor
        self.clock = clock or (lambda: datetime.now(UTC))
        self.environment = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir / OUTPUT_SUBDIR)),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name) and str(name).endswith((".html.j2", ".html")),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # -- rendering ------------------------------------------------------------------------------------

    def _render(self, name: str, **context: Any) -> str:
        try:
            return self.environment.get_template(name).render(**context)
        except TemplateNotFound as exc:
            raise ReviewError(f"output template {exc.name} not found under templates/{OUTPUT_SUBDIR}/") from exc
        except SecurityError as exc:
            raise ReviewError(f"output template {name} tried to leave the sandbox: {exc}") from exc
        except TemplateError as exc:
            raise ReviewError(f"output template {name} failed to render: {exc}") from exc

    def front_matter(self, article: ArticleRecord, brief: dict[str, Any], publication: Publication) -> dict[str, Any]:
        """Front matter fields for Hugo or Jekyll, in file order."""
        fields: dict[str, Any] = {"title": article.title, "date": publication.date, "slug": publication.slug}
        if self.layout == "jekyll":
            fields["layout"] = "post"
        else:
            fields["draft"] = False
        fields["tags"] = list(brief.get("tags") or [])
        fields["categories"] = [brief["category"]] if brief.get("category") else []
        fields["keywords"] = list(brief.get("keywords") or [])
        summary = article.provenance.get("summary")
        if isinstance(summary, str) and summary.strip():
            fields["summary"] = summary.strip()
        fields.update(
            {
                "article_id": article.id,
                "brief_id": article.brief_id,
                "style": article.style,
                "adapter_version": article.adapter_version,
                "revision": article.revision,
                "approved_by": publication.approved_by,
                "scores": _score_values(article.scores),
            }
        )
        return fields

    def render_markdown(self, article: ArticleRecord, brief: dict[str, Any], publication: Publication) -> str:
        text = self._render(
            "article.md.j2",
            front_matter=dump_front_matter(self.front_matter(article, brief, publication)),
            body=body_without_title(article.body_markdown),
            article=_article_context(article),
        )
        return text.rstrip("\n") + "\n"

    def render_html(self, article: ArticleRecord, brief: dict[str, Any], publication: Publication) -> str:
        text = self._render(
            "article.html.j2",
            title=article.title,
            date=format_date(publication.date),
            day=f"{publication.date:%Y-%m-%d}",
            tags=list(brief.get("tags") or []),
            category=brief.get("category") or "",
            body_html=Markup(markdown_to_html(body_without_title(article.body_markdown))),  # noqa: S704 - escaped by markdown-it (html off)
            article=_article_context(article),
            approved_by=publication.approved_by or "",
        )
        return text.rstrip("\n") + "\n"

    def jsonl_record(self, article: ArticleRecord, brief: dict[str, Any], publication: Publication) -> dict[str, Any]:
        return {
            "id": article.id,
            "brief_id": article.brief_id,
            "slug": publication.slug,
            "date": format_date(publication.date),
            "title": article.title,
            "style": article.style,
            "adapter_version": article.adapter_version,
            "revision": article.revision,
            "approved_by": publication.approved_by,
            "body_markdown": article.body_markdown,
            "scores": article.scores,
            "failing_gates": article.failing_gates,
            "provenance": article.provenance,
            "brief": brief,
        }

    # -- paths ----------------------------------------------------------------------------------------

    def path_for(self, root: Path, publication: Publication) -> Path:
        if self.format == "html":
            return root / f"{publication.slug}.html"
        if self.format == "jsonl":
            return root / JSONL_NAME
        if self.layout == "jekyll":
            return root / "_posts" / f"{publication.date:%Y-%m-%d}-{publication.slug}.md"
        return root / "content" / "posts" / f"{publication.slug}.md"

    # -- the export -----------------------------------------------------------------------------------

    def _publication(self, article: ArticleRecord, events: Sequence[EventRecord], taken: set[str]) -> Publication:
        approved = [e for e in events if e.kind == EventKind.APPROVED]
        approved_by = approved[-1].actor if approved else None
        published = [e for e in events if e.kind == EventKind.PUBLISHED]
        if published:
            details = published[0].details
            try:
                date = datetime.fromisoformat(str(details["date"]).replace("Z", "+00:00"))
                slug = str(details["slug"])
                if not re.fullmatch(r"[a-z0-9-]+", slug):
                    raise ValueError(f"bad slug {slug!r}")
            except (KeyError, ValueError) as exc:
                raise StoreError(
                    f"article {article.id}: its published event has no usable date and slug ({exc})"
                ) from exc
            return Publication(date, slug, approved_by)
        slug = slugify(article.title, article.id)
        if slug in taken:
            slug = f"{slug[: MAX_SLUG - 9]}-{hashlib.sha256(article.id.encode()).hexdigest()[:8]}"
        now = self.clock().astimezone(UTC).replace(microsecond=0)
        return Publication(now, slug, approved_by)

    def export(
        self, root: Path, *, statuses: Sequence[str] = (ArticleStatus.APPROVED.value,), style: str | None = None
    ) -> ExportReport:
        """Export every article with one of ``statuses`` (approved and/or published) to ``root``."""
        unknown = [s for s in statuses if s not in EXPORTABLE]
        if unknown:
            raise ReviewError(
                f"only approved or published articles can be exported, not {', '.join(unknown)}: approve them first "
                "(copydesk review)"
            )
        report = ExportReport()
        taken = self._slugs_in_use()
        jsonl: dict[str, dict[str, Any]] = {}
        pending: list[tuple[ArticleRecord, Publication, Path]] = []
        for article in self.store.iter_articles(statuses):
            if style is not None and article.style != style:
                continue
            events = self.store.list_events(article.id)
            publication = self._publication(article, events, taken)
            taken.add(publication.slug)
            brief = self.store.get_brief(article.brief_id).brief.model_dump(mode="json")
            path = self.path_for(root, publication)
            if self.format == "jsonl":
                jsonl[article.id] = self.jsonl_record(article, brief, publication)
            else:
                render = self.render_html if self.format == "html" else self.render_markdown
                self._write(path, render(article, brief, publication), report)
            pending.append((article, publication, path))
        if self.format == "jsonl" and jsonl:
            self._write(root / JSONL_NAME, _merge_jsonl(root / JSONL_NAME, jsonl), report)
        for article, publication, path in pending:
            report.exported.append(article.id)
            if article.status == ArticleStatus.APPROVED:
                details = {
                    "date": format_date(publication.date),
                    "slug": publication.slug,
                    "format": self.format,
                    "layout": self.layout if self.format == "md" else None,
                    "path": str(path),
                }
                if self.store.mark_published(article.id, actor=self.actor, details=details):
                    report.published.append(article.id)
        return report

    def _write(self, path: Path, text: str, report: ExportReport) -> None:
        try:
            written = write_if_changed(path, text, mode=FILE_MODE)
        except OSError as exc:
            raise ReviewError(f"cannot write {path}: {exc}") from exc
        (report.written if written else report.unchanged).append(path)

    def _slugs_in_use(self) -> set[str]:
        """Slugs fixed by earlier exports, so that a new article never takes a published one's file."""
        return {
            event.details["slug"]
            for event in self.store.events_of_kind(EventKind.PUBLISHED)
            if isinstance(event.details.get("slug"), str)
        }


def _article_context(article: ArticleRecord) -> dict[str, Any]:
    """Plain values a template may use (never the record object itself)."""
    return {
        "id": article.id,
        "brief_id": article.brief_id,
        "title": article.title,
        "style": article.style,
        "adapter_version": article.adapter_version,
        "revision": article.revision,
        "scores": _score_values(article.scores),
    }


def _merge_jsonl(path: Path, records: dict[str, dict[str, Any]]) -> str:
    """Lines already in ``path`` (by id) updated with ``records``, ordered by date then id."""
    merged: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                merged[str(record["id"])] = record
            except (ValueError, KeyError, TypeError) as exc:
                raise ReviewError(
                    f"{path}:{number} is not an exported article line ({exc}); move the file away"
                ) from exc
    merged.update(records)
    ordered = sorted(merged.values(), key=lambda r: (str(r.get("date", "")), str(r["id"])))
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in ordered)
