"""Markdown as the scores read it: blocks (headings, list items, paragraphs, table rows, code) with their inline
syntax stripped, and the plain text of a document."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^\s{0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_ITEM = re.compile(r"^\s*(?:([-*+])|(\d{1,9})[.)])\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_INLINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # inline links
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<https?://[^>]+>"), ""),  # autolinks
    (re.compile(r"https?://\S+"), ""),  # bare URLs
    (re.compile(r"</?[A-Za-z|][^>]*>"), ""),  # HTML tags and chat-template tokens like <|im_end|>
    (re.compile(r"`+([^`]*)`+"), r"\1"),  # code spans keep their text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"\*(?=\S)(.+?)(?<=\S)\*"), r"\1"),  # emphasis with *
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # emphasis with _, not snake_case
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strikethrough
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|])"), r"\1"),  # backslash escapes
)


_SPACES = re.compile(r"\s+")

BlockKind = Literal["heading", "item", "paragraph", "table", "code"]


@dataclass(frozen=True)
class Block:
    """One Markdown block: ``heading``, ``item`` (list item), ``paragraph``, ``table`` (one row) or ``code``."""

    kind: BlockKind
    text: str
    level: int = 0  # heading level
    ordered: bool = False  # numbered list item


def strip_inline(text: str) -> str:
    """Remove inline Markdown (links, emphasis, code marks, HTML) from one line of text."""
    for pattern, replacement in _INLINE_RULES:
        text = pattern.sub(replacement, text)
    return _SPACES.sub(" ", html.unescape(text)).strip()


class _BlockParser:
    """A small line-based Markdown block parser: enough for headings, lists and paragraphs."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.lines: list[str] = []  # the open paragraph or list item
        self.ordered: bool | None = None  # None: the open block is a paragraph, else a (numbered) list item
        self.fence: str | None = None
        self.code: list[str] = []

    def feed(self, line: str) -> None:
        if self.fence is not None:
            self._in_fence(line)
        elif match := _FENCE.match(line):
            self._close()
            self.fence = match.group(1)[0] * 3
        elif not line.strip():
            self._close()
        else:
            self._block_line(line)

    def _in_fence(self, line: str) -> None:
        if line.strip().startswith(self.fence or "```"):
            self.blocks.append(Block("code", "\n".join(self.code)))
            self.fence, self.code = None, []
        else:
            self.code.append(line)

    def _block_line(self, line: str) -> None:
        if (setext := _SETEXT.match(line)) and self.ordered is None and len(self.lines) == 1:
            level = 1 if setext.group(1).startswith("=") else 2
            self.blocks.append(Block("heading", strip_inline(self.lines[0]), level=level))
            self.lines = []
        elif _RULE.match(line):
            self._close()
        elif atx := _ATX.match(line):
            self._close()
            self.blocks.append(Block("heading", strip_inline(atx.group(2) or ""), level=len(atx.group(1))))
        elif item := _ITEM.match(line):
            self._close()
            self.ordered = item.group(2) is not None
            self.lines = [item.group(3)]
        elif _TABLE_SEPARATOR.match(line) and "|" in line:
            return
        elif line.strip().startswith("|"):
            self._close()
            cells = [strip_inline(cell) for cell in line.strip().strip("|").split("|")]
            self.blocks.append(Block("table", ", ".join(cell for cell in cells if cell)))
        else:
            self.lines.append(_QUOTE.sub("", line))

    def _close(self) -> None:
        text = strip_inline(" ".join(self.lines))
        if text and self.ordered is not None:
            self.blocks.append(Block("item", text, ordered=self.ordered))
        elif text:
            self.blocks.append(Block("paragraph", text))
        self.lines, self.ordered = [], None

    def finish(self) -> list[Block]:
        if self.fence is not None:
            self.blocks.append(Block("code", "\n".join(self.code)))
        self._close()
        return self.blocks


def parse_blocks(markdown: str) -> list[Block]:
    """Split Markdown into blocks with their inline syntax already stripped."""
    parser = _BlockParser()
    for line in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        parser.feed(line)
    return parser.finish()


def strip_markdown(markdown: str) -> str:
    """Plain text of a Markdown document: one block per paragraph, code blocks and syntax removed."""
    return plain_text(parse_blocks(markdown))


def plain_text(blocks: Sequence[Block]) -> str:
    """The plain text of parsed blocks (what :func:`strip_markdown` returns, without parsing again)."""
    return "\n\n".join(block.text for block in blocks if block.kind != "code" and block.text)


def prose_texts(blocks: Sequence[Block]) -> list[str]:
    """Texts of the blocks read as running prose (paragraphs and list items; not headings or code)."""
    return [block.text for block in blocks if block.kind in ("paragraph", "item")]
