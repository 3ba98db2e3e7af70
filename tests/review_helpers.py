"""Builders shared by the review, export and feedback tests: briefs and hand-made article results.

Articles are created through :meth:`Store.add_brief` and :meth:`Store.save_article` with
:class:`ArticleResult` objects made here (no model involved). Their scores are real scorecards of the
shipped ``plain-howto`` style, so that rescoring and style-rule checks see the same kind of data.
"""

from __future__ import annotations

from typing import Any

from worker.config import PROJECT_ROOT
from worker.intake.briefs import Brief
from worker.results import ArticleResult, ArticleStatus, CandidateResult
from worker.scoring.scorecard import DraftToScore, score_drafts
from worker.store import ArticleRecord, Store
from worker.styles.catalog import StyleCatalog

STYLE = "plain-howto"

GOOD_BODY = """# How to repot a houseplant

Repotting gives a crowded plant room to grow. It takes ten minutes and a little care.

## What you need

- a pot one size larger
- fresh potting soil
- a watering can

## Steps

1. Water the plant the day before.
2. Tip the pot and slide the plant out.
3. Loosen the roots with your fingers.
4. Set the plant in the new pot and add soil around it.
5. Water it well and let it drain.

## Tips

Keep the plant out of strong sun for a week while it settles.
"""

SHORT_BODY = """# Composting at home

We utilize a bin.
"""


def make_brief(n: int | str, **fields: Any) -> Brief:
    values: dict[str, Any] = {
        "id": f"rev-{n}",
        "title": f"How to repot houseplant number {n}",
        "content_type": "how-to",
        "category": "home",
        "tags": ["plants", "diy"],
        "keywords": ["pot", "soil"],
        "target_words": 120,
    }
    values.update(fields)
    return Brief(**values)


def scored_result(
    brief: Brief, body: str = GOOD_BODY, *, candidates: list[CandidateResult] | None = None
) -> ArticleResult:
    """An :class:`ArticleResult` for ``body`` with its real ``plain-howto`` scorecard and failing gates."""
    style = StyleCatalog.load(PROJECT_ROOT / "styles").get(STYLE)
    (card,) = score_drafts([DraftToScore(body, brief, style.targets, style.rules)], language="en", embedder=None)
    failing = card.failing(style.gates)
    title = next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), brief.title)
    return ArticleResult(
        brief_id=brief.brief_id,
        status=ArticleStatus.NEEDS_ATTENTION if failing else ArticleStatus.NEEDS_REVIEW,
        title=title,
        body_markdown=body,
        style=STYLE,
        adapter_version=None,
        scores=card.to_dict(),
        failing_gates=failing,
        provenance={"model": {"id": "hand-made", "dtype": "float32", "device": "cpu"}, "seed": 11, "attempt": 1},
        candidates=candidates if candidates is not None else [candidate(1, 0, body)],
        quality=card.quality,
    )


def candidate(attempt: int, index: int, text: str = "draft", *, selected: bool = True) -> CandidateResult:
    return CandidateResult(
        attempt=attempt,
        index=index,
        text=text,
        scores={},
        failing_gates=[],
        passed=True,
        selected=selected,
        seed=100 + attempt * 10 + index,
        new_tokens=42,
        generation_seconds=0.5,
    )


def add_article(store: Store, n: int | str, body: str = GOOD_BODY, **brief_fields: Any) -> ArticleRecord:
    """Add brief ``rev-<n>`` and save a hand-made article for it."""
    brief = make_brief(n, **brief_fields)
    store.add_brief(brief, source="test")
    return store.save_article(scored_result(brief, body))


def edit_article(store: Store, key: str, body: str, *, actor: str = "ed", revision: int = 1, **extra: Any) -> Any:
    """An editor replaces revision ``revision`` of article ``key`` (an article or brief id) with ``body``, scored
    as the CLI scores an edit."""
    brief = store.get_brief(store.get_article(key).brief_id).brief
    result = scored_result(brief, body)
    return store.edit_article(
        key,
        actor=actor,
        title=result.title,
        body_markdown=body,
        scores=result.scores,
        failing_gates=result.failing_gates,
        expected_revision=revision,
        **extra,
    )
