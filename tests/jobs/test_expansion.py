"""Expanding job files into the briefs of a run (:mod:`worker.jobs.expansion`, :mod:`worker.jobs.templates`):
deterministic run ids, defaults, briefs files, templates over rows in the sandbox, limits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from worker.jobs.expansion import RunContext, expand, run_brief_id
from worker.jobs.job_files import check_job_file, load_job

SLOT = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
SCHEDULE = {"cron": "0 7 * * 1", "timezone": "Europe/London"}


def write(directory: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def expand_ids(path: Path) -> list[str]:
    job = load_job(path)
    return [item.brief.brief_id for item in expand(job, RunContext(job.name, SLOT, job.timezone)).briefs]


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
