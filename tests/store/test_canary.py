"""The compare query of the store (:mod:`worker.store.canary`) on SQLite and PostgreSQL: articles written by two
adapter versions and editors' real decisions on them (approve, edit, reject, send back, regenerate), counted
per version; Fisher's exact test and the word edit distance checked against values worked out by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from review_helpers import GOOD_BODY, SHORT_BODY, STYLE, edit_article, make_brief, scored_result
from style_helpers import BASE_A, BASE_B, write_style, write_version
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import PROJECT_ROOT
from worker.results import ArticleResult
from worker.store import ArticleRecord, Store
from worker.store.canary import approval_test, comparison_tests, fisher_exact, word_edit_distance

EDITED = GOOD_BODY.replace("ten minutes", "about ten minutes")  # one word inserted


def result(n: int, version: str, body: str = GOOD_BODY, attempts: int = 1) -> ArticleResult:
    made = scored_result(make_brief(n), body)
    provenance = {**made.provenance, "attempts_used": attempts, "adapter": {"version": version}}
    return dataclasses.replace(made, adapter_version=version, provenance=provenance)


def add(store: Store, n: int, version: str, body: str = GOOD_BODY, attempts: int = 1) -> ArticleRecord:
    store.add_brief(make_brief(n), source="test")
    return store.save_article(result(n, version, body, attempts))


@pytest.fixture
def decided(store: Store) -> Store:
    """v1 (served): approved as drafted; edited then approved; rejected; sent back; sent back, regenerated (the
    editors' wording) and approved. v2 (canary): two approved as drafted, one short draft not decided yet."""
    store.approve(add(store, 1, "v1", attempts=2).id, actor="ed")
    store.approve(edit_article(store, add(store, 2, "v1", attempts=2).id, EDITED).id, actor="ed")
    store.reject(add(store, 3, "v1", attempts=2).id, actor="ed", reason="off topic")
    store.send_back(add(store, 4, "v1", attempts=2).id, actor="ed", feedback="shorter")
    fifth = add(store, 5, "v1", attempts=2)
    store.send_back(fifth.id, actor="ed", feedback="say about ten minutes")
    store.approve(store.save_article(result(5, "v1", EDITED, attempts=2)).id, actor="ed")
    for n in (6, 7):
        store.approve(add(store, n, "v2").id, actor="ed")
    add(store, 8, "v2", SHORT_BODY)
    return store


def test_compare_counts_each_versions_articles_and_decisions(decided: Store) -> None:
    v1, v2 = decided.compare_versions(STYLE)
    assert (v1.version, v2.version) == ("v1", "v2")
    assert (v1.articles, v1.approvals, v1.rejections, v1.send_backs, v1.decided, v1.approved) == (5, 3, 1, 2, 5, 3)
    assert (v2.articles, v2.approvals, v2.rejections, v2.send_backs, v2.decided, v2.approved) == (3, 2, 0, 0, 2, 2)
    assert v1.approval_rate == pytest.approx(3 / 5) and v2.approval_rate == 1.0
    assert v1.mean_attempts == 2.0 and v2.mean_attempts == 1.0
    # article 2: one word added by the editor; article 5: approved as regenerated (its latest draft), so 0
    assert v1.mean_edit_distance == pytest.approx(1 / 3)
    assert v2.mean_edit_distance == 0.0
    short_passes = not scored_result(make_brief(8), SHORT_BODY).failing_gates
    assert short_passes is False and v1.gate_pass_rate == 1.0 and v2.gate_pass_rate == pytest.approx(2 / 3)
    assert decided.compare_versions("some-other-style") == []


def test_the_canary_is_tested_against_the_served_version(decided: Store) -> None:
    stats = decided.compare_versions(STYLE)
    (test,) = comparison_tests(stats, served="v1", canary="v2")
    assert test["versions"] == ["v2", "v1"] and test["table"] == [[2, 0], [3, 2]]
    assert test["p_value"] == pytest.approx(1.0)  # 2 of 2 against 3 of 5 tells nothing yet
    assert "Fisher" in test["test"]
    assert comparison_tests(stats, served="v2", canary=None)[0]["versions"] == ["v2", "v1"]


def test_compare_command_reads_the_store(decided: Store, store_url: str, tmp_path: object) -> None:
    env = {"COPYDESK_STORE_URL": store_url, "COPYDESK_STYLES_DIR": str(PROJECT_ROOT / "styles"), "COLUMNS": "220"}
    env["COPYDESK_HOME"] = str(tmp_path)
    out = CliRunner().invoke(app, ["styles", "compare", STYLE, "--json"], env=env)
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [(v["version"], v["approved"], v["decided"]) for v in data["versions"]] == [("v1", 3, 5), ("v2", 2, 2)]
    table = CliRunner().invoke(app, ["styles", "compare", STYLE], env=env)
    assert table.exit_code == 0, table.output
    assert "0.60 (3/5)" in table.output and "Fisher" in table.output


def test_compare_tests_a_canary_against_the_version_served_on_its_own_base_model(
    decided: Store, store_url: str, tmp_path: Path
) -> None:
    styles = tmp_path / "styles"
    path = write_style(styles, STYLE, "adapter: {base-a: v1, base-b: v9}\ncanary: {version: v2, share: 0.1}\n")
    for version, base in (("v1", BASE_A), ("v2", BASE_A), ("v9", BASE_B)):
        write_version(path.parent, version, base)
    add(decided, 9, "v9")  # base-b's served version wrote too
    env = {"COPYDESK_STORE_URL": store_url, "COPYDESK_STYLES_DIR": str(styles), "COPYDESK_HOME": str(tmp_path)}
    out = CliRunner().invoke(app, ["styles", "compare", STYLE, "--json"], env={**env, "COLUMNS": "240"})
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [test["versions"] for test in data["tests"]] == [["v2", "v1"]]  # not against base-b's v9
    assert {v["version"]: v["base_models"] for v in data["versions"]}["v9"] == ["hand-made"]  # provenance model id
    table = CliRunner().invoke(app, ["styles", "compare", STYLE], env={**env, "COLUMNS": "240"})
    assert "served on base-a" in table.output and "served on base-b" in table.output, table.output


def test_the_base_model_alone_is_one_row_per_base_model_and_never_tested_against_another(decided: Store) -> None:
    for n, model in ((11, "small-base"), (12, "big-base"), (13, "small-base")):
        made = result(n, "v0")
        provenance = {**made.provenance, "model": {"id": model}, "adapter": None}
        decided.add_brief(make_brief(n), source="test")
        decided.approve(
            decided.save_article(dataclasses.replace(made, adapter_version=None, provenance=provenance)).id, actor="ed"
        )
    stats = decided.compare_versions(STYLE)
    rows = [(s.version, s.base_models, s.articles) for s in stats]
    assert rows == [
        (None, ["big-base"], 1),
        (None, ["small-base"], 2),
        ("v1", ["hand-made"], 5),
        ("v2", ["hand-made"], 3),
    ]
    assert [test["versions"] for test in comparison_tests(stats, served="v1", canary=None)] == [
        ["v1", None],
        ["v2", "v1"],
    ]  # small-base's own drafts against v1 (as before: the row just before it); none between the two base models


def test_fisher_exact_matches_worked_values() -> None:
    assert fisher_exact(2, 0, 2, 2) == pytest.approx(7 / 15)  # tables of probability 1/15 and 6/15 (observed)
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(17 / 35)  # the tea-tasting lady: R's fisher.test gives 0.4857
    assert fisher_exact(10, 0, 0, 10) == pytest.approx(2 / 184756)  # only the two extreme tables: 2 / C(20, 10)
    assert fisher_exact(0, 0, 0, 0) == 1.0


def test_word_edit_distance() -> None:
    assert word_edit_distance("a b c", "a b c") == 0
    assert word_edit_distance("a b c", "a x c") == 1
    assert word_edit_distance("a b c", "a c") == 1
    assert word_edit_distance("", "one two") == 2
    assert word_edit_distance(GOOD_BODY, EDITED) == 1


def test_approval_test_on_empty_versions() -> None:
    from worker.store.canary import VersionStats

    test = approval_test(VersionStats("v2"), VersionStats("v1"))
    assert test["p_value"] == 1.0 and test["table"] == [[0, 0], [0, 0]]
