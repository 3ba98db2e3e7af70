"""Go ``present``-style ``{{code "file.go" ...}}`` / ``{{play "file.go"}}``: the referenced file's text.

The file is looked for next to the article, then at the archive's root, and only ever read from inside the
archive. Addresses select lines as ``present`` does: a line number or a ``/regexp/`` for the first line and,
optionally, the last (inclusive); then every line ending in ``OMIT`` goes and ``// HL`` markers are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAX_INCLUDE_BYTES = 256 * 1024
_HIGHLIGHT = re.compile(r"\s*//\s*HL\w*\s*$")
_LANGUAGES = {".go": "go", ".py": "python", ".js": "javascript", ".ts": "typescript", ".sh": "sh", ".rs": "rust"}


@dataclass(frozen=True)
class Archive:
    """Where a page lives: the archive's root and the page's folder (both resolved)."""

    root: Path
    folder: Path


def _arguments(args: str) -> list[str]:
    """Quoted (``"..."``), raw (`` `...` ``) and bare arguments of a template action."""
    found: list[str] = []
    index = 0
    while index < len(args):
        char = args[index]
        if char.isspace():
            index += 1
        elif char in '"`':
            end = args.find(char, index + 1)
            end = len(args) if end == -1 else end
            found.append(args[index + 1 : end])
            index = end + 1
        else:
            end = index
            while end < len(args) and not args[end].isspace():
                end += 1
            found.append(args[index:end])
            index = end
    return found


def _find(archive: Archive, name: str) -> Path | None:
    for base in (archive.folder, archive.root):
        try:
            path = (base / name).resolve()
            if path.is_relative_to(archive.root) and path.is_file() and path.stat().st_size <= MAX_INCLUDE_BYTES:
                return path
        except (OSError, RuntimeError, ValueError):
            continue
    return None


def _address(lines: list[str], address: str, start: int) -> int | None:
    """The index of the line an address names, searching regexps from ``start``."""
    if address.isdigit():
        index = int(address) - 1
        return index if 0 <= index < len(lines) else None
    if len(address) >= 2 and address.startswith("/") and address.endswith("/"):
        try:
            pattern = re.compile(address[1:-1])
        except re.error:
            return None
        return next((i for i in range(start, len(lines)) if pattern.search(lines[i])), None)
    return None


def select_lines(text: str, addresses: list[str]) -> str | None:
    """The lines ``addresses`` name (all when none), without ``OMIT`` lines and ``HL`` markers; None if unmatched."""
    lines = text.split("\n")
    first, last = 0, len(lines) - 1
    if addresses:
        found = _address(lines, addresses[0], 0)
        if found is None:
            return None
        first = last = found
        if len(addresses) > 1:
            end = _address(lines, addresses[1], first)
            if end is None:
                return None
            last = end
    chosen = [_HIGHLIGHT.sub("", line) for line in lines[first : last + 1] if not line.rstrip().endswith("OMIT")]
    return "\n".join(chosen).strip("\n")


def fenced(code: str, language: str) -> str:
    """``code`` as a fenced block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


def include(archive: Archive, args: str) -> str | None:
    """The fenced text a ``code`` / ``play`` directive stands for, or None when the file or lines are missing."""
    arguments = _arguments(args)
    if not arguments:
        return None
    path = _find(archive, arguments[0])
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    selected = select_lines(text.replace("\r\n", "\n"), [a for a in arguments[1:] if a != "HL"][:2])
    if selected is None:
        return None
    return fenced(selected, _LANGUAGES.get(path.suffix.lower(), path.suffix.lstrip(".").lower()))


def literal(args: str) -> str:
    """The text of a ``raw`` directive: its first quoted or raw-string argument."""
    arguments = _arguments(args)
    return arguments[0] if arguments else ""
