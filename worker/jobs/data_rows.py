"""Data files of job templates: one mapping of column values a row, read with the shared readers of
:mod:`worker.intake.readers` (size caps, no YAML aliases, line by line decoding)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker.intake.problems import BriefProblem, file_problem, kind_of
from worker.intake.readers import (
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    JSONL_SUFFIXES,
    YAML_SUFFIXES,
    check_regular_file,
    duplicate_keys,
    iter_csv,
    iter_jsonl,
    read_document,
)
from worker.intake.validation import shape_problem

logger = logging.getLogger(__name__)

DataRow = tuple[str, str, dict[str, Any]]
"""``(file, record, mapping of column values)``."""


def iter_data_rows(path: Path) -> Iterator[DataRow | BriefProblem]:
    """Rows of a data file as ``(file, record, mapping)``, or problems; never raises for bad input.

    CSV (header row of column names; empty cells mean "no value"), YAML and JSON (a list of mappings, or
    ``{rows: [...]}``) and JSONL. Values must be text, numbers, true/false or lists of those.
    """
    file = str(path)
    unreadable = check_regular_file(path)
    if unreadable:
        yield file_problem(file, unreadable)
        return
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            yield from _streamed_rows(iter_csv(path, file, _column_names), file, strip=True)
        elif suffix in YAML_SUFFIXES + JSON_SUFFIXES:
            yield from _document_rows(path, file)
        elif suffix in JSONL_SUFFIXES:
            yield from _streamed_rows(iter_jsonl(path, file), file, strip=False)
        else:
            yield file_problem(file, f"unknown data file type {suffix or '(none)'!r}: use .csv, .yaml, .json or .jsonl")
    except OSError as exc:
        yield file_problem(file, f"cannot read the file: {exc.strerror or exc}")


def _column_names(row: list[str]) -> list[str] | str:
    header = [name.strip() for name in row]
    if not header or not all(header) or len(set(header)) != len(header):
        return "the first line must name every column once, for example 'sku,name,price'"
    return header


def _streamed_rows(
    rows: Iterator[tuple[str, Any] | BriefProblem], file: str, *, strip: bool
) -> Iterator[DataRow | BriefProblem]:
    for item in rows:
        if isinstance(item, BriefProblem):
            yield item
            continue
        record, data = item
        if strip:  # CSV cells: surrounding spaces are not part of the value
            data = {name: cell.strip() for name, cell in data.items()}
        yield from _checked_row(data, file, record)


def _document_rows(path: Path, file: str) -> Iterator[DataRow | BriefProblem]:
    parsed = read_document(path, file)
    if isinstance(parsed, BriefProblem):
        yield parsed
        return
    document = parsed.value
    if isinstance(document, dict) and set(document) == {"rows"}:
        document = document["rows"]
    if not isinstance(document, list):
        expected = "a list of rows, or a mapping with a single key 'rows'"
        yield file_problem(file, f"expected {expected}, found {kind_of(document)}")
        return
    for number, data in enumerate(document, start=1):
        yield from _checked_row(data, file, f"record {number}")


def _checked_row(data: Any, file: str, record: str) -> Iterator[DataRow | BriefProblem]:
    if not isinstance(data, dict):
        yield BriefProblem(file, record, "", f"expected a mapping of column values, found {kind_of(data)}")
        return
    for key in duplicate_keys(data)[:1]:
        yield BriefProblem(file, record, str(key), "is given more than once")
        return
    if not all(isinstance(key, str) for key in data):
        yield BriefProblem(file, record, "", "column names must be text")
        return
    shape = shape_problem(data)
    if shape:
        yield BriefProblem(file, record, *shape)
        return
    yield file, record, dict(data)


__all__ = ["DataRow", "iter_data_rows"]
