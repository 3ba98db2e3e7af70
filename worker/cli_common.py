"""Shared pieces of the CLI modules: consoles, error handling, JSON output, common arguments."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

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
