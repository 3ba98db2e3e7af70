"""Unit tests of :mod:`worker.engine.prefix_sharing`: which rows share a prefix, where the forward starts."""

from __future__ import annotations

import pytest

from worker.engine.prefix_sharing import PrefixPlan, common_length, distinct_rows, plan_prefixes

SYSTEM = list(range(100, 140))  # 40 tokens every prompt of a style begins with
PASS_COST = 32  # the examples are small: a smaller fixed cost per pass than the default's CPU calibration


def plan_prefixes_small(tokens: list[list[int]], names: list[str]) -> PrefixPlan | None:
    return plan_prefixes(tokens, names, pass_cost=PASS_COST)


def covered(plan: PrefixPlan, tokens: list[list[int]]) -> None:
    """Every row's columns before ``plan.start`` come from one prefix that really is the start of that row."""
    for row, row_tokens in enumerate(tokens):
        needed = plan.start - plan.begin(len(row_tokens))
        owners = [p for p in plan.prefixes if row in p.rows]
        assert len(owners) <= 1, row
        if needed > 0:
            (prefix,) = owners
            assert needed <= len(prefix.tokens) and needed < len(row_tokens)  # a row keeps a token for the batch
            assert list(prefix.tokens) == row_tokens[: len(prefix.tokens)]
        else:
            assert not owners


def test_common_length() -> None:
    assert common_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_length([1, 2], [1, 2, 3]) == 2
    assert common_length([], [1]) == 0


def test_rows_of_one_adapter_share_their_common_prefix() -> None:
    tokens = [[*SYSTEM, 1, 2, 3], [*SYSTEM, 4, 5], [*SYSTEM, 6, 7, 8, 9]]
    plan = plan_prefixes_small(tokens, ["a", "a", "a"])
    assert plan is not None
    (prefix,) = plan.prefixes
    assert prefix.name == "a" and set(prefix.rows) == {0, 1, 2} and list(prefix.tokens) == SYSTEM
    assert (plan.width, plan.start) == (44, 40)  # the widest row's own 4 tokens set the window
    assert plan.cost == 3 * 4 + 40 + PASS_COST < 3 * 44
    covered(plan, tokens)


def test_a_batch_padded_beyond_its_longest_row_keeps_the_window_and_moves_the_columns() -> None:
    tokens = [[*SYSTEM, 1, 2, 3], [*SYSTEM, 4, 5], [*SYSTEM, 6, 7, 8, 9]]
    plan = plan_prefixes(tokens, ["a", "a", "a"], pass_cost=PASS_COST, width=64)  # padded to a multiple of 64
    assert plan is not None
    assert (plan.width, plan.start) == (64, 60)  # the same 4-column window, at the batch's right edge
    assert plan.begin(len(tokens[1])) == 64 - 42
    covered(plan, tokens)
    with pytest.raises(ValueError, match="40 columns wide"):
        plan_prefixes(tokens, ["a", "a", "a"], width=40)


def test_identical_prompts_share_all_but_their_last_token() -> None:
    tokens = [[*SYSTEM, 7, 8], [*SYSTEM, 7, 8]]  # the two candidates of one brief
    plan = plan_prefixes_small(tokens, ["a", "a"])
    assert plan is not None and plan.start == 41
    assert list(plan.prefixes[0].tokens) == [*SYSTEM, 7]
    covered(plan, tokens)


def test_other_adapters_do_not_share_and_a_lone_long_row_gets_a_pass_of_its_own() -> None:
    tokens = [[*SYSTEM, *SYSTEM, 1, 2], [*SYSTEM, *SYSTEM, 3, 4], [*SYSTEM, *SYSTEM, 5, 6]]
    plan = plan_prefixes_small(tokens, ["a", "a", "b"])
    assert plan is not None and plan.start == 80
    assert {(p.name, tuple(sorted(p.rows))) for p in plan.prefixes} == {("a", (0, 1)), ("b", (2,))}
    covered(plan, tokens)
    assert plan_prefixes_small(tokens[:2], ["a", "b"]) is None  # nothing shared: one pass per row is no saving
    assert (
        plan_prefixes_small([[*SYSTEM, 1, 2], [*SYSTEM, 3, 4], [*SYSTEM, 5, 6]], ["a", "a", "b"]) is None
    )  # too short


def test_rows_are_grouped_by_their_longest_common_runs_not_by_batch_order() -> None:
    how_to, explainer = [1] * 80, [2] * 80
    tokens = [SYSTEM + how_to + [9], SYSTEM + explainer + [8], SYSTEM + how_to + [7], SYSTEM + explainer + [6]]
    plan = plan_prefixes_small(tokens, ["a"] * 4)
    assert plan is not None
    assert {tuple(sorted(p.rows)) for p in plan.prefixes} == {(0, 2), (1, 3)}
    assert plan.start == 120
    covered(plan, tokens)


def test_a_short_row_inside_the_window_needs_no_prefix() -> None:
    tokens = [SYSTEM + list(range(10)), SYSTEM + list(range(10, 20)), [5, 6, 7]]
    plan = plan_prefixes_small(tokens, ["a", "a", "a"])
    assert plan is not None and plan.start == 40
    assert [p.rows for p in plan.prefixes] == [(0, 1)]
    covered(plan, tokens)


def test_mixed_batches_cover_every_row() -> None:
    import random

    generator = random.Random(3)
    for _ in range(200):
        rows = generator.randint(2, 12)
        stems = [[generator.randint(0, 3)] * generator.randint(0, 60) for _ in range(3)]
        tokens = [
            generator.choice(stems) + [generator.randint(0, 9) for _ in range(generator.randint(1, 20))]
            for _ in range(rows)
        ]
        names = [generator.choice("ab") for _ in range(rows)]
        plan = plan_prefixes_small(tokens, names)
        if plan is not None:
            covered(plan, tokens)
            assert plan.cost < rows * plan.width
            for prefix in plan.prefixes:
                assert {names[row] for row in prefix.rows} == {prefix.name}


def test_the_default_pass_cost_keeps_short_or_rarely_shared_prefixes_in_the_batch() -> None:
    pair = [[*SYSTEM, 1, 2], [*SYSTEM, 3, 4]]
    assert plan_prefixes_small(pair, ["a", "a"]) is not None
    assert plan_prefixes(pair, ["a", "a"]) is None  # 2 rows x 40 tokens do not pay for a pass
    many = [[*SYSTEM, *SYSTEM, *SYSTEM, i] for i in range(10)]  # 10 rows sharing 120 tokens
    plan = plan_prefixes(many, ["a"] * 10)
    assert plan is not None and plan.start == 120


def test_nothing_worth_sharing_gives_no_plan() -> None:
    assert plan_prefixes_small([[*SYSTEM[:10], 1], [*SYSTEM[:10], 2]], ["a", "a"]) is None  # too short for a pass
    assert plan_prefixes_small([[*SYSTEM, 1]], ["a"]) is None  # one row
    assert plan_prefixes_small([[1, 2], [3, 4, 5]], ["a", "a"]) is None


def test_distinct_rows_finds_repeated_prompts_on_one_adapter() -> None:
    tokens = [[*SYSTEM, 1], [*SYSTEM, 2], [*SYSTEM, 1], [*SYSTEM, 1], [*SYSTEM, 2]]
    names = ["a", "a", "a", "b", "a"]
    found = distinct_rows(tokens, names)
    assert found is not None
    assert found.first == (0, 1, 3)  # the first row of each (adapter, prompt), in batch order
    assert found.of_row == (0, 1, 0, 2, 1)  # row 3 has row 0's prompt on another adapter: its own


def test_distinct_rows_is_none_when_nothing_repeats() -> None:
    assert distinct_rows([[1, 2], [1, 2, 3], [2]], ["a", "a", "a"]) is None
    assert distinct_rows([[1, 2], [1, 2]], ["a", "b"]) is None
    with pytest.raises(ValueError):
        distinct_rows([[1]], ["a", "b"])
