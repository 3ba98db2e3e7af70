"""Loading brief files: the input side of the validate stage.

Brief files come from people and other programs, so they are treated as hostile input. Every record becomes
either a :class:`SourcedBrief` (a validated :class:`~worker.intake.briefs.Brief` plus where it came from) or one or
more :class:`BriefProblem` (what is wrong, where). Nothing here raises for bad input, and nothing is ever
evaluated: template syntax and spreadsheet formulas stay plain text.

Formats, chosen by the file's extension:

* ``.yaml`` / ``.yml`` and ``.json``: a list of mappings, or a mapping ``{briefs: [...]}``. Parsed whole, so
  the file size is capped. YAML aliases are refused (alias bombs) and nesting depth is capped.
* ``.jsonl`` / ``.ndjson``: one JSON object a line, blank lines ignored. Streamed line by line.
* ``.csv``: a header row of field names, then one brief a row; UTF-8 with or without a BOM; list fields are
  ``;``-separated; empty cells mean "not given". Streamed line by line.

JSONL and CSV are decoded line by line, so one line of invalid UTF-8 costs only its own record.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import stat
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from pydantic import ValidationError

from worker.intake.briefs import Brief

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 20 * 1024 * 1024
"""Largest ``.json`` file read (parsed whole); bigger sets belong in JSONL or CSV, which are streamed."""
MAX_YAML_BYTES = 5 * 1024 * 1024
"""Largest YAML file read. Lower than JSON because the alias-refusing YAML parser is pure Python (~2 s/MiB)."""
MAX_LINE_BYTES = 1024 * 1024
"""Longest JSONL line or CSV physical line; longer lines are a problem for their record and are skipped."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of YAML collections in a whole document."""
MAX_RECORD_DEPTH = 6
"""Deepest nesting of collections inside one record (a brief needs 2: the mapping and its lists)."""
MAX_FIELD_NAME_CHARS = 80
MAX_PROBLEMS_PER_RECORD = 20
"""A record with more validation errors than this gets the first ones and a count of the rest."""

_WHOLE_FILE_SHAPE = "a list of briefs, or a mapping with a single key 'briefs' holding that list"
_FIELD_NAMES = tuple(Brief.model_fields)
_PLAIN_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class BriefProblem:
    """Why one record (or a whole file) could not be loaded."""

    file: str
    """The path as given."""
    record: str
    """``"line 7"`` (JSONL, CSV), ``"record 3"`` (YAML and JSON lists, 1-based) or ``""`` for the whole file."""
    field: str
    """Dotted field name (``"tags.2"``), ``""`` when the problem is not about one field."""
    message: str

    def __str__(self) -> str:
        where = [self.file or "<unnamed>"]
        if self.record:
            where.append(self.record)
        if self.field:
            where.append(f"field '{self.field}'")
        return _one_line(f"{', '.join(where)}: {self.message}")


@dataclass(frozen=True)
class SourcedBrief:
    """A validated brief and the place it was read from."""

    brief: Brief
    file: str
    record: str

    @property
    def source(self) -> str:
        """``"file:record"``, for messages and provenance."""
        return f"{self.file}:{self.record}"


@dataclass
class LoadReport:
    """Everything read from a set of brief files: the good briefs and the problems, in file order."""

    briefs: list[SourcedBrief] = field(default_factory=list)
    problems: list[BriefProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found (an empty set of files is ok)."""
        return not self.problems


# ---------------------------------------------------------------------------------------------- public API


def iter_brief_file(path: Path) -> Iterator[SourcedBrief | BriefProblem]:
    """Yield each brief of one file, or the problems found, in file order. Never raises for bad input.

    JSONL and CSV are streamed: memory use does not grow with the file. YAML and JSON are parsed whole,
    up to :data:`MAX_YAML_BYTES` / :data:`MAX_JSON_BYTES`.
    """
    path = Path(path)
    file = str(path)
    unreadable = _check_regular_file(path)
    if unreadable:
        yield _problem(file, unreadable)
        return
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        shown = path.suffix or "(none)"
        yield _problem(file, f"unknown brief file type {shown!r}: use .yaml, .yml, .json, .jsonl, .ndjson or .csv")
        return
    try:
        yield from reader(path, file)
    except OSError as exc:
        yield _problem(file, f"cannot read the file: {exc.strerror or exc}")


def load_brief_files(paths: Sequence[Path]) -> LoadReport:
    """Load every file; collect the briefs and all problems. Duplicate ids are problems on the later record."""
    report = LoadReport()
    first_seen: dict[str, str] = {}
    for path in paths:
        before = (len(report.briefs), len(report.problems))
        for item in iter_brief_file(Path(path)):
            if isinstance(item, BriefProblem):
                report.problems.append(item)
            elif (brief_id := item.brief.brief_id) in first_seen:
                message = f"duplicate brief id {brief_id!r}: first seen at {first_seen[brief_id]}"
                report.problems.append(BriefProblem(item.file, item.record, "id", message))
            else:
                first_seen[brief_id] = item.source
                report.briefs.append(item)
        logger.debug(
            "read %s: %d briefs, %d problems",
            path,
            len(report.briefs) - before[0],
            len(report.problems) - before[1],
        )
    logger.info("loaded %d briefs from %d files, %d problems", len(report.briefs), len(paths), len(report.problems))
    return report


# ---------------------------------------------------------------------------------------- record validation


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


def _validate_record(
    data: Any, file: str, record: str, *, yaml_hints: bool = False
) -> Iterator[SourcedBrief | BriefProblem]:
    """Turn one parsed record into a :class:`SourcedBrief`, or yield its problems."""
    if not isinstance(data, dict):
        yield BriefProblem(file, record, "", f"expected a mapping of brief fields, found {_kind(data)}")
        return
    duplicates = getattr(data, "duplicates", ())
    for key in duplicates:
        yield BriefProblem(file, record, _field_name((key,)), "is given more than once")
    if duplicates:
        return
    shape = _shape_problem(data)
    if shape:
        yield BriefProblem(file, record, *shape)
        return
    try:
        brief = Brief.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        shown = errors if len(errors) <= MAX_PROBLEMS_PER_RECORD else errors[: MAX_PROBLEMS_PER_RECORD - 1]
        for error in shown:
            message = _error_message(error["type"], error["msg"], yaml_hints=yaml_hints)
            yield BriefProblem(file, record, _field_name(error.get("loc", ())), message)
        if len(shown) < len(errors):
            yield BriefProblem(file, record, "", f"and {len(errors) - len(shown)} more problems in this record")
        return
    yield SourcedBrief(brief, file, record)


def _error_message(kind: str, msg: str, *, yaml_hints: bool) -> str:
    """A short message for one pydantic error, written for the person who wrote the file."""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a brief field (fields: {', '.join(_FIELD_NAMES)})"
    if kind == "invalid_key":
        return "field names must be text"
    if kind in {"int_type", "int_parsing", "int_from_float", "int_parsing_size"}:
        return "must be a whole number"
    msg = msg.removeprefix("Value error, ")
    if yaml_hints and kind == "string_type":
        msg += " (in YAML, put numbers, dates and yes/no values that are meant as text in quotes)"
    return msg


def _field_name(loc: Sequence[Any]) -> str:
    return _shorten(".".join(str(part) for part in loc), MAX_FIELD_NAME_CHARS)


def _shape_problem(record: dict[Any, Any]) -> tuple[str, str] | None:
    """``(field, message)`` when a record is not plain data (too deep, or sets, bytes, dates...), else None.

    Walks without recursion. Plain data is what JSON can express; YAML can express more (``!!set``,
    ``!!binary``, timestamps), which would otherwise be coerced silently, or in the case of sets, in a
    random order that would make derived ids non-deterministic.
    """
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(record, 1, ())]
    while stack:
        value, depth, loc = stack.pop()
        if isinstance(value, dict):
            children: Iterator[tuple[Any, Any]] = iter(value.items())
        elif isinstance(value, list):
            children = enumerate(value)
        elif isinstance(value, _PLAIN_SCALARS):
            continue
        else:
            return _field_name(loc), f"{_kind(value)} is not allowed here: use text, numbers or lists"
        if depth > MAX_RECORD_DEPTH:
            return _field_name(loc), f"is nested more than {MAX_RECORD_DEPTH} levels deep"
        stack.extend((child, depth + 1, (*loc, key)) for key, child in children)
    return None


# ------------------------------------------------------------------------------------ whole-file formats


class _YamlRefused(yaml.MarkedYAMLError):
    """The YAML uses a feature copydesk refuses (aliases, deep nesting, duplicate keys)."""


class _BriefYamlLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases (alias bombs), caps nesting depth and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _YamlRefused(
                problem="YAML aliases (*name) are not allowed in brief files; write the values out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlRefused(
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
                    raise _YamlRefused(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
                seen.add(key)
        return mapping


def _read_yaml(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    text = yield from _read_whole_text(path, file, MAX_YAML_BYTES)
    if text is None:
        return
    try:
        document = yaml.load(text, Loader=_BriefYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        yield _problem(file, _yaml_error_message(exc))
        return
    except yaml.YAMLError as exc:
        yield _problem(file, f"invalid YAML: {exc}")
        return
    except RecursionError:
        yield _problem(file, "invalid YAML: nested too deeply")
        return
    except ValueError as exc:  # for example an integer with more than 4300 digits
        yield _problem(file, f"invalid YAML: {exc}")
        return
    yield from _validate_document(document, file, yaml_hints=True)


def _yaml_error_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "syntax error"
    prefix = "refused YAML" if isinstance(exc, _YamlRefused) else "invalid YAML"
    if mark is None:
        return f"{prefix}: {what}"
    return f"{prefix} at line {mark.line + 1}, column {mark.column + 1}: {what}"


def _read_json(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    text = yield from _read_whole_text(path, file, MAX_JSON_BYTES)
    if text is None:
        return
    try:
        document = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        yield _problem(file, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return
    except RecursionError:
        yield _problem(file, "invalid JSON: nested too deeply")
        return
    except ValueError as exc:  # for example an integer with more than 4300 digits
        yield _problem(file, f"invalid JSON: {exc}")
        return
    yield from _validate_document(document, file)


def _validate_document(document: Any, file: str, *, yaml_hints: bool = False) -> Iterator[SourcedBrief | BriefProblem]:
    """Check the whole-file shape, then validate each record."""
    records = document
    if isinstance(document, dict):
        if "briefs" not in document:
            hint = "; it looks like a single brief: put it in a list" if "title" in document else ""
            yield _problem(file, f"expected {_WHOLE_FILE_SHAPE}{hint}")
            return
        others = sorted(str(key) for key in document if key != "briefs")
        if others:
            shown = _shorten(", ".join(others), 200)
            yield _problem(file, f"unexpected top-level key(s) {shown}: expected only 'briefs'")
            return
        records = document["briefs"]
    if not isinstance(records, list):
        yield _problem(file, f"expected {_WHOLE_FILE_SHAPE}, found {_kind(records)}")
        return
    for number, data in enumerate(records, start=1):
        yield from _validate_record(data, file, f"record {number}", yaml_hints=yaml_hints)


def _read_whole_text(path: Path, file: str, limit: int) -> Generator[BriefProblem, None, str | None]:
    """Sub-generator: read and decode a whole file (at most ``limit`` bytes); return the text or ``None``."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        yield _problem(
            file,
            f"file is larger than {limit / 2**20:g} MiB; split it, or use JSONL or CSV, which are streamed",
        )
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield _problem(file, f"invalid UTF-8 at line {line} (byte {exc.start + 1} of the file)")
        return None


# -------------------------------------------------------------------------------------- streamed formats


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


def _read_jsonl(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    with path.open("rb") as handle:
        for number, raw in _iter_raw_lines(handle):
            record = f"line {number}"
            if raw is None:
                yield BriefProblem(file, record, "", _too_long())
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BriefProblem(file, record, "", _bad_utf8(exc))
                continue
            text = text.strip(" \t\r\n")
            if not text:
                continue
            parsed = _parse_json_line(text)
            if isinstance(parsed, str):
                yield BriefProblem(file, record, "", parsed)
                continue
            yield from _validate_record(parsed[0], file, record)


def _parse_json_line(text: str) -> tuple[Any] | str:
    """Parse one JSONL line: ``(value,)``, or the error message."""
    try:
        return (json.loads(text, object_pairs_hook=_json_object),)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    except ValueError as exc:
        return f"invalid JSON: {exc}"


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


def _read_csv(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    with path.open("rb") as handle:
        lines = _CsvLines(handle)
        reader = csv.reader(lines, strict=True)
        header = yield from _read_csv_header(reader, lines, file)
        if header is None:
            return
        yield from _read_csv_rows(reader, lines, header, file)


def _read_csv_header(reader: Any, lines: _CsvLines, file: str) -> Generator[BriefProblem, None, list[str] | None]:
    """Sub-generator: read and check the header row; return the field names, or ``None``."""
    try:
        row = next(reader, None)
    except csv.Error as exc:
        yield _problem(file, f"invalid CSV header row: {exc}")
        return None
    bad = lines.take_bad(reader.line_num)
    if bad:
        yield _problem(file, f"header row (line {bad[0]}): {bad[1]}")
        return None
    if not row:
        yield _problem(file, "no header row: the first line must name the fields, for example 'id,title,tags'")
        return None
    header = [name.strip().lower() for name in row]
    problem = _header_problem(header)
    if problem:
        yield _problem(file, f"header row: {problem}")
        return None
    return header


def _header_problem(header: list[str]) -> str:
    """Why a CSV header row is unusable, or ``""``."""
    unknown = [name for name in header if name not in _FIELD_NAMES]
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    parts = []
    if unknown:
        parts.append(f"unknown column(s) {_shorten(', '.join(map(repr, unknown)), 200)}")
    if repeated:
        parts.append(f"repeated column(s) {_shorten(', '.join(map(repr, repeated)), 200)}")
    if not parts:
        return ""
    hint = "; the file must be comma-separated" if any(";" in name for name in unknown) else ""
    return f"{'; '.join(parts)} (fields: {', '.join(_FIELD_NAMES)}){hint}"


def _read_csv_rows(
    reader: Any, lines: _CsvLines, header: list[str], file: str
) -> Iterator[SourcedBrief | BriefProblem]:
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            lines.take_bad(reader.line_num)
            yield BriefProblem(file, f"line {first_line}", "", f"invalid CSV: {exc}")
            continue
        if row is None:
            break
        record = f"line {first_line}"
        bad = lines.take_bad(reader.line_num)
        if bad:
            yield BriefProblem(file, f"line {bad[0]}", "", bad[1])
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            message = f"has {len(row)} cells but the header row has {len(header)}"
            yield BriefProblem(file, record, "", message)
            continue
        data = {name: cell for name, cell in zip(header, row, strict=True) if cell.strip()}
        yield from _validate_record(data, file, record)
    leftover = lines.take_bad(None)
    if leftover:
        yield BriefProblem(file, f"line {leftover[0]}", "", leftover[1])


# ---------------------------------------------------------------------------------------------- helpers

_READERS: dict[str, Callable[[Path, str], Iterator[SourcedBrief | BriefProblem]]] = {
    ".yaml": _read_yaml,
    ".yml": _read_yaml,
    ".json": _read_json,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".csv": _read_csv,
}


def _check_regular_file(path: Path) -> str:
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


def _problem(file: str, message: str) -> BriefProblem:
    """A problem with the whole file."""
    return BriefProblem(file, "", "", message)


def _kind(value: Any) -> str:
    """What a parsed value is, in words: "a list", "text", "a set"."""
    if value is None:
        return "nothing (an empty value)"
    names = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped, so a message stays one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
