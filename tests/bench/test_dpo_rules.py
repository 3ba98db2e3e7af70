"""The model-free parts of bench/dpo_rules.py: the editor's mechanical fix of a draft that breaks a style rule,
and the counting of rule breaks and the paired test between the SFT and the DPO version's drafts."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_helpers import load_bench

from worker.scoring.style_rules import heading_case_problem
from worker.styles.catalog import StyleRules

ROOT = Path(__file__).resolve().parents[2]


dpo_rules = load_bench("dpo_rules")

DRAFT = """# How to bleed a radiator

Turn the heating off and let the radiators cool.

## What you need

- a radiator key
- an old cloth

## Steps to follow

1. Open the valve a quarter turn.

```
## not a heading: inside a code fence
```

## Tips for the API of an iPhone app
"""


@pytest.mark.parametrize(
    ("heading", "case", "expected"),
    [
        ("What you need", "title", "What You Need"),
        ("how to bleed a radiator", "title", "How to Bleed a Radiator"),
        ("A shelf of books to sort out", "title", "A Shelf of Books to Sort Out"),  # a small word last is capitalised
        ("Tips for the API of an iPhone app", "title", "Tips for the API of an iPhone App"),
        ("**Before you start:** the shop-bought pot", "title", "**Before You Start:** the Shop-bought Pot"),
        ("What You Need To Know", "sentence", "What you need to know"),
        ("steps", "sentence", "Steps"),
        ("Using the API With Care", "sentence", "Using the API with care"),
    ],
)
def test_recase_heading_gives_a_heading_the_checker_accepts(heading: str, case: str, expected: str) -> None:
    fixed = dpo_rules.recase_heading(heading, case)
    assert fixed == expected
    assert heading_case_problem(fixed, case) is None


def test_recase_heading_refuses_an_unknown_case() -> None:
    with pytest.raises(ValueError, match="unknown heading case"):
        dpo_rules.recase_heading("Steps", "upper")


def test_fix_headings_recases_every_heading_and_nothing_else() -> None:
    rules = StyleRules(heading_case="title")
    before = dpo_rules.violations(DRAFT, rules)
    assert len(before) == 4  # the title, two section headings and the last one ("app")
    fixed = dpo_rules.fix_headings(DRAFT, "title")
    assert dpo_rules.violations(fixed, rules) == []
    assert "# How to Bleed a Radiator\n" in fixed and "## What You Need\n" in fixed
    assert "## not a heading: inside a code fence" in fixed  # fenced lines untouched
    assert "- a radiator key" in fixed and "Turn the heating off" in fixed  # prose untouched
    assert [a for a, b in zip(DRAFT.splitlines(), fixed.splitlines(), strict=True) if a != b] == [
        "# How to bleed a radiator",
        "## What you need",
        "## Steps to follow",
        "## Tips for the API of an iPhone app",
    ]
    assert dpo_rules.fix_headings(fixed, "title") == fixed  # a fixed draft needs no second edit


def test_the_disclaimer_fix_appends_it_once() -> None:
    rules = StyleRules(required_disclaimer=dpo_rules.DISCLAIMER)
    assert dpo_rules.violations(DRAFT, rules) == ["required disclaimer missing"]
    fix = dpo_rules.editor_fix("disclaimer")
    fixed = fix(DRAFT)
    assert fixed.endswith(dpo_rules.DISCLAIMER + "\n") and dpo_rules.violations(fixed, rules) == []
    assert fix(fixed) == fixed


def test_heading_count_leaves_out_the_title() -> None:
    assert dpo_rules.heading_count(DRAFT) == 3
    assert dpo_rules.heading_count("# Title\n\nJust prose.\n") == 0
    assert dpo_rules.heading_count("Prose.\n\n## A section\n\nMore prose.\n") == 1


def test_pick_rule_takes_the_heading_case_broken_more_often() -> None:
    assert dpo_rules.pick_rule({"title": 0.9, "sentence": 0.05, "disclaimer": 1.0}, "auto") == "title"
    assert dpo_rules.pick_rule({"title": 0.1, "sentence": 0.6, "disclaimer": 1.0}, "auto") == "sentence"
    assert dpo_rules.pick_rule({"title": 0.2, "sentence": 0.1, "disclaimer": 1.0}, "auto") == "disclaimer"
    assert dpo_rules.pick_rule({"title": 0.9, "sentence": 0.0, "disclaimer": 1.0}, "sentence") == "sentence"


def test_tally_counts_breaks_per_100_and_the_paired_test_uses_discordant_drafts_only() -> None:
    rules = StyleRules(heading_case="title")
    broken, kept = DRAFT, dpo_rules.fix_headings(DRAFT, "title")
    sft, dpo = dpo_rules.Tally(), dpo_rules.Tally()
    for n in range(10):  # SFT breaks the rule in 8 drafts of 10; DPO in 2, one of them where SFT did not
        sft.add(f"b{n}", broken if n < 8 else kept, rules)
        dpo.add(f"b{n}", broken if n in (0, 9) else kept, rules)
    dpo.add("only-dpo", kept, rules)  # unpaired: counted in DPO's rate, not in the test
    summary = sft.summary()
    assert (summary["drafts"], summary["breaking"], summary["breaks_per_100"]) == (10, 8, 80.0)
    assert summary["violations_per_100"] == 320.0 and summary["headings_per_draft"] == 3.0
    low, high = summary["breaks_per_100_interval"]
    assert low < 80.0 < high
    assert dpo.summary()["breaks_per_100"] == pytest.approx(100 * 2 / 11, abs=0.05)
    test = dpo_rules.paired_test(sft, dpo)
    assert (test["pairs"], test["sft_only"], test["dpo_only"]) == (10, 7, 1)
    assert test["p_value"] == pytest.approx(0.0703, abs=1e-4)  # 2 * P(X <= 1), X ~ Binomial(8, 1/2) = 18/256


def test_training_titles_skip_the_evaluation_topics_and_repeat_nothing() -> None:
    titles = dpo_rules.training_titles(500, {"keeping bread fresh", "how to bleed a radiator"})
    ids = [topic_id for topic_id, _ in titles]
    assert len(ids) == len(set(ids)) and len(titles) > 100
    assert all(title.lower() not in {"keeping bread fresh", "how to bleed a radiator"} for _, title in titles)
    first = dpo_rules.training_titles(5, set())
    assert len(first) == 5 and first[0] == ("howto-bleed-radiator", "How to bleed a radiator")  # bench/briefs.yaml


def test_set_rule_adds_the_rule_to_a_copy_and_keeps_the_shipped_ones(tmp_path: Path) -> None:
    styles = dpo_rules.make_home(tmp_path, "plain-howto")
    rules = dpo_rules.set_rule(styles, "plain-howto", "title")
    assert rules.heading_case == "title" and "utilize" in rules.banned_terms
    from worker.styles.catalog import load_style

    assert load_style(styles / "plain-howto" / "style.yaml").rules == rules
    assert "heading_case" not in (ROOT / "styles" / "plain-howto" / "style.yaml").read_text()
