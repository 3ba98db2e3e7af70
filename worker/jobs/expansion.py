"""Expanding a job file into the briefs of one run.

Every brief of a run gets a deterministic id, ``<job>-<UTC scheduled time>-<row key>``, so expanding the
same run twice yields the same ids (:func:`run_brief_id`). ``run`` holds the run's time in the job's time
zone for templates (``{{ run.date }}``, ``{{ run.iso_week }}``...). ``defaults:`` apply under every brief
(a brief's own value wins) and ``limits.max_briefs`` caps a run. A bad row never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.intake.loading import iter_brief_file
from worker.intake.problems import BriefProblem, kind_of
from worker.intake.validation import SourcedBrief, validate_record
from worker.jobs.data_rows import iter_data_rows
from worker.jobs.job_spec import JobDefinition
from worker.jobs.templates import RenderError, compile_template, render

logger = logging.getLogger(__name__)

_MAX_BRIEF_ID = 126  # "a-" + id stays a safe name (see worker.store.records.article_id_for)
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


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
        valid = [v for v in validate_record(merged, file, record) if _keep(v, expansion)]
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
                yield BriefProblem(file, record, "", f"expected a mapping of brief fields, found {kind_of(data)}")
                continue
            yield from _keyed(data, spec.defaults, file, record)
    elif spec.briefs_file is not None:
        for item in iter_brief_file(job.resolve(spec.briefs_file)):
            if isinstance(item, BriefProblem):
                yield item
                continue
            data = item.brief.model_dump(mode="json", exclude_unset=True, exclude={"id"})
            yield item.brief.brief_id, data, item.file, item.record
    else:
        yield from _template_records(job, run)


def _keyed(data: dict[str, Any], defaults: dict[str, Any], file: str, record: str) -> Iterator[Record | BriefProblem]:
    """A brief mapping keyed by its own id, or by the id derived from its content with the defaults."""
    items = list(validate_record({**defaults, **data}, file, record))
    problems = [item for item in items if isinstance(item, BriefProblem)]
    if problems:
        yield from problems
        return
    brief = items[0].brief  # type: ignore[union-attr]
    yield brief.brief_id, {k: v for k, v in data.items() if k != "id"}, file, record


def _template_records(job: JobDefinition, run: RunContext) -> Iterator[Record | BriefProblem]:
    spec = job.spec
    assert spec.template is not None  # checked by JobSpec._one_source
    compiled = {key: compile_template(value) for key, value in spec.template.items()}
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
            yield BriefProblem(file, record, "", f"expected a mapping of column values, found {kind_of(row)}")
            continue
        data: dict[str, Any] = {}
        failed = False
        for key, template in compiled.items():
            try:
                value = render(template, row, run_values)
            except RenderError as exc:
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


__all__ = ["Expansion", "RunContext", "expand", "run_brief_id", "run_stamp"]
