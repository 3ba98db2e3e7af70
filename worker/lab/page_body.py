"""The body of a blog post as training reads it: site-generator syntax, raw HTML and front-matter remnants
removed (code blocks kept), starting with a ``# title`` line."""

from __future__ import annotations

import html
import re

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


def first_heading(body: str) -> str | None:
    """The text of the body's first line when that line is a level-1 heading."""
    first = next((line.strip() for line in body.split("\n") if line.strip()), "")
    heading = _HEADING.match(first)
    return heading.group(1).strip() if heading else None


def with_title_heading(body: str, title: str) -> str:
    """The body starting with a ``# title`` line (added when the body does not start with a level-1 heading)."""
    if first_heading(body) is not None:
        return body
    return f"# {title}\n\n{body}".strip()
