"""Shared pieces of the CLI modules: consoles, error handling, JSON output, common arguments."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from worker.config import Settings
from worker.errors import CopydeskError

if TYPE_CHECKING:
    from worker.store import Store

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
FilesArg = Annotated[list[Path], typer.Argument(help="Brief files: .yaml, .yml, .json, .jsonl, .csv")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def debug_enabled() -> bool:
    return "--debug" in sys.argv or os.environ.get("COPYDESK_DEBUG") == "1"


def handle_errors(command: F) -> F:
    """Turn copydesk errors into one clear line and an exit code (a traceback only with --debug)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CopydeskError as exc:
            if debug_enabled():
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def open_store(settings: Settings) -> Store:
    """The configured store, migrated to the current schema (cheap when it already is)."""
    from worker.store import Store

    store = Store.from_settings(settings)
    store.migrate()
    return store


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str, ensure_ascii=False))


SUMMARY_SCORES = ("readability", "grade", "sentiment", "length", "on_topic")


def print_outcome_table(outcomes: Sequence[Any]) -> None:
    """A results table of rows with ``brief_id``, ``status``, ``article`` (or None) and ``error``."""
    table = Table(title="results")
    table.add_column("brief", overflow="fold", min_width=12)
    table.add_column("status / failing gates", overflow="fold", min_width=15)
    table.add_column("style", overflow="fold", min_width=10)
    for name in SUMMARY_SCORES:
        table.add_column(name.replace("_", " ").replace("readability", "ease"), justify="right")
    for o in outcomes:
        if o.article is None:
            table.add_row(o.brief_id, f"[red]{o.status}[/]: {o.error or ''}", "", *["" for _ in SUMMARY_SCORES])
            continue
        scores = [_score_cell(o.article.scores.get(name)) for name in SUMMARY_SCORES]
        colour = "green" if o.article.status == "needs_review" else "yellow"
        failing = f"\n[red]{', '.join(o.article.failing_gates)}[/]" if o.article.failing_gates else ""
        table.add_row(o.brief_id, f"[{colour}]{o.article.status}[/]{failing}", o.article.style, *scores)
    console.print(table)
    done = sum(1 for o in outcomes if o.article is not None)
    console.print(f"{done} article(s) written; show one with: copydesk articles show <brief id>")


def _score_cell(score: dict[str, Any] | None) -> str:
    if not score:
        return ""
    colour = "green" if score.get("passed") else "red"
    value = score["value"]
    return f"[{colour}]{value:.2f}[/]" if abs(value) < 10 else f"[{colour}]{value:.0f}[/]"
