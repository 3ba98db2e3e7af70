"""Comparing a style's adapter versions by what they wrote and what editors decided (``styles compare``).

Per version (``articles.adapter_version``; ``None`` is the base model), from the stored articles, revisions
and events only:

* ``articles``: articles of the style the version wrote;
* ``gate_pass_rate``: share of them whose pipeline draft (the latest ``generated`` or ``regenerated``
  revision) passed every gate;
* ``mean_attempts``: the pipeline's attempts per article (``provenance.attempts_used``);
* ``base_models``: the base model its articles were written on (``provenance.model.id``): a version serves on the
  base model it was trained on; the base model alone (``None``) gets one row per base model, since two base
  models' own drafts are not one thing to compare a version with;
* ``approvals``, ``rejections``, ``send_backs``: editors' decision events on them;
* ``decided`` and ``approved``: articles with at least one decision, and those now approved or published;
  ``approval_rate`` = approved / decided;
* ``mean_edit_distance``: over approved articles, the word-level Levenshtein distance between the pipeline
  draft and the approved text (0 when approved as drafted), and ``mean_edit_share`` that distance over the
  draft's words.

The difference between two versions' approval rates is tested with Fisher's exact test (two-sided, on the
2x2 table approved / not approved of the decided articles; :func:`fisher_exact`): exact for the small counts
a canary collects, where a z-test's normal approximation is poor.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from worker.results import ArticleStatus
from worker.store.schema import article_events, article_revisions, articles
from worker.workflow import EventKind

logger = logging.getLogger(__name__)

DRAFT_SOURCES = ("generated", "regenerated")
APPROVED = (ArticleStatus.APPROVED.value, ArticleStatus.PUBLISHED.value)
DECISIONS = {
    EventKind.APPROVED.value: "approvals",
    EventKind.REJECTED.value: "rejections",
    EventKind.SENT_BACK.value: "send_backs",
}


@dataclass
class VersionStats:
    """What one adapter version of a style wrote and what editors made of it."""

    version: str | None
    articles: int = 0
    gate_passed: int = 0
    attempts: int = 0
    approvals: int = 0
    rejections: int = 0
    send_backs: int = 0
    decided: int = 0
    approved: int = 0
    edit_distance_total: int = 0
    edit_share_total: float = 0.0
    base_models: list[str] = field(default_factory=list)

    @property
    def gate_pass_rate(self) -> float | None:
        return self.gate_passed / self.articles if self.articles else None

    @property
    def mean_attempts(self) -> float | None:
        return self.attempts / self.articles if self.articles else None

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def mean_edit_distance(self) -> float | None:
        return self.edit_distance_total / self.approved if self.approved else None

    @property
    def mean_edit_share(self) -> float | None:
        return self.edit_share_total / self.approved if self.approved else None

    def to_dict(self) -> dict[str, Any]:
        derived = ("gate_pass_rate", "mean_attempts", "approval_rate", "mean_edit_distance", "mean_edit_share")
        data = {key: value for key, value in asdict(self).items() if not key.endswith("_total")}
        return {**data, **{name: getattr(self, name) for name in derived}}


def word_edit_distance(before: str, after: str) -> int:
    """Levenshtein distance between two texts in words (insertions, deletions, substitutions of words)."""
    old, new = before.split(), after.split()
    if len(old) < len(new):
        old, new = new, old
    previous = list(range(len(new) + 1))
    for i, word in enumerate(old, 1):
        current = [i]
        for j, other in enumerate(new, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test on the 2x2 table ``[[a, b], [c, d]]``: the probability, with
    the margins fixed, of a table at most as likely as this one (the convention of R and SciPy)."""
    row1, col1, total = a + b, a + c, a + b + c + d
    if total == 0:
        return 1.0

    def probability(x: int) -> float:
        return math.comb(col1, x) * math.comb(total - col1, row1 - x) / math.comb(total, row1)

    observed = probability(a)
    low, high = max(0, row1 - (total - col1)), min(row1, col1)
    p = sum(q for x in range(low, high + 1) if (q := probability(x)) <= observed * (1 + 1e-7))
    return min(1.0, p)


def approval_test(first: VersionStats, second: VersionStats) -> dict[str, Any]:
    """Fisher's exact test of the two versions' approval rates (of decided articles)."""
    table = [
        [first.approved, first.decided - first.approved],
        [second.approved, second.decided - second.approved],
    ]
    return {
        "test": "Fisher's exact test, two-sided, approved vs not approved of decided articles",
        "versions": [first.version, second.version],
        "table": table,
        "p_value": fisher_exact(*table[0], *table[1]),
    }


def comparison_tests(stats: list[VersionStats], served: str | None, canary: str | None) -> list[dict[str, Any]]:
    """The canary against the served version when both wrote articles; else each version against the one
    before it (in version order)."""
    by_version = {s.version: s for s in stats}
    if canary is not None and served is not None and canary in by_version and served in by_version:
        return [approval_test(by_version[canary], by_version[served])]
    return [
        approval_test(second, first)
        for first, second in itertools.pairwise(stats)
        if second.version is not None  # two base-model rows (of two base models) are not versions to compare
    ]


class CanaryStoreMixin:
    """The compare query of :class:`worker.store.Store` (it provides ``_read``)."""

    _read: Any

    def compare_versions(self, style: str) -> list[VersionStats]:
        """Per adapter version of ``style`` (newest number last, the base model alone first, one row per
        base model), what it wrote and what
        editors decided about it; see the module docstring for each figure."""
        with self._read() as session:
            rows = session.execute(
                select(
                    articles.c.id,
                    articles.c.adapter_version,
                    articles.c.status,
                    articles.c.body_markdown,
                    articles.c.provenance,
                ).where(articles.c.style == style)
            ).all()
            drafts = self._drafts(session, style)
            decisions = self._decisions(session, style)
        stats: dict[tuple[str | None, str | None], VersionStats] = {}
        for row in rows:
            entry = stats.setdefault(_row_key(row), VersionStats(row.adapter_version))
            _add_article(entry, row, drafts.get(row.id), decisions.get(row.id, {}))
        return sorted(stats.values(), key=_version_order)

    @staticmethod
    def _drafts(session: Any, style: str) -> dict[str, tuple[str, list[str]]]:
        """Each article's latest pipeline draft: ``{article id: (text, failing gates)}``."""
        statement = (
            select(
                article_revisions.c.article_id,
                article_revisions.c.body_markdown,
                article_revisions.c.failing_gates,
            )
            .join(articles, articles.c.id == article_revisions.c.article_id)
            .where(articles.c.style == style, article_revisions.c.source.in_(DRAFT_SOURCES))
            .order_by(article_revisions.c.article_id, article_revisions.c.revision)
        )
        return {row.article_id: (row.body_markdown, list(row.failing_gates)) for row in session.execute(statement)}

    @staticmethod
    def _decisions(session: Any, style: str) -> dict[str, dict[str, int]]:
        """``{article id: {event kind: count}}`` of the editors' decisions on the style's articles."""
        statement = (
            select(article_events.c.article_id, article_events.c.kind, func.count())
            .join(articles, articles.c.id == article_events.c.article_id)
            .where(articles.c.style == style, article_events.c.kind.in_(list(DECISIONS)))
            .group_by(article_events.c.article_id, article_events.c.kind)
        )
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for article_id, kind, count in session.execute(statement):
            counts[article_id][kind] = int(count)
        return counts


def _add_article(entry: VersionStats, row: Any, draft: tuple[str, list[str]] | None, decisions: dict[str, int]) -> None:
    draft_text, failing = draft if draft is not None else (row.body_markdown, [])
    entry.articles += 1
    entry.gate_passed += not failing
    entry.attempts += int((row.provenance or {}).get("attempts_used") or 1)
    model = ((row.provenance or {}).get("model") or {}).get("id")
    if isinstance(model, str) and model not in entry.base_models:
        entry.base_models = sorted([*entry.base_models, model])
    for kind, name in DECISIONS.items():
        setattr(entry, name, getattr(entry, name) + decisions.get(kind, 0))
    entry.decided += bool(decisions)
    if row.status in APPROVED:
        entry.approved += 1
        distance = word_edit_distance(draft_text, row.body_markdown)
        entry.edit_distance_total += distance
        entry.edit_share_total += distance / max(1, len(draft_text.split()))


def _row_key(row: Any) -> tuple[str | None, str | None]:
    """An adapter version's articles are one row whatever base model wrote them (a version belongs to one base
    model); the base model alone is one row per base model (from the article's provenance)."""
    if row.adapter_version is not None:
        return row.adapter_version, None
    model = ((row.provenance or {}).get("model") or {}).get("id")
    return None, model if isinstance(model, str) else None


def _version_order(stats: VersionStats) -> tuple[int, int, list[str]]:
    version = stats.version
    number = (0, 0) if version is None or not version[1:].isdigit() else (1, int(version[1:]))
    return (*number, stats.base_models)


__all__ = [
    "CanaryStoreMixin",
    "VersionStats",
    "approval_test",
    "comparison_tests",
    "fisher_exact",
    "word_edit_distance",
]
