"""The body of a blog post as training reads it: front-matter remnants removed, then cleaned by
:mod:`worker.lab.corpus_clean` (code kept byte for byte), starting with a ``# title`` line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from worker.lab.corpus_clean import Cleaned, clean_markup
from worker.lab.corpus_directives import is_placeholder_line
from worker.lab.corpus_include import Archive

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


def clean_page(body: str, archive: Archive | None = None, params: Mapping[str, Any] | None = None) -> Cleaned:
    """A body without site-generator syntax, raw HTML or front-matter remnants; code kept byte for byte."""
    return clean_markup(_strip_front_matter_remnants(body.replace("\r\n", "\n").replace("\r", "\n")), archive, params)


def clean_body(body: str) -> str:
    """The cleaned text of :func:`clean_page` (no archive to resolve Go directives against)."""
    return clean_page(body).text


def first_heading(body: str) -> str | None:
    """The text of the body's first line when that line is a level-1 heading (blank lines and the placeholders of
    unresolved directives before it do not count: a ``{% include toc.html %}`` above the title is not text)."""
    lines = (line.strip() for line in body.split("\n"))
    first = next((line for line in lines if line and not is_placeholder_line(line)), "")
    heading = _HEADING.match(first)
    return heading.group(1).strip() if heading else None


def with_title_heading(body: str, title: str) -> str:
    """The body starting with a ``# title`` line (added when the body does not start with a level-1 heading)."""
    if first_heading(body) is not None:
        return body
    return f"# {title}\n\n{body}".strip()
