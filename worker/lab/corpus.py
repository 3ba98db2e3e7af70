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
import errno
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from worker.errors import CorpusError
from worker.intake.briefs import Brief
from worker.lab.corpus_clean import archive_of
from worker.lab.corpus_meta import page_authors, page_date_and_source
from worker.lab.corpus_skips import page_skip_reason
from worker.lab.front_matter import FrontMatterError, FrontMatterLoader, one_line, split_front_matter
from worker.lab.page_body import clean_page, first_heading, with_title_heading
from worker.lab.page_metadata import (
    brief_fields,
    make_brief,
    page_title,
    read_labels,
    skip_reason,
    slugify,
)
from worker.scoring.markdown import strip_markdown
from worker.scoring.text import words

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown")
DEFAULTS_FILE = "copydesk-corpus.yaml"
MAX_FILE_BYTES = 2 * 1024 * 1024
MIN_WORDS = 60
NEAR_DUPLICATE = 0.8
SHINGLE = 5
KEPT = "numbers and dates aside; the first in path order is kept"
_DATED_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[-_](.+)$")
IGNORED_DIRS = frozenset({"node_modules", "public", "_site", "resources", "static", "assets", "themes", "vendor"})


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
    date_source: str = "none"  # front matter <key>, folder, file name or none
    title_added: bool = False  # the body's `# title` line was added from the metadata
    code_blocks: int = 0
    inlined: int = 0  # directives replaced by their text (highlight, Go code/play)
    placeholders: int = 0  # directives left as a marked placeholder
    warnings: tuple[str, ...] = ()


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
    root: Path
    without_front_matter: bool = False  # copydesk-corpus.yaml: `posts_without_front_matter: true`


def _settings_file(root: Path) -> dict[str, Any]:
    path = root / DEFAULTS_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=FrontMatterLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        raise CorpusError(f"{path}: cannot read the corpus defaults: {one_line(exc)}") from exc
    if data is not None and not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a mapping with `defaults:` and `posts_without_front_matter:`")
    return data or {}


def posts_without_front_matter(root: Path) -> bool:
    """Whether ``copydesk-corpus.yaml`` says files without front matter are posts (they are not, by default)."""
    return _settings_file(root).get("posts_without_front_matter") is True


def read_defaults(root: Path) -> dict[str, Any]:
    """The optional ``copydesk-corpus.yaml`` of a corpus: ``defaults`` for audience, tone, content_type."""
    path = root / DEFAULTS_FILE
    data = _settings_file(root)
    defaults = data.get("defaults", {})
    allowed = {"audience", "tone", "content_type", "category"}
    if not isinstance(defaults, dict) or set(defaults) - allowed:
        raise CorpusError(f"{path}: expected `defaults:` with any of {sorted(allowed)}")
    return {key: str(value) for key, value in defaults.items()}


def _body(candidate: _Candidate, kind: str, data: dict[str, Any], raw_body: str, options: _Options) -> Any:
    """The cleaned body and its word count (without an added title), or a skip reason."""
    if kind == "none" and not options.without_front_matter:
        return f"not a post (no front matter; set posts_without_front_matter in {DEFAULTS_FILE} to keep it)"
    cleaned = clean_page(raw_body, archive_of(options.root, candidate.path), data)
    count = len(words(strip_markdown(cleaned.text)))
    if reason := page_skip_reason(data, cleaned.text, count, options.min_words):
        return reason
    return cleaned, count


def _article(candidate: _Candidate, kind: str, data: dict[str, Any], raw_body: str, options: _Options) -> Any:
    """A :class:`CorpusArticle`, or a skip reason string."""
    if reason := skip_reason(candidate.relative, data):
        return reason
    if isinstance(data.get("slug"), str) and data["slug"].strip():
        candidate = dataclasses.replace(candidate, slug=slugify(data["slug"]))
    found = _body(candidate, kind, data, raw_body, options)
    if isinstance(found, str):
        return found
    cleaned, _ = found
    title, titled = page_title(data, first_heading(cleaned.text), candidate.slug)
    body = with_title_heading(cleaned.text, title)
    labels = read_labels(data)
    labels.authors = page_authors(data)
    fields = brief_fields(data, title, body, labels, options.defaults)
    brief = make_brief(fields, candidate.slug, len(words(strip_markdown(body))))
    if isinstance(brief, str):
        return brief
    date, source = page_date_and_source(data, candidate.relative)
    given = fields.given | ({"title"} if titled else set()) | ({"date"} if source.startswith("front") else set())
    return CorpusArticle(
        id=candidate.slug,
        path=candidate.relative,
        layout=candidate.layout,
        front_matter=kind,
        brief=brief,
        body=body,
        words=brief.target_words,
        date=date,
        given=frozenset(given),
        extra=labels.extra(),
        date_source=source,
        title_added=body != cleaned.text,
        code_blocks=cleaned.code_blocks,
        inlined=cleaned.inlined,
        placeholders=cleaned.placeholders,
        warnings=tuple(cleaned.warnings),
    )


def _read(root: Path, candidate: _Candidate) -> tuple[str, dict[str, Any], str] | str:
    path = candidate.path
    try:
        if path.is_symlink() and not path.resolve(strict=True).is_relative_to(root.resolve()):
            return "symbolic link to a file outside the corpus; not followed"
        if not path.is_file():
            return "not a regular file"
        if path.stat().st_size > MAX_FILE_BYTES:
            return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        return "symbolic link loop"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot be read: {exc.strerror or exc}"
    try:
        return split_front_matter(text)
    except FrontMatterError as exc:
        return str(exc)


def _normalised(text: str) -> list[str]:
    """Words of a body with every number, version and date as ``0``, so template-generated posts compare equal."""
    return ["0" if any(char.isdigit() for char in token) else token.lower() for token in words(strip_markdown(text))]


def _shingles(text: str) -> frozenset[int]:
    tokens = _normalised(text)
    if len(tokens) < SHINGLE:
        return frozenset({hash(" ".join(tokens))})
    return frozenset(hash(" ".join(tokens[i : i + SHINGLE])) for i in range(len(tokens) - SHINGLE + 1))


def _drop_duplicates(articles: list[CorpusArticle], threshold: float) -> tuple[list[CorpusArticle], list[SkippedFile]]:
    """Keep the first of every group of (near-)duplicate bodies, in path order."""
    kept: list[tuple[CorpusArticle, frozenset[int], str]] = []
    skipped: list[SkippedFile] = []
    for article in articles:
        body_only = "\n".join(article.body.split("\n")[1:])  # the title line is not the article
        exact = hashlib.sha256(" ".join(_normalised(body_only)).encode()).hexdigest()
        shingles = _shingles(body_only)
        reason = None
        for other, other_shingles, other_exact in kept:
            if exact == other_exact:
                reason = f"exact duplicate of {other.path} ({KEPT})"
                break
            small, large = sorted((len(shingles), len(other_shingles)))
            if large and small / large < threshold:
                continue
            similarity = len(shingles & other_shingles) / max(1, len(shingles | other_shingles))
            if similarity >= threshold:
                reason = f"near-duplicate of {other.path} (similarity {similarity:.2f}; {KEPT})"
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
    options = _Options(min_words, {**read_defaults(root), **(defaults or {})}, root, posts_without_front_matter(root))
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


def inspect_corpus(corpus: Corpus, language: str = "en", **options: Any) -> dict[str, Any]:
    """The ``corpus inspect`` report: see :func:`worker.lab.corpus_report.inspect_corpus`."""
    from worker.lab.corpus_report import inspect_corpus as report

    return report(corpus, language, **options)
