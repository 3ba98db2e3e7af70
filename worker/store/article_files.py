"""Article files: Markdown with YAML front matter that Hugo and Jekyll read as-is.

``<articles_dir>/<style>/<article id>.md`` starts with a ``---`` delimited YAML block (title, date, tags,
categories, style, adapter_version, status, brief_id, article_id, scores, failing_gates, keywords and,
when the provenance carries one, summary), then a blank line and the Markdown body, written with exactly
one trailing newline. Files are replaced atomically and durably (:func:`worker.files.write_atomic`), so a
reader never sees half an article.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from worker.errors import StoreError
from worker.files import write_atomic
from worker.intake.briefs import Brief
from worker.names import check_safe_name
from worker.store import ArticleRecord

logger = logging.getLogger(__name__)

DELIMITER = "---"
FILE_MODE = 0o644
_SCALARS = (str, int, float, bool, type(None))


def article_path(articles_dir: Path, style: str, article_id: str) -> Path:
    """``articles_dir/<style>/<article_id>.md``, after checking both names and that it stays inside."""
    try:
        check_safe_name("style", style)
        check_safe_name("article id", article_id)
    except ValueError as exc:
        raise StoreError(f"cannot write the article file: {exc}") from exc
    base = articles_dir.resolve()
    path = base / style / f"{article_id}.md"
    if not path.resolve().is_relative_to(base):
        raise StoreError(f"article file {path} would be outside the articles directory {base}")
    return path


def _score_values(scores: dict[str, Any]) -> dict[str, Any]:
    """``{name: value}``: a scorecard entry ``{"value": v, ...}`` becomes ``v``; other values stay scalar."""
    flat: dict[str, Any] = {}
    for name, score in scores.items():
        value = score.get("value") if isinstance(score, dict) else score
        flat[str(name)] = value if isinstance(value, _SCALARS) else str(value)
    return flat


def front_matter(article: ArticleRecord, brief: Brief) -> dict[str, Any]:
    """The front matter fields of ``article``, in file order."""
    fields: dict[str, Any] = {
        "title": article.title,
        "date": article.created_at.date(),
        "tags": list(brief.tags),
        "categories": [brief.category] if brief.category else [],
        "style": article.style,
        "adapter_version": article.adapter_version,
        "status": str(article.status),
        "brief_id": article.brief_id,
        "article_id": article.id,
        "scores": _score_values(article.scores),
        "failing_gates": list(article.failing_gates),
        "keywords": list(brief.keywords),
    }
    summary = article.provenance.get("summary")
    if isinstance(summary, str) and summary.strip():
        fields["summary"] = summary.strip()
    return fields


def render_article(article: ArticleRecord, brief: Brief) -> str:
    """The whole file: front matter, blank line, body with one trailing newline."""
    header = yaml.safe_dump(front_matter(article, brief), allow_unicode=True, sort_keys=False, default_flow_style=False)
    body = article.body_markdown.rstrip("\n") + "\n"
    return f"{DELIMITER}\n{header}{DELIMITER}\n\n{body}"


def write_article_file(articles_dir: Path, article: ArticleRecord, brief: Brief) -> Path:
    """Write ``article`` to ``articles_dir/<style>/<article id>.md`` atomically and return the path."""
    if article.brief_id != brief.brief_id:
        raise StoreError(f"article {article.id!r} belongs to brief {article.brief_id!r}, not {brief.brief_id!r}")
    path = article_path(articles_dir, article.style, article.id)
    try:
        write_atomic(path, render_article(article, brief), mode=FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot write the article file {path}: {exc}") from exc
    logger.info("wrote article %s to %s", article.id, path)
    return path


def read_article_file(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a file written by :func:`write_article_file`: ``(front matter, body)``.

    ``date`` comes back as a :class:`datetime.date`. :class:`StoreError` when the file cannot be read
    or has no valid front matter.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot read the article file {path}: {exc}") from exc
    opening = f"{DELIMITER}\n"
    closing = f"\n{DELIMITER}\n"
    end = text.find(closing, len(opening) - 1)
    if not text.startswith(opening) or end < 0:
        raise StoreError(f"article file {path} does not start with a '---' front matter block")
    try:
        meta = yaml.safe_load(text[len(opening) : end + 1])
    except yaml.YAMLError as exc:
        raise StoreError(f"article file {path} has invalid front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise StoreError(f"article file {path} front matter is not a mapping")
    body = text[end + len(closing) :]
    return meta, body.removeprefix("\n")
