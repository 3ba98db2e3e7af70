"""Review commands of the CLI: review (interactive), approve, reject, edit, regenerate, articles diff and
history, export, feedback export. The decisions are store operations (:mod:`worker.store.review`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from worker.cli.common import JsonOpt, console, err_console, handle_errors, open_store, print_json
from worker.config import Settings, load_settings
from worker.errors import ConflictError, CopydeskError, ReviewError
from worker.results import ArticleStatus
from worker.workflow import IN_REVIEW

feedback_app = typer.Typer(help="The feedback dataset: approved, edited and rejected articles.", no_args_is_help=True)

AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Reviewer name recorded on the decision (default: COPYDESK_REVIEWER, else the OS user)."),
]
RevOpt = Annotated[
    int | None,
    typer.Option("--rev", help="The revision you reviewed; refused if the article changed since (optimistic lock)."),
]
IdArg = Annotated[str, typer.Argument(help="Article id or brief id.")]
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


def _setup(as_name: str | None = None) -> tuple[Settings, Any, str]:
    from worker.review.actions import reviewer_name

    settings = load_settings()
    store = open_store(settings)
    return settings, store, reviewer_name(as_name, settings)


# -- showing an article -------------------------------------------------------------------------------


def scorecard_table(scores: dict[str, Any], failing_gates: Sequence[str]) -> Table:
    """The scorecard; a failing gate is a bold red row, a failing informational score is yellow."""
    table = Table("score", "value", "range", "result", "detail", title="scorecard")
    for name, score in scores.items():
        if not isinstance(score, dict):
            table.add_row(name, str(score), "", "", "")
            continue
        gate = name in failing_gates
        passed = bool(score.get("passed"))
        result = "FAIL (gate)" if gate else "pass" if passed else "fail"
        style = "bold red" if gate else "yellow" if not passed else None
        low, high = score.get("low"), score.get("high")
        bounds = "" if low is None and high is None else f"{'' if low is None else low}..{'' if high is None else high}"
        value = score.get("value")
        shown = f"{value:.3f}" if isinstance(value, int | float) else str(value)
        table.add_row(name, shown, bounds, result, str(score.get("detail", "")), style=style)
    return table


def _brief_table(brief: Any) -> Table:
    data = brief.model_dump(mode="json")
    table = Table("field", "value", title="brief", show_header=False)
    for key in ("id", "title", "content_type", "audience", "tone", "category", "target_words", "style", "notes"):
        if data.get(key) not in (None, "", []):
            table.add_row(key, str(data[key]))
    for key in ("tags", "keywords"):
        if data.get(key):
            table.add_row(key, ", ".join(data[key]))
    return table


def _provenance_table(provenance: dict[str, Any]) -> Table:
    table = Table("field", "value", title="provenance", show_header=False)
    model = provenance.get("model") or {}
    adapter = provenance.get("adapter") or {}
    template = provenance.get("template") or {}
    routing = provenance.get("routing") or {}
    rows = {
        "model": f"{model.get('id', '?')} ({model.get('dtype', '?')}, {model.get('device', '?')})" if model else "",
        "adapter": (
            f"{adapter.get('style')} {adapter.get('version')}" if adapter.get("version") else adapter.get("note", "")
        ),
        "template": f"{template.get('name', '')} {template.get('sha256_16', '')}".strip(),
        "routing": routing.get("reason", ""),
        "seed": f"{provenance.get('seed', '')} (attempt {provenance.get('attempt', '?')}, "
        f"candidate {provenance.get('candidate_index', '?')})"
        if "seed" in provenance
        else "",
        "feedback used": provenance.get("feedback", ""),
        "generated": provenance.get("created_at", ""),
    }
    for key, value in rows.items():
        if value:
            table.add_row(key, str(value))
    return table


def show_article(settings: Settings, store: Any, article: Any, *, position: str = "") -> None:
    """Everything a reviewer needs on one screen: text, scorecard, style rules, brief, provenance, history."""
    from worker.review.actions import style_violations
    from worker.store.review import quality_of

    header = (
        f"{position}{article.id} · {article.status} · {article.style} · revision {article.revision} · "
        f"quality {quality_of(article):.2f}"
    )
    console.print(Panel(Markdown(article.body_markdown), title=header, title_align="left"))
    console.print(scorecard_table(article.scores, article.failing_gates))
    if article.failing_gates:
        console.print(Text(f"failing gates: {', '.join(article.failing_gates)}", style="bold red"))
    violations = style_violations(settings, article)
    if violations:
        console.print(Text(f"style rules: {len(violations)} violation(s)", style="bold red"))
        for violation in violations:
            console.print(Text(f"  - {violation}", style="red"))
    else:
        console.print(Text("style rules: no violations", style="green"))
    console.print(_brief_table(store.get_brief(article.brief_id).brief))
    console.print(_provenance_table(article.provenance))
    events = store.list_events(article.id)
    if events:
        last = events[-1]
        note = f": {last.note}" if last.note else ""
        console.print(
            f"last: {last.kind} by {last.actor} at {last.created_at:%Y-%m-%d %H:%M} (revision {last.revision}){note}",
            highlight=False,
            markup=False,
        )


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


def do_send_back(settings: Settings, store: Any, article: Any, actor: str, feedback: str) -> tuple[Any, Any]:
    """Record the feedback and queue the brief again; then publish it. Returns (article, broker error)."""
    from worker.review.actions import publish_regeneration

    updated = store.send_back(
        article.id, actor=actor, feedback=feedback, expected_revision=article.revision, expected_status=article.status
    )
    updated = _after_change(settings, store, updated)
    return updated, publish_regeneration(settings, updated.brief_id)


def _queue_warning(error: Any, brief_id: str) -> str:
    return (
        f"{error}; brief {brief_id} is queued in the store and a worker's reconciler will publish it "
        "(or start one with `copydesk worker`)"
    )


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
        show = False
        answer = _ask(ACTION_PROMPT)
        if answer is None:
            return "quit"
        action = ACTIONS.get(answer.lower())
        if action is None:
            _say(f"unknown action {answer!r}: type a, r, e, b, s or q", "yellow")
            continue
        if action in ("skip", "quit"):
            return "skipped" if action == "skip" else "quit"
        try:
            if action == "approve":
                done = store.approve(
                    article.id, actor=actor, expected_revision=article.revision, expected_status=article.status
                )
                _after_change(settings, store, done)
                _say(f"approved {article.id} (revision {article.revision})", "green")
                return "approved"
            if action == "reject":
                reason = _ask("reason (required): ")
                if not reason:
                    _say("a reason is required to reject; nothing was decided", "yellow")
                    continue
                done = store.reject(
                    article.id,
                    actor=actor,
                    reason=reason,
                    expected_revision=article.revision,
                    expected_status=article.status,
                )
                _after_change(settings, store, done)
                _say(f"rejected {article.id} (revision {article.revision})", "red")
                return "rejected"
            if action == "edit":
                edited = do_edit(settings, store, article, actor, embed=embed)
                if edited is None:
                    _say("no changes; nothing saved", "yellow")
                    continue
                article, show = edited, True
                _say(f"saved revision {article.revision} of {article.id}: {article.status}, rescored", "cyan")
                continue
            feedback = _ask("feedback for the next draft (required): ")
            if not feedback:
                _say("feedback is required to send back; nothing was decided", "yellow")
                continue
            done, queue_error = do_send_back(settings, store, article, actor, feedback)
            _say(f"sent back {article.id}: brief {done.brief_id} queued for a new draft", "magenta")
            if queue_error is not None:
                _say(f"warning: {_queue_warning(queue_error, done.brief_id)}", "yellow", err=True)
            return "sent back"
        except ConflictError as exc:
            _say(f"conflict: {exc}", "bold red", err=True)
            article = store.get_article(article.id)
            if article.status not in IN_REVIEW:
                _say(f"{article.id} is now {article.status}; moving on", "yellow")
                return "changed"
            show = True
        except CopydeskError as exc:
            _say(f"error: {exc}", "bold red", err=True)


def _say(message: str, style: str, *, err: bool = False) -> None:
    """One status line in one style (no markup, no highlighting: the text stays as written)."""
    (err_console if err else console).print(Text(message, style=style), soft_wrap=True)


def _queue_table(articles: Sequence[Any]) -> Table:
    from worker.store.review import quality_of

    table = Table("id", "status", "style", "quality", "failing gates", "title", "created", title="review queue")
    for a in articles:
        table.add_row(
            a.id,
            a.status,
            a.style,
            f"{quality_of(a):.2f}",
            ", ".join(a.failing_gates),
            a.title,
            f"{a.created_at:%Y-%m-%d %H:%M}",
        )
    return table


@handle_errors
def review_command(
    style: Annotated[str | None, typer.Option(help="Only articles of this style.")] = None,
    job: Annotated[str | None, typer.Option(help="Only articles of this job.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="Statuses to review (repeatable); default needs_review and needs_attention."),
    ] = None,
    order: Annotated[str, typer.Option(help="oldest (first created) or worst (lowest quality) first.")] = "oldest",
    list_only: Annotated[bool, typer.Option("--list", help="Print the queue and exit.")] = False,
    embed: EmbedOpt = True,
    as_name: AsOpt = None,
) -> None:
    """Review drafts one by one: approve, reject (with a reason), edit in $EDITOR, send back, skip or quit."""
    settings, store, actor = _setup(as_name)
    statuses = status or [str(s) for s in IN_REVIEW]
    known = [str(s) for s in ArticleStatus]
    unknown = [s for s in statuses if s not in known]
    if unknown:
        raise ReviewError(f"unknown status {', '.join(unknown)}: use {', '.join(known)}")
    queue = store.review_queue(statuses=statuses, style=style, job_id=job, order=order)
    if list_only:
        console.print(_queue_table(queue))
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


@handle_errors
def approve_command(
    article_id: IdArg,
    note: Annotated[str | None, typer.Option(help="An optional note kept with the decision.")] = None,
    rev: RevOpt = None,
    as_name: AsOpt = None,
) -> None:
    """Approve a draft (needs_review or needs_attention)."""
    settings, store, actor = _setup(as_name)
    article = _load(store, article_id, rev)
    done = store.approve(article.id, actor=actor, note=note, expected_revision=article.revision)
    _after_change(settings, store, done)
    from worker.queue.celery_app import make_celery
    from worker.queue.events import article_approved

    article_approved(store, make_celery(settings), done, actor)  # webhooks, as the API's approve
    console.print(
        f"approved {done.id} (revision {done.revision}) as {actor}", markup=False, highlight=False, soft_wrap=True
    )


@handle_errors
def reject_command(
    article_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why the draft is rejected (required).")],
    rev: RevOpt = None,
    as_name: AsOpt = None,
) -> None:
    """Reject a draft with a reason."""
    settings, store, actor = _setup(as_name)
    article = _load(store, article_id, rev)
    done = store.reject(article.id, actor=actor, reason=reason, expected_revision=article.revision)
    _after_change(settings, store, done)
    console.print(
        f"rejected {done.id} (revision {done.revision}) as {actor}", markup=False, highlight=False, soft_wrap=True
    )


@handle_errors
def edit_command(
    article_id: IdArg,
    note: Annotated[str | None, typer.Option(help="A note kept with the new revision.")] = None,
    embed: EmbedOpt = True,
    as_name: AsOpt = None,
) -> None:
    """Edit a draft in $EDITOR; the text is saved as a new revision with recomputed scores."""
    settings, store, actor = _setup(as_name)
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
    settings, store, actor = _setup(as_name)
    article = _load(store, article_id, rev)
    done, queue_error = do_send_back(settings, store, article, actor, feedback)
    console.print(
        f"sent back {done.id}: brief {done.brief_id} queued for a new draft (revision {done.revision} kept)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if queue_error is not None:
        raise type(queue_error)(_queue_warning(queue_error, done.brief_id))


# -- articles diff and history ------------------------------------------------------------------------


def diff_styles(line: str) -> str | None:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("@@"):
        return "cyan"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    return None


@handle_errors
def articles_diff(
    article_id: IdArg,
    rev: Annotated[
        list[int] | None, typer.Option("--rev", help="Revisions to compare: none (previous vs latest), one or two.")
    ] = None,
    context: Annotated[int, typer.Option(help="Lines of context.")] = 3,
) -> None:
    """A coloured unified diff between two revisions of an article."""
    from worker.review.actions import pick_revisions, unified_diff

    _settings, store, _actor = _setup()
    revisions = store.list_revisions(article_id)
    if not revisions:
        raise ReviewError(f"article {article_id} has no recorded revisions")
    old_number, new_number = pick_revisions([r.revision for r in revisions], rev or [])
    old = store.get_revision(article_id, old_number)
    new = store.get_revision(article_id, new_number)
    lines = unified_diff(
        old.body_markdown,
        new.body_markdown,
        old_label=f"{old.article_id} revision {old.revision} ({old.source} by {old.author})",
        new_label=f"{new.article_id} revision {new.revision} ({new.source} by {new.author})",
        context=context,
    )
    if not lines:
        console.print(f"revisions {old_number} and {new_number} have the same text")
        return
    for line in lines:
        console.print(Text(line, style=diff_styles(line) or ""), soft_wrap=True)


@handle_errors
def articles_history(article_id: IdArg, as_json: JsonOpt = False) -> None:
    """Every decision and revision of an article: who, when, what."""
    _settings, store, _actor = _setup()
    article = store.get_article(article_id)
    events = store.list_events(article.id)
    revisions = store.list_revisions(article.id)
    if as_json:
        print_json(
            {
                "article_id": article.id,
                "status": article.status,
                "revision": article.revision,
                "events": [vars(e) for e in events],
                "revisions": [
                    {k: v for k, v in vars(r).items() if k not in ("body_markdown", "provenance")} for r in revisions
                ],
            }
        )
        return
    table = Table("when (UTC)", "who", "what", "status", "revision", "note", title=f"history of {article.id}")
    for e in events:
        change = f"{e.from_status or '-'} -> {e.to_status}" if e.from_status != e.to_status else e.to_status
        table.add_row(f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.actor, e.kind, change, str(e.revision), e.note or "")
    console.print(table)
    revs = Table("revision", "source", "author", "when (UTC)", "words", "failing gates", "note", title="revisions")
    for r in revisions:
        revs.add_row(
            str(r.revision),
            r.source,
            r.author,
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            str(len(r.body_markdown.split())),
            ", ".join(r.failing_gates),
            r.note or "",
        )
    console.print(revs)


# -- export and feedback ------------------------------------------------------------------------------


@handle_errors
def export_command(
    to: Annotated[Path, typer.Option("--to", help="Directory to write into (created if missing).")],
    status: Annotated[list[str] | None, typer.Option(help="approved (default) and/or published; repeatable.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="md, html or jsonl.")] = "md",
    layout: Annotated[str, typer.Option(help="For md: hugo (content/posts/) or jekyll (_posts/).")] = "hugo",
    style: Annotated[str | None, typer.Option(help="Only articles of this style.")] = None,
    as_name: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export approved articles (Markdown for Hugo/Jekyll, HTML or JSONL); they become published."""
    from worker.review.export import Exporter

    settings, store, actor = _setup(as_name)
    exporter = Exporter(store, settings.templates_dir, output_format=output_format, layout=layout, actor=actor)
    report = exporter.export(to, statuses=status or ["approved"], style=style)
    if as_json:
        print_json(
            {
                "exported": report.exported,
                "published": report.published,
                "written": [str(p) for p in report.written],
                "unchanged": [str(p) for p in report.unchanged],
            }
        )
        return
    console.print(
        f"{len(report.exported)} article(s) exported to {to} ({output_format}"
        f"{', ' + layout if output_format == 'md' else ''}): {len(report.written)} file(s) written, "
        f"{len(report.unchanged)} unchanged; {len(report.published)} newly published",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@feedback_app.command("export")
@handle_errors
def feedback_export(
    to: Annotated[Path, typer.Option("--to", help="The SFT examples file (JSONL).")],
    pairs: Annotated[
        Path | None, typer.Option(help="The preference pairs file (default: <to>.pairs.jsonl beside it).")
    ] = None,
    style: Annotated[str | None, typer.Option(help="Only articles of this style.")] = None,
) -> None:
    """Write approved (and edited) articles as SFT examples, and rejected/approved pairs as preference pairs."""
    from worker.review.feedback import export_feedback

    _settings, store, _actor = _setup()
    summary = export_feedback(store, to, pairs_path=pairs, style=style)
    console.print(
        f"{summary.examples} example(s) written to {summary.examples_path}; "
        f"{summary.pairs} preference pair(s) to {summary.pairs_path}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer, articles_app: typer.Typer) -> None:
    app.command("review")(review_command)
    app.command("approve")(approve_command)
    app.command("reject")(reject_command)
    app.command("edit")(edit_command)
    app.command("regenerate")(regenerate_command)
    app.command("export")(export_command)
    app.add_typer(feedback_app, name="feedback")
    articles_app.command("diff")(articles_diff)
    articles_app.command("history")(articles_history)


__all__ = ["register", "scorecard_table", "show_article"]
