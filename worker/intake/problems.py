"""What is wrong with a record of an input file, and where: :class:`BriefProblem`, and how values are named in
its messages. Brief files, job files and their data files all report problems this way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BriefProblem:
    """Why one record (or a whole file) could not be loaded."""

    file: str
    """The path as given."""
    record: str
    """``"line 7"`` (JSONL, CSV), ``"record 3"`` (YAML and JSON lists, 1-based) or ``""`` for the whole file."""
    field: str
    """Dotted field name (``"tags.2"``), ``""`` when the problem is not about one field."""
    message: str

    def __str__(self) -> str:
        where = [self.file or "<unnamed>"]
        if self.record:
            where.append(self.record)
        if self.field:
            where.append(f"field '{self.field}'")
        return one_line(f"{', '.join(where)}: {self.message}")


def file_problem(file: str, message: str) -> BriefProblem:
    """A problem with the whole file."""
    return BriefProblem(file, "", "", message)


def kind_of(value: Any) -> str:
    """What a parsed value is, in words: "a list", "text", "a set"."""
    if value is None:
        return "nothing (an empty value)"
    names = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped, so a message stays one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


__all__ = ["BriefProblem", "file_problem", "kind_of", "one_line", "shorten"]
