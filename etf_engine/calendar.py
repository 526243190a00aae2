"""Dealing days: calendars, cut-offs and settlement dates (SPEC §13), as pure functions on zoneinfo.

Both ledgers call these at decision time only; what they compute (a dealing date, a settlement
date, the next dealing day) is carried in the journaled event as a fact, so a replay never
depends on the time zone data installed when it runs. ``tzdata`` is a dependency so that a
machine without system zone data still knows every IANA zone.

Dates are ``datetime.date`` here and ISO ``YYYY-MM-DD`` strings in commands, events and results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from etf_engine.errors import invalid, precondition, quote
from etf_engine.model import NOT_A_DEALING_DAY

DEFAULT_WEEKEND = (6, 7)  # ISO weekdays: Saturday, Sunday
SEARCH_DAYS = 732  # no dealing day within two years: the calendar is refused rather than searched forever
MAX_HOLIDAYS = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_ONE_DAY = timedelta(days=1)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CUTOFF = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")


@dataclass(frozen=True)
class Calendar:
    """A calendar as the ledgers hold it. A *dealing day* is a local date that is not a weekend
    day, a holiday or closed."""

    calendar_id: str
    time_zone: str
    holidays: frozenset[date]
    weekend_days: frozenset[int]  # ISO weekday numbers, 1 = Monday
    closed: Mapping[date, str] = field(default_factory=dict)  # date -> reason
    zone: ZoneInfo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", zone(self.time_zone))

    def with_holidays(self, holidays: Iterable[str]) -> Calendar:
        """This calendar with its holidays replaced by ``holidays`` (ISO dates, as events carry them)."""
        return replace(self, holidays=frozenset(map(date.fromisoformat, holidays)))

    def closing(self, day: date, reason: str) -> Calendar:
        """This calendar with ``day`` closed for ``reason``."""
        return replace(self, closed={**self.closed, day: reason})


# -- parsing (INVALID_ARGUMENT naming the field) ------------------------------------------------
def zone(name: str, field_name: str = "time_zone") -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise invalid(field_name, f"{quote(name)} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid(field_name, f"unknown time zone {quote(name)}") from None


def parse_date(text: str, field_name: str) -> date:
    """A strict ISO date ``YYYY-MM-DD`` (``date.fromisoformat`` alone also takes ``YYYYMMDD``)."""
    if not isinstance(text, str) or _DATE.fullmatch(text) is None:
        raise invalid(field_name, f"{quote(text)} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise invalid(field_name, f"{quote(text)} is not a date of the calendar") from None


def parse_holidays(texts: Iterable[str], field_name: str = "holidays") -> tuple[str, ...]:
    """The holidays as sorted ISO strings; a repeated date is refused (a typo more often than not)."""
    seen: set[date] = set()
    for i, text in enumerate(texts):
        if i >= MAX_HOLIDAYS:
            raise invalid(field_name, f"more than {MAX_HOLIDAYS} dates")
        day = parse_date(text, f"{field_name}[{i}]")
        if day in seen:
            raise invalid(f"{field_name}[{i}]", f"{text} is listed twice")
        seen.add(day)
    return tuple(d.isoformat() for d in sorted(seen))


def parse_weekend(days: Iterable[int] | None, field_name: str = "weekend_days") -> tuple[int, ...]:
    """ISO weekday numbers, sorted; None (absent) means Saturday and Sunday."""
    if days is None:
        return DEFAULT_WEEKEND
    out: set[int] = set()
    for i, day in enumerate(days):
        if type(day) is not int or not 1 <= day <= 7:
            raise invalid(f"{field_name}[{i}]", f"{quote(day)} is not an ISO weekday 1-7")
        if day in out:
            raise invalid(f"{field_name}[{i}]", f"{day} is listed twice")
        out.add(day)
    if len(out) == 7:
        raise invalid(field_name, "every day of the week is a weekend day: there would be no dealing day")
    return tuple(sorted(out))


def parse_cutoff(text: str, field_name: str = "dealing_cutoff") -> str:
    """A local time ``HH:MM`` or ``HH:MM:SS``, returned as ``HH:MM:SS``."""
    match = _CUTOFF.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise invalid(field_name, f"{quote(text)} is not a local time HH:MM or HH:MM:SS")
    h, m, s = int(match[1]), int(match[2]), int(match[3] or 0)
    if h > 23 or m > 59 or s > 59:
        raise invalid(field_name, f"{quote(text)} is not a time of day")
    return f"{h:02d}:{m:02d}:{s:02d}"


def cutoff_seconds(cutoff: str) -> int:
    """Seconds after local midnight of a parsed (``HH:MM:SS``) cut-off."""
    h, m, s = cutoff.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


# -- days ---------------------------------------------------------------------------------------
def is_dealing_day(cal: Calendar, day: date) -> bool:
    return day.isoweekday() not in cal.weekend_days and day not in cal.holidays and day not in cal.closed


def next_dealing_day(cal: Calendar, day: date) -> date:
    """The first dealing day after ``day``."""
    for _ in range(SEARCH_DAYS):
        day += _ONE_DAY
        if is_dealing_day(cal, day):
            return day
    raise precondition(NOT_A_DEALING_DAY, f"calendar {cal.calendar_id} has no dealing day within two years "
                                          f"after {day - SEARCH_DAYS * _ONE_DAY}")


def add_dealing_days(cal: Calendar, day: date, n: int) -> date:
    """``day`` plus ``n`` dealing days (n = 0: ``day`` itself)."""
    for _ in range(n):
        day = next_dealing_day(cal, day)
    return day


def dealing_days_between(cal: Calendar, start: date, end: date) -> int:
    """How many dealing days d there are with start < d <= end."""
    count, day = 0, start
    while day < end:
        day += _ONE_DAY
        count += is_dealing_day(cal, day)
    return count


# -- instants -----------------------------------------------------------------------------------
def local_date(cal: Calendar, now_ms: int) -> date:
    return (_EPOCH + now_ms * _MS).astimezone(cal.zone).date()


def cutoff_ms(cal: Calendar, day: date, cutoff: int) -> int:
    """The instant (unix ms) of local time ``cutoff`` (seconds after midnight) on ``day``; a time
    that a clock change skips or repeats resolves as zoneinfo's fold=0 does."""
    hours, rest = divmod(cutoff, 3600)
    local = datetime(day.year, day.month, day.day, hours, rest // 60, rest % 60, tzinfo=cal.zone)
    return (local - _EPOCH) // _MS


def day_end_ms(cal: Calendar, day: date) -> int:
    """The instant ``day`` ends in the calendar's time zone (the next local midnight)."""
    return cutoff_ms(cal, day + timedelta(days=1), 0)


def dealing_date(cal: Calendar, cutoff: int, now_ms: int) -> date:
    """The dealing date of an order received at ``now_ms``: the first dealing day, from the local
    date of now on, whose cut-off is still ahead."""
    day = local_date(cal, now_ms)
    for _ in range(SEARCH_DAYS):
        if is_dealing_day(cal, day) and now_ms < cutoff_ms(cal, day, cutoff):
            return day
        day += _ONE_DAY
    raise precondition(NOT_A_DEALING_DAY, f"calendar {cal.calendar_id} has no dealing day within two years")
