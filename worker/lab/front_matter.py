"""Front matter of a blog post: YAML (``---``, no aliases), TOML (``+++``) or JSON (a leading ``{...}``)."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import yaml


class FrontMatterError(ValueError):
    """The front matter of one file cannot be read; the file is skipped with this reason."""


class FrontMatterLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases: a post's front matter never needs them, and they allow alias bombs."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.MarkedYAMLError(problem="YAML aliases are not allowed in front matter", problem_mark=None)
        return super().compose_node(parent, index)


def _between(lines: list[str], fence: str) -> tuple[str, str] | None:
    """Front matter between the first line (``fence``) and the next line equal to ``fence``."""
    for index in range(1, len(lines)):
        if lines[index].rstrip() == fence or (fence == "---" and lines[index].rstrip() == "..."):
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
    return None


def split_front_matter(text: str) -> tuple[str, dict[str, Any], str]:
    """``(format, front matter, body)`` of a post; the format is ``yaml``, ``toml``, ``json`` or ``none``."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    first = lines[0].rstrip() if lines else ""
    if first in ("---", "+++"):
        found = _between(lines, first)
        if found is None:
            raise FrontMatterError(f"front matter opened with {first} is never closed")
        raw, body = found
        if first == "---":
            try:
                data = yaml.load(raw, Loader=FrontMatterLoader)  # noqa: S506 - a SafeLoader subclass
            except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: an integer of 4300+ digits
                raise FrontMatterError(f"front matter is not valid YAML: {one_line(exc)}") from exc
            kind = "yaml"
        else:
            try:
                data = tomllib.loads(raw)
            except tomllib.TOMLDecodeError as exc:
                raise FrontMatterError(f"front matter is not valid TOML: {one_line(exc)}") from exc
            kind = "toml"
    elif text.lstrip().startswith("{"):
        stripped = text.lstrip()
        try:
            data, end = json.JSONDecoder().raw_decode(stripped)
        except json.JSONDecodeError as exc:
            raise FrontMatterError(f"front matter is not valid JSON: {one_line(exc)}") from exc
        body, kind = stripped[end:], "json"
    else:
        return "none", {}, text
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrontMatterError(f"front matter must be a mapping of fields, not {type(data).__name__}")
    return kind, data, body


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
