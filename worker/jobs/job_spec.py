"""What a job file holds: :class:`JobSpec` (its settings, validated by pydantic), :class:`JobDefinition` (a
loaded, valid job file); its error is :class:`~worker.errors.JobFileError`. Reading job files is
:mod:`worker.jobs.job_files`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from worker.errors import JobFileError
from worker.intake.briefs import Brief
from worker.jobs.cron import CronSchedule, parse_duration

logger = logging.getLogger(__name__)

MAX_JOB_NAME = 64
"""Job names are at most this long, so that run brief ids stay readable."""
MAX_BRIEFS_CAP = 10_000
DEFAULT_MAX_BRIEFS = 200
DEFAULT_CATCH_UP = 3600.0
MIN_CATCH_UP = 60.0
BRIEF_FIELDS = tuple(Brief.model_fields)


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
        unknown = [key for key in value if key not in BRIEF_FIELDS or key == "id"]
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} cannot be defaults (fields: {', '.join(BRIEF_FIELDS[1:])})"
            )
        return value

    @field_validator("template")
    @classmethod
    def _template_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = [key for key in value if key not in BRIEF_FIELDS]
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} are not brief fields (fields: {', '.join(BRIEF_FIELDS)})"
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


__all__ = [
    "BRIEF_FIELDS",
    "DEFAULT_CATCH_UP",
    "DEFAULT_MAX_BRIEFS",
    "MAX_BRIEFS_CAP",
    "MAX_JOB_NAME",
    "MIN_CATCH_UP",
    "JobDefinition",
    "JobFileError",
    "JobSpec",
    "Limits",
    "ScheduleSpec",
]
