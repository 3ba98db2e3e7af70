"""Readers of the four input formats (YAML, JSON, JSONL, CSV), shared by brief files, job files and the data
files of job templates. They parse; what a record must hold is the caller's business.

Input files come from people and other programs, so they are treated as hostile: nothing raises for bad
input (each problem is a :class:`~worker.intake.problems.BriefProblem`), nothing is evaluated, whole-file
formats are size-capped, YAML aliases (alias bombs), deep nesting and duplicate keys are refused, duplicate
JSON keys are remembered (:func:`duplicate_keys`), and JSONL and CSV are read and decoded line by line, so
that memory does not grow with the file and one line of invalid UTF-8 costs only its own record.

An empty JSONL or CSV file (no line with content) is a problem with the whole file, as an empty YAML or JSON
document is for the callers that expect a list.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import stat
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from worker.intake.problems import BriefProblem, file_problem

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 20 * 1024 * 1024
"""Largest ``.json`` file read (parsed whole); bigger sets belong in JSONL or CSV, which are streamed."""
MAX_YAML_BYTES = 5 * 1024 * 1024
"""Largest YAML file read. Lower than JSON because the alias-refusing YAML parser is pure Python (~2 s/MiB)."""
MAX_LINE_BYTES = 1024 * 1024
"""Longest JSONL line or CSV physical line; longer lines are a problem for their record and are skipped."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of YAML collections in a whole document."""

YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)

Row = tuple[str, Any]
"""A record read from a streamed file: its label (``"line 7"``) and its parsed value."""
HeaderCheck = Callable[[list[str]], "list[str] | str"]
"""Turns a CSV header row into the column names, or says (a whole-file message) why it is unusable."""


@dataclass(frozen=True)
class Parsed:
    """A whole parsed document (``value`` may be anything, ``None`` included)."""

    value: Any


# ------------------------------------------------------------------------------------------- files


def check_regular_file(path: Path) -> str:
    """``""`` when ``path`` is a readable regular file, else why not (never opens FIFOs or devices)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a directory, not a brief file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return ""


def read_text(path: Path, file: str, limit: int) -> str | BriefProblem:
    """A whole file (at most ``limit`` bytes) decoded as UTF-8 with or without a BOM, or the problem."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        message = f"file is larger than {limit / 2**20:g} MiB; split it, or use JSONL or CSV, which are streamed"
        return file_problem(file, message)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return file_problem(file, f"invalid UTF-8 at line {line} (byte {exc.start + 1} of the file)")


# -------------------------------------------------------------------------------------------- JSON


class _KeyCountingDict(dict[str, Any]):
    """A JSON object that had the same key more than once; ``duplicates`` names those keys."""

    duplicates: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that remembers duplicate keys instead of silently keeping the last value."""
    result = _KeyCountingDict(pairs)
    if len(result) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        result.duplicates = tuple(key for key, count in counts.items() if count > 1)
    return result


def duplicate_keys(value: Any) -> tuple[str, ...]:
    """The keys a parsed JSON object had more than once (YAML refuses them while parsing)."""
    return getattr(value, "duplicates", ())


def parse_json(text: str, file: str) -> Parsed | BriefProblem:
    """A whole JSON document, or the problem."""
    try:
        return Parsed(json.loads(text, object_pairs_hook=_json_object))
    except json.JSONDecodeError as exc:
        return file_problem(file, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except RecursionError:
        return file_problem(file, "invalid JSON: nested too deeply")
    except ValueError as exc:  # for example an integer with more than 4300 digits
        return file_problem(file, f"invalid JSON: {exc}")


def _parse_json_line(text: str) -> Parsed | str:
    """One JSONL line, or the error message."""
    try:
        return Parsed(json.loads(text, object_pairs_hook=_json_object))
    except json.JSONDecodeError as exc:
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    except ValueError as exc:
        return f"invalid JSON: {exc}"


# -------------------------------------------------------------------------------------------- YAML


class YamlRefused(yaml.MarkedYAMLError):
    """The YAML uses a feature copydesk refuses (aliases, deep nesting, duplicate keys)."""


class SafeYamlLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases (alias bombs), caps nesting depth and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(
                problem="YAML aliases (*name) are not allowed in brief files; write the values out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YamlRefused(
                    problem=f"nested more than {MAX_YAML_DEPTH} levels deep", problem_mark=event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        has_merge = any(key.tag == "tag:yaml.org,2002:merge" for key, _ in node.value)
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value) and not has_merge:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise YamlRefused(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
                seen.add(key)
        return mapping


def _yaml_error_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "syntax error"
    prefix = "refused YAML" if isinstance(exc, YamlRefused) else "invalid YAML"
    if mark is None:
        return f"{prefix}: {what}"
    return f"{prefix} at line {mark.line + 1}, column {mark.column + 1}: {what}"


def parse_yaml(text: str, file: str) -> Parsed | BriefProblem:
    """A whole YAML document (read with :class:`SafeYamlLoader`), or the problem."""
    try:
        return Parsed(yaml.load(text, Loader=SafeYamlLoader))  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        return file_problem(file, _yaml_error_message(exc))
    except yaml.YAMLError as exc:
        return file_problem(file, f"invalid YAML: {exc}")
    except RecursionError:
        return file_problem(file, "invalid YAML: nested too deeply")
    except ValueError as exc:  # for example an integer with more than 4300 digits
        return file_problem(file, f"invalid YAML: {exc}")


def read_document(path: Path, file: str) -> Parsed | BriefProblem:
    """A whole ``.json`` file, or a YAML file (any other suffix), parsed; or the problem."""
    is_json = path.suffix.lower() in JSON_SUFFIXES
    text = read_text(path, file, MAX_JSON_BYTES if is_json else MAX_YAML_BYTES)
    if isinstance(text, BriefProblem):
        return text
    return parse_json(text, file) if is_json else parse_yaml(text, file)


# ---------------------------------------------------------------------------------------- streamed


def _iter_raw_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line_number, bytes)`` for each physical line; ``bytes`` is ``None`` for an over-long line."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            _skip_rest_of_line(handle)
            yield number, None
            continue
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        yield number, line


def _skip_rest_of_line(handle: BinaryIO) -> None:
    while True:
        chunk = handle.readline(64 * 1024)
        if not chunk or chunk.endswith(b"\n"):
            return


def _too_long() -> str:
    return f"line is longer than {MAX_LINE_BYTES} bytes; skipped"


def _bad_utf8(exc: UnicodeDecodeError) -> str:
    return f"invalid UTF-8 (byte {exc.start + 1} of the line)"


def _empty_file(file: str, expected: str) -> BriefProblem:
    return file_problem(file, f"expected {expected}, found nothing (an empty file)")


def iter_jsonl(path: Path, file: str) -> Iterator[Row | BriefProblem]:
    """``("line N", value)`` for each line holding a JSON value; blank lines are skipped, bad lines are
    problems, and a file without any line of content is a problem."""
    content = False
    with path.open("rb") as handle:
        for number, raw in _iter_raw_lines(handle):
            record = f"line {number}"
            if raw is None:
                content = True
                yield BriefProblem(file, record, "", _too_long())
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                content = True
                yield BriefProblem(file, record, "", _bad_utf8(exc))
                continue
            text = text.strip(" \t\r\n")
            if not text:
                continue
            content = True
            parsed = _parse_json_line(text)
            yield BriefProblem(file, record, "", parsed) if isinstance(parsed, str) else (record, parsed.value)
    if not content:
        yield _empty_file(file, "one JSON object a line")


class _CsvLines:
    """Decoded lines of a CSV file for :func:`csv.reader`, remembering the lines that were bad.

    A bad line (invalid UTF-8, too long) is still handed to the CSV parser, decoded with replacement
    characters or cut short, so that the parser keeps its place; the record that contains it is then
    reported instead of validated.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._raw = _iter_raw_lines(handle)
        self.bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for number, raw in self._raw:
            if raw is None:
                self.bad[number] = _too_long()
                yield "\n"
                continue
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad[number] = _bad_utf8(exc)
                yield raw.decode("utf-8", errors="replace")

    def take_bad(self, last_line: int | None) -> tuple[int, str] | None:
        """Forget bad lines up to ``last_line`` (``None``: all); return the first of them, if any."""
        found = sorted(number for number in self.bad if last_line is None or number <= last_line)
        first = (found[0], self.bad[found[0]]) if found else None
        for number in found:
            del self.bad[number]
        return first


def iter_csv(path: Path, file: str, header: HeaderCheck) -> Iterator[Row | BriefProblem]:
    """``("line N", {column: cell})`` for each row (the cells that are not blank, as written), after a header
    row that ``header`` turns into the column names. Blank rows (empty cells, ASCII spaces) are skipped; a row with
    the wrong number of cells or a bad line is a problem; an unusable header row or an empty file is a problem with
    the file."""
    with path.open("rb") as handle:
        lines = _CsvLines(handle)
        reader = csv.reader(lines, strict=True)
        names = yield from _csv_header(reader, lines, file, header)
        if names is not None:
            yield from _csv_rows(reader, lines, names, file)


def _csv_header(
    reader: Any, lines: _CsvLines, file: str, header: HeaderCheck
) -> Generator[BriefProblem, None, list[str] | None]:
    """Sub-generator: read and check the header row; return the column names, or ``None``."""
    try:
        row = next(reader, None)
    except csv.Error as exc:
        yield file_problem(file, f"invalid CSV header row: {exc}")
        return None
    bad = lines.take_bad(reader.line_num)
    if bad:
        yield file_problem(file, f"header row (line {bad[0]}): {bad[1]}")
        return None
    if row is None:
        yield _empty_file(file, "a header row naming the columns")
        return None
    names = header(row)
    if isinstance(names, str):
        yield file_problem(file, names)
        return None
    return names


def _blank_row(row: list[str]) -> bool:
    """A row of empty cells or ASCII spaces and tabs (what spreadsheets and editors leave) is skipped. One whose cells
    hold only other whitespace (no-break spaces, ...) was written: it is a record, whose blank cells count as not
    given, so it fails validation by name rather than vanishing."""
    return not any(cell.strip(" \t\r\n") for cell in row)


def _csv_rows(reader: Any, lines: _CsvLines, names: list[str], file: str) -> Iterator[Row | BriefProblem]:
    while True:
        record = f"line {reader.line_num + 1}"
        try:
            row = next(reader, None)
        except csv.Error as exc:
            lines.take_bad(reader.line_num)
            yield BriefProblem(file, record, "", f"invalid CSV: {exc}")
            continue
        if row is None:
            break
        bad = lines.take_bad(reader.line_num)
        if bad:
            yield BriefProblem(file, f"line {bad[0]}", "", bad[1])
        elif len(row) != len(names) and not _blank_row(row):
            yield BriefProblem(file, record, "", f"has {len(row)} cells but the header row has {len(names)}")
        elif not _blank_row(row):
            yield record, {name: cell for name, cell in zip(names, row, strict=True) if cell.strip()}
    leftover = lines.take_bad(None)
    if leftover:
        yield BriefProblem(file, f"line {leftover[0]}", "", leftover[1])


__all__ = [
    "CSV_SUFFIXES",
    "JSONL_SUFFIXES",
    "JSON_SUFFIXES",
    "MAX_JSON_BYTES",
    "MAX_LINE_BYTES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "YAML_SUFFIXES",
    "HeaderCheck",
    "Parsed",
    "Row",
    "SafeYamlLoader",
    "YamlRefused",
    "check_regular_file",
    "duplicate_keys",
    "iter_csv",
    "iter_jsonl",
    "parse_json",
    "parse_yaml",
    "read_document",
    "read_text",
]
