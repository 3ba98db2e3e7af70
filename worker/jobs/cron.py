"""Cron schedules in a time zone, correct across daylight-saving changes (croniter + zoneinfo).

An expression has five fields (minute hour day-of-month month day-of-week), or six with a trailing
*seconds* field (croniter's convention: ``"*/10 * * * * 30"`` is second 30 of every tenth minute), or is
one of ``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@hourly``. It is matched against the local
*wall-clock* time of the job's IANA time zone, and every matching wall-clock time fires exactly once:

* a time skipped when the clocks go forward (01:30 in London on the last Sunday of March) fires once,
  one gap late, at the instant a clock that had not changed would show it (02:30 BST); a slot that then
  coincides with or precedes one already fired is dropped, so a job every 15 minutes keeps firing every
  15 real minutes through the change;
* a time repeated when the clocks go back (01:30 in London on the last Sunday of October) fires once, at
  its first occurrence (01:30 BST).

Wall-clock times are iterated by croniter on naive datetimes (plain calendar arithmetic) and turned into
instants with :mod:`zoneinfo` (``fold=0``: PEP 495's reading of skipped and repeated times).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from worker.errors import CronError

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_TRANSITION_WINDOW = timedelta(days=1)


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/London``); :class:`CronError` when unknown."""
    if not isinstance(name, str) or not name.strip():
        raise CronError("time zone is empty: give an IANA name such as 'Europe/London' or 'UTC'")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/London' or 'UTC'") from exc


def check_expression(expression: str) -> str:
    """The expression, normalised (single spaces); :class:`CronError` when croniter refuses it."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("cron expression is empty")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f"unknown cron alias {text!r}: use one of {', '.join(ALIASES)}")
        return text.lower()
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise CronError(
            f"cron expression {text!r} has {len(fields)} fields: use 5 (minute hour day-of-month month "
            "day-of-week) or 6 (the same plus seconds, last)"
        )
    try:
        croniter(text, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError) as exc:
        raise CronError(f"invalid cron expression {text!r}: {exc}") from exc
    return text


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression in a time zone. Times in and out are timezone-aware; results are UTC."""

    expression: str
    timezone: str
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", check_expression(self.expression))
        object.__setattr__(self, "zone", parse_timezone(self.timezone))
        object.__setattr__(self, "timezone", self.timezone.strip())
        try:
            self.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        except CronError:
            raise
        except (CroniterError, ValueError) as exc:
            raise CronError(f"cron expression {self.expression!r} never matches a date: {exc}") from exc

    def instant(self, wall: datetime) -> datetime:
        """The UTC instant of a naive local wall-clock time (``fold=0``)."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the schedule's time zone."""
        return _aware(moment).astimezone(self.zone)

    def next_after(self, after: datetime) -> datetime:
        """The first firing instant strictly after ``after`` (UTC)."""
        after = _aware(after).astimezone(UTC)
        # A wall time w fires at w - offset(w) >= w - (smallest offset nearby); starting the wall-clock
        # search at after + smallest offset therefore misses nothing, including slots skipped forward.
        smallest = min(
            _offset(self.zone, after - _TRANSITION_WINDOW),
            _offset(self.zone, after),
            _offset(self.zone, after + _TRANSITION_WINDOW),
        )
        start = (after + smallest).replace(tzinfo=None)
        walls = croniter(self.expression, start, ret_type=datetime)
        while True:
            wall = walls.get_next(datetime)
            moment = self.instant(wall)
            if moment > after:
                # The first wall time whose instant is later than ``after``: every earlier wall time fired
                # at or before ``after``, so this one is not a duplicate of a slot already fired.
                return moment

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` firing instants after ``after`` (UTC)."""
        moments: list[datetime] = []
        current = _aware(after)
        for _ in range(count):
            current = self.next_after(current)
            moments.append(current)
        return moments

    def describe(self) -> str:
        return f"{self.expression} ({self.timezone})"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: schedules only accept timezone-aware times")
    return moment


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"``; :class:`CronError` otherwise."""
    if isinstance(value, bool):
        raise CronError("a duration must be a number of seconds or text like '90s', '15m', '2h', '1d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        unit = units.get(text[-1])
        number = text[:-1] if unit else text
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            raise CronError(f"invalid duration {value!r}: use seconds or text like '90s', '15m', '2h', '1d'") from None
    else:
        raise CronError("a duration must be a number of seconds or text like '90s', '15m', '2h', '1d'")
    if seconds < 0 or seconds != seconds:  # NaN
        raise CronError(f"invalid duration {value!r}: must not be negative")
    return seconds


__all__ = ["ALIASES", "CronError", "CronSchedule", "check_expression", "parse_duration", "parse_timezone"]
