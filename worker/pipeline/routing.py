"""Routing stage: choose a style for a brief from its metadata, and explain the choice.

Rules, in order:

1. A pinned style (``brief.style``) wins; an unknown or malformed pin is an error naming the known styles.
2. Otherwise every style scores the sum of the weights of its routing rules that match the brief
   (content type, category, audience, tone, and each tag; case-insensitive).
3. The highest score wins. Ties go to the higher ``routing.priority``, then to the alphabetically first name.
4. When no style scores above zero, the configured default style wins (``COPYDESK_DEFAULT_STYLE``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.errors import StyleError
from worker.intake.briefs import Brief
from worker.styles.catalog import Style, StyleCatalog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleMatch:
    """One routing rule that matched: which metadata field, which value, what weight it added."""

    field: str
    value: str
    weight: float


@dataclass(frozen=True)
class StyleScore:
    style: str
    score: float
    priority: int
    matches: tuple[RuleMatch, ...]


@dataclass(frozen=True)
class RouteDecision:
    """The chosen style, every style's score, and a one-line reason."""

    brief_id: str
    style: str
    reason: str
    scores: tuple[StyleScore, ...]


def score_style(brief: Brief, style: Style) -> StyleScore:
    """Sum of the weights of ``style``'s routing rules that match ``brief``."""
    rules = style.routing
    pairs = [
        ("content_type", str(brief.content_type), rules.content_types),
        ("category", brief.category, rules.categories),
        ("audience", brief.audience, rules.audiences),
        ("tone", brief.tone, rules.tones),
    ]
    pairs += [("tag", tag.lower(), rules.tags) for tag in brief.tags]
    matches = tuple(RuleMatch(field, value, table[value]) for field, value, table in pairs if value and value in table)
    return StyleScore(style.name, sum(m.weight for m in matches), rules.priority, matches)


def _ranking_key(score: StyleScore) -> tuple[float, int, str]:
    # Highest score first, then highest priority, then alphabetical name.
    return (-score.score, -score.priority, score.style)


def route(brief: Brief, catalog: StyleCatalog, default_style: str) -> RouteDecision:
    """Choose the style for ``brief``. Raises :class:`StyleError` for an unknown pinned style."""
    scores = tuple(sorted((score_style(brief, s) for s in catalog.styles.values()), key=_ranking_key))
    if brief.style is not None:
        catalog.check_pin(brief)
        return RouteDecision(brief.brief_id, brief.style, "pinned by the brief", scores)
    if not scores:
        raise StyleError("no usable styles; add styles/<name>/style.yaml")
    best = scores[0]
    if best.score <= 0:
        style = catalog.get(default_style).name
        return RouteDecision(brief.brief_id, style, "no routing rule matched: default style", scores)
    tied = [s for s in scores if s.score == best.score]
    reason = _explain(best, tied)
    logger.debug("brief %s routed to %s: %s", brief.brief_id, best.style, reason)
    return RouteDecision(brief.brief_id, best.style, reason, scores)


def _explain(best: StyleScore, tied: list[StyleScore]) -> str:
    matched = ", ".join(f"{m.field}={m.value} (+{m.weight:g})" for m in best.matches)
    reason = f"highest score {best.score:g}: {matched}"
    if len(tied) > 1:
        others = ", ".join(s.style for s in tied[1:])
        reason += f"; tie with {others} broken by priority {best.priority} then name"
    return reason
