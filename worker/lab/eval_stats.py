"""The statistics of an evaluation: intervals for shares and distances, the paired change from the base model's
drafts to an adapter's, the Wilcoxon signed-rank test, and the verdict read from the intervals.

* a **share** (k of n drafts) gets a 95 % Wilson score interval;
* a **distance** (or any mean over drafts) gets a 95 % percentile bootstrap interval. The drafts are resampled
  by brief (a brief's drafts, one per seed, are drawn together: they share a title and are not independent),
  with a fixed RNG seed, so the same figures give the same interval on every machine;
* the **paired change** (adapter minus base, same brief and seed) gets its mean with a bootstrap interval, the
  counts of drafts that went up and down, and a two-sided Wilcoxon signed-rank test (zero differences dropped;
  exact below :data:`EXACT_WILCOXON_MAX` pairs without ties, else the normal approximation with the tie
  correction, no continuity correction: ``scipy.stats.wilcoxon``'s defaults);
* the **verdict** comes from the paired intervals, never from point values: a measure counts when its 95 %
  interval excludes no change and its Wilcoxon test agrees (p < 0.05), so that a handful of drafts, whose
  bootstrap interval is too narrow, cannot decide it: see :func:`verdict`.

Numpy and the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVEL = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5 % quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261203  # fixed: the same drafts give the same intervals on every machine and run
EXACT_WILCOXON_MAX = 50
ALPHA = 1 - LEVEL
MIN_GROUPS = 2  # a bootstrap over fewer groups (briefs) has no spread: no interval

MOVES = "the adapter moves the voice"
NO_EVIDENCE = "no evidence"
WORSE = "worse"

Interval = tuple[float, float]


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of a share ``successes / trials`` (``(0, 1)`` when there is no trial)."""
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials")
    if trials == 0:
        return (0.0, 1.0)
    share = successes / trials
    denominator = 1 + z**2 / trials
    centre = (share + z**2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2))
    return (max(0.0, centre - half), min(1.0, centre + half))


def resample_weights(
    groups: Sequence[Hashable], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """``(resamples, items)``: how often each item is drawn when whole groups are drawn with replacement.

    Every resample draws as many groups as there are, uniformly; an item's weight is how often its group was
    drawn. ``np.random.default_rng`` (PCG64) draws the same numbers on every platform.
    """
    names = list(dict.fromkeys(groups))
    index = {name: i for i, name in enumerate(names)}
    membership = np.array([index[group] for group in groups], dtype=np.int64)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(names), size=(resamples, len(names)))
    counts = np.stack([np.bincount(row, minlength=len(names)) for row in drawn])
    return counts[:, membership].astype(np.float64)


def percentile_interval(statistics: np.ndarray) -> Interval:
    """The central :data:`LEVEL` share of the bootstrap statistics (NaNs, from empty resamples, ignored)."""
    finite = statistics[np.isfinite(statistics)]
    if not len(finite):
        return (math.nan, math.nan)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return (float(low), float(high))


def mean_interval(values: Sequence[float], groups: Sequence[Hashable] | None = None) -> Interval:
    """Bootstrap interval of the mean of ``values`` (resampled by ``groups``; default: each value alone)."""
    data = np.asarray(values, dtype=np.float64)
    groups = groups if groups is not None else range(len(data))
    if len(set(groups)) < MIN_GROUPS:
        return (math.nan, math.nan)
    weights = resample_weights(groups)
    return percentile_interval(weights @ data / weights.sum(axis=1))


def weighted_interval(
    rows: np.ndarray, statistic: Callable[[np.ndarray], float], groups: Sequence[Hashable] | None = None
) -> Interval:
    """Bootstrap interval of ``statistic(weighted mean of rows)``: e.g. a distance of the drafts' mean vector."""
    groups = groups if groups is not None else range(len(rows))
    if len(set(groups)) < MIN_GROUPS:
        return (math.nan, math.nan)
    weights = resample_weights(groups)
    means = weights @ rows / weights.sum(axis=1, keepdims=True)
    return percentile_interval(np.array([statistic(mean) for mean in means]))


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Ranks 1..n of ``values`` (ties share their average rank) and the size of each group of ties."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ties: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        if end > start:
            ties.append(end - start + 1)
        start = end + 1
    return ranks, ties


def _exact_signed_rank_cdf(statistic: float, n: int) -> float:
    """P(W+ <= statistic) for ``n`` untied nonzero differences under the null (every sign equally likely)."""
    counts = [1] + [0] * (n * (n + 1) // 2)  # counts[w]: subsets of the ranks 1..n that sum to w
    for rank in range(1, n + 1):
        for total in range(len(counts) - 1, rank - 1, -1):
            counts[total] += counts[total - rank]
    return sum(counts[: math.floor(statistic) + 1]) / 2**n


def wilcoxon(differences: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test that the paired differences are centred on zero."""
    data = np.asarray(differences, dtype=np.float64)
    nonzero = data[data != 0]
    n = len(nonzero)
    if n == 0:
        return {"pairs": 0, "w_plus": 0.0, "w_minus": 0.0, "p_value": 1.0, "method": "no nonzero difference"}
    ranks, ties = average_ranks(np.abs(nonzero))
    w_plus, w_minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
    smaller = min(w_plus, w_minus)
    if n <= EXACT_WILCOXON_MAX and not ties:
        p_value, method = min(1.0, 2 * _exact_signed_rank_cdf(smaller, n)), "exact"
    else:
        mean = n * (n + 1) / 4
        variance = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
        z = (smaller - mean) / math.sqrt(variance) if variance > 0 else 0.0
        p_value, method = min(1.0, math.erfc(abs(z) / math.sqrt(2))), "normal approximation, tie-corrected"
    return {"pairs": n, "w_plus": w_plus, "w_minus": w_minus, "p_value": p_value, "method": method}


@dataclass(frozen=True)
class PairedChange:
    """Adapter minus base over paired drafts (same brief, same seed)."""

    mean: float
    interval: Interval
    median: float
    up: int
    down: int
    wilcoxon: dict[str, Any]

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {
            "mean": round(self.mean, digits),
            "interval": [round(bound, digits) for bound in self.interval],
            "median": round(self.median, digits),
            "up": self.up,
            "down": self.down,
            "wilcoxon": {**self.wilcoxon, "p_value": round(self.wilcoxon["p_value"], 6)},
        }


def paired_change(
    base: Sequence[float], adapter: Sequence[float], groups: Sequence[Hashable] | None = None
) -> PairedChange:
    """The per-draft change ``adapter - base``: its mean with a bootstrap interval, and the Wilcoxon test."""
    if len(base) != len(adapter):
        raise ValueError(f"{len(base)} base drafts against {len(adapter)} adapter drafts: not paired")
    differences = np.asarray(adapter, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if not len(differences):
        return PairedChange(math.nan, (math.nan, math.nan), math.nan, 0, 0, wilcoxon([]))
    return PairedChange(
        float(differences.mean()),
        mean_interval(differences, groups),
        float(np.median(differences)),
        int((differences > 0).sum()),
        int((differences < 0).sum()),
        wilcoxon(differences),
    )


def direction(interval: Sequence[float], higher_is_better: bool, p_value: float = 0.0) -> int:
    """+1 when the whole interval lies on the better side of zero, -1 on the worse side, 0 when it holds zero,
    when there is no interval, or when the paired test does not reject no change (``p_value >= ALPHA``)."""
    low, high = interval
    if math.isnan(low) or math.isnan(high) or p_value >= ALPHA:
        return 0
    if low > 0:
        return 1 if higher_is_better else -1
    if high < 0:
        return -1 if higher_is_better else 1
    return 0


@dataclass(frozen=True)
class Evidence:
    """One paired measure for the verdict: its name, the interval of its change, which way is better, and the
    paired test's p-value."""

    name: str
    interval: Sequence[float]
    higher_is_better: bool
    p_value: float

    @property
    def direction(self) -> int:
        return direction(self.interval, self.higher_is_better, self.p_value)


def verdict(evidence: Sequence[Evidence]) -> dict[str, str]:
    """The verdict on an adapter, from the intervals of its paired changes against the base model.

    A measure shows a change when its interval lies wholly on one side of zero and its test has p < 0.05.

    * :data:`MOVES` when at least one measure shows a change for the better and none for the worse;
    * :data:`WORSE` when at least one shows a change for the worse and none for the better;
    * :data:`NO_EVIDENCE` when none shows a change, or when the measures contradict each other.
    """
    better = [e.name for e in evidence if e.direction > 0]
    worse = [e.name for e in evidence if e.direction < 0]
    if better and worse:
        return {
            "verdict": NO_EVIDENCE,
            "reason": f"the measures disagree: better in {', '.join(better)}, worse in {', '.join(worse)}",
        }
    if better:
        return {
            "verdict": MOVES,
            "reason": f"95 % interval on the better side of no change, Wilcoxon p < 0.05: {', '.join(better)}",
        }
    if worse:
        return {
            "verdict": WORSE,
            "reason": f"95 % interval on the worse side of no change, Wilcoxon p < 0.05: {', '.join(worse)}",
        }
    names = ", ".join(e.name for e in evidence) or "no paired measure"
    return {"verdict": NO_EVIDENCE, "reason": f"no measure excludes no change ({names})"}
