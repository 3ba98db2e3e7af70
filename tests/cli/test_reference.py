"""The generated CLI reference (docs/cli.md) and the conventions every command shares: one exit code per error
class, ``--help`` without Python types, ``--json`` on every command that lists or reports."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
import typer
from typer.testing import CliRunner

import worker
from worker import errors
from worker.cli.main import app
from worker.cli.reference import CLI_EXIT_CODES, REFERENCE, command_paths, exit_code_rows, render_reference
from worker.errors import CopydeskError, error_classes

PATHS = [path for path in command_paths(typer.main.get_command(app)) if path]
REPORTING = [
    ("validate",),
    ("prompt",),
    ("cancel",),
    ("run",),
    ("review",),
    ("styles", "promote"),
    ("feedback", "export"),
    ("submit",),
    ("status",),
    ("route",),
    ("generate",),
    ("config",),
    ("articles", "list"),
    ("articles", "show"),
    ("articles", "history"),
    ("jobs", "list"),
    ("jobs", "validate"),
    ("jobs", "schedule"),
    ("jobs", "run"),
    ("jobs", "history"),
    ("jobs", "show"),
    ("styles", "list"),
    ("styles", "show"),
    ("export",),
    ("workers",),
    ("corpus", "inspect"),
]


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_reference_is_up_to_date() -> None:
    expected = render_reference()
    assert REFERENCE.read_text(encoding="utf-8") == expected, (
        "docs/cli.md differs from the commands' --help: run `python -m worker.cli.reference`"
    )


def test_the_reference_has_every_command_and_every_error_class() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for path in PATHS:
        assert f"## copydesk {' '.join(path)}\n" in text, path
    for cls in error_classes():
        assert f"| {cls.exit_code} | `{cls.__name__}` |" in text, cls


def test_every_error_class_lives_in_errors_and_has_its_own_exit_code() -> None:
    for module in pkgutil.walk_packages(worker.__path__, "worker."):
        importlib.import_module(module.name)
    found: set[type[CopydeskError]] = set()
    pending = [CopydeskError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending += cls.__subclasses__()
    assert {cls.__module__ for cls in found} == {errors.__name__}
    assert found == set(error_classes())
    codes = [cls.exit_code for cls in found]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert not set(codes) & (set(CLI_EXIT_CODES) - {1})  # 0, 2 and 124 belong to the CLI itself
    assert all(0 < code < 126 for code in codes)
    table_codes = [code for code, _name, _meaning in exit_code_rows()]
    assert table_codes == sorted(set(table_codes))


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
def test_help_shows_no_python_types(path: tuple[str, ...]) -> None:
    text = help_text(path)
    assert not re.search(r"<(bool|str|int|float|Path|list\[[^\]]*\])>", text), text
    assert "list[" not in text
    assert "TRAININGMETHOD" not in text  # an enum option shows its values (sft|dpo), not its class name
    assert "TYPING." not in text  # a Literal option shows its values (float32|bfloat16|auto), not its type


@pytest.mark.parametrize("path", REPORTING, ids=" ".join)
def test_every_command_that_lists_or_reports_takes_json(path: tuple[str, ...]) -> None:
    assert "--json" in help_text(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["articles", "list", "--status", "pending"], "unknown status 'pending': use needs_review"),
        (["review", "--list", "--status", "pending"], "unknown status 'pending': use needs_review"),
        (
            ["export", "--to", "out", "--status", "needs_review"],
            "unknown status 'needs_review': use approved, published",
        ),
        (["export", "--to", "out", "--format", "pdf"], "unknown format 'pdf': use md, html, jsonl"),
        (["results", "job-x", "--format", "csv"], "unknown format 'csv': use jsonl, table"),
    ],
)
def test_status_and_format_are_checked_the_same_way_everywhere(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())
