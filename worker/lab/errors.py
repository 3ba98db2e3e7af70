"""The lab's errors (re-exported by :mod:`worker.lab.training` and :mod:`worker.lab.evaluation`, where they are
raised): a training run that cannot start, resume or finish; a version that cannot be evaluated."""

from __future__ import annotations

from worker.errors import CopydeskError


class TrainingError(CopydeskError):
    """A training run cannot start, resume or finish."""

    exit_code = 11


class EvaluationError(CopydeskError):
    """A style version cannot be evaluated (no version, no held-out material, unusable adapter)."""

    exit_code = 11
