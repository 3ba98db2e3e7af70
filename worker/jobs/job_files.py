"""Job files (``jobs/<name>.yaml``): what a scheduled or bulk job generates, and when.

A job file names its briefs in exactly one of three ways:

* ``briefs:`` an inline list of brief mappings;
* ``briefs_file:`` a brief file (YAML, JSON, JSONL or CSV, read by :mod:`worker.intake.loading`), relative to
  the job file;
* ``template:`` a mapping of brief fields whose text values are Jinja2 templates, expanded once per row of
  ``data:`` (a CSV, YAML, JSON or JSONL file relative to the job file) or of inline ``rows:``.

Templates render in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`. Only the job file's own template text is compiled; row values reach the
template as data (``{{ row.name }}``), so a cell holding ``{{ 7*7 }}`` comes out literally. ``run`` holds
the run's time in the job's time zone (``{{ run.date }}``, ``{{ run.iso_week }}``...).

``defaults:`` are brief fields applied under every brief (a brief's own value wins); ``limits.max_briefs``
caps a run; ``auto_approve`` (off unless set) approves drafts that passed every gate; ``schedule:`` has a
cron expression, an IANA time zone and a ``catch_up`` window (:mod:`worker.jobs.cron`). A job without a
schedule runs only on demand (``copydesk jobs run NAME``).

Every brief of a run gets a deterministic id, ``<job>-<UTC scheduled time>-<row key>``, so expanding the
same run twice yields the same ids (:func:`run_brief_id`). Problems are :class:`~worker.intake.loading.BriefProblem`
(file, record, field, message); a bad row never stops the others.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.errors import CopydeskError
from worker.intake import loading
from worker.intake.briefs import Brief
from worker.intake.loading import BriefProblem, SourcedBrief
from worker.jobs.cron import CronSchedule, parse_duration
from worker.names import is_safe_name

logger = logging.getLogger(__name__)

JOB_SUFFIXES = (".yaml", ".yml")
MAX_JOB_NAME = 64
"""Job names are at most this long, so that run brief ids stay readable."""
MAX_BRIEFS_CAP = 10_000
DEFAULT_MAX_BRIEFS = 200
DEFAULT_CATCH_UP = 3600.0
MIN_CATCH_UP = 60.0
_MAX_BRIEF_ID = 126  # "a-" + id stays a safe name (see worker.store.records.article_id_for)
_BRIEF_FIELDS = tuple(Brief.model_fields)
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MISSING_ATTRIBUTE = re.compile(r"has no attribute '([^']*)'")


class JobFileError(CopydeskError):
    """A job file cannot be used; ``problems`` lists every reason (file, record, field)."""

    exit_code = 3

    def __init__(self, message: str, problems: list[BriefProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


# ------------------------------------------------------------------------------------------- the model


class ScheduleSpec(BaseModel):
    """``schedule:`` of a job file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(description="Cron expression: 5 fields, or 6 with seconds last, or @daily etc.")
    timezone: str = Field(description="IANA time zone the expression is read in, e.g. Europe/London.")
    catch_up: float = Field(
        DEFAULT_CATCH_UP,
        description="How late a slot may still fire (beat was down or busy); '90s', '15m', '2h', '1d'.",
    )

    @field_validator("catch_up", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < MIN_CATCH_UP:
            raise ValueError(f"must be at least {MIN_CATCH_UP:g} seconds")
        return seconds

    @model_validator(mode="after")
    def _parse(self) -> ScheduleSpec:
        CronSchedule(self.cron, self.timezone)  # raises CronError (a ValueError) with a clear message
        return self

    def cron_schedule(self) -> CronSchedule:
        return CronSchedule(self.cron, self.timezone)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_briefs: int = Field(DEFAULT_MAX_BRIEFS, ge=1, le=MAX_BRIEFS_CAP, description="Briefs one run may create.")


class JobSpec(BaseModel):
    """The contents of a job file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="Must equal the file name without .yaml when given.")
    description: str = ""
    enabled: bool = Field(True, description="false: beat does not fire it; `copydesk jobs run` still does.")
    schedule: ScheduleSpec | None = None
    defaults: dict[str, Any] = Field(default_factory=dict, description="Brief fields applied under every brief.")
    limits: Limits = Field(default_factory=Limits)
    auto_approve: bool = Field(False, description="Approve drafts that passed every gate (status needs_review).")
    briefs: list[Any] | None = None
    briefs_file: str | None = None
    template: dict[str, Any] | None = None
    data: str | None = None
    rows: list[Any] | None = None

    @field_validator("defaults")
    @classmethod
    def _defaults_are_brief_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = [key for key in value if key not in _BRIEF_FIELDS or key == "id"]
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} cannot be defaults (fields: {', '.join(_BRIEF_FIELDS[1:])})"
            )
        return value

    @field_validator("template")
    @classmethod
    def _template_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = [key for key in value if key not in _BRIEF_FIELDS]
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} are not brief fields (fields: {', '.join(_BRIEF_FIELDS)})"
            )
        for key, item in value.items():
            items = item if isinstance(item, list) else [item]
            if not all(isinstance(part, str | int | float) and not isinstance(part, bool) for part in items):
                raise ValueError(f"field {key!r} must be text, a number or a list of text")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JobSpec:
        sources = [name for name in ("briefs", "briefs_file", "template") if getattr(self, name) is not None]
        if len(sources) != 1:
            found = f"found {', '.join(sources)}" if sources else "found none"
            raise ValueError(
                f"give exactly one brief source: briefs, briefs_file, or template with data/rows ({found})"
            )
        if self.template is not None and (self.data is None) == (self.rows is None):
            raise ValueError("a template needs exactly one of data (a file of rows) or rows (an inline list)")
        if self.template is None and (self.data is not None or self.rows is not None):
            raise ValueError("data and rows are only used with template")
        return self


@dataclass(frozen=True)
class JobDefinition:
    """A loaded, valid job file."""

    name: str
    path: Path
    spec: JobSpec
    sha256: str

    @property
    def schedule(self) -> CronSchedule | None:
        return self.spec.schedule.cron_schedule() if self.spec.schedule else None

    @property
    def timezone(self) -> str:
        return self.spec.schedule.timezone if self.spec.schedule else "UTC"

    def resolve(self, relative: str) -> Path:
        """A path named in the job file, relative to the job file's directory."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.path.parent / path


# ----------------------------------------------------------------------------------------------- loading


def job_files(jobs_dir: Path) -> list[Path]:
    """The job files of ``jobs_dir`` (``*.yaml`` and ``*.yml``, not in subdirectories), sorted."""
    if not jobs_dir.is_dir():
        return []
    return sorted(p for p in jobs_dir.iterdir() if p.suffix in JOB_SUFFIXES and p.is_file())


def job_path(jobs_dir: Path, name: str) -> Path:
    """The file of job ``name``; :class:`JobFileError` for an unsafe name or a missing file."""
    if not is_safe_name(name) or len(name) > MAX_JOB_NAME:
        raise JobFileError(
            f"job name {name[:80]!r} is not valid: use 1-{MAX_JOB_NAME} letters, digits, '.', '_' or '-'"
        )
    for suffix in JOB_SUFFIXES:
        path = jobs_dir / f"{name}{suffix}"
        if path.is_file():
            return path
    known = ", ".join(p.stem for p in job_files(jobs_dir)) or "none"
    raise JobFileError(f"no job file {name}.yaml in {jobs_dir} (jobs: {known})")


def read_job(path: Path) -> tuple[JobDefinition | None, list[BriefProblem]]:
    """Parse and check one job file: the definition, or ``None`` and every problem found."""
    file = str(path)
    name = path.stem
    problems: list[BriefProblem] = []
    if not is_safe_name(name) or len(name) > MAX_JOB_NAME:
        problems.append(
            BriefProblem(
                file, "", "name", f"the file name must be a job name: 1-{MAX_JOB_NAME} letters, digits, '.', '_', '-'"
            )
        )
    if not path.is_file():
        return None, [*problems, BriefProblem(file, "", "", loading._check_regular_file(path) or "file not found")]
    raw = yield_problems(loading._read_whole_text(path, file, loading.MAX_YAML_BYTES), problems)
    if raw is None:
        return None, problems
    try:
        document = yaml.load(raw, Loader=loading._BriefYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        return None, [*problems, BriefProblem(file, "", "", loading._yaml_error_message(exc))]
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: an integer of 4300+ digits
        return None, [*problems, BriefProblem(file, "", "", f"invalid YAML: {exc}")]
    if not isinstance(document, dict):
        return None, [
            *problems,
            BriefProblem(file, "", "", f"expected a mapping of job settings, found {loading._kind(document)}"),
        ]
    try:
        spec = JobSpec.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(BriefProblem(file, "", where, _message(error["type"], error["msg"])))
        return None, problems
    if spec.name is not None and spec.name != name:
        problems.append(
            BriefProblem(file, "", "name", f"is {spec.name!r} but the file is {path.name}: they must match")
        )
    problems.extend(_check_defaults(file, spec))
    problems.extend(_check_template(file, spec))
    if problems:
        return None, problems
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    return JobDefinition(name, path, spec, digest), []


def yield_problems(generator: Any, problems: list[BriefProblem]) -> Any:
    """Run one of :mod:`worker.intake.loading`'s sub-generators: collect what it yields, return what it returns."""
    while True:
        try:
            problems.append(next(generator))
        except StopIteration as stop:
            return stop.value


def load_job(path: Path) -> JobDefinition:
    """The job in ``path``; :class:`JobFileError` listing every problem when it is not valid."""
    job, problems = read_job(path)
    if job is None:
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise JobFileError(f"job file {path} is not valid: {shown}{more}", problems)
    return job


def load_job_named(jobs_dir: Path, name: str) -> JobDefinition:
    return load_job(job_path(jobs_dir, name))


def _message(kind: str, msg: str) -> str:
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return f"is not a job file setting (settings: {', '.join(JobSpec.model_fields)})"
    return msg.removeprefix("Value error, ")


def _check_defaults(file: str, spec: JobSpec) -> list[BriefProblem]:
    """Defaults must be valid brief values on their own (checked against a stand-in title)."""
    if not spec.defaults:
        return []
    try:
        Brief.model_validate({"title": "stand-in", **spec.defaults})
    except ValidationError as exc:
        return [
            BriefProblem(
                file,
                "",
                ".".join(["defaults", *map(str, e.get("loc", ()))]),
                loading._error_message(e["type"], e["msg"], yaml_hints=True),
            )
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    return []


def _check_template(file: str, spec: JobSpec) -> list[BriefProblem]:
    problems = []
    for key, value in (spec.template or {}).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    _ENVIRONMENT.from_string(text)
                except TemplateSyntaxError as exc:
                    problems.append(BriefProblem(file, "", f"template.{key}", f"template syntax error: {exc.message}"))
    return problems


# --------------------------------------------------------------------------------------------- expansion

_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class RunContext:
    """What a run is: the job, its scheduled instant (UTC) and the time zone templates see it in."""

    job: str
    scheduled_for: datetime
    timezone: str = "UTC"

    def template_values(self) -> dict[str, Any]:
        from zoneinfo import ZoneInfo

        local = self.scheduled_for.astimezone(ZoneInfo(self.timezone))
        year, week, _ = local.isocalendar()
        return {
            "job": self.job,
            "timezone": self.timezone,
            "datetime": local.isoformat(),
            "date": local.date().isoformat(),
            "time": local.strftime("%H:%M"),
            "year": local.year,
            "month": local.month,
            "month_name": local.strftime("%B"),
            "day": local.day,
            "weekday": local.strftime("%A"),
            "iso_week": f"{year}-W{week:02d}",
            "long_date": f"{local.day} {local.strftime('%B %Y')}",
        }


@dataclass
class Expansion:
    """The briefs of one run, the problems of the records that could not become briefs, and the excess."""

    briefs: list[SourcedBrief] = field(default_factory=list)
    problems: list[BriefProblem] = field(default_factory=list)
    over_limit: int = 0


def run_stamp(scheduled_for: datetime) -> str:
    """``20260302T070000Z``: the scheduled instant in UTC, as it appears in run brief ids."""
    return scheduled_for.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_brief_id(job: str, scheduled_for: datetime, key: str) -> str:
    """The deterministic id of one brief of a run: ``<job>-<stamp>-<key>`` (a safe name, ≤ 126 characters).

    An unsafe key is cleaned (runs of other characters become ``-``); a key that would make the id too
    long is replaced by ``k`` and 16 hex digits of its SHA-256.
    """
    prefix = f"{job}-{run_stamp(scheduled_for)}-"
    clean = _UNSAFE_KEY_CHARS.sub("-", key).strip("-.").replace("..", "-") or "row"
    if len(prefix) + len(clean) > _MAX_BRIEF_ID:
        clean = "k" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return prefix + clean


def expand(job: JobDefinition, run: RunContext) -> Expansion:
    """Every brief of ``job`` for ``run`` with its run id, and the problems of the records left out."""
    expansion = Expansion()
    seen: dict[str, str] = {}
    for item in _records(job, run):
        if isinstance(item, BriefProblem):
            expansion.problems.append(item)
            continue
        key, data, file, record = item
        brief_id = run_brief_id(job.name, run.scheduled_for, key)
        if brief_id in seen:
            expansion.problems.append(
                BriefProblem(file, record, "id", f"row key {key!r} repeats the key of {seen[brief_id]}")
            )
            continue
        merged = {**job.spec.defaults, **data, "id": brief_id}
        valid = [v for v in loading._validate_record(merged, file, record) if _keep(v, expansion)]
        if not valid:
            continue
        seen[brief_id] = record or file
        if len(expansion.briefs) >= job.spec.limits.max_briefs:
            expansion.over_limit += 1
            continue
        expansion.briefs.extend(valid)  # type: ignore[arg-type]
    if expansion.over_limit:
        logger.warning(
            "job %s: %d brief(s) over limits.max_briefs (%d) left out",
            job.name,
            expansion.over_limit,
            job.spec.limits.max_briefs,
        )
    return expansion


def _keep(item: SourcedBrief | BriefProblem, expansion: Expansion) -> bool:
    if isinstance(item, BriefProblem):
        expansion.problems.append(item)
        return False
    return True


Record = tuple[str, dict[str, Any], str, str]  # key, brief data, file, record label


def _records(job: JobDefinition, run: RunContext) -> Iterator[Record | BriefProblem]:
    spec = job.spec
    file = str(job.path)
    if spec.briefs is not None:
        for number, data in enumerate(spec.briefs, start=1):
            record = f"briefs record {number}"
            if not isinstance(data, dict):
                yield BriefProblem(file, record, "", f"expected a mapping of brief fields, found {loading._kind(data)}")
                continue
            yield from _keyed(data, spec.defaults, file, record)
    elif spec.briefs_file is not None:
        for item in loading.iter_brief_file(job.resolve(spec.briefs_file)):
            if isinstance(item, BriefProblem):
                yield item
                continue
            data = item.brief.model_dump(mode="json", exclude_unset=True, exclude={"id"})
            yield item.brief.brief_id, data, item.file, item.record
    else:
        yield from _template_records(job, run)


def _keyed(data: dict[str, Any], defaults: dict[str, Any], file: str, record: str) -> Iterator[Record | BriefProblem]:
    """A brief mapping keyed by its own id, or by the id derived from its content with the defaults."""
    items = list(loading._validate_record({**defaults, **data}, file, record))
    problems = [item for item in items if isinstance(item, BriefProblem)]
    if problems:
        yield from problems
        return
    brief = items[0].brief  # type: ignore[union-attr]
    yield brief.brief_id, {k: v for k, v in data.items() if k != "id"}, file, record


def _template_records(job: JobDefinition, run: RunContext) -> Iterator[Record | BriefProblem]:
    spec = job.spec
    assert spec.template is not None  # checked by JobSpec._one_source
    compiled = {key: _compile(value) for key, value in spec.template.items()}
    run_values = run.template_values()
    if spec.rows is not None:
        rows: Iterator[tuple[str, str, Any] | BriefProblem] = (
            (str(job.path), f"rows record {number}", row) for number, row in enumerate(spec.rows, start=1)
        )
    else:
        assert spec.data is not None
        rows = iter_data_rows(job.resolve(spec.data))
    for position, item in enumerate(rows, start=1):
        if isinstance(item, BriefProblem):
            yield item
            continue
        file, record, row = item
        if not isinstance(row, dict):
            yield BriefProblem(file, record, "", f"expected a mapping of column values, found {loading._kind(row)}")
            continue
        data: dict[str, Any] = {}
        failed = False
        for key, template in compiled.items():
            try:
                value = _render(template, row, run_values)
            except _RenderError as exc:
                yield BriefProblem(file, record, key, str(exc))
                failed = True
                continue
            if isinstance(value, list):
                value = [item for item in value if item != ""]
            if value not in ("", []):  # an empty result means "not given", as an empty CSV cell does
                data[key] = value
        if failed:
            continue
        key = str(data.pop("id", "") or f"row{position}")
        yield key, data, file, record


class _RenderError(Exception):
    pass


def _compile(value: Any) -> Any:
    if isinstance(value, list):
        return [_compile(item) for item in value]
    if isinstance(value, str):
        return _ENVIRONMENT.from_string(value)
    return value


def _render(template: Any, row: dict[str, Any], run_values: dict[str, Any]) -> Any:
    if isinstance(template, list):
        return [_render(item, row, run_values) for item in template]
    if not isinstance(template, Template):
        return template
    try:
        return template.render(row=row, run=run_values).strip()
    except UndefinedError as exc:
        missing = _MISSING_ATTRIBUTE.search(str(exc.message))
        if missing:
            raise _RenderError(f"the template uses row.{missing.group(1)}, which this row does not have") from exc
        raise _RenderError(f"the template uses an undefined value: {exc.message}") from exc
    except SecurityError as exc:
        raise _RenderError(f"the template tried to leave the sandbox: {exc}") from exc
    except TemplateError as exc:
        raise _RenderError(f"the template failed to render: {exc}") from exc


# ------------------------------------------------------------------------------------------- data rows


def iter_data_rows(path: Path) -> Iterator[tuple[str, str, dict[str, Any]] | BriefProblem]:
    """Rows of a data file as ``(file, record, mapping)``, or problems; never raises for bad input.

    CSV (header row of column names; empty cells mean "no value"), YAML and JSON (a list of mappings, or
    ``{rows: [...]}``) and JSONL, with the guards of :mod:`worker.intake.loading` (size caps, no YAML aliases,
    line by line decoding). Values must be text, numbers, true/false or lists of those.
    """
    file = str(path)
    unreadable = loading._check_regular_file(path)
    if unreadable:
        yield loading._problem(file, unreadable)
        return
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            yield from _csv_rows(path, file)
        elif suffix in (".yaml", ".yml", ".json"):
            yield from _document_rows(path, file, yaml_syntax=suffix != ".json")
        elif suffix in (".jsonl", ".ndjson"):
            yield from _jsonl_rows(path, file)
        else:
            yield loading._problem(
                file, f"unknown data file type {suffix or '(none)'!r}: use .csv, .yaml, .json or .jsonl"
            )
    except OSError as exc:
        yield loading._problem(file, f"cannot read the file: {exc.strerror or exc}")


def _checked_row(data: Any, file: str, record: str) -> Iterator[tuple[str, str, dict[str, Any]] | BriefProblem]:
    if not isinstance(data, dict):
        yield BriefProblem(file, record, "", f"expected a mapping of column values, found {loading._kind(data)}")
        return
    for key in getattr(data, "duplicates", ()):
        yield BriefProblem(file, record, str(key), "is given more than once")
        return
    if not all(isinstance(key, str) for key in data):
        yield BriefProblem(file, record, "", "column names must be text")
        return
    shape = loading._shape_problem(data)
    if shape:
        yield BriefProblem(file, record, *shape)
        return
    yield file, record, dict(data)


def _csv_rows(path: Path, file: str) -> Iterator[tuple[str, str, dict[str, Any]] | BriefProblem]:
    with path.open("rb") as handle:
        lines = loading._CsvLines(handle)
        reader = csv.reader(lines, strict=True)
        try:
            header_row = next(reader, None)
        except csv.Error as exc:
            yield loading._problem(file, f"invalid CSV header row: {exc}")
            return
        bad = lines.take_bad(reader.line_num)
        if bad:
            yield loading._problem(file, f"header row (line {bad[0]}): {bad[1]}")
            return
        header = [name.strip() for name in header_row or []]
        if not header or not all(header) or len(set(header)) != len(header):
            yield loading._problem(file, "the first line must name every column once, for example 'sku,name,price'")
            return
        while True:
            first_line = reader.line_num + 1
            record = f"line {first_line}"
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
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield BriefProblem(file, record, "", f"has {len(row)} cells but the header row has {len(header)}")
                continue
            yield file, record, {name: cell.strip() for name, cell in zip(header, row, strict=True) if cell.strip()}


def _document_rows(
    path: Path, file: str, *, yaml_syntax: bool
) -> Iterator[tuple[str, str, dict[str, Any]] | BriefProblem]:
    problems: list[BriefProblem] = []
    limit = loading.MAX_YAML_BYTES if yaml_syntax else loading.MAX_JSON_BYTES
    text = yield_problems(loading._read_whole_text(path, file, limit), problems)
    yield from problems
    if text is None:
        return
    try:
        if yaml_syntax:
            document = yaml.load(text, Loader=loading._BriefYamlLoader)  # noqa: S506 - a SafeLoader subclass
        else:
            import json

            document = json.loads(text, object_pairs_hook=loading._json_object)
    except yaml.MarkedYAMLError as exc:
        yield loading._problem(file, loading._yaml_error_message(exc))
        return
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        yield loading._problem(file, f"cannot parse the file: {exc}")
        return
    if isinstance(document, dict) and set(document) == {"rows"}:
        document = document["rows"]
    if not isinstance(document, list):
        yield loading._problem(
            file, f"expected a list of rows, or a mapping with a single key 'rows', found {loading._kind(document)}"
        )
        return
    for number, data in enumerate(document, start=1):
        yield from _checked_row(data, file, f"record {number}")


def _jsonl_rows(path: Path, file: str) -> Iterator[tuple[str, str, dict[str, Any]] | BriefProblem]:
    with path.open("rb") as handle:
        for number, raw in loading._iter_raw_lines(handle):
            record = f"line {number}"
            if raw is None:
                yield BriefProblem(file, record, "", loading._too_long())
                continue
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield BriefProblem(file, record, "", loading._bad_utf8(exc))
                continue
            if not text:
                continue
            parsed = loading._parse_json_line(text)
            if isinstance(parsed, str):
                yield BriefProblem(file, record, "", parsed)
                continue
            yield from _checked_row(parsed[0], file, record)


# ------------------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class JobCheck:
    """What ``copydesk jobs validate`` found for one job file."""

    path: Path
    job: JobDefinition | None
    briefs: int
    over_limit: int
    problems: list[BriefProblem]


def check_job_file(path: Path, *, now: datetime | None = None, styles_dir: Path | None = None) -> JobCheck:
    """Load the job file and expand it for its next run (or now), collecting every problem."""
    job, problems = read_job(path)
    if job is None:
        return JobCheck(path, None, 0, 0, problems)
    now = now or datetime.now(UTC)
    schedule = job.schedule
    when = schedule.next_after(now) if schedule else now
    expansion = expand(job, RunContext(job.name, when, job.timezone))
    problems = list(expansion.problems)
    if styles_dir is not None:
        for item in expansion.briefs:
            style = item.brief.style
            if style and not (styles_dir / style / "style.yaml").is_file():
                problems.append(
                    BriefProblem(item.file, item.record, "style", f"unknown style {style!r} in {styles_dir}")
                )
    if not expansion.briefs and not problems:
        problems.append(BriefProblem(str(path), "", "", "the job has no briefs"))
    return JobCheck(path, job, len(expansion.briefs), expansion.over_limit, problems)


__all__ = [
    "Expansion",
    "JobCheck",
    "JobDefinition",
    "JobFileError",
    "JobSpec",
    "RunContext",
    "check_job_file",
    "expand",
    "iter_data_rows",
    "job_files",
    "job_path",
    "load_job",
    "load_job_named",
    "read_job",
    "run_brief_id",
    "run_stamp",
]
