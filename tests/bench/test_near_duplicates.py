"""bench/near_duplicates.py: the check as it was and as it is now find the same share on the same store."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
from bench_helpers import load_bench

near_duplicates = load_bench("near_duplicates")


def test_the_bench_compares_two_ways_that_agree(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["near_duplicates.py", "--store", "sqlite", "--sizes", "2", "4", "--repeats", "1"])
    near_duplicates.main()  # asserts at each size that both ways find the same nearest share
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["2", "4"]


def test_a_copied_article_is_found_by_both_ways() -> None:
    with near_duplicates.store_for("sqlite") as store:
        template = near_duplicates.scored_result(near_duplicates.make_brief(0))
        for number in range(3):
            brief = near_duplicates.make_brief(number + 1)
            store.add_brief(brief, source="test")
            text = near_duplicates.article_text(number, 120)
            store.save_article(replace(template, brief_id=brief.brief_id, body_markdown=text))
        copy = near_duplicates.article_text(1, 120)
        assert near_duplicates.nearest_before(store, "new", copy) == pytest.approx(1.0)
        assert near_duplicates.nearest_now(store, "new", copy) == pytest.approx(1.0)
        assert near_duplicates.nearest_now(store, "rev-2", copy) < 0.5  # its own brief's article is not compared
