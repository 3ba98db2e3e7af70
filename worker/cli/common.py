"""Shared pieces of the CLI modules: consoles, error handling, JSON output, common options, and the
command classes that render ``--help`` the same way everywhere (no Python types)."""

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
from typer.core import TyperArgument, TyperCommand, TyperGroup

from worker.config import Settings
from worker.errors import CopydeskError
from worker.results import ArticleStatus

if TYPE_CHECKING:
    from worker.store import Store

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
FilesArg = Annotated[list[Path], typer.Argument(help="Brief files: .yaml, .yml, .json, .jsonl, .csv")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

ARTICLE_STATUSES = [str(s) for s in ArticleStatus]

FORMATS = {
    "table": "a table on the terminal",
    "jsonl": "one JSON object per line",
    "md": "Markdown files with front matter",
    "html": "HTML files",
}
"""The one ``--format`` vocabulary: every command's ``--format`` takes some of these names."""


# -- help without Python types ------------------------------------------------------------------------


_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "datetime": "TIME"}


def _plain_type(param: Any) -> str:
    """What the type column of ``--help`` shows: nothing for arguments and flags, else the value's kind."""
    if isinstance(param, TyperArgument) or getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    bare = str(param.bare_type()).removeprefix("list[").removesuffix("]")
    return _TYPE_NAMES.get(bare, bare.upper())


def _plain_params(params: list[Any]) -> list[Any]:
    """Each parameter shows :func:`_plain_type` in the type column (Typer asks ``display_type_rich`` for it)."""
    for param in params:
        shown = _plain_type(param)
        param.display_type_rich = lambda ctx=None, shown=shown: shown  # type: ignore[method-assign]
    return params


class PlainHelpCommand(TyperCommand):
    """A command whose ``--help`` shows flags without ``<bool>`` and arguments without a type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


class PlainHelpGroup(TyperGroup):
    """A command group with the same ``--help`` conventions as :class:`PlainHelpCommand`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_params(super().get_params(ctx))


class CommandGroup(typer.Typer):
    """The Typer app of every CLI module: plain ``--help`` for the group and each of its commands."""

    def __init__(self, *, help: str, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", True)
        super().__init__(help=help, cls=PlainHelpGroup, **kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:  # type: ignore[override]
        kwargs.setdefault("cls", PlainHelpCommand)
        return super().command(name, **kwargs)


# -- choices: --status and --format -------------------------------------------------------------------


def check_choice(option: str, value: str | None, allowed: Sequence[str]) -> None:
    """A usage error (exit 2) unless ``value`` is one of ``allowed``: every --status and --format is checked so."""
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"unknown {option} {value!r}: use {', '.join(allowed)}", param_hint=f"--{option}")


def _choice_callback(option: str, allowed: Sequence[str]) -> Callable[[Any], Any]:
    def callback(value: Any) -> Any:
        for item in value if isinstance(value, list | tuple) else [value]:
            check_choice(option, item, allowed)
        return value

    return callback


def status_option(allowed: Sequence[str], help: str) -> Any:
    """The ``--status`` option of every command that filters by status (repeatable where the type is a list)."""
    return typer.Option("--status", help=help, metavar="|".join(allowed), callback=_choice_callback("status", allowed))


def format_option(allowed: Sequence[str], help: str = "") -> Any:
    """The ``--format`` option: some names of :data:`FORMATS`, described from it."""
    described = "; ".join(f"{name}: {FORMATS[name]}" for name in allowed)
    return typer.Option(
        "--format",
        help=f"{help} {described}.".strip(),
        metavar="|".join(allowed),
        callback=_choice_callback("format", allowed),
    )


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
