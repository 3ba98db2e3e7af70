"""The feedback dataset (:mod:`worker.review.feedback`): approved and edited articles as SFT examples, rejected or
sent-back revisions paired with the approved one, and the reader the style trainer uses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from review_helpers import GOOD_BODY, SHORT_BODY, add_article, edit_article, make_brief, scored_result
from store_helpers import FakeClock
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import Settings
from worker.errors import ReviewError
from worker.review.feedback import FeedbackExample, export_feedback, load_feedback_examples, pairs_path_for
from worker.store import Store

SECOND_DRAFT = GOOD_BODY.replace("ten minutes", "fifteen minutes")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url, clock=FakeClock()) as s:
        s.migrate()
        yield s


def build_history(store: Store) -> None:
    """Five articles, each with a different editorial history."""
    # 1: approved as generated
    add_article(store, 1)
    store.approve("rev-1", actor="chief")
    # 2: edited, then approved
    add_article(store, 2, SHORT_BODY)
    edit_article(store, "rev-2", GOOD_BODY, revision=1)
    store.approve("rev-2", actor="chief")
    # 3: rejected, sent back, regenerated, approved, published
    add_article(store, 3, SHORT_BODY)
    store.reject("rev-3", actor="chief", reason="too thin")
    store.send_back("rev-3", actor="chief", feedback="Write the whole guide.")
    store.save_article(scored_result(store.get_brief("rev-3").brief, SECOND_DRAFT))
    store.approve("rev-3", actor="chief")
    store.mark_published("rev-3", actor="pub", details={"date": "2026-03-01T12:00:00Z", "slug": "x"})
    # 4: still waiting for review; 5: rejected for good
    add_article(store, 4)
    add_article(store, 5)
    store.reject("rev-5", actor="chief", reason="off brief")


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_writes_sft_examples_and_preference_pairs(store: Store, tmp_path: Path) -> None:
    build_history(store)
    path = tmp_path / "feedback.jsonl"
    summary = export_feedback(store, path)
    assert (summary.examples, summary.pairs) == (3, 2)
    assert summary.pairs_path == tmp_path / "feedback.pairs.jsonl"

    examples = read_jsonl(path)
    assert [(e["article_id"], e["revision"], e["edited"]) for e in examples] == [
        ("a-rev-1", 1, False),
        ("a-rev-2", 2, True),
        ("a-rev-3", 2, False),
    ]
    first = examples[0]
    assert set(first) == {"style", "brief", "completion", "article_id", "revision", "edited"}
    assert first["style"] == "plain-howto"
    assert first["completion"] == GOOD_BODY
    assert first["brief"] == make_brief(1).model_dump(mode="json")
    assert examples[2]["completion"] == SECOND_DRAFT

    edit_pair, pair = read_jsonl(summary.pairs_path)
    assert (edit_pair["article_id"], edit_pair["chosen_revision"], edit_pair["rejected_revision"]) == ("a-rev-2", 2, 1)
    assert (edit_pair["chosen"], edit_pair["rejected"]) == (GOOD_BODY, SHORT_BODY)  # the edit over the draft
    assert pair == {
        "style": "plain-howto",
        "brief": make_brief(3).model_dump(mode="json"),
        "chosen": SECOND_DRAFT,
        "rejected": SHORT_BODY,
        "article_id": "a-rev-3",
        "chosen_revision": 2,
        "rejected_revision": 1,
    }


def test_a_sent_back_revision_is_a_rejected_side_too(store: Store, tmp_path: Path) -> None:
    add_article(store, 1, SHORT_BODY)
    store.send_back("rev-1", actor="ed", feedback="Longer.")
    store.save_article(scored_result(store.get_brief("rev-1").brief, GOOD_BODY))
    store.approve("rev-1", actor="ed")
    summary = export_feedback(store, tmp_path / "f.jsonl")
    assert summary.pairs == 1
    (pair,) = read_jsonl(summary.pairs_path)
    assert (pair["chosen"], pair["rejected"]) == (GOOD_BODY, SHORT_BODY)


def test_an_edit_pairs_with_the_pipeline_draft_it_replaced_not_with_an_earlier_edit(
    store: Store, tmp_path: Path
) -> None:
    add_article(store, 1, SHORT_BODY)
    for revision, body in ((1, SECOND_DRAFT), (2, GOOD_BODY)):  # two edits: the draft, then the editor's own text
        edit_article(store, "rev-1", body, revision=revision)
    store.approve("rev-1", actor="ed")
    summary = export_feedback(store, tmp_path / "f.jsonl")
    (pair,) = read_jsonl(summary.pairs_path)
    assert (pair["chosen_revision"], pair["rejected_revision"]) == (3, 1)
    assert (pair["chosen"], pair["rejected"]) == (GOOD_BODY, SHORT_BODY)


def test_an_edited_article_not_yet_approved_makes_no_pair(store: Store, tmp_path: Path) -> None:
    add_article(store, 1, SHORT_BODY)
    edit_article(store, "rev-1", GOOD_BODY, revision=1)
    assert export_feedback(store, tmp_path / "f.jsonl").pairs == 0


def test_style_filter_and_empty_store(store: Store, tmp_path: Path) -> None:
    assert export_feedback(store, tmp_path / "none.jsonl").examples == 0
    assert (tmp_path / "none.jsonl").read_text() == ""
    build_history(store)
    assert export_feedback(store, tmp_path / "other.jsonl", style="tech-deepdive").examples == 0
    assert export_feedback(store, tmp_path / "mine.jsonl", style="plain-howto").examples == 3


def test_load_feedback_examples_reads_what_export_wrote(store: Store, tmp_path: Path) -> None:
    build_history(store)
    path = tmp_path / "feedback.jsonl"
    export_feedback(store, path)
    examples = load_feedback_examples(path)
    assert [type(e) for e in examples] == [FeedbackExample] * 3
    assert [(e.article_id, e.revision, e.edited) for e in examples] == [
        ("a-rev-1", 1, False),
        ("a-rev-2", 2, True),
        ("a-rev-3", 2, False),
    ]
    assert examples[1].completion == GOOD_BODY
    assert examples[0].brief_model() == make_brief(1)
    assert load_feedback_examples(str(path), style="plain-howto") == examples
    assert load_feedback_examples(path, style="upbeat-lifestyle") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"style": "s", "brief": {}, "completion": "x", "article_id": "a"}', "missing revision"),
        ('{"style": "", "brief": {}, "completion": "x", "article_id": "a", "revision": 1}', "style must be"),
        ('{"style": "s", "brief": [], "completion": "x", "article_id": "a", "revision": 1}', "brief must be"),
        ('{"style": "s", "brief": {}, "completion": " ", "article_id": "a", "revision": 1}', "completion must be"),
        ('{"style": "s", "brief": {}, "completion": "x", "article_id": "a", "revision": 0}', "revision must be"),
        ('{"style": "s", "brief": {}, "chosen": "x", "rejected": "y"}', "is this a pairs file"),
    ],
)
def test_malformed_feedback_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = {"style": "s", "brief": {}, "completion": "x", "article_id": "a", "revision": 1}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + line + "\n")
    with pytest.raises(ReviewError, match=message) as info:
        load_feedback_examples(path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_missing_feedback_file(tmp_path: Path) -> None:
    with pytest.raises(ReviewError, match="cannot read the feedback file"):
        load_feedback_examples(tmp_path / "nope.jsonl")


def test_pairs_path_for() -> None:
    assert pairs_path_for(Path("/d/feedback.jsonl")) == Path("/d/feedback.pairs.jsonl")
    assert pairs_path_for(Path("data")) == Path("data.pairs.jsonl")


def test_feedback_export_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.from_settings(Settings(home=home)) as store:
        store.migrate()
        build_history(store)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        target = tmp_path / "out" / "fb.jsonl"
        result = CliRunner().invoke(
            app,
            ["feedback", "export", "--to", str(target), "--pairs", str(tmp_path / "pairs.jsonl")],
            env={"COPYDESK_HOME": str(home), "COPYDESK_STORE_URL": None, "COPYDESK_CONFIG": None},
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    assert "3 example(s) written" in result.stdout and "2 preference pair(s)" in result.stdout
    assert len(load_feedback_examples(target)) == 3
    assert len(read_jsonl(tmp_path / "pairs.jsonl")) == 2
