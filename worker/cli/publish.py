"""Commands after the review: articles diff and history, export (they become published), feedback export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from worker.cli.common import (
    CommandGroup,
    JsonOpt,
    console,
    format_option,
    handle_errors,
    print_json,
    status_option,
)
from worker.cli.show import AsOpt, IdArg, diff_styles, review_setup
from worker.errors import ReviewError

EXPORT_FORMATS = ("md", "html", "jsonl")
EXPORTABLE = ("approved", "published")

feedback_app = CommandGroup(help="The feedback dataset: approved, edited and rejected articles.")


# -- articles diff and history ------------------------------------------------------------------------


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

    _settings, store, _actor = review_setup()
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
    _settings, store, _actor = review_setup()
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
    status: Annotated[
        list[str] | None, status_option(EXPORTABLE, "approved (default) and/or published; repeatable.")
    ] = None,
    output_format: Annotated[str, format_option(EXPORT_FORMATS)] = "md",
    layout: Annotated[str, typer.Option(help="For md: hugo (content/posts/) or jekyll (_posts/).")] = "hugo",
    style: Annotated[str | None, typer.Option(help="Only articles of this style.")] = None,
    as_name: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export approved articles (Markdown for Hugo/Jekyll, HTML or JSONL); they become published."""
    from worker.review.export import Exporter

    settings, store, actor = review_setup(as_name)
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
    as_json: JsonOpt = False,
) -> None:
    """Write approved (and edited) articles as SFT examples, and rejected/approved pairs as preference pairs."""
    from worker.review.feedback import export_feedback

    _settings, store, _actor = review_setup()
    summary = export_feedback(store, to, pairs_path=pairs, style=style)
    if as_json:
        print_json(
            {
                "examples": summary.examples,
                "examples_path": str(summary.examples_path),
                "pairs": summary.pairs,
                "pairs_path": str(summary.pairs_path),
            }
        )
        return
    console.print(
        f"{summary.examples} example(s) written to {summary.examples_path}; "
        f"{summary.pairs} preference pair(s) to {summary.pairs_path}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer, articles_app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.add_typer(feedback_app, name="feedback")
    articles_app.command("diff")(articles_diff)
    articles_app.command("history")(articles_history)
