"""Corpus ingestion: an archive of Markdown blog posts -> clean (brief, article) pairs for training a style.

Reads a folder of Markdown files as static-site generators keep them:

* front matter in YAML (``---``), TOML (``+++``, read with :mod:`tomllib`) or JSON (a leading ``{...}``);
* Hugo and Zola page bundles (``post-name/index.md``, the slug is the folder's name), Jekyll posts
  (``_posts/YYYY-MM-DD-slug.md``: the date comes from the file name when the front matter has none; the
  same goes for Zola's ``YYYY-MM-DD-slug.md`` / ``YYYY-MM-DD_slug.md``), and plain ``slug.md`` files.

Front-matter fields become :class:`~worker.intake.briefs.Brief` metadata: ``title``; ``date``; ``tags``;
``categories`` / ``category`` (the first is the brief's category, the others join the tags); other
taxonomies (``series``, ``topics``, Zola's ``[taxonomies]`` table) join the tags; ``keywords``;
``description`` / ``summary`` / ``excerpt`` and ``author`` / ``authors`` go into the notes; ``audience``,
``tone`` and ``content_type`` are read from the front matter (also under Hugo's ``params`` and Zola's
``extra``), then from the corpus's defaults file ``copydesk-corpus.yaml`` (``defaults: {audience: ...,
tone: ..., content_type: ...}``), and the content type is otherwise inferred from the title and the
article's shape. ``target_words`` is the article's length.

The body is cleaned (Hugo shortcodes ``{{< >}}`` / ``{{% %}}``, Liquid and Zola tags, raw HTML,
comments, kramdown attribute lists, front-matter remnants) and starts with a ``# title`` line, as the
prompt templates ask drafts to. Drafts, redirect stubs, section list pages, unrendered pages, near-empty
pages and (near-)duplicates are skipped, each with its reason. Nothing read from the corpus becomes a path:
article ids are slugs checked by :mod:`worker.names`, and files are only ever read from inside the corpus.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import logging
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from worker.errors import CopydeskError
from worker.intake.briefs import MAX_LIST_ITEMS, MAX_TEXT, Brief, ContentType, _normalise_content_type
from worker.names import is_safe_name
from worker.scoring.markdown import parse_blocks, strip_markdown
from worker.scoring.structure import shape_of
from worker.scoring.text import words

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown")
DEFAULTS_FILE = "copydesk-corpus.yaml"
MAX_FILE_BYTES = 2 * 1024 * 1024
MIN_WORDS = 60
NEAR_DUPLICATE = 0.8
SHINGLE = 5
IGNORED_DIRS = frozenset({"node_modules", "public", "_site", "resources", "static", "assets", "themes", "vendor"})


class CorpusError(CopydeskError):
    """The corpus folder cannot be read, or holds no usable article."""

    exit_code = 10


class _FrontMatterError(ValueError):
    """The front matter of one file cannot be read; the file is skipped with this reason."""


@dataclass(frozen=True)
class CorpusArticle:
    """One accepted article: its brief (the metadata) and its cleaned Markdown body (the completion)."""

    id: str
    path: str  # relative to the corpus root, for reports only
    layout: str
    front_matter: str  # yaml, toml, json or none
    brief: Brief
    body: str
    words: int
    date: str | None = None
    given: frozenset[str] = frozenset()  # metadata fields found in the file (not inferred or defaulted)
    extra: dict[str, Any] = field(default_factory=dict)  # authors, other taxonomies, ...


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class Corpus:
    """The articles accepted from one folder, and every Markdown file skipped with its reason."""

    root: Path
    articles: list[CorpusArticle]
    skipped: list[SkippedFile]
    files_seen: int = 0

    @property
    def total_words(self) -> int:
        return sum(article.words for article in self.articles)

    def content_hash(self) -> str:
        """SHA-256 of what training reads: every article's id, brief and cleaned body, in id order."""
        digest = hashlib.sha256()
        for article in sorted(self.articles, key=lambda a: a.id):
            record = {"id": article.id, "brief": article.brief.content_dict(), "body": article.body}
            digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
        return digest.hexdigest()

    def coverage(self) -> dict[str, int]:
        """How many articles gave each metadata field in their front matter (the rest was inferred)."""
        fields = ("title", "date", "tags", "categories", "keywords", "description", "authors")
        fields += ("content_type", "audience", "tone")
        return {name: sum(1 for a in self.articles if name in a.given) for name in fields}

    def layouts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for article in self.articles:
            found[article.layout] = found.get(article.layout, 0) + 1
        return dict(sorted(found.items()))

    def front_matter_formats(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for article in self.articles:
            found[article.front_matter] = found.get(article.front_matter, 0) + 1
        return dict(sorted(found.items()))


# --------------------------------------------------------------------------------------------- front matter


class _FrontMatterLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases: a post's front matter never needs them, and they allow alias bombs."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.MarkedYAMLError(problem="YAML aliases are not allowed in front matter", problem_mark=None)
        return super().compose_node(parent, index)


def _between(lines: list[str], fence: str) -> tuple[str, str] | None:
    """Front matter between the first line (``fence``) and the next line equal to ``fence``."""
    for index in range(1, len(lines)):
        if lines[index].rstrip() == fence or (fence == "---" and lines[index].rstrip() == "..."):
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
    return None


def split_front_matter(text: str) -> tuple[str, dict[str, Any], str]:
    """``(format, front matter, body)`` of a post; the format is ``yaml``, ``toml``, ``json`` or ``none``."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    first = lines[0].rstrip() if lines else ""
    if first in ("---", "+++"):
        found = _between(lines, first)
        if found is None:
            raise _FrontMatterError(f"front matter opened with {first} is never closed")
        raw, body = found
        if first == "---":
            try:
                data = yaml.load(raw, Loader=_FrontMatterLoader)  # noqa: S506 - a SafeLoader subclass
            except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: an integer of 4300+ digits
                raise _FrontMatterError(f"front matter is not valid YAML: {_one_line(exc)}") from exc
            kind = "yaml"
        else:
            try:
                data = tomllib.loads(raw)
            except tomllib.TOMLDecodeError as exc:
                raise _FrontMatterError(f"front matter is not valid TOML: {_one_line(exc)}") from exc
            kind = "toml"
    elif text.lstrip().startswith("{"):
        stripped = text.lstrip()
        try:
            data, end = json.JSONDecoder().raw_decode(stripped)
        except json.JSONDecodeError as exc:
            raise _FrontMatterError(f"front matter is not valid JSON: {_one_line(exc)}") from exc
        body, kind = stripped[end:], "json"
    else:
        return "none", {}, text
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _FrontMatterError(f"front matter must be a mapping of fields, not {type(data).__name__}")
    return kind, data, body


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


# --------------------------------------------------------------------------------------------- body cleaning

_FENCE_SPLIT = re.compile(r"(^\s{0,3}(?:```|~~~)[^\n]*\n.*?^\s{0,3}(?:```|~~~)[ \t]*$)", re.MULTILINE | re.DOTALL)
_HUGO_HIGHLIGHT = re.compile(
    r"\{\{[<%]\s*highlight\s+([\w+-]*)[^}]*?[>%]\}\}\n?(.*?)\{\{[<%]\s*/\s*highlight\s*[>%]\}\}", re.DOTALL
)
_LIQUID_HIGHLIGHT = re.compile(
    r"\{%-?\s*highlight\s+([\w+-]*)[^%]*-?%\}\n?(.*?)\{%-?\s*endhighlight\s*-?%\}", re.DOTALL
)
_LIQUID_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}.*?\{%-?\s*endcomment\s*-?%\}", re.DOTALL)
_SHORTCODE = re.compile(r"\{\{[<%].*?[>%]\}\}", re.DOTALL)
_LIQUID_TAG = re.compile(r"\{%-?.*?-?%\}", re.DOTALL)
_LIQUID_OUTPUT = re.compile(r"\{\{-?.*?-?\}\}", re.DOTALL)
_HTML_DROP = re.compile(
    r"<(script|style|iframe|svg|noscript|object|video|audio)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE
)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_HTML_BLOCK_END = re.compile(r"</(p|div|section|article|figure|figcaption|blockquote|li|h[1-6])\s*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_IAL = re.compile(r"^\s*\{:[^}]*\}\s*$", re.MULTILINE)
_INLINE_IAL = re.compile(r"\{:\s*[.#][^}]*\}")
_KEY_VALUE = re.compile(r"^[A-Za-z_][\w-]*\s*[:=]")
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$")


def _strip_front_matter_remnants(body: str) -> str:
    """Drop a stray second front-matter block, or lone ``---`` / ``+++`` lines, at the top of a body."""
    lines = body.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and lines[0].strip() in ("---", "+++"):
        fence = lines[0].strip()
        rest = lines[1:]
        closing = next((i for i, line in enumerate(rest) if line.strip() == fence), None)
        if closing is not None and all(_KEY_VALUE.match(line) or not line.strip() for line in rest[:closing]):
            lines = rest[closing + 1 :]
        else:
            lines = rest
        while lines and not lines[0].strip():
            lines.pop(0)
    return "\n".join(lines)


def _clean_prose(segment: str) -> str:
    segment = _LIQUID_COMMENT.sub("", segment)
    segment = _SHORTCODE.sub("", segment)
    segment = _LIQUID_TAG.sub("", segment)
    segment = _LIQUID_OUTPUT.sub("", segment)
    segment = _HTML_COMMENT.sub("", segment)
    segment = _HTML_DROP.sub("", segment)
    segment = _HTML_BREAK.sub("\n", segment)
    segment = _HTML_BLOCK_END.sub("\n\n", segment)
    segment = _HTML_TAG.sub("", segment)
    segment = _IAL.sub("", segment)
    segment = _INLINE_IAL.sub("", segment)
    return html.unescape(segment)


def clean_body(body: str) -> str:
    """Markdown body without site-generator syntax, raw HTML or front-matter remnants; code blocks kept."""
    body = _strip_front_matter_remnants(body.replace("\r\n", "\n").replace("\r", "\n"))
    body = _HUGO_HIGHLIGHT.sub(lambda m: f"```{m.group(1)}\n{m.group(2).rstrip()}\n```", body)
    body = _LIQUID_HIGHLIGHT.sub(lambda m: f"```{m.group(1)}\n{m.group(2).rstrip()}\n```", body)
    parts = _FENCE_SPLIT.split(body)
    cleaned = [part if index % 2 else _clean_prose(part) for index, part in enumerate(parts)]
    lines = [line.rstrip() for line in "".join(cleaned).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip()


def with_title_heading(body: str, title: str) -> str:
    """The body starting with a ``# title`` line (added when the body does not start with a level-1 heading)."""
    first = next((line for line in body.split("\n") if line.strip()), "")
    if _HEADING.match(first.strip()):
        return body
    return f"# {title}\n\n{body}".strip()


# --------------------------------------------------------------------------------------------- metadata

_DATED_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[-_](.+)$")
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


# --------------------------------------------------------------------------------------------- walking


@dataclass(frozen=True)
class _Candidate:
    path: Path
    relative: str
    layout: str
    slug: str
    date: str | None


def _markdown_files(root: Path) -> Iterator[Path]:
    """Markdown files under ``root`` in a stable order, skipping hidden and generator output folders."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part in IGNORED_DIRS for part in relative.parts[:-1]):
            continue
        if path.suffix.lower() in MARKDOWN_SUFFIXES and not path.name.startswith("."):
            yield path


def _describe(root: Path, path: Path) -> _Candidate:
    relative = path.relative_to(root).as_posix()
    stem = path.stem
    parts = path.relative_to(root).parts
    if stem == "index" and len(parts) >= 2:
        layout, name = "page bundle", parts[-2]
    elif "_posts" in parts:
        layout, name = "jekyll post", stem
    else:
        layout, name = "single page", stem
    date = None
    if match := _DATED_NAME.match(name):
        try:
            date = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3))).isoformat()
            name = match.group(4)
        except ValueError:
            date = None
    return _Candidate(path, relative, layout, slugify(name), date)


# --------------------------------------------------------------------------------------------- loading


@dataclass
class _Options:
    min_words: int
    defaults: dict[str, Any]


def read_defaults(root: Path) -> dict[str, Any]:
    """The optional ``copydesk-corpus.yaml`` of a corpus: ``defaults`` for audience, tone, content_type."""
    path = root / DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_FrontMatterLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        raise CorpusError(f"{path}: cannot read the corpus defaults: {_one_line(exc)}") from exc
    defaults = (data or {}).get("defaults", {}) if isinstance(data, dict) else None
    allowed = {"audience", "tone", "content_type", "category"}
    if not isinstance(defaults, dict) or set(defaults) - allowed:
        raise CorpusError(f"{path}: expected `defaults:` with any of {sorted(allowed)}")
    return {key: str(value) for key, value in defaults.items()}


def _skip_reason(candidate: _Candidate, data: Mapping[str, Any]) -> str | None:
    """Why a page is not an article, judged from its place and front matter (before its body)."""
    parts = candidate.relative.split("/")
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


def _article(candidate: _Candidate, kind: str, data: dict[str, Any], raw_body: str, options: _Options) -> Any:
    """A :class:`CorpusArticle`, or a skip reason string."""
    if reason := _skip_reason(candidate, data):
        return reason
    if isinstance(data.get("slug"), str) and data["slug"].strip():
        candidate = dataclasses.replace(candidate, slug=slugify(data["slug"]))
    body = clean_body(raw_body)
    given: set[str] = set()
    title = _text(data.get("title"))
    if title:
        given.add("title")
    else:
        first = next((line.strip() for line in body.split("\n") if line.strip()), "")
        heading = _HEADING.match(first)
        title = heading.group(1).strip() if heading else candidate.slug.replace("-", " ").capitalize()
    title = title[:300]
    body = with_title_heading(body, title)
    count = len(words(strip_markdown(body)))
    if count < options.min_words:
        if data.get("aliases") or data.get("redirect_from"):
            return f"redirect stub (aliases only, {count} words)"
        return f"near-empty page ({count} words, fewer than {options.min_words})"

    taxonomies = data.get("taxonomies") if isinstance(data.get("taxonomies"), Mapping) else {}
    tags = _as_list(data.get("tags"), jekyll_words=True) + _as_list(taxonomies.get("tags"))
    categories = _as_list(data.get("categories"), jekyll_words=True) + _as_list(taxonomies.get("categories"))
    categories += _as_list(data.get("category"))
    keywords = _as_list(data.get("keywords")) + _as_list(taxonomies.get("keywords"))
    authors = _as_list(data.get("authors")) + _as_list(data.get("author")) + _as_list(taxonomies.get("authors"))
    others: dict[str, list[str]] = {}
    for name in OTHER_TAXONOMIES:
        if values := _as_list(data.get(name)):
            others[name] = values
    for name, value in taxonomies.items():
        if name not in CORE_TAXONOMIES and (values := _as_list(value)):
            others[name] = values
    given.update(name for name, values in (("tags", tags), ("categories", categories)) if values)
    given.update(name for name, values in (("keywords", keywords), ("authors", authors)) if values)

    date = next((d for key in DATE_KEYS if (d := _date(data.get(key)))), None)
    if date:
        given.add("date")
    date = date or candidate.date
    summary = next((_text(_nested(data, key)) for key in SUMMARY_KEYS if _text(_nested(data, key))), "")
    if summary:
        given.add("description")

    content_type: Any = next((_nested(data, key) for key in CONTENT_TYPE_KEYS if _nested(data, key)), None)
    if content_type is not None and _normalise_content_type(str(content_type)) in set(ContentType):
        given.add("content_type")
    elif "content_type" in options.defaults:
        content_type = options.defaults["content_type"]
    else:
        content_type = infer_content_type(title, body, [*tags, *categories])
    fields: dict[str, Any] = {}
    for name in ("audience", "tone"):
        value = _text(_nested(data, name))
        if value:
            given.add(name)
            fields[name] = value
        elif name in options.defaults:
            fields[name] = options.defaults[name]
    category = categories[0] if categories else options.defaults.get("category", "")
    other_tags = [value for values in others.values() for value in values]
    notes = []
    if summary:
        notes.append(f"Summary: {summary}")
    if authors:
        notes.append(f"Author: {', '.join(_unique(authors, 5))}.")
    try:
        brief = Brief(
            id=candidate.slug,
            title=title,
            content_type=str(content_type),
            category=category,
            tags=_unique([*tags, *categories[1:], *other_tags], MAX_LIST_ITEMS),
            keywords=_unique(keywords, MAX_LIST_ITEMS),
            target_words=count,
            notes=" ".join(notes)[:MAX_TEXT],
            **fields,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return f"metadata does not make a valid brief: {problems}"
    extra: dict[str, Any] = {"authors": _unique(authors, 10)} if authors else {}
    extra.update(others)
    return CorpusArticle(
        id=candidate.slug,
        path=candidate.relative,
        layout=candidate.layout,
        front_matter=kind,
        brief=brief,
        body=body,
        words=count,
        date=date,
        given=frozenset(given),
        extra=extra,
    )


def _read(root: Path, candidate: _Candidate) -> tuple[str, dict[str, Any], str] | str:
    path = candidate.path
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
            return "symbolic link to a file outside the corpus; not followed"
        if not path.is_file():
            return "not a regular file"
        if path.stat().st_size > MAX_FILE_BYTES:
            return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    try:
        return split_front_matter(text)
    except _FrontMatterError as exc:
        return str(exc)


def _shingles(text: str) -> frozenset[int]:
    tokens = [token.lower() for token in words(strip_markdown(text))]
    if len(tokens) < SHINGLE:
        return frozenset({hash(" ".join(tokens))})
    return frozenset(hash(" ".join(tokens[i : i + SHINGLE])) for i in range(len(tokens) - SHINGLE + 1))


def _drop_duplicates(articles: list[CorpusArticle], threshold: float) -> tuple[list[CorpusArticle], list[SkippedFile]]:
    """Keep the first of every group of (near-)duplicate bodies, in path order."""
    kept: list[tuple[CorpusArticle, frozenset[int], str]] = []
    skipped: list[SkippedFile] = []
    for article in articles:
        body_only = "\n".join(article.body.split("\n")[1:])  # the title line is not the article
        exact = hashlib.sha256(" ".join(body_only.lower().split()).encode()).hexdigest()
        shingles = _shingles(body_only)
        reason = None
        for other, other_shingles, other_exact in kept:
            if exact == other_exact:
                reason = f"exact duplicate of {other.path}"
                break
            small, large = sorted((len(shingles), len(other_shingles)))
            if large and small / large < threshold:
                continue
            similarity = len(shingles & other_shingles) / max(1, len(shingles | other_shingles))
            if similarity >= threshold:
                reason = f"near-duplicate of {other.path} (similarity {similarity:.2f})"
                break
        if reason:
            skipped.append(SkippedFile(article.path, reason))
        else:
            kept.append((article, shingles, exact))
    return [article for article, _, _ in kept], skipped


def _unique_ids(articles: list[CorpusArticle]) -> list[CorpusArticle]:
    """Give articles with the same slug distinct ids (``slug``, ``slug-2``, ...)."""
    seen: dict[str, int] = {}
    result: list[CorpusArticle] = []
    for article in articles:
        count = seen.get(article.id, 0) + 1
        seen[article.id] = count
        if count == 1:
            result.append(article)
            continue
        new_id = f"{article.id[:75]}-{count}"
        brief = article.brief.model_copy(update={"id": new_id})
        result.append(CorpusArticle(**{**article.__dict__, "id": new_id, "brief": brief}))
    return result


def load_corpus(
    root: Path,
    *,
    min_words: int = MIN_WORDS,
    near_duplicate: float = NEAR_DUPLICATE,
    defaults: dict[str, Any] | None = None,
) -> Corpus:
    """Read every Markdown post under ``root``; skipped files are listed with their reasons, never fatal."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist or is not a folder")
    options = _Options(min_words, {**read_defaults(root), **(defaults or {})})
    accepted: list[CorpusArticle] = []
    skipped: list[SkippedFile] = []
    seen = 0
    for path in _markdown_files(root):
        seen += 1
        candidate = _describe(root, path)
        read = _read(root, candidate)
        if isinstance(read, str):
            skipped.append(SkippedFile(candidate.relative, read))
            continue
        outcome = _article(candidate, *read, options)
        if isinstance(outcome, str):
            skipped.append(SkippedFile(candidate.relative, outcome))
        else:
            accepted.append(outcome)
    articles, duplicates = _drop_duplicates(accepted, near_duplicate)
    skipped.extend(duplicates)
    order = {path: index for index, path in enumerate(sorted(s.path for s in skipped))}
    skipped.sort(key=lambda s: order[s.path])
    corpus = Corpus(root, _unique_ids(articles), skipped, seen)
    logger.info("corpus %s: %d article(s), %d skipped", root, len(corpus.articles), len(skipped))
    return corpus


def require_articles(corpus: Corpus, minimum: int = 2) -> None:
    """Raise a :class:`CorpusError` listing why files were skipped when the corpus is too small to use."""
    if len(corpus.articles) >= minimum:
        return
    reasons = "; ".join(f"{s.path}: {s.reason}" for s in corpus.skipped[:5])
    more = f" (and {len(corpus.skipped) - 5} more)" if len(corpus.skipped) > 5 else ""
    raise CorpusError(
        f"corpus {corpus.root} has {len(corpus.articles)} usable article(s), at least {minimum} are needed"
        + (f"; skipped: {reasons}{more}" if reasons else "; no Markdown files (.md) were found")
    )


def inspect_corpus(corpus: Corpus, language: str = "en") -> dict[str, Any]:
    """Counts, field coverage, length distribution, readability and tone profile: JSON-able."""
    from worker.lab.stylometry import profile_texts

    profile = profile_texts([a.body for a in corpus.articles], language) if corpus.articles else None
    content_types: dict[str, int] = {}
    for article in corpus.articles:
        key = str(article.brief.content_type)
        content_types[key] = content_types.get(key, 0) + 1
    return {
        "root": str(corpus.root),
        "files": corpus.files_seen,
        "articles": len(corpus.articles),
        "skipped": len(corpus.skipped),
        "words": corpus.total_words,
        "corpus_sha256": corpus.content_hash(),
        "layouts": corpus.layouts(),
        "front_matter": corpus.front_matter_formats(),
        "content_types": dict(sorted(content_types.items())),
        "coverage": corpus.coverage(),
        "profile": profile,
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in corpus.skipped],
    }
