"""Selection stage: pick the best candidate that passes the style's gates, or say why none did.

Candidates that pass every gate rank first; among them (and among failures, when none passes) the higher
:attr:`Scorecard.quality` wins, then fewer failing gates, then the earlier candidate (stable). When no
candidate passes, the pipeline regenerates with adjusted settings, up to ``max_attempts`` rounds; after that
the best candidate is stored as ``needs_attention`` with its failing gates listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from worker.engine.sampling import RowSettings
from worker.scoring.scorecard import Scorecard


@dataclass(frozen=True)
class Scored:
    """A cleaned candidate with its scorecard and the gates it failed."""

    attempt: int
    index: int
    markdown: str
    scorecard: Scorecard
    failing_gates: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failing_gates


def rank_key(candidate: Scored) -> tuple[bool, float, int, int, int]:
    return (
        not candidate.passed,
        -candidate.scorecard.quality,
        len(candidate.failing_gates),
        candidate.attempt,
        candidate.index,
    )


def best_candidate(candidates: Sequence[Scored]) -> Scored:
    """The best of ``candidates`` (passing first, then by quality); ``candidates`` must not be empty."""
    if not candidates:
        raise ValueError("best_candidate needs at least one candidate")
    return min(candidates, key=rank_key)


def passing_candidate(candidates: Sequence[Scored]) -> Scored | None:
    """The best candidate that passes every gate, or ``None``."""
    passing = [c for c in candidates if c.passed]
    return best_candidate(passing) if passing else None


def adjust_for_retry(settings: RowSettings, attempt: int, failing: Sequence[str]) -> RowSettings:
    """Settings for the next attempt: cooler sampling, and a stronger repetition penalty when it failed."""
    # The bounds only stop a retry from going further; they never raise a cooler temperature (0 = greedy)
    # or lower a stronger penalty that the style itself asks for.
    temperature = max(min(0.3, settings.temperature), settings.temperature - 0.15 * (attempt - 1))
    penalty = settings.repetition_penalty
    if "repetition" in failing:
        penalty = max(penalty, min(1.5, penalty + 0.1 * (attempt - 1)))
    return replace(settings, temperature=round(temperature, 3), repetition_penalty=round(penalty, 3))
