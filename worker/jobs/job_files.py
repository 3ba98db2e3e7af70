"""Job files (``jobs/<name>.yaml``): what a scheduled or bulk job generates, and when.

A job file names its briefs in exactly one of three ways:

* ``briefs:`` an inline list of brief mappings;
* ``briefs_file:`` a brief file (YAML, JSON, JSONL or CSV, read by :mod:`worker.intake.loading`), relative to
  the job file;
* ``template:`` a mapping of brief fields whose text values are Jinja2 templates, expanded once per row of
  ``data:`` (a CSV, YAML, JSON or JSONL file relative to the job file) or of inline ``rows:``.

Templates render in a Jinja2 sandbox (:mod:`worker.jobs.templates`); row values reach the template as data
(``{{ row.name }}``), never as template code. ``run`` holds the run's time in the job's time zone
(``{{ run.date }}``, ``{{ run.iso_week }}``...).

``defaults:`` are brief fields applied under every brief (a brief's own value wins); ``limits.max_briefs``
caps a run; ``auto_approve`` (off unless set) approves drafts that passed every gate; ``schedule:`` has a
cron expression, an IANA time zone and a ``catch_up`` window (:mod:`worker.jobs.cron`). A job without a
schedule runs only on demand (``copydesk jobs run NAME``).

This module finds, reads and checks job files. What a job file holds is :mod:`worker.jobs.job_spec`;
expanding it into the briefs of one run (deterministic ids, ``<job>-<UTC scheduled time>-<row key>``) is
:mod:`worker.jobs.expansion`; data files are read by :mod:`worker.jobs.data_rows`. Problems are
:class:`~worker.intake.problems.BriefProblem` (file, record, field, message); a bad row never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.errors import JobFileError
from worker.intake.briefs import Brief
from worker.intake.problems import BriefProblem, file_problem, kind_of
from worker.intake.readers import MAX_YAML_BYTES, check_regular_file, parse_yaml, read_text
from worker.intake.validation import validation_problems
from worker.jobs.expansion import RunContext, expand
from worker.jobs.job_spec import MAX_JOB_NAME, JobDefinition, JobSpec
from worker.jobs.templates import template_problems
from worker.names import is_safe_name
from worker.styles.catalog import StyleCatalog

logger = logging.getLogger(__name__)

JOB_SUFFIXES = (".yaml", ".yml")


def job_files(jobs_dir: Path) -> list[Path]:
    """The job files of ``jobs_dir`` (``*.yaml`` and ``*.yml``, not in subdirectories), sorted."""
    if not jobs_dir.is_dir():
        return []
    return sorted(p for p in jobs_dir.iterdir() if p.suffix in JOB_SUFFIXES and p.is_file())


def _bad_name(name: str) -> bool:
    return not is_safe_name(name) or len(name) > MAX_JOB_NAME


def job_path(jobs_dir: Path, name: str) -> Path:
    """The file of job ``name``; :class:`JobFileError` for an unsafe name or a missing file."""
    if _bad_name(name):
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
    problems: list[BriefProblem] = []
    if _bad_name(path.stem):
        message = f"the file name must be a job name: 1-{MAX_JOB_NAME} letters, digits, '.', '_', '-'"
        problems.append(BriefProblem(file, "", "name", message))
    raw = _read_settings(path, file)
    if isinstance(raw, BriefProblem):
        return None, [*problems, raw]
    text, document = raw
    try:
        spec = JobSpec.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(BriefProblem(file, "", where, _message(error["type"], error["msg"])))
        return None, problems
    if spec.name is not None and spec.name != path.stem:
        message = f"is {spec.name!r} but the file is {path.name}: they must match"
        problems.append(BriefProblem(file, "", "name", message))
    problems.extend(_check_defaults(file, spec))
    problems.extend(template_problems(file, spec.template or {}))
    if problems:
        return None, problems
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return JobDefinition(path.stem, path, spec, digest), []


def _read_settings(path: Path, file: str) -> tuple[str, dict[str, Any]] | BriefProblem:
    """The job file's text and its YAML mapping of settings, or the problem."""
    if not path.is_file():
        return file_problem(file, check_regular_file(path) or "file not found")
    text = read_text(path, file, MAX_YAML_BYTES)
    if isinstance(text, BriefProblem):
        return text
    parsed = parse_yaml(text, file)
    if isinstance(parsed, BriefProblem):
        return parsed
    if not isinstance(parsed.value, dict):
        return file_problem(file, f"expected a mapping of job settings, found {kind_of(parsed.value)}")
    return text, parsed.value


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
        return list(validation_problems(exc, file, "", yaml_hints=True, prefix=("defaults",)))
    return []


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
    if styles_dir is not None and any(item.brief.style for item in expansion.briefs):
        problems += StyleCatalog.load(styles_dir).pin_problems(expansion.briefs)
    if not expansion.briefs and not problems:
        problems.append(BriefProblem(str(path), "", "", "the job has no briefs"))
    return JobCheck(path, job, len(expansion.briefs), expansion.over_limit, problems)


__all__ = [
    "JOB_SUFFIXES",
    "JobCheck",
    "check_job_file",
    "job_files",
    "job_path",
    "load_job",
    "load_job_named",
    "read_job",
]
