"""A post's Markdown body cut into pieces for cleaning, from a markdown-it parse.

Code blocks (fenced and indented) come from the parse itself; code spans, HTML comments and tags, Hugo
shortcodes (``{{< >}}`` / ``{{% %}}``), Go template actions (``{{ }}``) and Liquid tags (``{% %}``) are found by
one left-to-right scan of the rest, the way CommonMark reads inline text: whatever starts first wins, so a
code span is never read as HTML or a template tag, and a tag's quoted arguments never open a code span.
Every piece keeps its exact source text (``raw``): joining the raws gives the body back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark").enable("table")
_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?/?>")
_AUTOLINK = re.compile(r"<[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>|<[\w.+-]+@[\w-]+(?:\.[\w-]+)+>")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_SPECIAL = frozenset("\\`<{")
_CLOSER = {"<": ">}}", "%": "%}}"}
_CODE_TYPES = frozenset({"fence", "code_block"})
_REGION_TYPES = frozenset({"paragraph_open", "heading_open", "html_block", "tr_open"})


@dataclass(frozen=True)
class Piece:
    """One piece of a body: ``text``, ``code`` (a block or a span, verbatim), ``comment``, ``html`` (a tag),
    ``shortcode`` (Hugo), ``action`` (Go template / Liquid output) or ``liquid`` (a Liquid tag)."""

    kind: str
    raw: str
    name: str = ""
    args: str = ""
    closing: bool = False
    self_closing: bool = False
    block: bool = False


@dataclass(frozen=True)
class _Layout:
    """Where the parse put code blocks and inline regions, as character offsets of the body."""

    code_blocks: dict[int, int]  # start -> end of every fenced or indented code block
    region_end: list[int]  # for every line: where the block holding it ends (code spans stay inside)
    html_lines: frozenset[int]  # lines of raw HTML blocks: no code spans there
    line_of: list[int]  # the line of every character offset (and one past the end)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(index + 1 for index, char in enumerate(text) if char == "\n")
    return starts


def _layout(body: str) -> _Layout:
    starts = _line_starts(body)
    offset = [*starts, len(body)]

    def at(line: int) -> int:
        return offset[min(line, len(offset) - 1)]

    code_blocks: dict[int, int] = {}
    region_end = [at(line + 1) for line in range(len(starts))]
    html_lines: set[int] = set()
    for token in _PARSER.parse(body):
        if token.map is None:
            continue
        first, last = token.map
        if token.type in _CODE_TYPES:
            code_blocks[at(first)] = at(last)
        elif token.type in _REGION_TYPES:
            for line in range(first, last):
                region_end[line] = at(last)
            if token.type == "html_block":
                html_lines.update(range(first, last))
    line_of = [0] * (len(body) + 1)
    for line, start in enumerate(starts):
        end = at(line + 1)
        line_of[start : end + 1] = [line] * (end + 1 - start)
    return _Layout(code_blocks, region_end, frozenset(html_lines), line_of)


def _backticks(body: str, start: int, limit: int) -> int | None:
    """End of the code span opened at ``start`` (a run of backticks closed by a run as long), or None."""
    run = start
    while run < len(body) and body[run] == "`":
        run += 1
    size = run - start
    index = run
    while (found := body.find("`" * size, index, limit)) != -1:
        end = found + size
        if (end >= len(body) or body[end] != "`") and body[found - 1] != "`":
            return end
        while end < limit and body[end] == "`":
            end += 1
        index = end
    return None


def _closing_braces(body: str, start: int, closer: str) -> int | None:
    """End of a template tag opened at ``start`` and closed by ``closer``; quoted strings may hold braces."""
    index = start + 2
    while index < len(body):
        char = body[index]
        if body.startswith(closer, index):
            return index + len(closer)
        if char in '"`':
            end = body.find(char, index + 1)
            if end == -1 or ("\n\n" in body[index:end] and char == '"'):
                return None
            index = end + 1
            continue
        if body.startswith("\n\n", index):
            return None
        index += 1
    return None


def _words(inner: str) -> tuple[str, str]:
    inner = inner.strip().strip("-").strip()
    name, _, args = inner.partition(" ")
    return name.strip(), args.strip()


def _shortcode(body: str, start: int) -> Piece | None:
    if body.startswith("{{</*", start) or body.startswith("{{%/*", start):
        end = _closing_braces(body, start, "*/" + _CLOSER[body[start + 2]])
        return Piece("text", body[start:end].replace("/*", "", 1).replace("*/", "", 1), "escaped") if end else None
    end = _closing_braces(body, start, _CLOSER[body[start + 2]])
    if end is None:
        return None
    inner = body[start + 3 : end - 3].strip()
    closing = inner.startswith("/")
    self_closing = inner.endswith("/") and not closing
    name, args = _words(inner.strip("/"))
    return Piece("shortcode", body[start:end], name, args, closing, self_closing)


def _template(body: str, start: int) -> Piece | None:
    liquid = body.startswith("{%", start)
    end = _closing_braces(body, start, "%}" if liquid else "}}")
    if end is None:
        return None
    name, args = _words(body[start + 2 : end - 2])
    return Piece("liquid" if liquid else "action", body[start:end], name, args)


def _angle(body: str, start: int, limit: int) -> Piece | None:
    if body.startswith("<!--", start):
        end = body.find("-->", start + 4)
        return Piece("comment", body[start : end + 3]) if end != -1 else None
    if link := _AUTOLINK.match(body, start, limit):
        return Piece("text", link.group(0))
    if tag := _TAG.match(body, start, limit):
        raw = tag.group(0)
        return Piece("html", raw, tag.group(1).lower(), closing=raw.startswith("</"), self_closing=raw.endswith("/>"))
    return None


def _special(body: str, index: int, layout: _Layout) -> Piece | None:
    """The piece starting at ``index`` (a backslash escape, code span, comment, tag), or None for plain text."""
    char = body[index]
    line = layout.line_of[index]
    limit = layout.region_end[line]
    if char == "\\":
        nxt = body[index + 1 : index + 2]
        return Piece("text", char + nxt) if nxt and nxt in _PUNCTUATION else None
    if char == "`":
        if line in layout.html_lines:
            return None
        end = _backticks(body, index, limit)
        if end is None:
            run = index
            while run < len(body) and body[run] == "`":
                run += 1
            return Piece("text", body[index:run])
        return Piece("code", body[index:end])
    if char == "<":
        return _angle(body, index, limit)
    if body.startswith("{{<", index) or body.startswith("{{%", index):
        return _shortcode(body, index)
    if body.startswith("{{", index) or body.startswith("{%", index):
        return _template(body, index)
    return None


def split_pieces(body: str) -> list[Piece]:
    """The body as pieces, in order; ``"".join(p.raw for p in pieces) == body`` except for escaped shortcodes."""
    layout = _layout(body)
    pieces: list[Piece] = []
    text_start = index = 0
    while index < len(body):
        if (end := layout.code_blocks.get(index)) is not None and end > index:
            piece: Piece | None = Piece("code", body[index:end], block=True)
        elif body[index] in _SPECIAL:
            piece = _special(body, index, layout)
        else:
            piece = None
        if piece is None:
            index += 1
            continue
        if text_start < index:
            pieces.append(Piece("text", body[text_start:index]))
        pieces.append(piece)
        index += len(piece.raw) if piece.name != "escaped" else _escaped_length(body, index)
        text_start = index
    if text_start < len(body):
        pieces.append(Piece("text", body[text_start:]))
    return pieces


def _escaped_length(body: str, index: int) -> int:
    closer = "*/" + _CLOSER[body[index + 2]]
    return body.find(closer, index) + len(closer) - index
