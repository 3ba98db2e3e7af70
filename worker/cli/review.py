"""Review commands of the CLI: review (interactive), approve, reject, edit, regenerate. The decisions are store
operations (:mod:`worker.store.review`); :mod:`worker.cli.publish` has what comes after them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from worker.cli.common import ARTICLE_STATUSES, console, err_console, handle_errors, print_json, status_option
from worker.cli.show import AsOpt, IdArg, review_setup, show_article
from worker.config import Settings
from worker.errors import ConflictError, CopydeskError, QueueError
from worker.workflow import IN_REVIEW

RevOpt = Annotated[
    int | None,
    typer.Option("--rev", help="The revision you reviewed; refused if the article changed since (optimistic lock)."),
]
EmbedOpt = Annotated[
    bool, typer.Option("--embed/--no-embed", help="Measure on_topic with the sentence embedder when rescoring.")
]

ACTIONS = {
    "a": "approve",
    "approve": "approve",
    "r": "reject",
    "reject": "reject",
    "e": "edit",
    "edit": "edit",
    "b": "send back",
    "back": "send back",
    "send back": "send back",
    "s": "skip",
    "skip": "skip",
    "q": "quit",
    "quit": "quit",
}
ACTION_PROMPT = "action? [a]pprove [r]eject [e]dit [b] send back [s]kip [q]uit: "
DONE = {"approve": "approved", "reject": "rejected"}


# -- actions shared by the interactive review and the scriptable commands ------------------------------


def _after_change(settings: Settings, store: Any, article: Any) -> Any:
    from worker.review.actions import refresh_article_file

    return refresh_article_file(store, settings, article)


def do_edit(settings: Settings, store: Any, article: Any, actor: str, *, embed: bool, note: str | None = None) -> Any:
    """Edit in $EDITOR, rescore, store as a new revision; ``None`` when the text came back unchanged."""
    from worker.review.actions import discard_edit_file, edit_in_editor, optional_embedder, rescore

    edited = edit_in_editor(settings, article)
    if not edited.changed:
        discard_edit_file(edited)
        return None
    try:
        scored = rescore(store, settings, article, edited.markdown, embedder=optional_embedder(embed))
        updated = store.edit_article(
            article.id,
            actor=actor,
            title=scored.title,
            body_markdown=edited.markdown,
            scores=scored.scores,
            failing_gates=scored.failing_gates,
            expected_revision=article.revision,
            expected_status=article.status,
            note=note,
        )
    except CopydeskError as exc:
        raise type(exc)(f"{exc} (your edited text is kept in {edited.path})") from exc
    discard_edit_file(edited)
    return _after_change(settings, store, updated)


def do_send_back(settings: Settings, store: Any, article: Any, actor: str, feedback: str) -> Any:
    """Record the feedback and queue the brief again in the store (publish it with ``publish_regeneration``)."""
    updated = store.send_back(
        article.id, actor=actor, feedback=feedback, expected_revision=article.revision, expected_status=article.status
    )
    return _after_change(settings, store, updated)


def decide(settings: Settings, store: Any, article: Any, actor: str, kind: str, **fields: Any) -> Any:
    """Approve or reject (``kind``) the revision of ``article`` that was shown, then rewrite its file."""
    done = getattr(store, kind)(
        article.id, actor=actor, expected_revision=article.revision, expected_status=article.status, **fields
    )
    return _after_change(settings, store, done)


# -- interactive review -------------------------------------------------------------------------------


def _ask(prompt: str) -> str | None:
    try:
        return console.input(Text(prompt, style="bold")).strip()
    except EOFError:
        return None


def _review_one(settings: Settings, store: Any, article: Any, actor: str, position: str, embed: bool) -> str:
    """Show one article and act on it until a decision, a skip or quit; returns what happened."""
    show = True
    while True:
        if show:
            show_article(settings, store, article, position=position)
        answer = _ask(ACTION_PROMPT)
        if answer is None:
            return "quit"
        action = ACTIONS.get(answer.lower())
        show = False
        if action is None:
            _say(f"unknown action {answer!r}: type a, r, e, b, s or q", "yellow")
            continue
        if action in ("skip", "quit"):
            return "skipped" if action == "skip" else "quit"
        try:
            outcome, shown = _act(action, settings, store, article, actor, embed)
        except ConflictError as exc:
            _say(f"conflict: {exc}", "bold red", err=True)
            article, show = store.get_article(article.id), True
            if article.status not in IN_REVIEW:
                _say(f"{article.id} is now {article.status}; moving on", "yellow")
                return "changed"
            continue
        except CopydeskError as exc:
            _say(f"error: {exc}", "bold red", err=True)
            continue
        if outcome is not None:
            return outcome
        article, show = shown, shown is not article


def _act(action: str, settings: Settings, store: Any, article: Any, actor: str, embed: bool) -> tuple[str | None, Any]:
    """Do one action; (what happened, or ``None`` when the article is still under review; the article now)."""
    if action == "edit":
        edited = do_edit(settings, store, article, actor, embed=embed)
        if edited is None:
            _say("no changes; nothing saved", "yellow")
            return None, article
        _say(f"saved revision {edited.revision} of {edited.id}: {edited.status}, rescored", "cyan")
        return None, edited
    if action == "approve":
        decide(settings, store, article, actor, "approve")
        _say(f"approved {article.id} (revision {article.revision})", "green")
        return "approved", article
    needed = "a reason is required to reject" if action == "reject" else "feedback is required to send back"
    text = _ask("reason (required): " if action == "reject" else "feedback for the next draft (required): ")
    if not text:
        _say(f"{needed}; nothing was decided", "yellow")
        return None, article
    if action == "reject":
        decide(settings, store, article, actor, "reject", reason=text)
        _say(f"rejected {article.id} (revision {article.revision})", "red")
        return "rejected", article
    return _send_back(settings, store, article, actor, text), article


def _send_back(settings: Settings, store: Any, article: Any, actor: str, feedback: str) -> str:
    from worker.review.actions import publish_regeneration

    done = do_send_back(settings, store, article, actor, feedback)
    _say(f"sent back {article.id}: brief {done.brief_id} queued for a new draft", "magenta")
    try:
        publish_regeneration(settings, done.brief_id)
    except QueueError as exc:
        _say(f"warning: {exc}", "yellow", err=True)
    return "sent back"


def _say(message: str, style: str, *, err: bool = False) -> None:
    """One status line in one style (no markup, no highlighting: the text stays as written)."""
    (err_console if err else console).print(Text(message, style=style), soft_wrap=True)


def _queue_rows(articles: Sequence[Any]) -> list[dict[str, Any]]:
    from worker.store.review_queue import quality_of

    return [
        {
            "id": a.id,
            "status": a.status,
            "style": a.style,
            "quality": quality_of(a),
            "failing_gates": a.failing_gates,
            "title": a.title,
            "created_at": a.created_at,
        }
        for a in articles
    ]


def _queue_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("id", "status", "style", "quality", "failing gates", "title", "created", title="review queue")
    for row in rows:
        table.add_row(
            row["id"],
            row["status"],
            row["style"],
            f"{row['quality']:.2f}",
            ", ".join(row["failing_gates"]),
            row["title"],
            f"{row['created_at']:%Y-%m-%d %H:%M}",
        )
    return table


@handle_errors
def review_command(
    style: Annotated[str | None, typer.Option(help="Only articles of this style.")] = None,
    job: Annotated[str | None, typer.Option(help="Only articles of this job.")] = None,
    status: Annotated[
        list[str] | None,
        status_option(ARTICLE_STATUSES, "Statuses to review (repeatable); default needs_review and needs_attention."),
    ] = None,
    order: Annotated[str, typer.Option(help="oldest (first created) or worst (lowest quality) first.")] = "oldest",
    list_only: Annotated[bool, typer.Option("--list", help="Print the queue and exit.")] = False,
    embed: EmbedOpt = True,
    as_name: AsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print JSON instead of a table.")] = False,
) -> None:
    """Review drafts one by one: approve, reject (with a reason), edit in $EDITOR, send back, skip or quit."""
    settings, store, actor = review_setup(as_name)
    statuses = status or [str(s) for s in IN_REVIEW]
    queue = store.review_queue(statuses=statuses, style=style, job_id=job, order=order)
    if list_only or as_json:
        rows = _queue_rows(queue)
        if as_json:
            print_json(rows)
        else:
            console.print(_queue_table(rows))
        return
    if not queue:
        console.print("nothing to review")
        return
    _say(f"{len(queue)} article(s) to review, as {actor}", "bold")
    tally: Counter[str] = Counter()
    for number, queued in enumerate(queue, 1):
        article = store.get_article(queued.id)
        if article.status not in statuses:
            console.print(
                f"{article.id} is now {article.status}; skipped", markup=False, highlight=False, soft_wrap=True
            )
            tally["changed"] += 1
            continue
        outcome = _review_one(settings, store, article, actor, f"[{number}/{len(queue)}] ", embed)
        if outcome == "quit":
            break
        tally[outcome] += 1
    summary = ", ".join(f"{count} {name}" for name, count in tally.items()) or "no decisions"
    console.print(f"review finished: {summary}", markup=False, highlight=False, soft_wrap=True)


# -- scriptable decisions -----------------------------------------------------------------------------


def _load(store: Any, article_id: str, rev: int | None) -> Any:
    article = store.get_article(article_id)
    if rev is not None and rev != article.revision:
        raise ConflictError(
            f"article {article.id} changed since you loaded revision {rev}: it is now revision {article.revision}, "
            f"{article.status}; nothing was changed: review it again"
        )
    return article


def _decide_command(kind: str, article_id: str, rev: int | None, as_name: str | None, **fields: Any) -> None:
    settings, store, actor = review_setup(as_name)
    article = _load(store, article_id, rev)
    done = getattr(store, kind)(article.id, actor=actor, expected_revision=article.revision, **fields)
    _after_change(settings, store, done)
    if kind == "approve":
        from worker.queue.celery_app import make_celery
        from worker.queue.events import article_approved

        article_approved(store, make_celery(settings), done, actor)  # webhooks, as the API's approve
    console.print(
        f"{DONE[kind]} {done.id} (revision {done.revision}) as {actor}", markup=False, highlight=False, soft_wrap=True
    )


@handle_errors
def approve_command(
    article_id: IdArg,
    note: Annotated[str | None, typer.Option(help="An optional note kept with the decision.")] = None,
    rev: RevOpt = None,
    as_name: AsOpt = None,
) -> None:
    """Approve a draft (needs_review or needs_attention)."""
    _decide_command("approve", article_id, rev, as_name, note=note)


@handle_errors
def reject_command(
    article_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why the draft is rejected (required).")],
    rev: RevOpt = None,
    as_name: AsOpt = None,
) -> None:
    """Reject a draft with a reason."""
    _decide_command("reject", article_id, rev, as_name, reason=reason)


@handle_errors
def edit_command(
    article_id: IdArg,
    note: Annotated[str | None, typer.Option(help="A note kept with the new revision.")] = None,
    embed: EmbedOpt = True,
    as_name: AsOpt = None,
) -> None:
    """Edit a draft in $EDITOR; the text is saved as a new revision with recomputed scores."""
    settings, store, actor = review_setup(as_name)
    article = store.get_article(article_id)
    from worker.workflow import Action, check_transition

    check_transition(article.id, article.status, Action.EDIT)  # before opening the editor
    updated = do_edit(settings, store, article, actor, embed=embed, note=note)
    if updated is None:
        console.print("no changes; nothing saved", highlight=False)
        return
    failing = f"; failing gates: {', '.join(updated.failing_gates)}" if updated.failing_gates else ""
    console.print(
        f"saved {updated.id} revision {updated.revision} ({updated.status}){failing}", markup=False, highlight=False
    )


@handle_errors
def regenerate_command(
    article_id: IdArg,
    feedback: Annotated[str, typer.Option(help="What the next draft must change (goes into the prompt).")],
    rev: RevOpt = None,
    as_name: AsOpt = None,
) -> None:
    """Send a draft back: its brief is generated again through the queue with the feedback in the prompt."""
    from worker.review.actions import publish_regeneration

    settings, store, actor = review_setup(as_name)
    article = _load(store, article_id, rev)
    done = do_send_back(settings, store, article, actor, feedback)
    console.print(
        f"sent back {done.id}: brief {done.brief_id} queued for a new draft (revision {done.revision} kept)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    publish_regeneration(settings, done.brief_id)


def register(app: typer.Typer) -> None:
    app.command("review")(review_command)
    app.command("approve")(approve_command)
    app.command("reject")(reject_command)
    app.command("edit")(edit_command)
    app.command("regenerate")(regenerate_command)
