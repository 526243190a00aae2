"""Unit tests of ``etf_engine.calendar`` (SPEC §13): parsing, dealing days, cut-off instants and the
dealing date of an instant, including a zone that changes its clocks.

Expected instants are written as UTC wall times (``utc``), worked out by hand from the zones' rules:
Hong Kong is UTC+8 all year; New York is UTC-5 (EST) until 2026-03-08 02:00 local, then UTC-4 (EDT)
until 2026-11-01 02:00 local; London is UTC+0 until 2026-03-29 01:00 UTC, then UTC+1 until
2026-10-25 01:00 UTC. January 2026: Monday the 5th, Friday the 9th, Monday the 12th.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from etf_engine import calendar as cal
from etf_engine.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, EngineError

pytestmark = pytest.mark.unit

MS = 1
SECOND = 1000 * MS
HOUR = 3600 * SECOND
FOUR_PM = 16 * 3600  # the default cut-off, in seconds after local midnight


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    """Unix ms of a UTC wall time."""
    return (datetime(y, mo, d, h, mi, s, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def D(text: str) -> date:
    return date.fromisoformat(text)


def calendar(time_zone: str = "Asia/Hong_Kong", holidays: tuple[str, ...] = (), weekend: tuple[int, ...] = (6, 7),
             closed: dict[str, str] | None = None) -> cal.Calendar:
    return cal.Calendar("C", time_zone, frozenset(map(D, holidays)), frozenset(weekend),
                        {D(k): v for k, v in (closed or {}).items()})


def refused(call, *args, names: str) -> EngineError:
    with pytest.raises(EngineError) as info:
        call(*args)
    assert info.value.code == INVALID_ARGUMENT, info.value
    assert info.value.message.startswith(f"{names}:"), info.value
    return info.value


# == parsing ======================================================================================
def test_zone_known_and_unknown():
    assert cal.zone("Asia/Hong_Kong").key == "Asia/Hong_Kong"
    assert cal.zone("UTC").key == "UTC"
    for bad in ("Mars/Olympus_Mons", "", "../../etc/passwd", "Asia/Hong Kong", "x" * 65):
        refused(cal.zone, bad, names="time_zone")
    refused(cal.zone, "Nowhere/City", "tz", names="tz")


def test_calendar_refuses_an_unknown_zone():
    with pytest.raises(EngineError) as info:
        calendar("Atlantis/Capital")
    assert info.value.code == INVALID_ARGUMENT and "time_zone" in info.value.message


@pytest.mark.parametrize("text", ["2026-12-25", "2028-02-29", "0001-01-01", "9999-12-31"])
def test_parse_date_accepts(text):
    assert cal.parse_date(text, "date") == D(text)


@pytest.mark.parametrize("text", ["2026-1-05", "20260105", "20261225", "2026-02-30", "2026-13-01", "2027-02-29", "",
                                  " 2026-01-05", "2026-01-05T00:00", "2026/01/05", "0000-01-01"])
def test_parse_date_refuses_naming_the_field(text):
    refused(cal.parse_date, text, "from_date", names="from_date")


def test_parse_holidays_sorted_and_refusals():
    assert cal.parse_holidays(["2026-12-25", "2026-01-01", "2026-12-26"]) == ("2026-01-01", "2026-12-25", "2026-12-26")
    assert cal.parse_holidays([]) == ()
    refused(cal.parse_holidays, ["2026-01-01", "2026-12-25", "2026-01-01"], names="holidays[2]")  # listed twice
    refused(cal.parse_holidays, ["2026-01-01", "2026-13-01"], names="holidays[1]")
    refused(cal.parse_holidays, ["2026-01-01"] + ["2026-01-x"], "days", names="days[1]")


def test_parse_weekend():
    assert cal.parse_weekend(None) == (6, 7)  # absent: Saturday and Sunday
    assert cal.parse_weekend([]) == ()  # present and empty: none
    assert cal.parse_weekend([7, 5]) == (5, 7)
    assert cal.parse_weekend([1, 2, 3, 4, 5, 6]) == (1, 2, 3, 4, 5, 6)  # six: one dealing day a week
    refused(cal.parse_weekend, [6, 0], names="weekend_days[1]")
    refused(cal.parse_weekend, [8], names="weekend_days[0]")
    refused(cal.parse_weekend, [6, 6], names="weekend_days[1]")
    refused(cal.parse_weekend, [True], names="weekend_days[0]")  # a bool is not a weekday number
    refused(cal.parse_weekend, [1, 2, 3, 4, 5, 6, 7], names="weekend_days")  # no dealing day at all


@pytest.mark.parametrize(("text", "parsed", "seconds"), [
    ("16:00", "16:00:00", 57_600), ("00:00", "00:00:00", 0), ("23:59:59", "23:59:59", 86_399),
    ("08:00:01", "08:00:01", 28_801), ("12:30", "12:30:00", 45_000),
])
def test_parse_cutoff(text, parsed, seconds):
    assert cal.parse_cutoff(text) == parsed
    assert cal.cutoff_seconds(parsed) == seconds


@pytest.mark.parametrize("text", ["24:00", "16:0", "16:00:60", "23:60", "23:59:60", "9:00", "16", "16:00:00:00",
                                  "16:00:00.5", " 16:00", "16h00", "", "4pm", "-1:00"])
def test_parse_cutoff_refuses_naming_the_field(text):
    refused(cal.parse_cutoff, text, names="dealing_cutoff")


# == dealing days =================================================================================
def test_is_dealing_day():
    c = calendar(holidays=("2026-01-06",), closed={"2026-01-07": "typhoon signal no. 8"})
    assert cal.is_dealing_day(c, D("2026-01-05"))  # Monday
    assert not cal.is_dealing_day(c, D("2026-01-06"))  # holiday
    assert not cal.is_dealing_day(c, D("2026-01-07"))  # closed
    assert cal.is_dealing_day(c, D("2026-01-08"))
    assert not cal.is_dealing_day(c, D("2026-01-10")) and not cal.is_dealing_day(c, D("2026-01-11"))  # weekend
    gulf = calendar(weekend=(5, 6))  # Friday and Saturday
    assert not cal.is_dealing_day(gulf, D("2026-01-09")) and cal.is_dealing_day(gulf, D("2026-01-11"))
    every_day = calendar(weekend=())
    assert all(cal.is_dealing_day(every_day, D("2026-01-05") + timedelta(days=i)) for i in range(7))


def test_next_and_add_dealing_days_across_a_weekend_and_a_holiday():
    plain = calendar()
    assert cal.next_dealing_day(plain, D("2026-01-05")) == D("2026-01-06")
    assert cal.next_dealing_day(plain, D("2026-01-09")) == D("2026-01-12")  # Friday -> Monday
    assert cal.next_dealing_day(plain, D("2026-01-10")) == D("2026-01-12")  # Saturday -> Monday
    holiday = calendar(holidays=("2026-01-12",))  # Monday a holiday
    assert cal.next_dealing_day(holiday, D("2026-01-09")) == D("2026-01-13")
    assert cal.add_dealing_days(holiday, D("2026-01-09"), 0) == D("2026-01-09")
    assert cal.add_dealing_days(holiday, D("2026-01-10"), 0) == D("2026-01-10")  # 0: the day itself, whatever it is
    assert cal.add_dealing_days(holiday, D("2026-01-08"), 2) == D("2026-01-13")  # Fri, (weekend, holiday) Tue
    assert cal.add_dealing_days(plain, D("2026-01-08"), 2) == D("2026-01-12")
    assert cal.add_dealing_days(plain, D("2026-01-05"), 30) == D("2026-02-16")  # six weeks of five days
    closed = calendar(closed={"2026-01-06": "black rainstorm"})
    assert cal.add_dealing_days(closed, D("2026-01-05"), 2) == D("2026-01-08")


def test_dealing_days_between():
    c = calendar(holidays=("2026-01-12",))
    assert cal.dealing_days_between(c, D("2026-01-05"), D("2026-01-05")) == 0
    assert cal.dealing_days_between(c, D("2026-01-05"), D("2026-01-07")) == 2  # start excluded, end included
    assert cal.dealing_days_between(c, D("2026-01-08"), D("2026-01-13")) == 2  # Fri, Tue
    assert cal.dealing_days_between(c, D("2026-01-09"), D("2026-01-12")) == 0  # weekend, holiday
    assert cal.dealing_days_between(c, D("2026-01-09"), D("2026-01-05")) == 0  # end before start
    for n in (0, 1, 2, 7, 30):  # the inverse of add_dealing_days from a dealing day
        assert cal.dealing_days_between(c, D("2026-01-08"), cal.add_dealing_days(c, D("2026-01-08"), n)) == n


def test_no_dealing_day_within_two_years_is_refused():
    mondays = tuple((D("2026-01-05") + timedelta(weeks=w)).isoformat() for w in range(110))
    c = calendar(holidays=mondays, weekend=(2, 3, 4, 5, 6, 7))  # only Mondays deal, and each is a holiday
    with pytest.raises(EngineError) as info:
        cal.next_dealing_day(c, D("2026-01-04"))
    assert info.value.code == FAILED_PRECONDITION and info.value.message.startswith("NOT_A_DEALING_DAY")
    with pytest.raises(EngineError) as info:
        cal.dealing_date(c, FOUR_PM, utc(2026, 1, 4))
    assert info.value.code == FAILED_PRECONDITION and info.value.message.startswith("NOT_A_DEALING_DAY")


# == instants =====================================================================================
def test_local_date_at_local_midnight():
    hk = calendar()
    assert cal.local_date(hk, utc(2026, 1, 4, 16) - 1) == D("2026-01-04")  # 23:59:59.999 Sunday in Hong Kong
    assert cal.local_date(hk, utc(2026, 1, 4, 16)) == D("2026-01-05")  # 00:00 Monday
    ny = calendar("America/New_York")
    assert cal.local_date(ny, utc(2026, 1, 5, 4, 59, 59)) == D("2026-01-04")
    assert cal.local_date(ny, utc(2026, 1, 5, 5)) == D("2026-01-05")


def test_cutoff_ms_hong_kong():
    hk = calendar()
    assert cal.cutoff_ms(hk, D("2026-01-05"), FOUR_PM) == utc(2026, 1, 5, 8)  # 16:00 HKT = 08:00 UTC
    assert cal.cutoff_ms(hk, D("2026-07-06"), FOUR_PM) == utc(2026, 7, 6, 8)  # no daylight saving
    assert cal.cutoff_ms(hk, D("2026-01-05"), 0) == utc(2026, 1, 4, 16)
    assert cal.cutoff_ms(hk, D("2026-01-05"), 86_399) == utc(2026, 1, 5, 15, 59, 59)


@pytest.mark.parametrize(("day", "expected"), [
    ("2026-03-06", utc(2026, 3, 6, 21)),  # Friday, EST
    ("2026-03-08", utc(2026, 3, 8, 20)),  # the Sunday the clocks go forward: EDT from 02:00
    ("2026-03-09", utc(2026, 3, 9, 20)),  # Monday, EDT
    ("2026-10-30", utc(2026, 10, 30, 20)),
    ("2026-11-01", utc(2026, 11, 1, 21)),  # the Sunday the clocks go back: EST from 02:00
    ("2026-11-02", utc(2026, 11, 2, 21)),
])
def test_cutoff_ms_new_york_across_daylight_saving(day, expected):
    assert cal.cutoff_ms(calendar("America/New_York"), D(day), FOUR_PM) == expected


def test_cutoff_ms_london_and_the_skipped_and_repeated_hours():
    lon = calendar("Europe/London")
    assert cal.cutoff_ms(lon, D("2026-03-27"), FOUR_PM) == utc(2026, 3, 27, 16)  # GMT
    assert cal.cutoff_ms(lon, D("2026-03-29"), FOUR_PM) == utc(2026, 3, 29, 15)  # change day: BST
    assert cal.cutoff_ms(lon, D("2026-03-30"), FOUR_PM) == utc(2026, 3, 30, 15)
    assert cal.cutoff_ms(lon, D("2026-10-26"), FOUR_PM) == utc(2026, 10, 26, 16)
    # 01:30 does not exist on 2026-03-29 in London; fold=0 reads it with the offset before the change
    assert cal.cutoff_ms(lon, D("2026-03-29"), 5400) == utc(2026, 3, 29, 1, 30)
    ny = calendar("America/New_York")
    assert cal.cutoff_ms(ny, D("2026-03-08"), 9000) == utc(2026, 3, 8, 7, 30)  # 02:30 skipped: read as EST
    assert cal.cutoff_ms(ny, D("2026-11-01"), 5400) == utc(2026, 11, 1, 5, 30)  # 01:30 twice: the first (EDT)


def test_dealing_date_at_the_cutoff():
    hk = calendar()
    cutoff = utc(2026, 1, 5, 8)  # Monday 16:00 in Hong Kong
    assert cal.dealing_date(hk, FOUR_PM, cutoff - 1) == D("2026-01-05")
    assert cal.dealing_date(hk, FOUR_PM, cutoff) == D("2026-01-06")
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 4, 16)) == D("2026-01-05")  # local midnight
    assert cal.dealing_date(hk, 0, utc(2026, 1, 4, 16)) == D("2026-01-06")  # cut-off 00:00: always the next day
    assert cal.dealing_date(hk, 0, utc(2026, 1, 4, 16) - 1) == D("2026-01-05")


def test_dealing_date_weekend_holiday_closed():
    hk = calendar(holidays=("2026-01-07",), closed={"2026-01-13": "typhoon signal no. 8"})
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 9, 8) - 1) == D("2026-01-09")  # Friday, before
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 9, 8)) == D("2026-01-12")  # Friday, at: Monday
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 10, 2)) == D("2026-01-12")  # Saturday morning
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 7, 2)) == D("2026-01-08")  # on a holiday: the next day
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 6, 8)) == D("2026-01-08")  # after the cut-off before it
    assert cal.dealing_date(hk, FOUR_PM, utc(2026, 1, 13, 1)) == D("2026-01-14")  # a closed day


def test_dealing_date_new_york_on_the_monday_after_the_change():
    ny = calendar("America/New_York")
    assert cal.dealing_date(ny, FOUR_PM, utc(2026, 3, 6, 21) - 1) == D("2026-03-06")  # 15:59:59.999 EST
    assert cal.dealing_date(ny, FOUR_PM, utc(2026, 3, 6, 21)) == D("2026-03-09")
    assert cal.dealing_date(ny, FOUR_PM, utc(2026, 3, 9, 20) - 1) == D("2026-03-09")  # 15:59:59.999 EDT
    assert cal.dealing_date(ny, FOUR_PM, utc(2026, 3, 9, 20)) == D("2026-03-10")
    # 20:30 UTC on that Monday is 16:30 EDT (after), though it would be 15:30 EST (before)
    assert cal.dealing_date(ny, FOUR_PM, utc(2026, 3, 9, 20, 30)) == D("2026-03-10")
    assert cal.dealing_date(ny, FOUR_PM, utc(2026, 11, 2, 20, 30)) == D("2026-11-02")  # 15:30 EST again
