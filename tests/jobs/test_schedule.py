"""Cron schedules in time zones (:mod:`worker.jobs.cron`) and beat's slot bookkeeping (:mod:`worker.jobs.beat`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from worker.jobs.beat import Plan, build_plans, due_slot, next_runs
from worker.jobs.cron import CronError, CronSchedule, parse_duration
from worker.jobs.job_files import load_job


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def table(schedule: CronSchedule, after: datetime, count: int) -> list[str]:
    """Next runs as ``local time (UTC time)`` strings, like ``copydesk jobs schedule`` shows them."""
    return [f"{schedule.local(t):%Y-%m-%d %H:%M %Z} ({t:%H:%M}Z)" for t in schedule.upcoming(after, count)]


# -- parsing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("61 * * * *", "UTC", "invalid cron expression"),
        ("* * * *", "UTC", "has 4 fields"),
        ("* * * * * * * *", "UTC", "has 8 fields"),
        ("", "UTC", "empty"),
        ("@fortnightly", "UTC", "unknown cron alias"),
        ("0 9 * * 1", "Mars/Olympus_Mons", "unknown time zone"),
        ("0 9 * * 1", "../../etc/passwd", "unknown time zone"),
        ("0 9 * * 1", "", "time zone is empty"),
        ("0 0 30 2 *", "UTC", "never matches"),
    ],
)
def test_invalid_schedules_say_why(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronSchedule(expression, timezone)


def test_expressions_are_normalised_and_aliases_accepted() -> None:
    assert CronSchedule("  0   7 * *   1 ", "Europe/London").expression == "0 7 * * 1"
    daily = CronSchedule("@DAILY", "UTC")
    assert daily.upcoming(utc(2026, 3, 1, 12), 2) == [utc(2026, 3, 2), utc(2026, 3, 3)]


def test_sixth_field_is_seconds() -> None:
    every_second = CronSchedule("* * * * * *", "UTC")
    assert every_second.upcoming(utc(2026, 1, 1, 0, 0, 0), 3) == [
        utc(2026, 1, 1, 0, 0, 1),
        utc(2026, 1, 1, 0, 0, 2),
        utc(2026, 1, 1, 0, 0, 3),
    ]
    at_second_15 = CronSchedule("30 9 * * * 15", "UTC")
    assert at_second_15.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 9, 30, 15)


def test_next_after_is_strict_and_needs_aware_times() -> None:
    hourly = CronSchedule("0 * * * *", "UTC")
    assert hourly.next_after(utc(2026, 1, 1, 9)) == utc(2026, 1, 1, 10)
    with pytest.raises(ValueError, match="naive"):
        hourly.next_after(datetime(2026, 1, 1, 9))  # a naive time: the point of the test


@pytest.mark.parametrize(
    ("value", "seconds"), [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0), ("30", 30.0)]
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-5m", True, None, "", "1w"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(CronError):
        parse_duration(value)


# -- time zones and daylight saving ----------------------------------------------------------------------


def test_weekly_in_london_follows_the_clocks_across_both_changes() -> None:
    monday_7am = CronSchedule("0 7 * * 1", "Europe/London")
    assert table(monday_7am, utc(2026, 3, 20), 3) == [
        "2026-03-23 07:00 GMT (07:00Z)",
        "2026-03-30 07:00 BST (06:00Z)",  # clocks went forward on Sunday 29 March
        "2026-04-06 07:00 BST (06:00Z)",
    ]
    assert table(monday_7am, utc(2026, 10, 20), 2) == [
        "2026-10-26 07:00 GMT (07:00Z)",  # clocks went back on Sunday 25 October
        "2026-11-02 07:00 GMT (07:00Z)",
    ]


def test_london_spring_forward_skipped_time_fires_once_an_hour_late() -> None:
    at_0130 = CronSchedule("30 1 * * *", "Europe/London")
    assert table(at_0130, utc(2026, 3, 27, 12), 3) == [
        "2026-03-28 01:30 GMT (01:30Z)",
        "2026-03-29 02:30 BST (01:30Z)",  # 01:30 does not exist that night
        "2026-03-30 01:30 BST (00:30Z)",
    ]


def test_london_fall_back_repeated_time_fires_once() -> None:
    at_0130 = CronSchedule("30 1 * * *", "Europe/London")
    assert table(at_0130, utc(2026, 10, 24, 12), 2) == [
        "2026-10-25 01:30 BST (00:30Z)",  # the first of the two 01:30s
        "2026-10-26 01:30 GMT (01:30Z)",
    ]


def test_london_quarter_hourly_keeps_real_time_through_the_changes() -> None:
    quarterly = CronSchedule("*/15 * * * *", "Europe/London")
    forward = quarterly.upcoming(utc(2026, 3, 29, 0, 40), 8)
    assert [f"{t:%H:%M}" for t in forward] == ["00:45", "01:00", "01:15", "01:30", "01:45", "02:00", "02:15", "02:30"]
    back = quarterly.upcoming(utc(2026, 10, 24, 23, 40), 7)
    # 01:00-01:45 local happen twice; each fires once (the first time), then 02:00 GMT
    assert [f"{t:%H:%M}" for t in back] == ["23:45", "00:00", "00:15", "00:30", "00:45", "02:00", "02:15"]
    assert len(set(forward)) == len(forward) and forward == sorted(forward)


def test_new_york_daily_across_both_changes() -> None:
    at_0230 = CronSchedule("30 2 * * *", "America/New_York")
    assert table(at_0230, utc(2026, 3, 6, 12), 3) == [
        "2026-03-07 02:30 EST (07:30Z)",
        "2026-03-08 03:30 EDT (07:30Z)",  # 02:30 does not exist on 8 March
        "2026-03-09 02:30 EDT (06:30Z)",
    ]
    at_0130 = CronSchedule("30 1 * * *", "America/New_York")
    assert table(at_0130, utc(2026, 10, 31, 12), 2) == [
        "2026-11-01 01:30 EDT (05:30Z)",  # first of the two 01:30s
        "2026-11-02 01:30 EST (06:30Z)",
    ]


def test_new_york_hourly_around_spring_forward() -> None:
    hourly = CronSchedule("0 * * * *", "America/New_York")
    assert table(hourly, utc(2026, 3, 8, 5, 30), 4) == [
        "2026-03-08 01:00 EST (06:00Z)",
        "2026-03-08 03:00 EDT (07:00Z)",  # 02:00 EST would be 07:00Z too: one slot, not two
        "2026-03-08 04:00 EDT (08:00Z)",
        "2026-03-08 05:00 EDT (09:00Z)",
    ]


def test_sample_jobs_next_runs() -> None:
    root = Path(__file__).resolve().parents[2] / "jobs"
    roundup = load_job(root / "weekly-roundup.yaml")
    assert next_runs(roundup, 2, after=utc(2026, 3, 25)) == [utc(2026, 3, 30, 6), utc(2026, 4, 6, 6)]
    products = load_job(root / "product-descriptions.yaml")
    assert next_runs(products, 2, after=utc(2026, 2, 15)) == [utc(2026, 3, 1, 11), utc(2026, 4, 1, 10)]


# -- beat's plans and due slots --------------------------------------------------------------------------


def write_job(directory: Path, name: str, **fields: object) -> Path:
    data = {"briefs": [{"title": f"A brief for {name}"}], **fields}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def plan_for(cron: str, next_slot: datetime, catch_up: float = 3600) -> Plan:
    schedule = CronSchedule(cron, "UTC")
    return Plan(job=None, schedule=schedule, catch_up=catch_up, next_slot=next_slot)  # type: ignore[arg-type]


def test_due_slot_fires_the_slot_that_came_due() -> None:
    plan = plan_for("0 * * * *", utc(2026, 1, 1, 10))
    assert due_slot(plan, utc(2026, 1, 1, 9, 59)) == (None, utc(2026, 1, 1, 10), 0, 0)
    assert due_slot(plan, utc(2026, 1, 1, 10, 0, 1)) == (utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), 0, 0)


def test_due_slot_coalesces_slots_that_fell_due_together() -> None:
    plan = plan_for("*/10 * * * *", utc(2026, 1, 1, 10))
    assert due_slot(plan, utc(2026, 1, 1, 10, 35)) == (utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 40), 3, 0)


def test_due_slot_misses_slots_older_than_the_catch_up_window() -> None:
    plan = plan_for("0 * * * *", utc(2026, 1, 1, 1), catch_up=1800)
    slot, following, coalesced, missed = due_slot(plan, utc(2026, 1, 1, 10, 20))
    assert (slot, following, coalesced, missed) == (utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), 0, 1)
    plan = plan_for("0 * * * *", utc(2026, 1, 1, 1), catch_up=600)
    assert due_slot(plan, utc(2026, 1, 1, 10, 20)) == (None, utc(2026, 1, 1, 11), 0, 1)


def test_build_plans_start_inside_the_catch_up_window_and_skip_unscheduled_jobs(tmp_path: Path) -> None:
    write_job(tmp_path, "hourly", schedule={"cron": "0 * * * *", "timezone": "UTC", "catch_up": "30m"})
    write_job(tmp_path, "paused", enabled=False, schedule={"cron": "0 * * * *", "timezone": "UTC"})
    write_job(tmp_path, "on-demand")
    (tmp_path / "broken.yaml").write_text("schedule: {cron: '0 * * *', timezone: UTC}\nbriefs: []\n")
    now = utc(2026, 1, 1, 10, 20)
    plans, notes = build_plans(tmp_path, now)
    assert set(plans) == {"hourly"}
    assert plans["hourly"].next_slot == utc(2026, 1, 1, 10)  # 20 minutes ago, inside the 30-minute window
    assert len(notes) == 1 and notes[0].startswith("broken.yaml is not scheduled") and "4 fields" in notes[0]


def test_build_plans_keeps_unchanged_jobs_and_restarts_changed_ones(tmp_path: Path) -> None:
    path = write_job(tmp_path, "hourly", schedule={"cron": "0 * * * *", "timezone": "UTC"})
    plans, _ = build_plans(tmp_path, utc(2026, 1, 1, 10, 20))
    plans["hourly"].next_slot = utc(2026, 1, 1, 11)  # beat fired 10:00 already
    again, _ = build_plans(tmp_path, utc(2026, 1, 1, 10, 30), plans)
    assert again["hourly"].next_slot == utc(2026, 1, 1, 11)
    write_job(tmp_path, "hourly", schedule={"cron": "*/5 * * * *", "timezone": "UTC", "catch_up": "1m"})
    changed, _ = build_plans(tmp_path, utc(2026, 1, 1, 10, 31, 30), again)
    assert changed["hourly"].next_slot == utc(2026, 1, 1, 10, 35)  # 10:30 is outside the 1-minute window
    assert changed["hourly"].schedule.expression == "*/5 * * * *"
    path.unlink()
    assert build_plans(tmp_path, utc(2026, 1, 1, 10, 32), changed)[0] == {}


def test_catch_up_window_has_a_floor() -> None:
    with pytest.raises(ValueError, match="at least 60"):
        from worker.jobs.job_spec import ScheduleSpec

        ScheduleSpec(cron="* * * * *", timezone="UTC", catch_up="10s")


def test_timedelta_window_edge() -> None:
    plan = plan_for("0 * * * *", utc(2026, 1, 1, 9), catch_up=3600)
    slot, *_ = due_slot(plan, utc(2026, 1, 1, 9) + timedelta(hours=1))
    assert slot == utc(2026, 1, 1, 10)  # the 09:00 slot is coalesced into 10:00
