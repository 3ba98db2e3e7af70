"""A blog post's front matter as brief metadata: title, date, taxonomies, summary, content type, audience, tone;
and the reasons a page is not an article (drafts, redirect stubs, list pages, unrendered pages)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from worker.errors import validation_problems
from worker.intake.briefs import MAX_LIST_ITEMS, MAX_TEXT, Brief, ContentType, _normalise_content_type
from worker.names import is_safe_name
from worker.scoring.markdown import parse_blocks
from worker.scoring.structure import shape_of

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_TITLE_NUMBER = re.compile(
    r"^\s*(\d{1,3}|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty)\s+\w", re.IGNORECASE
)
_HOW_TO_TITLE = re.compile(
    r"^\s*(how\s+(to|i|we)\b|a\s+(beginner'?s\s+)?guide\b|guide\s+to\b|step[- ]by[- ]step\b)", re.I
)
_REVIEW_WORD = re.compile(r"\breview(ed)?\b", re.IGNORECASE)
DATE_KEYS = ("date", "publishDate", "publishdate", "pubDate", "published_at", "published", "created")
SUMMARY_KEYS = ("description", "summary", "excerpt", "subtitle", "lead")
CONTENT_TYPE_KEYS = ("content_type", "contentType", "content-type", "article_type")
CORE_TAXONOMIES = frozenset({"tags", "categories", "category", "keywords", "authors", "author"})
OTHER_TAXONOMIES = ("series", "topics", "topic", "subjects", "themes")


def _nested(data: Mapping[str, Any], key: str) -> Any:
    """A field from the front matter, or from Hugo's ``params`` / Zola's ``extra`` tables."""
    if key in data:
        return data[key]
    for table in ("params", "extra"):
        inner = data.get(table)
        if isinstance(inner, Mapping) and key in inner:
            return inner[key]
    return None


def _as_list(value: Any, *, jekyll_words: bool = False) -> list[str]:
    """Strings of a taxonomy value: a list, or a comma-separated string (Jekyll: space-separated)."""
    if value is None or value is False:
        return []
    if isinstance(value, str):
        parts = value.split(",") if "," in value or not jekyll_words else value.split()
        return [part.strip() for part in parts if part.strip()]
    if isinstance(value, Mapping):
        name = value.get("name")
        return [str(name).strip()] if name else []
    if isinstance(value, Iterable):
        found: list[str] = []
        for item in value:
            found.extend(_as_list(item))
        return found
    return [str(value).strip()]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value if _text(item))
    if isinstance(value, Mapping):
        return _text(value.get("name"))
    return " ".join(str(value).split())


def _date(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and (match := _ISO_DATE.match(value.strip())):
        try:
            return dt.date(*(int(part) for part in match.groups())).isoformat()
        except ValueError:
            return None
    return None


def _unique(items: Iterable[str], limit: int) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        clean = " ".join(item.split())[:80]
        if clean and clean.lower() not in seen:
            seen[clean.lower()] = clean
    return list(seen.values())[:limit]


def slugify(value: str) -> str:
    """A safe article id from a title, slug or file name (letters, digits and dashes, at most 80 chars)."""
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:80].strip("-")
    return slug if slug and is_safe_name(slug) else "article"


def infer_content_type(title: str, body: str, labels: Iterable[str]) -> ContentType:
    """How-to, listicle, review, news or explainer from the title, the tags/categories and the shape."""
    lowered = {label.lower() for label in labels}
    shape = shape_of(parse_blocks(body))
    if lowered & {"review", "reviews"} or _REVIEW_WORD.search(title):
        return ContentType.REVIEW
    if lowered & {"news", "announcement", "announcements", "release", "releases"}:
        return ContentType.NEWS
    if lowered & {"how-to", "howto", "tutorial", "guide", "guides"} or _HOW_TO_TITLE.search(title):
        return ContentType.HOW_TO
    if _TITLE_NUMBER.match(title) or (shape.list_items >= 5 and shape.subheadings <= 1 and shape.paragraphs <= 3):
        return ContentType.LISTICLE
    if shape.steps >= 3:
        return ContentType.HOW_TO
    return ContentType.EXPLAINER


def skip_reason(relative: str, data: Mapping[str, Any]) -> str | None:
    """Why a page is not an article, judged from its place and front matter (before its body)."""
    parts = relative.split("/")
    if parts[-1].startswith("_index."):
        return "section list page (_index.md), not an article"
    if "_drafts" in parts:
        return "draft (in _drafts/)"
    if data.get("draft") is True or str(data.get("draft", "")).lower() == "true":
        return "draft (draft: true)"
    if data.get("published") is False or str(data.get("published", "")).lower() == "false":
        return "draft (published: false)"
    if str(data.get("status", "")).lower() in ("draft", "private", "unpublished"):
        return f"draft (status: {data.get('status')})"
    for key in ("redirect_to", "redirect", "redirect_url", "external_url"):
        if data.get(key):
            return f"redirect stub ({key}: {_text(data.get(key))[:80]})"
    if str(data.get("layout", "")).lower() == "redirect":
        return "redirect stub (layout: redirect)"
    if data.get("headless") is True:
        return "not rendered (headless: true)"
    build = data.get("build") or data.get("_build")
    if isinstance(build, Mapping) and str(build.get("render", "")).lower() in ("never", "false"):
        return "not rendered (build.render: never)"
    return None


@dataclass
class Labels:
    """A page's taxonomies: tags, categories, keywords, authors and any other taxonomy by name."""

    tags: list[str]
    categories: list[str]
    keywords: list[str]
    authors: list[str]
    others: dict[str, list[str]] = field(default_factory=dict)

    def given(self) -> set[str]:
        """The metadata fields these labels fill."""
        found = (("tags", self.tags), ("categories", self.categories))
        found += (("keywords", self.keywords), ("authors", self.authors))
        return {name for name, values in found if values}

    def extra(self) -> dict[str, Any]:
        """What the brief has no field for: the authors and the other taxonomies."""
        extra: dict[str, Any] = {"authors": _unique(self.authors, 10)} if self.authors else {}
        extra.update(self.others)
        return extra


def read_labels(data: Mapping[str, Any]) -> Labels:
    """The taxonomies of a page, from its front matter and Zola's ``[taxonomies]`` table."""
    taxonomies = data.get("taxonomies") if isinstance(data.get("taxonomies"), Mapping) else {}
    categories = _as_list(data.get("categories"), jekyll_words=True) + _as_list(taxonomies.get("categories"))
    labels = Labels(
        tags=_as_list(data.get("tags"), jekyll_words=True) + _as_list(taxonomies.get("tags")),
        categories=categories + _as_list(data.get("category")),
        keywords=_as_list(data.get("keywords")) + _as_list(taxonomies.get("keywords")),
        authors=_as_list(data.get("authors")) + _as_list(data.get("author")) + _as_list(taxonomies.get("authors")),
    )
    for name in OTHER_TAXONOMIES:
        if values := _as_list(data.get(name)):
            labels.others[name] = values
    for name, value in taxonomies.items():
        if name not in CORE_TAXONOMIES and (values := _as_list(value)):
            labels.others[name] = values
    return labels


def page_title(data: Mapping[str, Any], heading: str | None, slug: str) -> tuple[str, bool]:
    """``(title, given)``: the front matter's title, else the body's first heading, else the slug as words."""
    title = _text(data.get("title"))
    given = bool(title)
    if not title:
        title = heading or slug.replace("-", " ").capitalize()
    return title[:300], given


def page_date(data: Mapping[str, Any]) -> str | None:
    """The publication date from the first date field that holds one (ISO ``YYYY-MM-DD``)."""
    return next((d for key in DATE_KEYS if (d := _date(data.get(key)))), None)


def page_summary(data: Mapping[str, Any]) -> str:
    return next((_text(_nested(data, key)) for key in SUMMARY_KEYS if _text(_nested(data, key))), "")


@dataclass
class BriefFields:
    """The brief of a page, field by field, and which fields its front matter gave (not inferred or defaulted)."""

    fields: dict[str, Any]
    given: set[str]


def _content_type(
    data: Mapping[str, Any], defaults: Mapping[str, Any], infer: tuple[str, str, list[str]]
) -> tuple[Any, bool]:
    """``(content type, given)``: from the front matter, else the corpus defaults, else inferred."""
    found: Any = next((_nested(data, key) for key in CONTENT_TYPE_KEYS if _nested(data, key)), None)
    if found is not None and _normalise_content_type(str(found)) in set(ContentType):
        return found, True
    if "content_type" in defaults:
        return defaults["content_type"], False
    return infer_content_type(*infer), False


def _voice_fields(data: Mapping[str, Any], defaults: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Audience and tone from the front matter, else the corpus defaults; and the ones the front matter gave."""
    fields: dict[str, Any] = {}
    given: set[str] = set()
    for name in ("audience", "tone"):
        value = _text(_nested(data, name))
        if value:
            given.add(name)
            fields[name] = value
        elif name in defaults:
            fields[name] = defaults[name]
    return fields, given


def _notes(summary: str, authors: list[str]) -> str:
    notes = []
    if summary:
        notes.append(f"Summary: {summary}")
    if authors:
        notes.append(f"Author: {', '.join(_unique(authors, 5))}.")
    return " ".join(notes)[:MAX_TEXT]


def brief_fields(
    data: Mapping[str, Any], title: str, body: str, labels: Labels, defaults: Mapping[str, Any]
) -> BriefFields:
    """Every brief field but the id and length, from the front matter, the corpus defaults and the body."""
    summary = page_summary(data)
    given = labels.given() | ({"description"} if summary else set())
    content_type, typed = _content_type(data, defaults, (title, body, [*labels.tags, *labels.categories]))
    voice, voiced = _voice_fields(data, defaults)
    other_tags = [value for values in labels.others.values() for value in values]
    fields = {
        "title": title,
        "content_type": str(content_type),
        "category": labels.categories[0] if labels.categories else defaults.get("category", ""),
        "tags": _unique([*labels.tags, *labels.categories[1:], *other_tags], MAX_LIST_ITEMS),
        "keywords": _unique(labels.keywords, MAX_LIST_ITEMS),
        "notes": _notes(summary, labels.authors),
        **voice,
    }
    return BriefFields(fields, given | voiced | ({"content_type"} if typed else set()))


def make_brief(fields: BriefFields, slug: str, words: int) -> Brief | str:
    """The page's :class:`Brief`, or why its metadata does not make one."""
    try:
        return Brief(id=slug, target_words=words, **fields.fields)
    except ValidationError as exc:
        problems = validation_problems(exc)
        return f"metadata does not make a valid brief: {problems}"
