"""Metadata that survives real archives: authors however they are given, and a date with where it came from.

Authors come from ``author``, ``authors`` and ``by`` (a string, a list, or mappings with a ``name``); a
Markdown link gives its text (``[Ana Lima](https://...) (Company)`` -> ``Ana Lima``). Dates come from the
front matter (``date``, ``publishDate``, ... also loose ``YYYY-M-D``), else a ``path`` / ``url`` /
``permalink`` / ``slug`` field holding one, else the folder chain (``2023/03/06/``, ``2023-03-06-name/``),
else a dated file name; never from the file's modification time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from worker.lab.page_metadata import DATE_KEYS

AUTHOR_KEYS = ("author", "authors", "by")
PATH_KEYS = ("path", "url", "permalink", "slug")
_LOOSE_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?![\d])")
_PATH_DATE = re.compile(r"(?<!\d)(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?!\d)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_PARENTHESIS = re.compile(r"\s*\([^)]*\)\s*$")
_SEPARATORS = re.compile(r",|;|\s+&\s+|\s+and\s+")


def _valid(year: str, month: str, day: str) -> str | None:
    try:
        date = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    return date.isoformat() if 1990 <= date.year <= 2100 else None


def loose_date(value: Any) -> str | None:
    """An ISO date from a date, a datetime or a string starting ``YYYY-M-D``."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and (match := _LOOSE_DATE.match(value.strip())):
        return _valid(*match.groups())
    return None


def date_in_path(value: str) -> str | None:
    """The first ``YYYY/MM/DD`` or ``YYYY-MM-DD`` date inside a path, URL or name."""
    for match in _PATH_DATE.finditer(value):
        if date := _valid(*match.groups()):
            return date
    return None


def page_date_and_source(data: Mapping[str, Any], relative: str) -> tuple[str | None, str]:
    """``(date, where it came from)``: ``front matter <key>``, ``front matter <path key>``, ``folder``,
    ``file name``, or ``(None, "none")``."""
    for key in DATE_KEYS:
        if date := loose_date(data.get(key)):
            return date, f"front matter {key}"
    for key in PATH_KEYS:
        value = data.get(key)
        if isinstance(value, str) and (date := date_in_path(value)):
            return date, f"front matter {key}"
    parts = relative.split("/")
    if date := date_in_path("/".join(parts[:-1]) + "/"):
        return date, "folder"
    if date := date_in_path(parts[-1]):
        return date, "file name"
    return None, "none"


def _names(value: Any) -> Iterable[str]:
    if value is None or value is False:
        return
    if isinstance(value, Mapping):
        if value.get("name"):
            yield from _names(value["name"])
        return
    if isinstance(value, list | tuple):
        for item in value:
            yield from _names(item)
        return
    yield from _split(str(value))


def _split(text: str) -> Iterable[str]:
    """Names in one author string: Markdown links give their text; ``,`` ``;`` ``&`` ``and`` separate."""
    links = _LINK.findall(text)
    if links:
        yield from (" ".join(link.split()) for link in links)
        return
    for part in _SEPARATORS.split(text):
        name = " ".join(_PARENTHESIS.sub("", part).split())
        if name:
            yield name


def page_authors(data: Mapping[str, Any]) -> list[str]:
    """Every author named by ``author``, ``authors`` or ``by`` (also under Zola's ``taxonomies``), once each."""
    taxonomies = data.get("taxonomies") if isinstance(data.get("taxonomies"), Mapping) else {}
    found: dict[str, str] = {}
    for value in [data.get(key) for key in AUTHOR_KEYS] + [taxonomies.get("authors")]:
        for name in _names(value):
            found.setdefault(name.lower(), name[:80])
    return list(found.values())
