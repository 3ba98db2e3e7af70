"""The ``copydesk`` command line (Typer + Rich). The only module that prints.

Every command turns a :class:`~worker.errors.CopydeskError` into one red line on stderr and the error's
exit code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.markdown import Markdown
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.cli.api import register as register_api_commands
from worker.cli.common import (
    ARTICLE_STATUSES,
    CommandGroup,
    FilesArg,
    JsonOpt,
    console,
    err_console,
    handle_errors,
    open_store,
    print_json,
    print_outcome_table,
    status_option,
)
from worker.cli.corpus import register as register_corpus_commands
from worker.cli.jobs import register as register_job_commands
from worker.cli.publish import register as register_publish_commands
from worker.cli.queue import register as register_queue_commands
from worker.cli.review import register as register_review_commands
from worker.cli.styles import register as register_style_commands
from worker.config import Settings, load_settings
from worker.errors import CopydeskError, ModelError
from worker.intake.loading import LoadReport, load_brief_files
from worker.intake.problems import BriefProblem
from worker.logs import json_handler, json_logs_enabled

logger = logging.getLogger(__name__)

app = CommandGroup(help="copydesk: briefs in, styled and scored articles out.")
articles_app = CommandGroup(help="Browse stored articles, their history and diffs.")
app.add_typer(articles_app, name="articles")


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress logs.")] = False,
) -> None:
    """Configure logging once for the whole command."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = json_handler() if json_logs_enabled() else RichHandler(console=err_console, show_path=False)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_and_report(files: Sequence[Path]) -> LoadReport:
    """Load brief files and print every problem (file, record, field) on stderr."""
    report = load_brief_files(files)
    print_problems(report.problems)
    return report


def print_problems(problems: Sequence[BriefProblem]) -> None:
    for problem in problems:
        err_console.print(f"[yellow]invalid:[/] {problem}", highlight=False, soft_wrap=True)


# -- configuration and inspection ---------------------------------------------------------------------


@app.command("config")
@handle_errors
def config_command(as_json: JsonOpt = False) -> None:
    """Print the effective configuration (environment, config file, defaults)."""
    settings = load_settings()
    values = settings.model_dump(mode="json")
    values["effective_store_url"] = settings.effective_store_url
    # unset sizes follow the engine's mode (exact rows or not)
    from worker.engine.placement import batch_size_for, flush_size_for

    try:
        values["effective_batch_size"] = batch_size_for(settings)
        values["effective_flush_size"] = flush_size_for(settings)
    except ModelError as exc:  # e.g. COPYDESK_DEVICE=cuda without a GPU: still show the settings
        values["effective_batch_size"] = values["effective_flush_size"] = f"unknown ({exc})"
    if as_json:
        print_json(values)
        return
    table = Table("setting", "value", "environment variable", title="copydesk configuration")
    for name, value in values.items():
        env = f"COPYDESK_{name.upper()}" if name in Settings.model_fields else ""
        table.add_row(name, str(value), env)
    console.print(table)


@app.command("validate")
@handle_errors
def validate_command(files: FilesArg, as_json: JsonOpt = False) -> None:
    """Check brief files (every field, and a pinned style) and list every problem; exit 1 if any is invalid."""
    from worker.styles.catalog import StyleCatalog

    report = load_brief_files(files)
    problems = list(report.problems)
    if any(item.brief.style for item in report.briefs):  # no styles folder is needed for briefs that pin none
        problems += StyleCatalog.for_settings(load_settings()).pin_problems(report.briefs)
    refused = {(p.file, p.record) for p in problems}
    valid = [item.brief.brief_id for item in report.briefs if (item.file, item.record) not in refused]
    print_problems(problems)
    if as_json:
        print_json({"valid": valid, "problems": [asdict(p) for p in problems]})
    else:
        console.print(f"{len(valid)} valid brief(s), {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(1)


@app.command("route")
@handle_errors
def route_command(files: FilesArg, as_json: JsonOpt = False) -> None:
    """Show, for each brief, every style's routing score and why the winner won."""
    from worker.pipeline.routing import route
    from worker.styles.catalog import StyleCatalog

    settings = load_settings()
    catalog = StyleCatalog.for_settings(settings)
    report = load_and_report(files)
    rows: list[dict[str, Any]] = []
    for item in report.briefs:
        try:
            decision = route(item.brief, catalog, settings.default_style)
        except CopydeskError as exc:
            rows.append({"brief": item.brief.brief_id, "error": str(exc)})
            continue
        rows.append(
            {
                "brief": item.brief.brief_id,
                "style": decision.style,
                "reason": decision.reason,
                "scores": {s.style: s.score for s in decision.scores},
            }
        )
    if as_json:
        print_json(rows)
    else:
        _print_routes(rows, catalog.names)
    if any("error" in row for row in rows) or not report.ok:
        raise typer.Exit(1)


def _print_routes(rows: list[dict[str, Any]], styles: list[str]) -> None:
    table = Table("brief", "chosen", *styles, "why", title="routing")
    for row in rows:
        if "error" in row:
            table.add_row(row["brief"], "[red]error[/]", *["" for _ in styles], row["error"])
            continue
        scores = [f"{row['scores'].get(name, 0):g}" for name in styles]
        table.add_row(row["brief"], f"[bold]{row['style']}[/]", *scores, row["reason"])
    console.print(table)


@app.command("prompt")
@handle_errors
def prompt_command(
    files: FilesArg,
    chat: Annotated[bool, typer.Option(help="Apply the base model's chat template.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Print the rendered prompt of each brief (as the model will see it with --chat)."""
    from worker.pipeline.prompts import PromptRenderer
    from worker.styles.catalog import StyleCatalog

    settings = load_settings()
    catalog = StyleCatalog.for_settings(settings)
    renderer = PromptRenderer(settings.templates_dir)
    tokenizer = _tokenizer(settings) if chat else None
    rows = [_prompt_row(item, settings, catalog, renderer, tokenizer) for item in load_and_report(files).briefs]
    if as_json:
        print_json(rows)
    else:
        _print_prompts(rows)
    if any("error" in row for row in rows):
        raise typer.Exit(1)


def _print_prompts(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if "error" in row:
            err_console.print(f"[red]{row['source']}:[/] {row['error']}", highlight=False)
            continue
        title = f"{row['brief']} · {row['style']} · {row['template']}"
        console.print(Panel(row["text"], title=title, expand=False), highlight=False, markup=False)


def _prompt_row(item: Any, settings: Settings, catalog: Any, renderer: Any, tokenizer: Any) -> dict[str, Any]:
    """One brief's rendered prompt (``brief``, ``style``, ``template``, ``text``), or its ``error``."""
    from worker.pipeline.routing import route

    try:
        style = catalog.get(route(item.brief, catalog, settings.default_style).style)
        prompt = renderer.render(item.brief, style)
    except CopydeskError as exc:
        return {"brief": item.brief.brief_id, "source": item.source, "error": str(exc)}
    text = (
        tokenizer.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
        if tokenizer is not None
        else "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt.messages())
    )
    return {"brief": item.brief.brief_id, "style": style.name, "template": prompt.template, "text": text}


def _tokenizer(settings: Settings) -> Any:
    from transformers import AutoTokenizer

    from worker.engine.base_model import resolve_base_model

    return AutoTokenizer.from_pretrained(resolve_base_model(settings).directory)


# -- generation ---------------------------------------------------------------------------------------


@app.command("generate")
@handle_errors
def generate_command(files: FilesArg, as_json: JsonOpt = False) -> None:
    """Write articles for the briefs in FILES inline (no queue), and print a table of results."""
    from worker.pipeline.runner import worker_identity, write_briefs

    settings = load_settings()
    report = load_and_report(files)
    store = open_store(settings)
    ids = _record_briefs(store, report)
    if not ids:
        err_console.print("nothing to generate")
        raise typer.Exit(0 if report.ok else 1)
    pipeline = _build_pipeline(settings)
    with _progress() as progress:
        task = progress.add_task("generating", total=len(ids))

        def on_progress(message: str, done: int) -> None:
            progress.update(task, description=message, advance=done)

        outcomes = write_briefs(
            ids,
            store=store,
            pipeline=pipeline,
            owner=worker_identity("inline"),
            lease_seconds=settings.lease_seconds,
            progress=on_progress,
        )
        progress.update(task, completed=len(ids), description="done")
    _print_outcomes(outcomes, as_json)
    if not report.ok or any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def _record_briefs(store: Any, report: LoadReport) -> list[str]:
    """Add each valid brief to the store; report those that already have an article."""
    ids: list[str] = []
    for item in report.briefs:
        store.add_brief(item.brief, source=item.source)
        status = store.get_brief(item.brief.brief_id).status
        if status == "done":
            err_console.print(f"[cyan]already written:[/] brief {item.brief.brief_id} has an article")
        else:
            ids.append(item.brief.brief_id)
    return ids


def _build_pipeline(settings: Settings) -> Any:
    from worker.engine.engine import Engine
    from worker.pipeline.pipeline import Pipeline
    from worker.scoring.embeddings import default_embedder, embedder_dtype_for

    with err_console.status("loading the model (the first run converts it, ~25 s)"):
        engine = Engine.from_settings(settings)
        embedder = default_embedder(embedder_dtype_for(engine.dtype_name))
    return Pipeline(settings, engine, embedder=embedder)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} briefs"),
        TimeElapsedColumn(),
        console=err_console,
    )


def _print_outcomes(outcomes: Sequence[Any], as_json: bool) -> None:
    if as_json:
        print_json(
            [
                {
                    "brief_id": o.brief_id,
                    "status": o.status,
                    "article_id": o.article.id if o.article else None,
                    "style": o.article.style if o.article else None,
                    "file": o.article.file_path if o.article else None,
                    "error": o.error,
                }
                for o in outcomes
            ]
        )
        return
    print_outcome_table(outcomes)


# -- articles -----------------------------------------------------------------------------------------


def _article_summary(article: Any) -> dict[str, Any]:
    return {
        "id": article.id,
        "brief_id": article.brief_id,
        "status": article.status,
        "style": article.style,
        "adapter_version": article.adapter_version,
        "title": article.title,
        "failing_gates": article.failing_gates,
        "file": article.file_path,
        "created_at": article.created_at,
    }


@articles_app.command("list")
@handle_errors
def articles_list(
    status: Annotated[str | None, status_option(ARTICLE_STATUSES, "Only articles with this status.")] = None,
    style: Annotated[str | None, typer.Option(help="Only articles of this style.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List stored articles, newest first."""
    store = open_store(load_settings())
    articles = store.list_articles(status=status, style=style, limit=limit)
    if as_json:
        print_json([_article_summary(a) for a in articles])
        return
    table = Table("id", "status", "style", "title", "failing gates", "created", title=f"{len(articles)} article(s)")
    for a in articles:
        table.add_row(a.id, a.status, a.style, a.title, ", ".join(a.failing_gates), f"{a.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@articles_app.command("show")
@handle_errors
def articles_show(
    article_id: Annotated[str, typer.Argument(help="Article id or brief id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one article: the text, its scorecard, its brief and its full provenance."""
    store = open_store(load_settings())
    article = store.get_article(article_id)
    brief = store.get_brief(article.brief_id)
    candidates = store.list_candidates(article.brief_id)
    if as_json:
        data = _article_summary(article) | {
            "body_markdown": article.body_markdown,
            "scores": article.scores,
            "provenance": article.provenance,
            "brief": brief.brief.model_dump(mode="json"),
            "candidates": [{k: v for k, v in c.items() if k != "text"} for c in candidates],
        }
        print_json(data)
        return
    console.print(Panel(Markdown(article.body_markdown), title=f"{article.id} · {article.status} · {article.style}"))
    console.print(_scorecard_table(article.scores, article.failing_gates))
    console.print(Panel(json.dumps(brief.brief.model_dump(mode="json"), indent=2, ensure_ascii=False), title="brief"))
    console.print(
        Panel(json.dumps(article.provenance, indent=2, ensure_ascii=False), title="provenance"), highlight=False
    )
    console.print(
        f"adapter sha256: {(article.provenance.get('adapter') or {}).get('sha256') or 'none'}", highlight=False
    )
    console.print(f"{len(candidates)} candidate(s) generated; file: {article.file_path}")


def _scorecard_table(scores: dict[str, Any], failing: Sequence[str]) -> Table:
    table = Table("score", "value", "range", "pass", "detail", title="scorecard")
    for name, score in scores.items():
        mark = "[green]pass[/]" if score["passed"] else "[bold red]FAIL[/]"
        if name in failing:
            mark += " (gate)"
        bounds = f"{score.get('low')}..{score.get('high')}"
        table.add_row(name, f"{score['value']:.3f}", bounds, mark, score.get("detail", ""))
    return table


register_queue_commands(app)
register_style_commands(app)
register_corpus_commands(app)
register_review_commands(app)
register_publish_commands(app, articles_app)
register_job_commands(app)
register_api_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
