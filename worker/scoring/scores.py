"""One measurement (:class:`Score`) and the helpers every metric builds its score with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DIGITS = 4  # a score's value is rounded to this many decimals


@dataclass(frozen=True)
class Score:
    """One measurement: its value, the metric's own range, and whether it met the style's target."""

    name: str
    value: float
    low: float | None
    high: float | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "passed": self.passed,
            "detail": self.detail,
        }


def round_value(value: float) -> float:
    """``value`` rounded to :data:`DIGITS` decimals; 0.0 when it is not finite."""
    return round(float(value), DIGITS) if math.isfinite(value) else 0.0


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def in_range(name: str, value: float, bounds: tuple[float, float], low: float | None, high: float | None) -> Score:
    value = round_value(value)
    lo, hi = bounds
    if value < lo:
        where = "below"
    elif value > hi:
        where = "above"
    else:
        where = "within"
    detail = f"{_fmt(value)} {where} target {_fmt(lo)}..{_fmt(hi)}"
    return Score(name, value, low, high, where == "within", detail)


def informational(name: str, value: float, low: float | None, high: float | None, detail: str) -> Score:
    return Score(name, round_value(value), low, high, True, detail)
