"""Unit tests of :mod:`worker.pipeline.routing`: pinned styles, weighted rules, ties, the default, and reasons."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from worker.config import PROJECT_ROOT
from worker.errors import StyleError
from worker.intake.briefs import Brief
from worker.intake.loading import load_brief_files
from worker.pipeline.routing import route, score_style
from worker.styles.catalog import StyleCatalog

DEFAULT = "plain-howto"


@pytest.fixture(scope="module")
def shipped() -> StyleCatalog:
    catalog = StyleCatalog.load(PROJECT_ROOT / "styles")
    assert catalog.problems == {}
    return catalog


def make_catalog(root: Path, styles: dict[str, dict[str, object]]) -> StyleCatalog:
    for name, routing in styles.items():
        folder = root / name
        folder.mkdir(parents=True)
        body = {"name": name, "description": name, "routing": routing}
        (folder / "style.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    catalog = StyleCatalog.load(root)
    assert catalog.problems == {}
    return catalog


# -------------------------------------------------------------------------------------- shipped styles


ROUTING_TABLE = [
    pytest.param(
        {"title": "How to repot a cactus", "content_type": "how-to", "category": "gardening"},
        "plain-howto",
        id="gardening-how-to",
    ),
    pytest.param(
        {"title": "Unblock a sink", "content_type": "guide", "audience": "Homeowners", "tone": "Practical"},
        "plain-howto",
        id="alias-and-case-insensitive",
    ),
    pytest.param(
        {"title": "How B-trees split", "content_type": "explainer", "category": "databases"},
        "tech-deepdive",
        id="database-explainer",
    ),
    pytest.param(
        {"title": "Tuning Postgres", "content_type": "how-to", "audience": "developers", "tone": "technical"},
        "tech-deepdive",
        id="technical-how-to-for-developers",
    ),
    pytest.param(
        {"title": "Rust 2.0 released", "content_type": "news", "category": "programming", "tags": ["rust"]},
        "tech-deepdive",
        id="programming-news",
    ),
    pytest.param(
        {"title": "Ten beaches", "content_type": "listicle", "category": "travel", "tone": "upbeat"},
        "upbeat-lifestyle",
        id="travel-listicle",
    ),
    pytest.param(
        {"title": "A new blender", "content_type": "review", "category": "food"},
        "upbeat-lifestyle",
        id="food-review",
    ),
    pytest.param(
        {"title": "Things to pack", "content_type": "listicle", "tags": ["Summer", "Weekend"]},
        "upbeat-lifestyle",
        id="listicle-with-tags",
    ),
    pytest.param(
        {"title": "A quiet explainer", "content_type": "explainer", "tone": "friendly", "category": "home"},
        "plain-howto",
        id="home-beats-explainer",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), ROUTING_TABLE)
def test_shipped_styles_routing_table(shipped: StyleCatalog, fields: dict[str, object], expected: str) -> None:
    brief = Brief(**fields)  # type: ignore[arg-type]
    decision = route(brief, shipped, DEFAULT)
    assert decision.style == expected, decision.reason
    assert decision.brief_id == brief.brief_id
    assert decision.scores[0].style == expected
    assert decision.reason.startswith("highest score")


def test_scores_of_every_style_are_reported_best_first(shipped: StyleCatalog) -> None:
    brief = Brief(title="Ten beaches", content_type="listicle", category="travel", tone="upbeat")
    decision = route(brief, shipped, DEFAULT)
    assert {s.style for s in decision.scores} == set(shipped.names)
    values = [s.score for s in decision.scores]
    assert values == sorted(values, reverse=True)
    upbeat = decision.scores[0]
    assert upbeat.score == 3 + 3 + 3  # listicle + travel + upbeat
    assert {(m.field, m.value, m.weight) for m in upbeat.matches} == {
        ("content_type", "listicle", 3),
        ("category", "travel", 3),
        ("tone", "upbeat", 3),
    }


def test_reason_names_the_matched_rules(shipped: StyleCatalog) -> None:
    brief = Brief(
        title="MVCC", content_type="explainer", category="databases", tone="dry", tags=["postgres", "unrelated"]
    )
    decision = route(brief, shipped, DEFAULT)
    assert decision.style == "tech-deepdive"
    assert decision.reason == (
        "highest score 7: content_type=explainer (+3), category=databases (+3), tag=postgres (+1)"
    )
    assert "unrelated" not in decision.reason


def test_pinned_style_wins_over_rules(shipped: StyleCatalog) -> None:
    brief = Brief(title="Ten beaches", content_type="listicle", category="travel", style="tech-deepdive")
    decision = route(brief, shipped, DEFAULT)
    assert decision.style == "tech-deepdive"
    assert decision.reason == "pinned by the brief"
    assert decision.scores[0].style == "upbeat-lifestyle"  # routing would have chosen otherwise


def test_unknown_pinned_style_names_the_known_styles(shipped: StyleCatalog) -> None:
    brief = Brief(title="Anything", style="noir")
    with pytest.raises(StyleError) as exc:
        route(brief, shipped, DEFAULT)
    assert "'noir'" in str(exc.value)
    assert "known styles: plain-howto, tech-deepdive, upbeat-lifestyle" in str(exc.value)


@pytest.mark.parametrize("pin", ["../plain-howto", "styles/plain-howto", "..", "a\0b", "x" * 129])
def test_unsafe_pin_is_rejected_by_brief_validation(pin: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Brief(title="Anything", style=pin)
    assert any(error["loc"] == ("style",) for error in exc.value.errors())


def test_no_match_default_style_on_a_catalog(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, {"alpha": {"categories": {"food": 1}}, "beta": {"tones": {"upbeat": 1}}})
    brief = Brief(title="Untitled", category="astrology", tone="odd")
    decision = route(brief, catalog, "beta")
    assert decision.style == "beta"
    assert decision.reason == "no routing rule matched: default style"
    assert all(score.score == 0 for score in decision.scores)


def test_every_content_type_matches_some_shipped_style(shipped: StyleCatalog) -> None:
    # So with the shipped styles the default is never needed; the default is tested on tmp catalogs.
    for content_type in ("how-to", "listicle", "explainer", "news", "review"):
        brief = Brief(title="Untitled", content_type=content_type, audience="cats", tone="odd")
        assert route(brief, shipped, DEFAULT).scores[0].score > 0


def test_unknown_default_style_is_an_error(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, {"alpha": {"categories": {"food": 1}}})
    with pytest.raises(StyleError, match="known styles: alpha"):
        route(Brief(title="Untitled", category="astrology"), catalog, "missing")


def test_negative_scores_fall_back_to_the_default(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, {"alpha": {"categories": {"food": -2}}, "beta": {}})
    decision = route(Brief(title="Untitled", category="food"), catalog, "beta")
    assert decision.style == "beta"


def test_empty_catalog_is_an_error(tmp_path: Path) -> None:
    catalog = StyleCatalog.load(tmp_path)
    with pytest.raises(StyleError, match="no usable styles"):
        route(Brief(title="Untitled"), catalog, DEFAULT)


def test_ties_go_to_higher_priority(tmp_path: Path) -> None:
    catalog = make_catalog(
        tmp_path,
        {
            "alpha": {"categories": {"food": 2}, "priority": 0},
            "beta": {"tones": {"upbeat": 2}, "priority": 5},
            "gamma": {"tags": {"summer": 1}, "priority": 9},
        },
    )
    decision = route(Brief(title="Picnic", category="food", tone="upbeat", tags=["summer"]), catalog, "alpha")
    assert decision.style == "beta"
    assert decision.reason == "highest score 2: tone=upbeat (+2); tie with alpha broken by priority 5 then name"
    assert [s.style for s in decision.scores] == ["beta", "alpha", "gamma"]


def test_equal_priority_ties_go_to_the_first_name(tmp_path: Path) -> None:
    catalog = make_catalog(
        tmp_path,
        {
            "zulu": {"categories": {"food": 2}, "priority": 1},
            "mike": {"tones": {"upbeat": 2}, "priority": 1},
            "alpha": {"tags": {"picnic": 2}, "priority": 0},
        },
    )
    decision = route(Brief(title="Picnic", category="food", tone="upbeat", tags=["picnic"]), catalog, "alpha")
    assert decision.style == "mike"
    assert "tie with zulu, alpha" in decision.reason


def test_each_tag_adds_its_weight(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, {"alpha": {"tags": {"tea": 1, "green": 2}}})
    score = score_style(Brief(title="Tea", tags=["Tea", "GREEN", "black"]), catalog.get("alpha"))
    assert score.score == 3
    assert [(m.field, m.value) for m in score.matches] == [("tag", "tea"), ("tag", "green")]


# -------------------------------------------------------------------------------------------- samples


def test_sample_briefs_route_three_to_each_style(shipped: StyleCatalog) -> None:
    report = load_brief_files([PROJECT_ROOT / "briefs" / "samples.yaml"])
    assert report.ok, report.problems
    assert len(report.briefs) == 9
    decisions = {item.brief.brief_id: route(item.brief, shipped, DEFAULT) for item in report.briefs}
    assert Counter(d.style for d in decisions.values()) == {
        "plain-howto": 3,
        "tech-deepdive": 3,
        "upbeat-lifestyle": 3,
    }
    prefixes = {"howto": "plain-howto", "explainer": "tech-deepdive", "listicle": "upbeat-lifestyle"}
    for brief_id, decision in decisions.items():
        expected = prefixes.get(brief_id.split("-")[0], "upbeat-lifestyle")
        assert decision.style == expected, (brief_id, decision.reason)
        assert decision.reason.startswith("highest score")
