"""Job files (:mod:`worker.jobs.job_files`): validation with file/field/row errors, and brief expansion."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from worker.cli.main import app
from worker.config import PROJECT_ROOT
from worker.jobs.job_files import check_job_file, job_path, read_job
from worker.jobs.job_spec import JobFileError

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
SCHEDULE = {"cron": "0 7 * * 1", "timezone": "Europe/London"}


def write(directory: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def problems_of(path: Path) -> list[tuple[str, str, str, str]]:
    job, problems = read_job(path)
    assert job is None
    return [(Path(p.file).name, p.record, p.field, p.message) for p in problems]


# -- validation -----------------------------------------------------------------------------------------


def test_sample_job_files_are_valid() -> None:
    for name, briefs in (("weekly-roundup", 3), ("product-descriptions", 8)):
        check = check_job_file(PROJECT_ROOT / "jobs" / f"{name}.yaml", styles_dir=PROJECT_ROOT / "styles")
        assert check.problems == [] and check.job is not None
        assert check.briefs == briefs


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"briefs": [{"title": "x"}], "schedule": {"cron": "0 7 * *", "timezone": "UTC"}}, "schedule", "4 fields"),
        (
            {"briefs": [{"title": "x"}], "schedule": {"cron": "0 7 * * *", "timezone": "Nowhere/City"}},
            "schedule",
            "time zone",
        ),
        ({"briefs": [{"title": "x"}], "schedule": {"cron": "0 7 * * *"}}, "schedule.timezone", "is required"),
        ({"briefs": [{"title": "x"}], "schedule": {**SCHEDULE, "catch_up": "soon"}}, "schedule.catch_up", "duration"),
        ({"briefs": [{"title": "x"}], "colour": "blue"}, "colour", "is not a job file setting"),
        ({"schedule": SCHEDULE}, "", "exactly one brief source"),
        ({"briefs": [{"title": "x"}], "briefs_file": "b.yaml"}, "", "found briefs, briefs_file"),
        ({"template": {"title": "{{ row.t }}"}}, "", "exactly one of data"),
        ({"template": {"title": "x"}, "rows": [], "data": "d.csv"}, "", "exactly one of data"),
        ({"briefs": [{"title": "x"}], "rows": [{}]}, "", "only used with template"),
        ({"template": {"colour": "x"}, "rows": [{}]}, "template", "'colour' are not brief fields"),
        ({"template": {"title": "{{ row.t"}, "rows": [{}]}, "template.title", "template syntax error"),
        ({"briefs": [{"title": "x"}], "defaults": {"id": "x"}}, "defaults", "cannot be defaults"),
        ({"briefs": [{"title": "x"}], "defaults": {"target_words": "many"}}, "defaults.target_words", "whole number"),
        ({"briefs": [{"title": "x"}], "limits": {"max_briefs": 0}}, "limits.max_briefs", "greater than or equal"),
        ({"briefs": [{"title": "x"}], "name": "other"}, "name", "must match"),
    ],
)
def test_invalid_job_files_name_file_and_field(tmp_path: Path, data: dict[str, Any], field: str, message: str) -> None:
    found = problems_of(write(tmp_path, "job.yaml", data))
    assert any(f == field and message in m for _, _, f, m in found), found
    assert all(file == "job.yaml" for file, *_ in found)


def test_unreadable_and_malformed_job_files(tmp_path: Path) -> None:
    assert "mapping of job settings" in problems_of(write(tmp_path, "list.yaml", "- a\n- b\n"))[0][3]
    assert "aliases" in problems_of(write(tmp_path, "alias.yaml", "a: &x 1\nb: *x\n"))[0][3]
    assert "duplicate key" in problems_of(write(tmp_path, "dup.yaml", "briefs: []\nbriefs: []\n"))[0][3]
    assert problems_of(tmp_path / "missing.yaml")[0][3] == "file not found"
    assert problems_of(write(tmp_path, "bad name!.yaml", {"briefs": [{"title": "x"}]}))[0][2] == "name"


def test_job_path_refuses_unsafe_names_and_lists_known_jobs(tmp_path: Path) -> None:
    write(tmp_path, "known.yaml", {"briefs": [{"title": "x"}]})
    with pytest.raises(JobFileError, match="not valid"):
        job_path(tmp_path, "../etc/passwd")
    with pytest.raises(JobFileError, match=r"jobs: known"):
        job_path(tmp_path, "unknown")
    assert job_path(tmp_path, "known") == tmp_path / "known.yaml"


def test_missing_data_file_is_one_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "nodata.yaml", {"template": {"title": "{{ row.t }}"}, "data": "nope.csv"})
    check = check_job_file(path)
    assert [p.message for p in check.problems] == ["file not found"]


# -- the CLI --------------------------------------------------------------------------------------------


def test_jobs_validate_command(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "data.csv").write_text("t,w\nGood row,100\nBad row,many\n")
    write(jobs, "good.yaml", {"schedule": SCHEDULE, "briefs": [{"title": "A"}, {"title": "B"}]})
    write(jobs, "rows.yaml", {"template": {"title": "{{ row.t }}", "target_words": "{{ row.w }}"}, "data": "data.csv"})
    env = {"COPYDESK_JOBS_DIR": str(jobs), "COPYDESK_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["jobs", "validate"], env=env)
    assert result.exit_code == 1, result.output
    assert "data.csv, line 3, field 'target_words': must be a whole number" in result.output
    assert "0 7 * * 1 (Europe/London)" in result.output
    result = CliRunner().invoke(app, ["jobs", "validate", "good", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"file": str(jobs / "good.yaml"), "job": "good", "briefs": 2, "over_limit": 0, "problems": []}
    ]
    result = CliRunner().invoke(app, ["jobs", "validate", "nope"], env=env)
    assert result.exit_code == JobFileError.exit_code and "no job file nope.yaml" in result.output


def test_jobs_schedule_command(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write(jobs, "weekly.yaml", {"schedule": SCHEDULE, "briefs": [{"title": "A"}]})
    write(jobs, "adhoc.yaml", {"briefs": [{"title": "A"}]})
    env = {"COPYDESK_JOBS_DIR": str(jobs), "COPYDESK_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["jobs", "schedule", "--json", "-n", "2"], env=env)
    assert result.exit_code == 0, result.output
    rows = {row["job"]: row for row in json.loads(result.stdout)}
    assert rows["adhoc"]["cron"] is None and rows["adhoc"]["next_runs"] == []
    weekly = [datetime.fromisoformat(t) for t in rows["weekly"]["next_runs"]]
    assert len(weekly) == 2 and (weekly[1] - weekly[0]).days == 7
    assert all(t.astimezone(UTC).hour in (6, 7) and t.weekday() == 0 for t in weekly)
    result = CliRunner().invoke(app, ["jobs", "schedule"], env=env)
    assert result.exit_code == 0 and "on demand" in result.output and "Europe/London" in result.output
