"""Shortcodes and template tags of static-site generators, by family, in one table.

=============  ====================================================================================
family         what cleaning does with it
=============  ====================================================================================
``paired``     the tags go, the inner text stays (alerts, notes, tabs, details, blocks, ...)
``hidden``     the tags and everything between them go (Hugo ``comment``, Liquid ``comment``)
``fence``      becomes a fenced code block of its inner text, verbatim (``highlight``)
``literal``    its text is kept verbatim (Liquid ``raw``, Go ``raw "..."``)
``include``    Go ``present``'s ``code`` / ``play``: the referenced file's text (the named lines or
               regions) as a fenced block when the file is in the archive, else a placeholder
``void``       renders no prose of its own (links, media, variables, control flow): it goes
``unresolved`` its output cannot be known here (``param``, ``gist``, ``include``): a placeholder
=============  ====================================================================================

An unknown shortcode with a closing tag is ``paired``; any other unknown one is ``unresolved``. Every
placeholder, unresolved include and unknown name is also a warning of the article.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PAIRED = "paired"
HIDDEN = "hidden"
FENCE = "fence"
LITERAL = "literal"
INCLUDE = "include"
VOID = "void"
UNRESOLVED = "unresolved"

# Hugo shortcodes ({{< name >}} / {{% name %}}), by name (also the name's last path part: blocks/cover -> cover).
SHORTCODES: Mapping[str, str] = {
    "comment": HIDDEN,
    "highlight": FENCE,
    "code": FENCE,
    **dict.fromkeys(
        ("ref", "relref", "figure", "img", "image", "youtube", "vimeo", "tweet", "x", "instagram", "toc", "video"),
        VOID,
    ),
    **dict.fromkeys(("absurl", "relurl", "imgproc", "audio", "iframe", "blog/integration-badge", "badge"), VOID),
    **dict.fromkeys(("param", "gist", "readfile", "include", "version", "site-param"), UNRESOLVED),
    **dict.fromkeys(
        ("alert", "note", "notice", "tip", "warning", "caution", "important", "info", "hint", "callout"), PAIRED
    ),
    **dict.fromkeys(("details", "tab", "tabs", "tabpane", "admonition", "quote", "blockquote", "center"), PAIRED),
}

# Go templates ({{name ...}}): the Go blog's present-style directives, and variables / control flow.
ACTIONS: Mapping[str, str] = {
    "code": INCLUDE,
    "play": INCLUDE,
    "raw": LITERAL,
    **dict.fromkeys(("image", "video", "iframe", "donotprint", "newline"), VOID),
    **dict.fromkeys(("if", "else", "end", "range", "with", "define", "block", "template", "break", "continue"), VOID),
    "html": UNRESOLVED,
}

# Liquid tags ({% name %}); the closing tag of a block is "end" + its name.
LIQUID: Mapping[str, str] = {
    "highlight": FENCE,
    "comment": HIDDEN,
    "raw": LITERAL,
    **dict.fromkeys(("link", "post_url", "assign", "capture", "if", "unless", "for", "case", "when"), VOID),
    **dict.fromkeys(("else", "elsif", "increment", "decrement", "cycle", "seo", "feed_meta"), VOID),
    **dict.fromkeys(("include", "include_relative", "render", "gist", "youtube"), UNRESOLVED),
}


def shortcode_family(name: str, paired: bool) -> str:
    """The family of a Hugo shortcode; an unknown one is paired when it has a closing tag."""
    lowered = name.lower()
    family = SHORTCODES.get(lowered) or SHORTCODES.get(lowered.rsplit("/", 1)[-1])
    if family is None:
        return PAIRED if paired else UNRESOLVED
    if family == FENCE and not paired:
        return UNRESOLVED
    return family


def action_family(name: str, args: str) -> str:
    """The family of a Go template action or Liquid output (``{{ ... }}``)."""
    if name.startswith((".", "$")) or "|" in args or "." in name or not name:
        return VOID  # a variable or a filtered value: site.baseurl, .Site.Title, $x, page.url | relative_url
    return ACTIONS.get(name, UNRESOLVED)


def liquid_family(name: str) -> str:
    """The family of a Liquid tag (``{% name %}``); ``end...`` tags close blocks."""
    if name.startswith("end"):
        return VOID
    return LIQUID.get(name, UNRESOLVED)


_PLACEHOLDER_LINE = re.compile(r"^\[unresolved: .*\]$")


def placeholder(description: str) -> str:
    """The marked text left where a directive's output cannot be known."""
    return f"[unresolved: {' '.join(description.split())[:80]}]"


def is_placeholder_line(line: str) -> bool:
    """True for a line that is nothing but one :func:`placeholder` (a directive that stood on its own line)."""
    return _PLACEHOLDER_LINE.match(line.strip()) is not None
