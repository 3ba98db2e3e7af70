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
from worker.jobs.job_files import (
    JobFileError,
    RunContext,
    check_job_file,
    expand,
    iter_data_rows,
    job_path,
    load_job,
    read_job,
    run_brief_id,
)

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


def expand_ids(path: Path) -> list[str]:
    job = load_job(path)
    return [item.brief.brief_id for item in expand(job, RunContext(job.name, SLOT, job.timezone)).briefs]


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


# -- expansion ------------------------------------------------------------------------------------------


def test_run_brief_ids_are_deterministic_safe_and_bounded() -> None:
    assert run_brief_id("weekly", SLOT, "garden") == "weekly-20260302T070000Z-garden"
    assert run_brief_id("weekly", SLOT, "AB 12/3") == "weekly-20260302T070000Z-AB-12-3"
    assert run_brief_id("weekly", SLOT, "../..") == "weekly-20260302T070000Z-row"
    long_id = run_brief_id("weekly", SLOT, "x" * 200)
    assert len(long_id) <= 126 and long_id == run_brief_id("weekly", SLOT, "x" * 200)
    assert run_brief_id("weekly", SLOT, "x" * 200) != run_brief_id("weekly", SLOT, "x" * 199 + "y")


def test_inline_briefs_get_run_ids_and_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inline.yaml",
        {
            "defaults": {"tone": "friendly", "target_words": 300},
            "briefs": [
                {"id": "first", "title": "How to plant tomatoes"},
                {"title": "Why caches help", "tone": "precise"},
            ],
        },
    )
    job = load_job(path)
    briefs = [item.brief for item in expand(job, RunContext(job.name, SLOT)).briefs]
    assert briefs[0].brief_id == "inline-20260302T070000Z-first"
    assert briefs[1].brief_id.startswith("inline-20260302T070000Z-b-")  # keyed by the content-derived id
    assert [b.tone for b in briefs] == ["friendly", "precise"]
    assert [b.target_words for b in briefs] == [300, 300]
    assert expand_ids(path) == [b.brief_id for b in briefs]  # same run, same ids
    other = expand(job, RunContext(job.name, datetime(2026, 3, 9, 7, tzinfo=UTC))).briefs
    assert other[0].brief.brief_id == "inline-20260309T070000Z-first"


def test_briefs_file_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "jobs" / "briefs").mkdir(parents=True)
    (tmp_path / "jobs" / "briefs" / "list.csv").write_text("id,title,tags\none,First brief,a;b\n,Second brief,\n")
    path = write(tmp_path / "jobs", "fromfile.yaml", {"briefs_file": "briefs/list.csv", "defaults": {"tone": "warm"}})
    job = load_job(path)
    expansion = expand(job, RunContext(job.name, SLOT))
    assert expansion.problems == []
    assert expansion.briefs[0].brief.brief_id == "fromfile-20260302T070000Z-one"
    assert [i.brief.tone for i in expansion.briefs] == ["warm", "warm"]
    assert expansion.briefs[0].source.endswith("list.csv:line 2")


def test_template_over_a_csv_with_a_bad_row_reports_file_row_and_field(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "products.csv").write_text(
        "sku,name,words,material\n"
        "kt-1,Travel kettle,120,steel\n"
        "bd-2,Bamboo board,lots,bamboo\n"  # target_words is not a number
        "ln-3,,100,linen\n"  # no name: the template needs it
        "mg-4,Stoneware mug,90,stoneware\n"
    )
    path = write(
        tmp_path,
        "products.yaml",
        {
            "template": {
                "id": "{{ row.sku }}",
                "title": "{{ row.name }} review",
                "target_words": "{{ row.words }}",
                "keywords": ["{{ row.material }}", "{{ row.colour | default('') }}"],
            },
            "data": "data/products.csv",
            "defaults": {"content_type": "review"},
        },
    )
    job = load_job(path)
    expansion = expand(job, RunContext(job.name, SLOT))
    assert [i.brief.brief_id for i in expansion.briefs] == [
        "products-20260302T070000Z-kt-1",
        "products-20260302T070000Z-mg-4",
    ]
    assert expansion.briefs[0].brief.keywords == ["steel"]  # the empty default is dropped
    found = [(Path(p.file).name, p.record, p.field, p.message) for p in expansion.problems]
    assert found == [
        ("products.csv", "line 3", "target_words", "must be a whole number"),
        ("products.csv", "line 4", "title", "the template uses row.name, which this row does not have"),
    ]
    check = check_job_file(path)
    assert check.briefs == 2 and [str(p) for p in check.problems] == [str(p) for p in expansion.problems]
    assert str(check.problems[0]).endswith("products.csv, line 3, field 'target_words': must be a whole number")


def test_row_values_are_data_never_template_code(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.yaml",
        {
            "template": {"title": "{{ row.title }}", "notes": "{{ row.notes }}"},
            "rows": [{"title": "{{ 7*7 }} ideas", "notes": "{% for x in range(3) %}{{ x }}{% endfor %}"}],
        },
    )
    job = load_job(path)
    brief = expand(job, RunContext(job.name, SLOT)).briefs[0].brief
    assert brief.title == "{{ 7*7 }} ideas"
    assert brief.notes == "{% for x in range(3) %}{{ x }}{% endfor %}"


def test_templates_run_in_the_sandbox(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "escape.yaml",
        {"template": {"title": "{{ row.__class__.__mro__[1].__subclasses__() }}"}, "rows": [{"a": 1}]},
    )
    job = load_job(path)
    expansion = expand(job, RunContext(job.name, SLOT))
    assert expansion.briefs == []
    assert expansion.problems[0].field == "title"
    assert "sandbox" in expansion.problems[0].message or "does not have" in expansion.problems[0].message


def test_run_values_in_the_job_time_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dated.yaml",
        {
            "schedule": {"cron": "0 7 * * 1", "timezone": "Europe/London"},
            "template": {
                "title": "{{ row.t }} ({{ run.weekday }} {{ run.long_date }}, {{ run.iso_week }}, {{ run.time }})"
            },
            "rows": [{"t": "Roundup"}],
        },
    )
    job = load_job(path)
    summer = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # 07:00 BST
    brief = expand(job, RunContext(job.name, summer, job.timezone)).briefs[0].brief
    assert brief.title == "Roundup (Monday 1 June 2026, 2026-W23, 07:00)"


def test_repeated_row_keys_and_the_briefs_limit(tmp_path: Path) -> None:
    rows = [{"k": "a", "t": "One"}, {"k": "a", "t": "Two"}, {"k": "b", "t": "Three"}, {"k": "c", "t": "Four"}]
    path = write(
        tmp_path,
        "limited.yaml",
        {"template": {"id": "{{ row.k }}", "title": "{{ row.t }}"}, "rows": rows, "limits": {"max_briefs": 2}},
    )
    job = load_job(path)
    expansion = expand(job, RunContext(job.name, SLOT))
    assert [i.brief.title for i in expansion.briefs] == ["One", "Three"]
    assert expansion.over_limit == 1
    assert [(p.record, p.field) for p in expansion.problems] == [("rows record 2", "id")]
    assert "repeats the key" in expansion.problems[0].message


def test_rows_without_a_key_are_numbered(tmp_path: Path) -> None:
    path = write(tmp_path, "numbered.yaml", {"template": {"title": "{{ row.t }}"}, "rows": [{"t": "A"}, {"t": "B"}]})
    assert expand_ids(path) == ["numbered-20260302T070000Z-row1", "numbered-20260302T070000Z-row2"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("rows.yaml", "rows:\n  - {a: 1}\n  - {a: x, b: [1, 2]}\n", [{"a": 1}, {"a": "x", "b": [1, 2]}]),
        ("rows.json", json.dumps([{"a": "1"}]), [{"a": "1"}]),
        ("rows.jsonl", '{"a": 1}\n\n{"a": 2}\n', [{"a": 1}, {"a": 2}]),
        ("rows.csv", "\ufeffa,b\n1,\n,\n3,4\n", [{"a": "1"}, {"a": "3", "b": "4"}]),
    ],
)
def test_data_file_formats(tmp_path: Path, name: str, content: str, expected: list[dict[str, Any]]) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    rows = list(iter_data_rows(path))
    assert [row for _, _, row in rows] == expected  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "a,a\n1,2\n", "every column once"),
        ("bad.csv", "a,b\n1,2,3\n", "has 3 cells"),
        ("bad.yaml", "a: 1\n", "expected a list of rows"),
        ("bad.yaml", "- x: &y 1\n- z: *y\n", "aliases"),
        ("bad.jsonl", '{"a": 1}\nnot json\n', "invalid JSON"),
        ("bad.json", '[{"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}]', "nested"),
        ("bad.txt", "x", "unknown data file type"),
    ],
)
def test_bad_data_files_are_problems(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    problems = [item for item in iter_data_rows(path) if not isinstance(item, tuple)]
    assert any(message in p.message for p in problems), problems


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
    assert result.exit_code == 3 and "no job file nope.yaml" in result.output


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
