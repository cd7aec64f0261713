"""Cron schedules (scheduler_sdk.frameworks.jobs.cron): parsing, Vixie's day rule, time zones and DST, and
next_after against a brute-force reference that walks minute by minute (hypothesis)."""

from __future__ import annotations

import itertools
import math
import os
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_sdk.frameworks.jobs import cron
from scheduler_sdk.frameworks.jobs.cron import MACROS, CronSchedule

BERLIN = "Europe/Berlin"


def ts(*args: int, tz: str = "UTC") -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def fires(expr: str, a: float, b: float, tz: str = "UTC") -> list[datetime]:
    return [utc(t) for t in CronSchedule.parse(expr).times_between(a, b, tz)]


# ----------------------------------------------------------------------------------------------- parsing
def test_fields_steps_ranges_lists_and_names() -> None:
    s = CronSchedule.parse("*/15 0-6/2 1,15 JAN-mar mon-Fri")
    assert s.minutes == (0, 15, 30, 45)
    assert s.hours == (0, 2, 4, 6)
    assert s.days == (1, 15)
    assert s.months == (1, 2, 3)
    assert s.weekdays == (1, 2, 3, 4, 5)
    assert not s.days_star and not s.weekdays_star
    assert str(s) == "*/15 0-6/2 1,15 JAN-mar mon-Fri"


def test_sunday_is_0_and_7() -> None:
    assert CronSchedule.parse("0 0 * * 7").weekdays == (0,)
    assert CronSchedule.parse("0 0 * * 5-7").weekdays == (0, 5, 6)
    assert CronSchedule.parse("0 0 * * sun,0,7").weekdays == (0,)


@pytest.mark.parametrize("macro", sorted(MACROS))
def test_macros_are_their_expansions(macro: str) -> None:
    expanded = CronSchedule.parse(MACROS[macro])
    s = CronSchedule.parse(macro.upper())
    assert (s.minutes, s.hours, s.days, s.months, s.weekdays) == (
        expanded.minutes,
        expanded.hours,
        expanded.days,
        expanded.months,
        expanded.weekdays,
    )
    assert s.expr == macro.upper()


def test_macros_fire_when_they_say() -> None:
    t = ts(2024, 5, 15, 10, 30)  # a Wednesday
    assert utc(CronSchedule.parse("@hourly").next_after(t)) == datetime(2024, 5, 15, 11, tzinfo=UTC)
    assert utc(CronSchedule.parse("@daily").next_after(t)) == datetime(2024, 5, 16, tzinfo=UTC)
    assert utc(CronSchedule.parse("@midnight").next_after(t)) == datetime(2024, 5, 16, tzinfo=UTC)
    assert utc(CronSchedule.parse("@weekly").next_after(t)) == datetime(2024, 5, 19, tzinfo=UTC)  # Sunday
    assert utc(CronSchedule.parse("@monthly").next_after(t)) == datetime(2024, 6, 1, tzinfo=UTC)
    assert utc(CronSchedule.parse("@yearly").next_after(t)) == datetime(2025, 1, 1, tzinfo=UTC)
    assert utc(CronSchedule.parse("@annually").next_after(t)) == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("* * * * * *", "got 6"),
        ("", "got 0"),
        ("61 * * * *", "minute field '61': 61 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("* * * foo *", "month field 'foo': 'foo' is not a number or a name (jan..dec)"),
        ("* * * * mo", "day-of-week field 'mo': 'mo' is not a number or a name (sun..sat)"),
        ("*/0 * * * *", "minute field '*/0': step '0' must be a number from 1 to 60"),
        ("*/x * * * *", "step 'x' must be a number from 1 to 60"),
        ("5/2 * * * *", "minute field '5/2': a step needs a range or * before it (e.g. */2 or 5-59/2)"),
        ("5-3 * * * *", "minute field '5-3': range '5-3' goes backwards"),
        ("1,,2 * * * *", "minute field '1,,2': an empty list item"),
        ("-1 * * * *", "minute field '-1': '' is not a number"),
        (
            "@reboot",
            "unknown macro '@reboot' (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
        ),
        ("0 0 31 4 *", "'0 0 31 4 *': day-of-month 31 never occurs in apr"),
        ("0 0 30,31 feb *", "day-of-month 30,31 never occurs in feb"),
    ],
)
def test_bad_expressions_name_the_bad_part(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        CronSchedule.parse(expr)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_day_that_only_some_weekday_has_is_fine() -> None:
    CronSchedule.parse("0 0 31 4 fri")  # both restricted: any Friday in April fires
    CronSchedule.parse("0 0 29 2 *")  # leap years


# --------------------------------------------------------------------------------- Vixie's day rule
def test_day_of_month_and_weekday_both_restricted_either_matches() -> None:
    days = {t.day for t in fires("0 0 13 * fri", ts(2024, 8, 1), ts(2024, 8, 31))}
    assert days == {2, 9, 13, 16, 23, 30}  # the Fridays, and the 13th (a Tuesday)
    days = {t.day for t in fires("0 0 1 * mon", ts(2024, 6, 30), ts(2024, 7, 31))}
    assert days == {1, 8, 15, 22, 29}  # July 1st is a Monday
    days = {t.day for t in fires("0 0 2 * mon", ts(2024, 6, 30), ts(2024, 7, 31))}
    assert days == {1, 2, 8, 15, 22, 29}  # the 2nd (a Tuesday) or a Monday


def test_one_day_field_restricted_only_it_counts() -> None:
    assert {t.day for t in fires("0 0 13 * *", ts(2024, 9, 1), ts(2024, 9, 30))} == {13}
    assert {t.day for t in fires("0 0 * * fri", ts(2024, 9, 1), ts(2024, 9, 30))} == {6, 13, 20, 27}


def test_a_field_starting_with_star_counts_as_unrestricted_as_in_vixie() -> None:
    # */2 in day-of-month starts with '*': both must match (odd days that are Fridays), not either
    assert {t.day for t in fires("0 0 */2 * fri", ts(2024, 9, 1), ts(2024, 9, 30))} == {13, 27}


# ----------------------------------------------------------------------------------------- next_after
def test_next_after_is_strictly_after() -> None:
    s = CronSchedule.parse("0 2 * * *")
    at_two = ts(2024, 1, 1, 2)
    assert s.next_after(at_two - 0.5) == at_two
    assert s.next_after(at_two) == at_two + 86400
    assert s.next_after(at_two + 0.5) == at_two + 86400
    assert s.next_after(ts(2024, 12, 31, 3)) == ts(2025, 1, 1, 2)


def test_in_a_time_zone_it_is_the_wall_clock() -> None:
    s = CronSchedule.parse("0 9 * * mon-fri")
    t = s.next_after(ts(2024, 6, 7, 14), "America/New_York")  # Friday 10:00 EDT: next is Monday 09:00
    assert t == ts(2024, 6, 10, 9, tz="America/New_York") == ts(2024, 6, 10, 13)
    assert s.next_after(ts(2024, 6, 7, 14), "Asia/Kathmandu") == ts(2024, 6, 10, 3, 15)  # +05:45


def test_feb_29_and_the_year_2100_skip_by_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = 0
    real = CronSchedule.day_matches

    def counting(self: CronSchedule, year: int, month: int, day: int) -> bool:
        nonlocal checked
        checked += 1
        return real(self, year, month, day)

    monkeypatch.setattr(CronSchedule, "day_matches", counting)
    s = CronSchedule.parse("0 0 29 2 *")
    assert utc(s.next_after(ts(2097, 3, 1))) == datetime(2104, 2, 29, tzinfo=UTC)  # 2100 is not a leap year
    assert checked < 300  # only February days were looked at: never minute by minute, not even day by day


def test_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        CronSchedule.parse("@daily").next_after(0.0, "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        CronSchedule.parse("@daily").next_after(0.0, "../etc/passwd")


# ------------------------------------------------------------------------------------------------ DST
def test_berlin_spring_forward_skips_the_time_that_does_not_exist() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day
    got = fires("30 2 * * *", ts(2024, 3, 29, 12), ts(2024, 4, 2, 12), BERLIN)
    assert got == [
        datetime(2024, 3, 30, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2024, 4, 1, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2024, 4, 2, 0, 30, tzinfo=UTC),
    ]
    hourly = fires("0 * * * *", ts(2024, 3, 31, tz=BERLIN) - 1, ts(2024, 4, 1, tz=BERLIN) - 1, BERLIN)
    assert len(hourly) == 23  # the day has 23 hours, each fires once
    assert [t.hour for t in hourly[:3]] == [23, 0, 1]  # 00:00 CET, 01:00 CET, 03:00 CEST


def test_berlin_fall_back_fires_a_repeated_time_once_at_its_first_occurrence() -> None:
    # 2024-10-27: 03:00 CEST goes back to 02:00 CET; 02:00..02:59 happen twice
    got = fires("30 2 * * *", ts(2024, 10, 26, 12), ts(2024, 10, 28, 12), BERLIN)
    assert got == [datetime(2024, 10, 27, 0, 30, tzinfo=UTC), datetime(2024, 10, 28, 1, 30, tzinfo=UTC)]
    hourly = fires("0 * * * *", ts(2024, 10, 27, tz=BERLIN) - 1, ts(2024, 10, 28, tz=BERLIN) - 1, BERLIN)
    assert len(hourly) == 24  # a 25-hour day: 02:00 fires once
    assert [t.hour for t in hourly[1:4]] == [23, 0, 2]  # 01:00 CEST, 02:00 CEST, 03:00 CET
    # asked from inside the repeated hour (its second pass): no second 02:30, the next is tomorrow's
    second_pass = ts(2024, 10, 27, 1, 10)  # 02:10 CET
    assert utc(CronSchedule.parse("30 2 * * *").next_after(second_pass, BERLIN)) == datetime(
        2024, 10, 28, 1, 30, tzinfo=UTC
    )


# ----------------------------------------------------------------------------------------- times_between
def test_times_between_is_a_half_open_interval() -> None:
    s = CronSchedule.parse("*/10 * * * *")
    a, b = ts(2024, 1, 1, 0, 0), ts(2024, 1, 1, 1, 0)
    got = list(s.times_between(a, b))
    assert got[0] == a + 600 and got[-1] == b  # a excluded, b included
    assert len(got) == 6
    assert list(s.times_between(a, a)) == []
    assert list(s.times_between(b, a)) == []


def test_times_between_is_lazy() -> None:
    every_minute = CronSchedule.parse("* * * * *").times_between(ts(2000, 1, 1), ts(2100, 1, 1))
    first = list(itertools.islice(every_minute, 3))
    assert first == [ts(2000, 1, 1, 0, 1), ts(2000, 1, 1, 0, 2), ts(2000, 1, 1, 0, 3)]


# ------------------------------------------------------------------ property: against a brute force
EXAMPLES = int(os.environ.get("CRON_EXAMPLES", "1"))  # multiplier for a longer hunt
ZONES = ["UTC", BERLIN, "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns"]
WINDOW = 3 * 86400  # the reference looks this far, minute by minute
FIELDS = [(0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, cron.MONTH_NAMES), (0, 7, cron.DAY_NAMES)]


@st.composite
def field_part(draw: st.DrawFn, low: int, high: int, names: tuple[str, ...]) -> tuple[str, set[int]]:
    first = 1 if low == 1 and names else 0  # names count from the field's low end (jan = 1, sun = 0)

    def word(v: int) -> str:
        if names and v - first < len(names) and draw(st.booleans()):
            return names[v - first]
        return str(v)

    kind = draw(st.sampled_from(["*", "*", "*", "*/n", "a", "a-b", "a-b/n"]))  # "*" often: frequent schedules
    if kind == "*":
        return "*", set(range(low, high + 1))
    if kind == "*/n":
        n = draw(st.integers(1, high - low + 1))
        return f"*/{n}", set(range(low, high + 1, n))
    a = draw(st.integers(low, high))
    if kind == "a":
        return word(a), {a}
    b = draw(st.integers(a, high))
    if kind == "a-b":
        return f"{word(a)}-{word(b)}", set(range(a, b + 1))
    n = draw(st.integers(1, high - low + 1))
    return f"{word(a)}-{word(b)}/{n}", set(range(a, b + 1, n))


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, list[set[int]]]:
    texts, sets = [], []
    for low, high, names in FIELDS:
        parts = draw(st.lists(field_part(low, high, names), min_size=1, max_size=3))
        texts.append(",".join(p for p, _ in parts))
        sets.append(set().union(*(v for _, v in parts)))
    sets[4] = {d % 7 for d in sets[4]}
    return " ".join(texts), sets


@cache
def transitions(tz: str) -> list[float]:
    """Instants (to the hour) around which the zone's UTC offset changes, in a few years."""
    where, out = ZoneInfo(tz), []
    for year in (2024, 2031, 2041):
        start = int(ts(year, 1, 1))
        offsets = [(t, datetime.fromtimestamp(t, where).utcoffset()) for t in range(start, start + 366 * 86400, 3600)]
        out += [t for (t, o), (_, p) in itertools.pairwise(offsets) if o != p]
    return out or [ts(2024, 1, 1)]


def reference_next(expr: str, sets: list[set[int]], t: float, tz: str) -> float | None:
    """The first minute after t whose wall clock matches, at its first occurrence; None if none in WINDOW."""
    minutes, hours, days, months, weekdays = sets
    fields = expr.split(" ")
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    where = ZoneInfo(tz)
    start = math.floor(t / 60) * 60 + 60
    for m in range(start, start + WINDOW, 60):
        wall = datetime.fromtimestamp(m, where)
        if wall.fold or wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
            continue
        dom, dow = wall.day in days, wall.isoweekday() % 7 in weekdays
        if dom or dow if either else dom and dow:
            return m
    return None


@settings(max_examples=200 * EXAMPLES, deadline=None)
@given(expression=expressions(), tz=st.sampled_from(ZONES), data=st.data())
def test_next_after_matches_a_minute_by_minute_reference(
    expression: tuple[str, list[set[int]]], tz: str, data: st.DataObject
) -> None:
    expr, sets = expression
    try:
        schedule = CronSchedule.parse(expr)
    except ValueError as e:
        assert "never occurs" in str(e)  # the only refusal of a well-formed expression
        return
    near = data.draw(st.sampled_from(transitions(tz)))
    t = data.draw(
        st.floats(near - 3 * 3600, near + 2 * 3600)  # just before or inside the change
        | st.floats(near - 2 * 86400, near + 2 * 86400)
        | st.floats(ts(2000, 1, 1), ts(2100, 1, 1))
    )
    got = schedule.next_after(t, tz)
    want = reference_next(expr, sets, t, tz)
    if want is None:
        assert got >= math.floor(t / 60) * 60 + 60 + WINDOW
    else:
        assert got == want, (expr, tz, utc(t), utc(got), utc(want))
