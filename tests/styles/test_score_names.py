"""The one table of score names: the scorecard writes exactly its rows, styles may gate only on its gates."""

from __future__ import annotations

from worker.intake.briefs import Brief
from worker.scoring.scorecard import INFORMATIONAL, DraftToScore, score_drafts
from worker.styles.catalog import StyleRules, Targets
from worker.styles.score_names import ALWAYS_GATED, FAILS_EMPTY, GATE_NAMES, SCORE_NAMES, SCORES


def test_names_are_unique_and_the_lists_follow_the_table() -> None:
    assert len(set(SCORE_NAMES)) == len(SCORES)
    assert [name for name in SCORE_NAMES if name in GATE_NAMES] == list(GATE_NAMES)
    assert set(ALWAYS_GATED) <= set(GATE_NAMES)
    assert set(GATE_NAMES) >= FAILS_EMPTY
    assert {"gunning_fog", "smog"} == INFORMATIONAL
    assert ALWAYS_GATED == ("memorisation",)
    assert "memorisation" not in FAILS_EMPTY  # an empty draft copies nothing


def test_the_scorecard_writes_one_score_per_row_in_table_order() -> None:
    brief = Brief(title="Test", content_type="explainer", target_words=20)
    (card,) = score_drafts(
        [DraftToScore("# T\n\nSome words here.", brief, Targets(), StyleRules())], language="en", embedder=None
    )
    assert tuple(card.scores) == SCORE_NAMES


def test_an_empty_draft_fails_exactly_the_gates_marked_fails_empty() -> None:
    brief = Brief(title="Test", content_type="explainer", target_words=20, keywords=["word"])
    (card,) = score_drafts(
        [DraftToScore("# Title only\n", brief, Targets(), StyleRules())], language="en", embedder=None
    )
    assert {name for name, score in card.scores.items() if not score.passed} == FAILS_EMPTY
