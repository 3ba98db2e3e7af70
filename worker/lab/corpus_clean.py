"""A post's body as training reads it: code copied byte for byte, site-generator syntax handled by family
(:mod:`worker.lab.corpus_directives`), raw HTML and comments removed, and what was done counted."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.lab.corpus_directives import (
    FENCE,
    HIDDEN,
    INCLUDE,
    LITERAL,
    UNRESOLVED,
    action_family,
    liquid_family,
    placeholder,
    shortcode_family,
)
from worker.lab.corpus_include import Archive, fenced, include, literal
from worker.lab.corpus_markup import Piece, split_pieces

_DROPPED_ELEMENTS = frozenset({"script", "style", "iframe", "svg", "noscript", "object", "video", "audio", "template"})
_BLOCK_ENDS = frozenset({"p", "div", "section", "article", "figure", "figcaption", "blockquote", "li", "table", "tr"})
_BLOCK_ENDS |= {f"h{level}" for level in range(1, 7)}
_IAL = re.compile(r"^[ \t]*\{:[^}\n]*\}[ \t]*$", re.MULTILINE)
_INLINE_IAL = re.compile(r"\{:\s*[.#][^}\n]*\}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")


@dataclass
class Cleaned:
    """A cleaned body and what cleaning did: code blocks kept, directives inlined, placeholders, warnings."""

    text: str
    code_blocks: int = 0
    inlined: int = 0
    placeholders: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Render:
    pieces: list[Piece]
    archive: Archive | None
    params: Mapping[str, Any]
    parts: list[tuple[bool, str]] = field(default_factory=list)  # (verbatim code?, text)
    result: Cleaned = field(default_factory=lambda: Cleaned(""))

    def prose(self, text: str) -> None:
        self.parts.append((False, text))

    def code(self, text: str) -> None:
        self.parts.append((True, text))

    def unresolved(self, what: str, why: str) -> None:
        self.prose(placeholder(what))
        self.result.placeholders += 1
        self.result.warnings.append(f"{why}: {' '.join(what.split())[:80]}")


def _named(piece: Piece) -> str:
    """A directive by name and arguments, without its braces (so a placeholder never looks like syntax)."""
    return f"{piece.name} {piece.args}".strip()


def _unescape(text: str) -> str:
    """HTML entities as characters, except where that would make a backtick (and so a code span)."""
    unescaped = html.unescape(text)
    return text if unescaped.count("`") != text.count("`") else unescaped


def _text(text: str) -> str:
    return _unescape(_INLINE_IAL.sub("", _IAL.sub("", text)))


def _closing(pieces: list[Piece], start: int, kind: str, name: str, closer: str) -> int | None:
    """Index of the piece closing ``pieces[start]`` (same kind; nested openers of the same name counted)."""
    depth = 0
    for index in range(start + 1, len(pieces)):
        piece = pieces[index]
        if piece.kind != kind:
            continue
        if kind == "shortcode" and piece.name == name and not piece.self_closing:
            if not piece.closing:
                depth += 1
            elif depth == 0:
                return index
            else:
                depth -= 1
        elif kind == "liquid" and piece.name == name:
            depth += 1
        elif kind == "liquid" and piece.name == closer:
            if depth == 0:
                return index
            depth -= 1
    return None


def _inner(pieces: list[Piece], start: int, end: int) -> str:
    return "".join(piece.raw for piece in pieces[start + 1 : end])


def _fence(render: _Render, index: int, end: int) -> int:
    language = render.pieces[index].args.split(" ")[0].strip("\"'")
    render.code(fenced(_inner(render.pieces, index, end).strip("\n"), language))
    render.result.inlined += 1
    return end + 1


def _block(render: _Render, index: int, family: str, end: int | None) -> int:
    """A paired tag of a family that acts on its inner text; returns the index after what was consumed."""
    piece = render.pieces[index]
    if end is None:
        render.unresolved(_named(piece), "unclosed directive")
        return index + 1
    if family == HIDDEN:
        return end + 1
    if family == FENCE:
        return _fence(render, index, end)
    render.prose(_inner(render.pieces, index, end))  # LITERAL
    return end + 1


def _shortcode(render: _Render, index: int) -> int:
    piece = render.pieces[index]
    if piece.closing:
        return index + 1
    end = None if piece.self_closing else _closing(render.pieces, index, "shortcode", piece.name, "")
    family = shortcode_family(piece.name, end is not None)
    if family in (HIDDEN, FENCE, LITERAL):
        return _block(render, index, family, end)
    if family == UNRESOLVED and piece.name.lower() == "param" and (value := _param(render.params, piece.args)):
        render.prose(value)
    elif family == UNRESOLVED:
        render.unresolved(_named(piece), "shortcode not resolved")
    return index + 1  # paired: the inner pieces render as usual; void: nothing


def _param(params: Mapping[str, Any], args: str) -> str | None:
    """Hugo's ``param NAME``: the page's own front-matter field (dotted names reach into tables), if a scalar."""
    name = args.strip().strip("\"'")
    for table in (params, params.get("params")):
        value: Any = table
        for key in name.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    return None


def _action(render: _Render, index: int) -> int:
    piece = render.pieces[index]
    family = action_family(piece.name, piece.args)
    if family == INCLUDE:
        text = include(render.archive, piece.args) if render.archive else None
        if text is None:
            render.unresolved(_named(piece), "directive file or lines not found")
        else:
            render.code(text)
            render.result.inlined += 1
    elif family == LITERAL:
        render.prose(literal(piece.args))
    elif family == UNRESOLVED:
        render.unresolved(_named(piece), "unknown directive")
    return index + 1


def _liquid(render: _Render, index: int) -> int:
    piece = render.pieces[index]
    family = liquid_family(piece.name)
    if family in (HIDDEN, FENCE, LITERAL):
        end = _closing(render.pieces, index, "liquid", piece.name, "end" + piece.name)
        return _block(render, index, family, end)
    if family == UNRESOLVED:
        render.unresolved(_named(piece), "unknown or unresolved Liquid tag")
    return index + 1


def _html(render: _Render, index: int) -> int:
    piece = render.pieces[index]
    if piece.name in _DROPPED_ELEMENTS and not piece.closing and not piece.self_closing:
        for end in range(index + 1, len(render.pieces)):
            other = render.pieces[end]
            if other.kind == "html" and other.closing and other.name == piece.name:
                return end + 1
        return index + 1
    if piece.name == "br":
        render.prose("\n")
    elif piece.closing and piece.name in _BLOCK_ENDS:
        render.prose("\n\n")
    return index + 1


def _step(render: _Render, index: int) -> int:
    piece = render.pieces[index]
    if piece.kind == "code":
        render.code(piece.raw)
        render.result.code_blocks += piece.block
        return index + 1
    if piece.kind == "text":
        render.prose(_text(piece.raw) if piece.name != "escaped" else piece.raw)
        return index + 1
    handlers = {"shortcode": _shortcode, "action": _action, "liquid": _liquid, "html": _html}
    handler = handlers.get(piece.kind)
    return handler(render, index) if handler else index + 1  # comments go whole


def _join(parts: list[tuple[bool, str]]) -> str:
    """The parts joined; prose loses trailing spaces and runs of blank lines, code is left as it is."""
    merged: list[tuple[bool, str]] = []
    for verbatim, text in parts:
        if merged and not verbatim and not merged[-1][0]:
            merged[-1] = (False, merged[-1][1] + text)
        else:
            merged.append((verbatim, text))
    out: list[str] = []
    for verbatim, text in merged:
        if not verbatim:
            text = _BLANK_RUN.sub("\n\n", _TRAILING_SPACE.sub("\n", text))
            text = text[1:] if out and out[-1].endswith("\n") and text.startswith("\n\n") else text
        out.append(text)
    joined = "".join(out).strip("\n")
    return joined if merged and merged[-1][0] else joined.rstrip()


def clean_markup(body: str, archive: Archive | None = None, params: Mapping[str, Any] | None = None) -> Cleaned:
    """Clean a Markdown body (without front matter); ``archive`` lets Go directives inline files, ``params``
    (the page's front matter) resolves Hugo's ``param`` shortcode."""
    render = _Render(split_pieces(body), archive, params or {})
    index = 0
    while index < len(render.pieces):
        index = _step(render, index)
    render.result.text = _join(render.parts)
    render.result.warnings = list(dict.fromkeys(render.result.warnings))
    return render.result


def archive_of(root: Path, source: Path) -> Archive:
    """The :class:`Archive` a page at ``source`` (inside ``root``) resolves directives against."""
    root = root.resolve()
    return Archive(root, source.resolve().parent if source.resolve().is_relative_to(root) else root)
