"""The scores a draft gets, in one table: each score's name, whether a style may gate on it, and more.

The scoring stage (:mod:`worker.scoring.scorecard`) writes one score per row, in this order; a style's
``gates`` (:mod:`worker.styles.catalog`) may name only the rows marked ``gate``. The table lives here, below
both, because a style file is validated without loading the scorers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreName:
    """One score of the scorecard."""

    name: str
    gate: bool  # a style may list it under ``gates``; otherwise informational (always passes)
    always_gated: bool = False  # enforced for every style, listed in its gates or not
    fails_empty: bool = True  # a draft without prose fails this gate (for a gate; nothing to copy: memorisation)


SCORES = (
    ScoreName("readability", gate=True),
    ScoreName("grade", gate=True),
    ScoreName("gunning_fog", gate=False),
    ScoreName("smog", gate=False),
    ScoreName("sentiment", gate=True),
    ScoreName("formality", gate=True),
    ScoreName("structure", gate=True),
    ScoreName("length", gate=True),
    ScoreName("repetition", gate=True),
    ScoreName("keywords", gate=True),
    ScoreName("on_topic", gate=True),
    ScoreName("style_rules", gate=True),
    ScoreName("memorisation", gate=True, always_gated=True, fails_empty=False),
)
SCORE_NAMES = tuple(score.name for score in SCORES)
GATE_NAMES = tuple(score.name for score in SCORES if score.gate)
ALWAYS_GATED = tuple(score.name for score in SCORES if score.always_gated)
FAILS_EMPTY = frozenset(score.name for score in SCORES if score.gate and score.fails_empty)
