"""Editorial review from the command line: the scriptable commands (Typer's CliRunner), the interactive
``copydesk review`` in a real pseudo-terminal (pexpect), and one send-back regenerated end to end through
the runner and the pipeline with the tiny model.

Articles are made by hand (``review_helpers``) in a store under a temporary ``COPYDESK_HOME``; styles are
the shipped ones. ``$EDITOR`` is a small Python script that rewrites the file it is given.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml
from click.testing import Result
from model_fixtures import one_torch_thread, tiny_model_dir
from review_helpers import GOOD_BODY, SHORT_BODY, add_article, make_brief
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import Settings
from worker.errors import ConflictError, NotFoundError, ReviewError, TransitionError
from worker.review.actions import pick_revisions, rescore, reviewer_name
from worker.scoring.scorecard import Scorecard
from worker.store import Store
from worker.store.article_files import read_article_file

__all__ = ["one_torch_thread", "tiny_model_dir"]  # fixtures used by name


COPYDESK = str(Path(sys.executable).with_name("copydesk"))
LONGER = GOOD_BODY.replace("Repotting gives", "Repotting in spring gives")


def editor_script(tmp_path: Path, old: str, new: str) -> str:
    """An ``$EDITOR`` value: a script replacing ``old`` with ``new`` in the file it is given."""
    script = tmp_path / "fake_editor.py"
    script.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[1])\n"
        f"path.write_text(path.read_text().replace({old!r}, {new!r}))\n"
    )
    return f"{sys.executable} {script}"


class Desk:
    """A temporary copydesk home: its store, and the CLI run in its environment."""

    def __init__(self, tmp_path: Path, **env: str | None) -> None:
        self.home = tmp_path / "home"
        self.settings = Settings(home=self.home)
        self.store = Store.from_settings(self.settings)
        self.store.migrate()
        self.env: dict[str, str | None] = {
            "COPYDESK_HOME": str(self.home),
            "COPYDESK_STORE_URL": None,
            "COPYDESK_BROKER_URL": None,
            "COPYDESK_CONFIG": None,
            "COPYDESK_STYLES_DIR": None,
            "COPYDESK_REVIEWER": None,
            "COPYDESK_DEBUG": None,
            "HF_HUB_OFFLINE": "1",
            "EDITOR": "true",
        }
        self.env.update(env)

    def __call__(self, *args: str, **env: str | None) -> Result:
        return CliRunner().invoke(app, list(args), env={**self.env, **env})

    def spawn_env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("COPYDESK_")}
        env.update({key: value for key, value in self.env.items() if value is not None})
        env.update(extra)
        return env


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    d = Desk(tmp_path)
    yield d
    d.store.close()


def one_line_error(result: Result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def broker_messages(home: Path) -> int:
    with sqlite3.connect(home / "broker.db") as conn:
        return conn.execute("SELECT count(*) FROM kombu_message").fetchone()[0]


# -- helpers --------------------------------------------------------------------------------------------


def test_reviewer_name_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "os-user")
    assert reviewer_name("cli", Settings(home=tmp_path, reviewer="env")) == "cli"
    assert reviewer_name(None, Settings(home=tmp_path, reviewer="env")) == "env"
    assert reviewer_name("  ", Settings(home=tmp_path, reviewer=None)) == "os-user"


def test_pick_revisions() -> None:
    assert pick_revisions([1, 2, 3], []) == (2, 3)
    assert pick_revisions([1, 2, 3], [1]) == (1, 3)
    assert pick_revisions([1, 2, 3], [3, 1]) == (3, 1)
    with pytest.raises(ReviewError, match="only revision 1"):
        pick_revisions([1], [])
    with pytest.raises(ReviewError, match="at most two"):
        pick_revisions([1, 2], [1, 2, 1])


# -- approve, reject ----------------------------------------------------------------------------------------


def test_approve_records_the_reviewer_and_rewrites_the_article_file(desk: Desk) -> None:
    add_article(desk.store, 1)
    add_article(desk.store, 2)
    result = desk("approve", "rev-1", "--note", "ship it", COPYDESK_REVIEWER="zoe")
    assert result.exit_code == 0, result.output
    assert "approved a-rev-1 (revision 1) as zoe" in result.stdout
    result = desk("approve", "a-rev-2", "--as", "yann", COPYDESK_REVIEWER="zoe")
    assert result.exit_code == 0, result.output
    events = desk.store.list_events("a-rev-1")
    assert (events[-1].kind, events[-1].actor, events[-1].note) == ("approved", "zoe", "ship it")
    assert desk.store.list_events("a-rev-2")[-1].actor == "yann"
    article = desk.store.get_article("a-rev-1")
    assert article.file_path is not None
    meta, body = read_article_file(Path(article.file_path))
    assert meta["status"] == "approved"
    assert body == GOOD_BODY


def test_reject_needs_a_reason(desk: Desk) -> None:
    add_article(desk.store, 1)
    missing = desk("reject", "rev-1")
    assert missing.exit_code == 2
    assert "--reason" in missing.output
    blank = desk("reject", "rev-1", "--reason", "  ")
    assert blank.exit_code == 9
    assert one_line_error(blank).startswith("error: a reason is required to reject article a-rev-1")
    done = desk("reject", "rev-1", "--reason", "off topic", "--as", "max")
    assert done.exit_code == 0, done.output
    assert desk.store.get_article("rev-1").status == "rejected"
    assert desk.store.list_events("rev-1")[-1].note == "off topic"


def test_invalid_transition_is_one_clear_line_and_exit_9(desk: Desk) -> None:
    add_article(desk.store, 1)
    assert desk("approve", "rev-1").exit_code == 0
    again = desk("reject", "rev-1", "--reason", "changed my mind")
    assert again.exit_code == TransitionError.exit_code
    assert one_line_error(again) == (
        "error: cannot reject article a-rev-1: it is approved, and reject needs needs_review or needs_attention"
    )
    assert desk.store.get_article("rev-1").status == "approved"


def test_decision_on_a_stale_revision_is_a_conflict(desk: Desk, tmp_path: Path) -> None:
    add_article(desk.store, 1)
    edited = desk("edit", "rev-1", "--no-embed", EDITOR=editor_script(tmp_path, "ten minutes", "a quarter hour"))
    assert edited.exit_code == 0, edited.output
    stale = desk("approve", "rev-1", "--rev", "1")
    assert stale.exit_code == ConflictError.exit_code
    assert "article a-rev-1 changed since you loaded revision 1: it is now revision 2" in one_line_error(stale)
    assert desk.store.get_article("rev-1").status == "needs_review"
    assert desk("approve", "rev-1", "--rev", "2").exit_code == 0


def test_unknown_article_exit_7(desk: Desk) -> None:
    result = desk("approve", "nothing-here")
    assert result.exit_code == NotFoundError.exit_code
    assert "no article with id or brief id 'nothing-here'" in one_line_error(result)


# -- edit ---------------------------------------------------------------------------------------------------


def test_edit_saves_a_rescored_revision(desk: Desk, tmp_path: Path) -> None:
    article = add_article(desk.store, 1, SHORT_BODY)
    assert article.failing_gates == ["length", "structure"]
    editor = editor_script(tmp_path, SHORT_BODY, GOOD_BODY)
    result = desk("edit", "rev-1", "--no-embed", "--as", "ed", "--note", "rewrote", EDITOR=editor)
    assert result.exit_code == 0, result.output
    assert "saved a-rev-1 revision 2 (needs_review)" in result.stdout
    updated = desk.store.get_article("rev-1")
    assert (updated.revision, updated.status, updated.body_markdown) == (2, "needs_review", GOOD_BODY)
    assert updated.failing_gates == []
    assert updated.scores["length"]["passed"] is True
    assert updated.scores["style_rules"]["passed"] is True  # "utilize" is gone
    assert updated.scores["on_topic"]["detail"] == "not measured (no embedder)"
    assert updated.quality == Scorecard.from_dict(updated.scores).quality > article.quality  # the worst order's key
    assert [(r.revision, r.author, r.note) for r in desk.store.list_revisions("rev-1")] == [
        (1, "copydesk", None),
        (2, "ed", "rewrote"),
    ]
    assert list((desk.home / "edits").iterdir()) == []  # the working file is removed once saved
    assert read_article_file(Path(updated.file_path or ""))[1] == GOOD_BODY


def test_rescore_measures_an_edit_like_a_generated_draft(desk: Desk) -> None:
    article = add_article(desk.store, 1, SHORT_BODY)
    rescored = rescore(desk.store, desk.settings, article, GOOD_BODY, embedder=None)
    assert rescored.failing_gates == []
    assert rescored.quality == Scorecard.from_dict(rescored.scores).quality > article.quality


def test_edit_without_changes_saves_nothing(desk: Desk) -> None:
    add_article(desk.store, 1)
    result = desk("edit", "rev-1", "--no-embed", EDITOR="true")
    assert result.exit_code == 0, result.output
    assert "no changes; nothing saved" in result.stdout
    assert len(desk.store.list_revisions("rev-1")) == 1


def test_failing_editor_keeps_the_text_and_saves_nothing(desk: Desk) -> None:
    add_article(desk.store, 1)
    result = desk("edit", "rev-1", "--no-embed", EDITOR="false")
    assert result.exit_code == 9
    assert "the editor exited with status 1; nothing was saved" in one_line_error(result)
    (kept,) = (desk.home / "edits").iterdir()
    assert kept.read_text() == GOOD_BODY
    assert desk.store.get_article("rev-1").revision == 1


def test_edit_of_an_approved_article_is_refused_before_the_editor_opens(desk: Desk, tmp_path: Path) -> None:
    add_article(desk.store, 1)
    desk.store.approve("rev-1", actor="a")
    marker = tmp_path / "editor-ran"
    result = desk("edit", "rev-1", EDITOR=f"touch {marker}")
    assert result.exit_code == TransitionError.exit_code
    assert "cannot edit article a-rev-1: it is approved" in one_line_error(result)
    assert not marker.exists()


# -- regenerate ---------------------------------------------------------------------------------------------


def test_regenerate_queues_the_brief_and_publishes_it(desk: Desk) -> None:
    brief = make_brief(1)
    desk.store.add_brief(brief)
    desk.store.claim_brief(brief.brief_id, owner="w", lease_seconds=60, max_attempts=3)
    from review_helpers import scored_result

    desk.store.save_article(scored_result(brief), owner="w")
    result = desk("regenerate", "rev-1", "--feedback", "Mention drainage holes.", "--as", "ed")
    assert result.exit_code == 0, result.output
    assert "sent back a-rev-1: brief rev-1 queued for a new draft (revision 1 kept)" in result.stdout
    record = desk.store.get_brief("rev-1")
    assert (record.status, record.attempts, record.feedback) == ("queued", 0, "Mention drainage holes.")
    assert desk.store.get_article("rev-1").status == "regenerating"
    assert broker_messages(desk.home) == 1
    again = desk("regenerate", "rev-1", "--feedback", "More.")
    assert again.exit_code == TransitionError.exit_code
    assert "already being regenerated" in one_line_error(again)


def test_regenerate_with_the_broker_down_keeps_the_brief_queued(desk: Desk) -> None:
    add_article(desk.store, 1)
    result = desk("regenerate", "rev-1", "--feedback", "Shorter.", COPYDESK_BROKER_URL="redis://127.0.0.1:1/0")
    assert result.exit_code == 8
    line = one_line_error(result)
    assert "cannot reach the broker" in line
    assert "brief rev-1 is queued in the store and a worker's reconciler will publish it" in line
    assert desk.store.get_brief("rev-1").status == "queued"
    assert desk.store.get_article("rev-1").status == "regenerating"


# -- diff, history, queue -----------------------------------------------------------------------------------


def test_articles_diff_between_revisions(desk: Desk, tmp_path: Path) -> None:
    add_article(desk.store, 1)
    single = desk("articles", "diff", "rev-1")
    assert single.exit_code == 9
    assert "only revision 1" in one_line_error(single)
    desk("edit", "rev-1", "--no-embed", "--as", "ed", EDITOR=editor_script(tmp_path, "ten minutes", "a quarter hour"))
    result = desk("articles", "diff", "rev-1", "--rev", "1", "--rev", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "--- a-rev-1 revision 1 (generated by copydesk)"
    assert lines[1] == "+++ a-rev-1 revision 2 (edit by ed)"
    assert "-Repotting gives a crowded plant room to grow. It takes ten minutes and a little care." in lines
    assert "+Repotting gives a crowded plant room to grow. It takes a quarter hour and a little care." in lines
    assert desk("articles", "diff", "rev-1").stdout == result.stdout  # default: previous against latest
    same = desk("articles", "diff", "rev-1", "--rev", "2", "--rev", "2")
    assert "have the same text" in same.stdout
    missing = desk("articles", "diff", "rev-1", "--rev", "1", "--rev", "5")
    assert missing.exit_code == NotFoundError.exit_code
    assert "has no revision 5 (revisions: 1, 2)" in one_line_error(missing)


def test_diff_is_coloured_on_a_terminal() -> None:
    from worker.cli.show import diff_styles

    assert [diff_styles(x) for x in ("--- a", "+++ b", "@@ -1 +1 @@", "+new", "-old", " same")] == [
        "bold",
        "bold",
        "cyan",
        "green",
        "red",
        None,
    ]


def test_articles_history_lists_every_decision_and_revision(desk: Desk, tmp_path: Path) -> None:
    add_article(desk.store, 1)
    desk("edit", "rev-1", "--no-embed", "--as", "ed", EDITOR=editor_script(tmp_path, "ten minutes", "a quarter hour"))
    desk("approve", "rev-1", "--as", "chief", "--note", "good")
    result = desk("articles", "history", "rev-1", "--json")
    assert result.exit_code == 0, result.output
    import json

    history = json.loads(result.stdout)
    assert [(e["kind"], e["actor"], e["revision"]) for e in history["events"]] == [
        ("generated", "copydesk", 1),
        ("edited", "ed", 2),
        ("approved", "chief", 2),
    ]
    assert [(r["revision"], r["source"], r["author"]) for r in history["revisions"]] == [
        (1, "generated", "copydesk"),
        (2, "edit", "ed"),
    ]
    assert all(e["created_at"] for e in history["events"])
    table = desk("articles", "history", "rev-1")
    assert table.exit_code == 0
    assert "chief" in table.stdout and "good" in table.stdout and "revisions" in table.stdout


def test_review_list_orders_worst_first_and_filters(desk: Desk) -> None:
    add_article(desk.store, 1)
    add_article(desk.store, 2, SHORT_BODY)
    add_article(desk.store, 3)
    desk.store.approve("rev-3", actor="a")
    result = desk("review", "--list", "--order", "worst")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "a-rev-" in line]
    assert [re.search(r"a-rev-\d", row).group(0) for row in rows] == ["a-rev-2", "a-rev-1"]  # type: ignore[union-attr]
    approved = desk("review", "--list", "--status", "approved")
    assert "a-rev-3" in approved.stdout and "a-rev-1" not in approved.stdout
    assert "nothing to review" in desk("review", "--style", "tech-deepdive").stdout
    bad = desk("review", "--status", "pending")
    assert bad.exit_code == 2  # a usage error, as every --status
    message = " ".join(bad.stderr.replace("│", " ").split())
    assert "unknown status 'pending': use needs_review, needs_attention" in message


# -- the interactive review in a real pseudo-terminal --------------------------------------------------------

PROMPT = r"\[q\]uit: "


def spawn_review(desk: Desk, *args: str, editor: str = "true") -> pexpect.spawn:
    child = pexpect.spawn(
        COPYDESK,
        ["review", "--no-embed", *args],
        env=desk.spawn_env(EDITOR=editor),
        encoding="utf-8",
        dimensions=(60, 140),
        cwd=str(desk.home.parent),  # no copydesk.toml of the checkout applies
        timeout=90,
    )
    return child


def test_interactive_review_approve_reject_edit_and_send_back(desk: Desk, tmp_path: Path) -> None:
    for n in (1, 2, 3, 4):
        add_article(desk.store, n, SHORT_BODY if n == 3 else GOOD_BODY)
    editor = editor_script(tmp_path, SHORT_BODY, GOOD_BODY)
    child = spawn_review(desk, "--as", "robin", editor=editor)
    try:
        child.expect("4 article\\(s\\) to review, as robin")
        # 1: approve, after looking at the draft, its scorecard, brief and provenance
        child.expect(r"\[1/4\] a-rev-1 · needs_review · plain-howto · revision 1")
        child.expect("scorecard")
        child.expect("style rules: no violations")
        child.expect("brief")
        child.expect("provenance")
        child.expect(PROMPT)
        child.sendline("a")
        child.expect("approved a-rev-1 \\(revision 1\\)")
        # 2: reject; an empty reason is refused, then a real one
        child.expect(r"\[2/4\] a-rev-2")
        child.expect(PROMPT)
        child.sendline("r")
        child.expect("reason \\(required\\): ")
        child.sendline("")
        child.expect("a reason is required to reject; nothing was decided")
        child.expect(PROMPT)
        child.sendline("r")
        child.expect("reason \\(required\\): ")
        child.sendline("Too generic for our readers")
        child.expect("rejected a-rev-2")
        # 3: a draft failing its gates, with a banned term; edit it, then approve the new revision
        child.expect(r"\[3/4\] a-rev-3 · needs_attention")
        child.expect("FAIL \\(gate\\)")
        child.expect("failing gates: length, structure")
        child.expect("style rules: 1 violation")
        child.expect("banned term 'utilize' used 1x")
        child.expect(PROMPT)
        child.sendline("e")
        child.expect("saved revision 2 of a-rev-3: needs_review, rescored")
        child.expect(r"a-rev-3 · needs_review · plain-howto · revision 2")
        child.expect(PROMPT)
        child.sendline("a")
        child.expect("approved a-rev-3 \\(revision 2\\)")
        # 4: send back with feedback
        child.expect(r"\[4/4\] a-rev-4")
        child.expect(PROMPT)
        child.sendline("b")
        child.expect("feedback for the next draft \\(required\\): ")
        child.sendline("Add a section on choosing soil")
        child.expect("sent back a-rev-4: brief rev-4 queued for a new draft")
        child.expect("review finished: 2 approved, 1 rejected, 1 sent back")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    store = desk.store
    assert [store.get_article(f"rev-{n}").status for n in (1, 2, 3, 4)] == [
        "approved",
        "rejected",
        "approved",
        "regenerating",
    ]
    assert store.list_events("rev-2")[-1].note == "Too generic for our readers"
    assert {e.actor for e in store.list_events("rev-1")[1:]} == {"robin"}
    assert store.get_article("rev-3").body_markdown == GOOD_BODY
    assert [r.author for r in store.list_revisions("rev-3")] == ["copydesk", "robin"]
    assert store.get_brief("rev-4").feedback == "Add a section on choosing soil"
    assert broker_messages(desk.home) == 1


def test_interactive_review_skip_quit_and_worst_first(desk: Desk) -> None:
    add_article(desk.store, 1)
    add_article(desk.store, 2, SHORT_BODY)
    add_article(desk.store, 3)
    child = spawn_review(desk, "--order", "worst")
    try:
        child.expect(r"\[1/3\] a-rev-2")  # the worst draft first
        child.expect(PROMPT)
        child.sendline("x")
        child.expect("unknown action 'x'")
        child.sendline("s")
        child.expect(r"\[2/3\] a-rev-")
        child.expect(PROMPT)
        child.sendline("q")
        child.expect("review finished: 1 skipped")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert {a.status for a in desk.store.list_articles()} == {"needs_review", "needs_attention"}
    assert all(len(desk.store.list_events(f"rev-{n}")) == 1 for n in (1, 2, 3))


def test_interactive_review_conflict_with_a_second_reviewer(desk: Desk) -> None:
    add_article(desk.store, 1)
    child = spawn_review(desk, "--as", "second")
    try:
        child.expect(r"\[1/1\] a-rev-1")
        child.expect(PROMPT)
        # meanwhile another reviewer, with another store handle, approves the same revision
        with Store.from_settings(desk.settings) as other:
            other.approve("a-rev-1", actor="first", expected_revision=1, expected_status="needs_review")
        child.sendline("r")
        child.expect("reason \\(required\\): ")
        child.sendline("Not for us")
        child.expect("conflict: article a-rev-1 changed since you loaded revision 1")
        child.expect("a-rev-1 is now approved; moving on")
        child.expect("review finished: 1 changed")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    article = desk.store.get_article("rev-1")
    assert article.status == "approved"
    assert [(e.kind, e.actor) for e in desk.store.list_events("rev-1")] == [
        ("generated", "copydesk"),
        ("approved", "first"),
    ]


# -- a send-back regenerated through the runner and the pipeline (tiny model) ---------------------------------


def write_style(styles_dir: Path) -> None:
    directory = styles_dir / "beta"
    directory.mkdir(parents=True)
    data: dict[str, Any] = {
        "name": "beta",
        "description": "test style",
        "system_prompt": "You write short articles.",
        "gates": [],
        "generation": {"candidates": 1, "max_new_tokens": 16},
    }
    (directory / "style.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.usefixtures("one_torch_thread")
def test_send_back_is_regenerated_with_the_feedback_in_the_prompt(
    tmp_path: Path, tiny_model_dir: Path, store_url: str
) -> None:
    from worker.engine.engine import Engine
    from worker.pipeline.pipeline import Pipeline
    from worker.pipeline.prompts import PromptRenderer
    from worker.pipeline.runner import write_briefs

    styles = tmp_path / "styles"
    write_style(styles)
    settings = Settings(
        home=tmp_path / "home",
        model=str(tiny_model_dir),
        dtype="float32",
        device="cpu",
        styles_dir=styles,
        default_style="beta",
        max_attempts=1,
        store_url=store_url,
    )
    rendered: list[tuple[str, str]] = []

    class RecordingRenderer(PromptRenderer):
        def render(self, brief: Any, style: Any, *, feedback: str = "") -> Any:
            prompt = super().render(brief, style, feedback=feedback)
            rendered.append((brief.brief_id, prompt.user))
            return prompt

    pipeline = Pipeline(settings, Engine.from_settings(settings), renderer=RecordingRenderer(settings.templates_dir))
    with Store(store_url) as store:
        store.migrate()
        brief = make_brief("e2e", title="How to plant tomatoes")
        store.add_brief(brief)
        (first,) = write_briefs([brief.brief_id], store=store, pipeline=pipeline, owner="w1", lease_seconds=600)
        assert first.article is not None and first.article.revision == 1
        assert "Feedback on the previous draft" not in rendered[-1][1]

        store.send_back(first.article.id, actor="ed", feedback="Say when to water the seedlings.")
        (second,) = write_briefs([brief.brief_id], store=store, pipeline=pipeline, owner="w2", lease_seconds=600)

        assert rendered[-1][0] == brief.brief_id
        assert "Feedback on the previous draft, address it: Say when to water the seedlings." in rendered[-1][1]
        article = second.article
        assert article is not None
        assert (article.id, article.revision) == (first.article.id, 2)
        assert article.status in ("needs_review", "needs_attention")
        assert article.provenance["feedback"] == "Say when to water the seedlings."
        stored = store.get_article(brief.brief_id)
        assert stored.revision == 2 and stored.body_markdown == article.body_markdown
        revisions = store.list_revisions(brief.brief_id)
        assert [(r.revision, r.source, r.author) for r in revisions] == [
            (1, "generated", "w1"),
            (2, "regenerated", "w2"),
        ]
        assert revisions[0].body_markdown == first.article.body_markdown
        assert [e.kind for e in store.list_events(brief.brief_id)] == ["generated", "sent_back", "regenerated"]
        assert [c["attempt"] for c in store.list_candidates(brief.brief_id)] == [1, 2]
        record = store.get_brief(brief.brief_id)
        assert (record.status, record.feedback) == ("done", None)
        # the Markdown file follows the new revision
        assert read_article_file(Path(article.file_path or ""))[1] == article.body_markdown
