"""The generated CLI reference, docs/cli.md: every command's ``--help`` and the table of exit codes.

``python -m worker.cli.reference`` rewrites the file; a test regenerates it and fails when the checked-in
copy differs, so the reference cannot drift from the commands or from :mod:`worker.errors`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer import rich_utils
from typer.testing import CliRunner

from worker.config import PROJECT_ROOT
from worker.errors import CopydeskError, error_classes
from worker.files import write_if_changed

REFERENCE = PROJECT_ROOT / "docs" / "cli.md"
WIDTH = 100
CLI_EXIT_CODES = {
    0: "success",
    1: "a command reports invalid records or failed briefs (`validate`, `route`, `generate`, `run`, ...)",
    2: "a usage error: an unknown command, a missing argument, a bad option value (`--status`, `--format`)",
    124: "`--wait` gave up before the job or run settled",
}
HEADER = """# copydesk command reference

Generated from the commands themselves by `python -m worker.cli.reference` (a test fails when this file
differs from what the commands print). Every command that lists or reports takes `--json`; every
`--format` takes names from one vocabulary (table, jsonl, md, html); every `--status` is checked the same
way (a usage error, exit 2, naming the allowed values).
"""


def exit_code_rows() -> list[tuple[int, str, str]]:
    """(code, error class or "", meaning) for every exit code, in order."""
    rows = [(code, "", meaning) for code, meaning in CLI_EXIT_CODES.items() if code != 1]
    for cls in error_classes():
        doc = inspect.getdoc(cls) or ""
        meaning = doc.split("\n\n")[0].replace("\n", " ")
        if cls is CopydeskError:
            meaning = f"{CLI_EXIT_CODES[1]}; also the base class, never raised itself"
        rows.append((cls.exit_code, f"`{cls.__name__}`", meaning))
    return sorted(rows, key=lambda row: row[0])


def exit_code_table() -> str:
    lines = ["| exit code | error | meaning |", "| --- | --- | --- |"]
    lines += [f"| {code} | {name} | {meaning} |" for code, name, meaning in exit_code_rows()]
    return "\n".join(lines)


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path (``("jobs", "run")``), groups before their commands, in help order."""
    yield prefix
    for name, command in getattr(group, "commands", {}).items():
        if not getattr(command, "hidden", False):
            yield from command_paths(command, (*prefix, name))


def render_help(app: typer.Typer, path: tuple[str, ...]) -> str:
    """The ``--help`` of one command, as a terminal of :data:`WIDTH` columns without colours shows it."""
    saved = rich_utils.MAX_WIDTH, rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM
    rich_utils.MAX_WIDTH, rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM = WIDTH, False, None
    try:
        result = CliRunner().invoke(app, [*path, "--help"], prog_name="copydesk", env={"NO_COLOR": "1"})
    finally:
        rich_utils.MAX_WIDTH, rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM = saved
    if result.exit_code != 0:
        raise RuntimeError(f"copydesk {' '.join(path)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()).strip("\n")


def render_reference() -> str:
    """The whole of docs/cli.md."""
    from worker.cli.main import app

    parts = [HEADER, "## Exit codes\n", exit_code_table(), ""]
    for path in command_paths(typer.main.get_command(app)):
        title = " ".join(("copydesk", *path))
        parts += [f"## {title}\n", "```", render_help(app, path), "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    """Rewrite docs/cli.md (or the file given as the only argument)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else REFERENCE
    write_if_changed(target, render_reference())


if __name__ == "__main__":
    main()
