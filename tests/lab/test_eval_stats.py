"""Tests of :mod:`worker.lab.eval_stats` against hand-computed values: the Wilson interval, the bootstrap
(grouped, seeded), the Wilcoxon signed-rank test (exact and tie-corrected normal), the paired change, and the
verdict on synthetic paired drafts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.lab.eval_stats import (
    MOVES,
    NO_EVIDENCE,
    WORSE,
    Evidence,
    average_ranks,
    direction,
    mean_interval,
    paired_change,
    percentile_interval,
    resample_weights,
    verdict,
    weighted_interval,
    wilcoxon,
    wilson_interval,
)

Z2 = 1.959963984540054**2

# ------------------------------------------------------------------------------------------- Wilson


def test_wilson_interval_of_none_all_and_half() -> None:
    # 0 of n: the lower bound is 0 and the upper (z²/n) / (1 + z²/n); 0/24 -> 0.1380.
    low, high = wilson_interval(0, 24)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx((Z2 / 24) / (1 + Z2 / 24)) and high == pytest.approx(0.13798, abs=1e-5)
    assert wilson_interval(24, 24) == pytest.approx((1 - high, 1.0))  # mirrored
    low, high = wilson_interval(12, 24)  # symmetric about one half
    assert low + high == pytest.approx(1.0) and low == pytest.approx(0.31427, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_wilson_interval_by_hand() -> None:
    # 21 of 24: p = 0.875, centre (0.875 + z²/48) / (1 + z²/24), half z / (1 + z²/24) * sqrt(p q / 24 + z² / 2304)
    p, n = 0.875, 24
    centre = (p + Z2 / (2 * n)) / (1 + Z2 / n)
    half = math.sqrt(Z2) / (1 + Z2 / n) * math.sqrt(p * (1 - p) / n + Z2 / (4 * n * n))
    assert wilson_interval(21, 24) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(21, 24) == pytest.approx((0.68996, 0.95656), abs=1e-5)
    # Larger samples give narrower intervals around the same share.
    narrow = wilson_interval(126, 144)
    assert narrow[0] > 0.68996 and narrow[1] < 0.95656


# ------------------------------------------------------------------------------------------- bootstrap


def test_resample_weights_draw_whole_groups_with_a_fixed_seed() -> None:
    groups = ["a", "a", "b", "b", "c", "c"]
    weights = resample_weights(groups, resamples=500)
    assert weights.shape == (500, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 4] == weights[:, 5]).all()  # a brief's seeds
    assert (weights.sum(axis=1) == 6).all()  # three groups of two drawn each time
    assert (weights[:, 0] != weights[:, 2]).any()
    assert np.array_equal(weights, resample_weights(groups, resamples=500))  # seeded: the same every call
    assert not np.array_equal(weights, resample_weights(groups, resamples=500, seed=1))


def test_percentile_interval_by_hand() -> None:
    # numpy's linear quantiles of 1..1000: position 0.025 * 999 = 24.975 -> 25.975; 0.975 * 999 -> 975.025
    assert percentile_interval(np.arange(1, 1001, dtype=float)) == pytest.approx((25.975, 975.025))
    assert percentile_interval(np.array([np.nan, 2.0, 2.0])) == (2.0, 2.0)
    assert all(math.isnan(b) for b in percentile_interval(np.array([np.nan])))


def test_mean_interval_holds_the_mean_and_has_the_expected_width() -> None:
    assert mean_interval([3.0] * 10) == pytest.approx((3.0, 3.0))
    values = np.arange(100, dtype=float)  # sd 28.87: a 95 % interval of the mean about 2 * 1.96 * 2.887 = 11.3 wide
    low, high = mean_interval(values)
    assert low < 49.5 < high and 9 < high - low < 14
    assert mean_interval(values) == (low, high)  # deterministic
    # Drawn by pairs of identical values the spread of the mean is the same as by single values of half as many:
    # wider than the ungrouped interval that pretends the copies are independent.
    doubled = np.repeat(values, 2)
    grouped = mean_interval(doubled, groups=np.repeat(np.arange(100), 2).tolist())
    ungrouped = mean_interval(doubled)
    assert grouped[1] - grouped[0] > 1.2 * (ungrouped[1] - ungrouped[0])
    assert all(math.isnan(b) for b in mean_interval([]))


def test_weighted_interval_of_a_statistic_of_the_mean_vector() -> None:
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    low, high = weighted_interval(rows, lambda mean: float(mean[0]))
    assert low < 1.0 < high and low >= 0.0 and high <= 2.0  # the first column's mean is 1.0
    assert weighted_interval(np.ones((5, 3)), lambda mean: float(mean.sum())) == pytest.approx((3.0, 3.0))


# ------------------------------------------------------------------------------------------- Wilcoxon


def test_average_ranks_share_ties() -> None:
    ranks, ties = average_ranks(np.array([1.0, 1.0, 2.0, 2.0, 3.0]))
    assert ranks.tolist() == [1.5, 1.5, 3.5, 3.5, 5.0] and ties == [2, 2]


def test_wilcoxon_exact_by_hand() -> None:
    # Three positive differences: W- = 0, P(W <= 0) = 1/8, two-sided 0.25.
    assert wilcoxon([1, 2, 3]) == {"pairs": 3, "w_plus": 6.0, "w_minus": 0.0, "p_value": 0.25, "method": "exact"}
    # Ranks 1..8, W- = 3 (ranks 1 and 2: -0.1, -0.2): subsets of 1..8 summing to <= 3 are {}, {1}, {2}, {3},
    # {1, 2}: 5 of 256, two-sided 10/256.
    result = wilcoxon([0.5, -0.2, 0.3, 0.9, -0.1, 0.4, 0.7, 0.25])
    assert (result["w_plus"], result["w_minus"]) == (33.0, 3.0)
    assert result["p_value"] == pytest.approx(10 / 256) and result["method"] == "exact"
    assert wilcoxon([-1, -2, -3])["p_value"] == 0.25  # symmetric


def test_wilcoxon_normal_approximation_with_ties_and_zeros() -> None:
    # Zero dropped; |d| = 1, 1, 2, 2, 3 -> ranks 1.5, 1.5, 3.5, 3.5, 5; W+ = 13.5, W- = 1.5; n = 5.
    # mean n(n+1)/4 = 7.5; variance n(n+1)(2n+1)/24 - sum(t^3 - t)/48 = 13.75 - 12/48 = 13.5;
    # z = (1.5 - 7.5) / sqrt(13.5) = -1.63299; p = erfc(1.63299 / sqrt 2) = 0.10247.
    result = wilcoxon([1, -1, 2, 2, 3, 0])
    assert result["pairs"] == 5 and (result["w_plus"], result["w_minus"]) == (13.5, 1.5)
    assert result["p_value"] == pytest.approx(math.erfc(6 / math.sqrt(13.5) / math.sqrt(2)))
    assert result["p_value"] == pytest.approx(0.10247, abs=1e-5)
    assert result["method"].startswith("normal approximation")
    # scipy 1.17.1, stats.wilcoxon(d, method="approx") on the same 14 differences: 0.021424139983881464.
    d = [0.3, -0.3, 0.1, 0.1, 0.1, 0.5, -0.2, 0.4, 0.4, 0.6, 0.2, -0.1, 0.7, 0.3]
    assert wilcoxon(d)["p_value"] == pytest.approx(0.021424139983881464, rel=1e-9)
    assert wilcoxon([0, 0, 0]) == {
        "pairs": 0,
        "w_plus": 0.0,
        "w_minus": 0.0,
        "p_value": 1.0,
        "method": "no nonzero difference",
    }


def test_wilcoxon_large_samples_use_the_normal_approximation() -> None:
    # 60 untied differences, all positive: exact would be 2 / 2^60; the normal approximation gives z = -6.70.
    result = wilcoxon(np.arange(1, 61, dtype=float))
    assert result["method"].startswith("normal") and result["p_value"] < 1e-9
    n = 60
    z = (0 - n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    assert result["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


# ------------------------------------------------------------------------------------------- paired change


def test_paired_change_is_adapter_minus_base() -> None:
    change = paired_change([0.1, 0.2, 0.3], [0.4, 0.2, 0.9])  # differences 0.3, 0, 0.6
    assert change.mean == pytest.approx(0.3) and change.median == pytest.approx(0.3)
    assert (change.up, change.down) == (2, 0) and change.wilcoxon["pairs"] == 2
    assert change.interval[0] <= change.mean <= change.interval[1]
    record = change.as_dict()
    assert record["mean"] == 0.3 and record["up"] == 2 and len(record["interval"]) == 2
    with pytest.raises(ValueError, match="not paired"):
        paired_change([0.1], [0.2, 0.3])


# ------------------------------------------------------------------------------------------- verdict


def _drafts(effect: float, noise: float, seed: int, briefs: int = 72, seeds: int = 2) -> tuple[list, list, list]:
    """Synthetic paired per-draft values: base, adapter = base + effect + noise, and the brief of each. The noise
    is antithetic (each draw also negated), so the mean change is exactly ``effect``."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, briefs * seeds)
    draws = rng.normal(0, noise, briefs * seeds // 2)
    adapter = base + effect + rng.permutation(np.concatenate([draws, -draws]))
    groups = [f"b{i}" for i in range(briefs) for _ in range(seeds)]
    return base.tolist(), adapter.tolist(), groups


def _evidence(probability_effect: float, distance_effect: float, seed: int = 0) -> list[Evidence]:
    base_p, adapter_p, groups = _drafts(probability_effect, 0.15, seed)
    base_d, adapter_d, _ = _drafts(distance_effect, 0.5, seed + 1)
    probability = paired_change(base_p, adapter_p, groups)
    distance = paired_change(base_d, adapter_d, groups)
    return [
        Evidence("P(style)", probability.interval, True, probability.wilcoxon["p_value"]),
        Evidence("profile distance", distance.interval, False, distance.wilcoxon["p_value"]),
    ]


def test_direction_reads_only_the_interval() -> None:
    assert direction((0.01, 0.3), higher_is_better=True) == 1
    assert direction((0.01, 0.3), higher_is_better=False) == -1
    assert direction((-0.3, -0.01), higher_is_better=False) == 1
    assert direction((-0.01, 0.3), higher_is_better=True) == 0  # the point value is positive; the interval holds 0
    assert direction((math.nan, math.nan), higher_is_better=True) == 0
    assert direction((0.01, 0.3), higher_is_better=True, p_value=0.2) == 0  # the paired test must agree


def test_verdict_on_synthetic_drafts() -> None:
    moves = verdict(_evidence(0.2, -1.0))
    assert moves["verdict"] == MOVES and "P(style)" in moves["reason"] and "profile distance" in moves["reason"]
    assert verdict(_evidence(0.2, 0.0))["verdict"] == MOVES  # one measure suffices when the other holds zero
    nothing = verdict(_evidence(0.0, 0.0, seed=4))
    assert nothing["verdict"] == NO_EVIDENCE and "no measure excludes no change" in nothing["reason"]
    worse = verdict(_evidence(-0.2, 1.0))
    assert worse["verdict"] == WORSE and "worse side" in worse["reason"]
    mixed = verdict(_evidence(0.2, 1.0))
    assert mixed["verdict"] == NO_EVIDENCE and "disagree" in mixed["reason"]
    assert verdict([])["verdict"] == NO_EVIDENCE


def test_a_small_effect_needs_enough_drafts() -> None:
    # The same small shift in P(style): with 4 briefs x 1 seed the interval holds zero, with 72 x 2 it does not.
    rng = np.random.default_rng(7)
    base = rng.uniform(0.3, 0.7, 144)
    adapter = base + 0.05 + rng.normal(0, 0.1, 144)
    few = paired_change(base[:4], adapter[:4])
    many = paired_change(base, adapter, [f"b{i // 2}" for i in range(144)])
    assert verdict([Evidence("P(style)", few.interval, True, few.wilcoxon["p_value"])])["verdict"] == NO_EVIDENCE
    assert verdict([Evidence("P(style)", many.interval, True, many.wilcoxon["p_value"])])["verdict"] == MOVES
    # Three drafts that all go up: the bootstrap interval excludes zero, but three pairs cannot reject no change.
    three = paired_change([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert three.interval[0] > 0 and three.wilcoxon["p_value"] == 0.25
    assert verdict([Evidence("P(style)", three.interval, True, three.wilcoxon["p_value"])])["verdict"] == NO_EVIDENCE
    one = paired_change([0.1], [0.5])  # one brief: no interval at all
    assert all(math.isnan(bound) for bound in one.interval)
