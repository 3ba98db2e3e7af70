"""Cleaning stage: turn a model's raw completion into a tidy Markdown article.

Removes chat artifacts (role markers, special tokens, "Sure, here is..." preambles), makes sure the
article starts with a ``# `` title, normalises headings and blank lines, and trims a last sentence that
the token budget cut off, so that no article ends mid-sentence.
"""

from __future__ import annotations

import re

SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>")
ROLE_LINE = re.compile(r"^\s*(assistant|user|system)\s*:?\s*$", re.IGNORECASE)
PREAMBLE = re.compile(
    r"^\s*(sure|certainly|of course|absolutely|okay|ok|here is|here's|here are)\b[^\n]{0,120}[:!.]\s*$",
    re.IGNORECASE,
)
TITLE_LABEL = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\*\*)?title(?:\*\*)?\s*:\s*(?P<title>.+?)\s*$", re.IGNORECASE)
BOLD_HEADING = re.compile(r"^\s*\*\*(?P<text>[^*]{2,80})\*\*\s*:?\s*$")
HEADING = re.compile(r"^(?P<marks>#{1,6})\s*(?P<text>.*?)\s*#*\s*$")
SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")
LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
ENDS_CLEANLY = re.compile(r"[.!?…:][\"'”’)\]*_]*$")


def clean_draft(raw: str, title: str) -> str:
    """Clean ``raw`` model output into Markdown whose first line is ``# <title>``."""
    text = SPECIAL_TOKEN.sub("", raw).replace("\r\n", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    lines = _drop_leading_noise(lines)
    lines = [_normalise_heading(line) for line in lines]
    lines = _ensure_title(lines, title)
    body = _collapse_blank_lines(lines)
    return trim_unfinished_ending(body).strip() + "\n"


def _drop_leading_noise(lines: list[str]) -> list[str]:
    start = 0
    while start < len(lines) and (
        not lines[start].strip() or ROLE_LINE.match(lines[start]) or PREAMBLE.match(lines[start])
    ):
        start += 1
    return [line for line in lines[start:] if not ROLE_LINE.match(line)]


def _normalise_heading(line: str) -> str:
    bold = BOLD_HEADING.match(line)
    if bold:
        return f"## {bold.group('text').strip()}"
    heading = HEADING.match(line)
    if heading and heading.group("text"):
        return f"{heading.group('marks')} {heading.group('text')}"
    return line


def _ensure_title(lines: list[str], title: str) -> list[str]:
    if lines:
        label = TITLE_LABEL.match(lines[0])
        if label:
            return [f"# {label.group('title').strip('*# ')}", *lines[1:]]
        if lines[0].startswith("# "):
            return lines
    return [f"# {title}", "", *lines]


def _collapse_blank_lines(lines: list[str]) -> str:
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text)


def trim_unfinished_ending(text: str) -> str:
    """Drop a trailing fragment that does not end a sentence, and any headings left without content.

    Repeats until the text ends cleanly: dropping an unfinished last paragraph may expose a previous
    paragraph that was cut off too.
    """
    blocks = text.rstrip().split("\n\n")
    while True:
        while len(blocks) > 1 and _is_heading_only(blocks[-1]):
            blocks.pop()
        last_line = blocks[-1].strip().split("\n")[-1]
        if len(blocks) == 1 or last_line.lstrip().startswith("#") or ENDS_CLEANLY.search(last_line):
            break
        trimmed = _trim_block(blocks[-1])
        if trimmed:
            blocks[-1] = trimmed
            break
        blocks.pop()
    if len(blocks) == 1 and not blocks[0].lstrip().startswith("#"):
        blocks[0] = _trim_block(blocks[0]) or blocks[0]
    return "\n\n".join(blocks)


def _is_heading_only(block: str) -> bool:
    return all(line.lstrip().startswith("#") for line in block.strip().split("\n") if line.strip())


def _trim_block(block: str) -> str:
    """Cut ``block`` after its last complete sentence; drop an unfinished last list item or line."""
    lines = block.split("\n")
    while lines:
        last = lines[-1]
        marker = LIST_MARKER.match(last)
        offset = marker.end() if marker else 0
        ends = list(SENTENCE_END.finditer(last, offset))
        if ends:
            lines[-1] = last[: ends[-1].end()]
            return "\n".join(lines)
        lines.pop()
        # A list item followed by another line was complete, even without a full stop.
        if lines and (ENDS_CLEANLY.search(lines[-1]) or LIST_MARKER.match(lines[-1])):
            return "\n".join(lines)
    return ""


def extract_title(markdown: str, fallback: str) -> str:
    """The text of the first ``# `` heading, or ``fallback``."""
    for line in markdown.split("\n"):
        if line.startswith("# "):
            return line[2:].strip() or fallback
    return fallback
