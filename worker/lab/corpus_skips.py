"""Skips judged from a page's cleaned body: redirect stubs, cross-post stubs and near-empty pages.

``aliases`` / ``redirect_from`` (old URLs, which most pages of a migrated site carry) never make a page a
redirect on their own: with them, only an empty body does (explicit redirect fields are judged before the
body, by :func:`worker.lab.page_metadata.skip_reason`). A cross-post stub is a short body that points to the
real article elsewhere: a ``canonical_url`` field, or external links making most of its text. ``min_words``
counts the body, never a title line added from the metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markdown_it import MarkdownIt

CROSS_POST_WORDS = 150
CANONICAL_KEYS = ("canonical_url", "canonicalURL", "canonical", "canonical_link", "crosspost_url", "original_url")
_PARSER = MarkdownIt("commonmark")


def _nested(data: Mapping[str, Any], key: str) -> Any:
    if data.get(key):
        return data[key]
    params = data.get("params") if isinstance(data.get("params"), Mapping) else data.get("extra")
    return params.get(key) if isinstance(params, Mapping) else None


def external_link_words(text: str) -> int:
    """Words inside links to other sites (``http(s)://``), and bare URLs, from a Markdown parse."""
    count = 0
    for token in _PARSER.parse(text):
        inside = False
        for child in token.children or []:
            if child.type == "link_open":
                inside = str(child.attrGet("href") or "").startswith(("http://", "https://"))
            elif child.type == "link_close":
                inside = False
            elif child.type == "text" and (inside or "://" in child.content):
                count += len(child.content.split()) if inside else child.content.count("://")
    return count


def cross_post(data: Mapping[str, Any], text: str, count: int) -> str | None:
    """Why a short page is a cross-post stub, or None."""
    if count >= CROSS_POST_WORDS:
        return None
    for key in CANONICAL_KEYS:
        if value := _nested(data, key):
            return f"cross-post stub ({key}: {' '.join(str(value).split())[:80]}, {count} words)"
    linked = external_link_words(text)
    if count and linked * 2 >= count:
        return f"cross-post stub (external links are {linked} of its {count} words)"
    return None


def page_skip_reason(data: Mapping[str, Any], text: str, count: int, min_words: int) -> str | None:
    """Why a page is not an article, judged from its cleaned body (``count`` words, no added title)."""
    if count == 0 and (data.get("aliases") or data.get("redirect_from")):
        return "redirect stub (aliases and an empty body)"
    if reason := cross_post(data, text, count):
        return reason
    if count < min_words:
        return f"near-empty page ({count} words, fewer than {min_words})"
    return None
