"""Loading brief files: the input side of the validate stage.

Every record becomes either a :class:`~worker.intake.validation.SourcedBrief` (a validated
:class:`~worker.intake.briefs.Brief` plus where it came from) or one or more
:class:`~worker.intake.problems.BriefProblem` (what is wrong, where). Nothing here raises for bad input,
and nothing is ever evaluated: template syntax and spreadsheet formulas stay plain text. The formats are
read by :mod:`worker.intake.readers`, chosen by the file's extension:

* ``.yaml`` / ``.yml`` and ``.json``: a list of mappings, or a mapping ``{briefs: [...]}``. Parsed whole, so
  the file size is capped. YAML aliases are refused (alias bombs) and nesting depth is capped.
* ``.jsonl`` / ``.ndjson``: one JSON object a line, blank lines ignored. Streamed line by line.
* ``.csv``: a header row of field names, then one brief a row; UTF-8 with or without a BOM; list fields are
  ``;``-separated; empty cells mean "not given". Streamed line by line.

An empty file is a problem in every format (an empty list of briefs is not).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worker.intake.problems import BriefProblem, file_problem, kind_of, shorten
from worker.intake.readers import (
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    JSONL_SUFFIXES,
    YAML_SUFFIXES,
    Row,
    check_regular_file,
    iter_csv,
    iter_jsonl,
    read_document,
)
from worker.intake.validation import FIELD_NAMES, SourcedBrief, validate_record

logger = logging.getLogger(__name__)

_WHOLE_FILE_SHAPE = "a list of briefs, or a mapping with a single key 'briefs' holding that list"


@dataclass
class LoadReport:
    """Everything read from a set of brief files: the good briefs and the problems, in file order."""

    briefs: list[SourcedBrief] = field(default_factory=list)
    problems: list[BriefProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found (an empty set of files is ok)."""
        return not self.problems


def iter_brief_file(path: Path) -> Iterator[SourcedBrief | BriefProblem]:
    """Yield each brief of one file, or the problems found, in file order. Never raises for bad input.

    JSONL and CSV are streamed: memory use does not grow with the file. YAML and JSON are parsed whole,
    up to :data:`~worker.intake.readers.MAX_YAML_BYTES` / :data:`~worker.intake.readers.MAX_JSON_BYTES`.
    """
    path = Path(path)
    file = str(path)
    unreadable = check_regular_file(path)
    if unreadable:
        yield file_problem(file, unreadable)
        return
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        shown = path.suffix or "(none)"
        yield file_problem(file, f"unknown brief file type {shown!r}: use .yaml, .yml, .json, .jsonl, .ndjson or .csv")
        return
    try:
        yield from reader(path, file)
    except OSError as exc:
        yield file_problem(file, f"cannot read the file: {exc.strerror or exc}")


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


# ----------------------------------------------------------------------------------------------- formats


def _read_document(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    """A YAML or JSON brief file: check the whole-file shape, then validate each record."""
    parsed = read_document(path, file)
    if isinstance(parsed, BriefProblem):
        yield parsed
        return
    yaml_hints = path.suffix.lower() not in JSON_SUFFIXES
    document = records = parsed.value
    if isinstance(document, dict):
        if "briefs" not in document:
            hint = "; it looks like a single brief: put it in a list" if "title" in document else ""
            yield file_problem(file, f"expected {_WHOLE_FILE_SHAPE}{hint}")
            return
        others = sorted(str(key) for key in document if key != "briefs")
        if others:
            shown = shorten(", ".join(others), 200)
            yield file_problem(file, f"unexpected top-level key(s) {shown}: expected only 'briefs'")
            return
        records = document["briefs"]
    if not isinstance(records, list):
        yield file_problem(file, f"expected {_WHOLE_FILE_SHAPE}, found {kind_of(records)}")
        return
    for number, data in enumerate(records, start=1):
        yield from validate_record(data, file, f"record {number}", yaml_hints=yaml_hints)


def _read_jsonl(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    yield from _validate_rows(iter_jsonl(path, file), file)


def _read_csv(path: Path, file: str) -> Iterator[SourcedBrief | BriefProblem]:
    yield from _validate_rows(iter_csv(path, file, _brief_header), file)


def _validate_rows(rows: Iterator[Row | BriefProblem], file: str) -> Iterator[SourcedBrief | BriefProblem]:
    for item in rows:
        if isinstance(item, BriefProblem):
            yield item
        else:
            yield from validate_record(item[1], file, item[0])


def _brief_header(row: list[str]) -> list[str] | str:
    """The field names of a brief CSV's header row, or why it is unusable."""
    if not row:
        return "no header row: the first line must name the fields, for example 'id,title,tags'"
    header = [name.strip().lower() for name in row]
    unknown = [name for name in header if name not in FIELD_NAMES]
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    parts = []
    if unknown:
        parts.append(f"unknown column(s) {shorten(', '.join(map(repr, unknown)), 200)}")
    if repeated:
        parts.append(f"repeated column(s) {shorten(', '.join(map(repr, repeated)), 200)}")
    if not parts:
        return header
    hint = "; the file must be comma-separated" if any(";" in name for name in unknown) else ""
    return f"header row: {'; '.join(parts)} (fields: {', '.join(FIELD_NAMES)}){hint}"


_READERS: dict[str, Callable[[Path, str], Iterator[SourcedBrief | BriefProblem]]] = {
    **dict.fromkeys(YAML_SUFFIXES + JSON_SUFFIXES, _read_document),
    **dict.fromkeys(JSONL_SUFFIXES, _read_jsonl),
    **dict.fromkeys(CSV_SUFFIXES, _read_csv),
}

__all__ = ["BriefProblem", "LoadReport", "SourcedBrief", "iter_brief_file", "load_brief_files"]
