"""Cron schedules, as Vixie cron reads them, evaluated in UTC or any IANA time zone.

`CronSchedule.parse("0 2 * * *")` takes 5 fields (minute hour day-of-month month day-of-week) with `*`, `*/n`,
`a-b`, `a-b/n` and lists `a,b`; month and day names (`jan`, `mon-fri`); day-of-week 0-7 (0 and 7 are Sunday); and
the macros `@hourly @daily @midnight @weekly @monthly @yearly @annually`. Vixie's rule for the two day fields: when
both are restricted (neither starts with `*`) a day matches if EITHER does, else both must.

Times are unix seconds. A schedule is read on the zone's wall clock: a wall time that does not exist (a spring
forward skips it) does not fire that day, and one that happens twice (a fall back repeats it) fires once, at its
first occurrence. `next_after` skips by fields (month, day, hour, minute), never minute by minute.
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# (name, lowest, highest, names for lowest.., names' first value)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...], int], ...] = (
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day-of-month", 1, 31, (), 1),
    ("month", 1, 12, MONTH_NAMES, 1),
    ("day-of-week", 0, 7, DAY_NAMES, 0),
)
_MINUTE = timedelta(minutes=1)
#: The longest a valid schedule can go without firing is 8 years (Feb 29 around 2100); searched up to this.
_HORIZON_YEARS = 30


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError (one line) if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class CronSchedule:
    expr: str  # as written
    minutes: tuple[int, ...]  # each field's values, sorted
    hours: tuple[int, ...]
    days: tuple[int, ...]  # day of month 1..31
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday .. 6
    days_star: bool  # the day-of-month field starts with `*` (Vixie's rule)
    weekdays_star: bool

    @classmethod
    def parse(cls, expr: str) -> CronSchedule:
        """A schedule from its text; ValueError with a one-line message naming the bad part."""
        text = " ".join(expr.split())
        if text.startswith("@"):
            if text.lower() not in MACROS:
                raise ValueError(f"unknown macro {text!r} (known: {', '.join(MACROS)})")
            text = MACROS[text.lower()]
        parts = text.split(" ") if text else []
        if len(parts) != 5:
            raise ValueError(
                f"{expr!r}: expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
            )
        values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = tuple(sorted({d % 7 for d in values[4]}))
        schedule = cls(
            expr=expr,
            minutes=values[0],
            hours=values[1],
            days=values[2],
            months=values[3],
            weekdays=weekdays,
            days_star=parts[2].startswith("*"),
            weekdays_star=parts[4].startswith("*"),
        )
        schedule._check_possible()
        return schedule

    def _check_possible(self) -> None:
        """A day-of-month that no chosen month has (`0 0 31 4 *`) would never fire: refuse it."""
        if not self.weekdays_star and not self.days_star:
            return  # any weekday matches
        if not any(d <= calendar.monthrange(2000, m)[1] for m in self.months for d in self.days):
            months = ",".join(MONTH_NAMES[m - 1] for m in self.months)
            days = ",".join(map(str, self.days))
            raise ValueError(f"{self.expr!r}: day-of-month {days} never occurs in {months}")

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """The two day fields, with Vixie's rule (the month is checked apart)."""
        dom = day in self.days
        dow = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays  # calendar: Monday = 0
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock minute `wall` (its seconds ignored) is one of the schedule's."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall.year, wall.month, wall.day)
        )

    def next_wall(self, wall: datetime) -> datetime:
        """The first matching wall-clock minute at or after naive `wall` (its seconds are dropped)."""
        y, mo, d, h, mi = wall.year, wall.month, wall.day, wall.hour, wall.minute
        limit = y + _HORIZON_YEARS
        while y <= limit:
            if mo not in self.months:
                i = bisect.bisect_left(self.months, mo)
                if i == len(self.months):
                    y, mo = y + 1, self.months[0]
                else:
                    mo = self.months[i]
                d, h, mi = 1, 0, 0
                continue
            if d > calendar.monthrange(y, mo)[1]:
                y, mo, d, h, mi = (y + 1, 1, 1, 0, 0) if mo == 12 else (y, mo + 1, 1, 0, 0)
                continue
            if not self.day_matches(y, mo, d):
                d, h, mi = d + 1, 0, 0
                continue
            hour = _first_at_least(self.hours, h)
            if hour is None:
                d, h, mi = d + 1, 0, 0
                continue
            if hour != h:
                h, mi = hour, 0
            minute = _first_at_least(self.minutes, mi)
            if minute is None:
                h, mi = h + 1, 0
                if h == 24:
                    d, h = d + 1, 0
                continue
            return datetime(y, mo, d, h, minute)
        raise ValueError(f"{self.expr!r} does not fire within {_HORIZON_YEARS} years")

    def next_after(self, t: float, tz: str = "UTC") -> float:
        """The first fire time strictly after unix time `t`, on the wall clock of zone `tz`."""
        where = zone(tz)
        local = datetime.fromtimestamp(t, where).replace(tzinfo=None, second=0, microsecond=0)
        wall = local  # the minute holding t: fires only if its instant is > t (t inside it, before its start: no)
        while True:
            wall = self.next_wall(wall)
            instant = _instant(wall, where)
            if instant is not None and instant > t:
                return instant
            wall += _MINUTE  # does not exist (spring forward), or not after t (t in a repeated hour)

    def times_between(self, a: float, b: float, tz: str = "UTC") -> Iterator[float]:
        """Every fire time t with a < t <= b, in order (lazily: stop reading when enough)."""
        t = a
        while True:
            t = self.next_after(t, tz)
            if t > b:
                return
            yield t

    def __str__(self) -> str:
        return self.expr


def _instant(wall: datetime, where: ZoneInfo) -> float | None:
    """Unix time of the naive wall-clock `wall` in zone `where`: its first occurrence when the clock repeats it;
    None when the clock skips it."""
    aware = wall.replace(tzinfo=where, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(where).replace(tzinfo=None) != wall:
        return None  # in a gap: zoneinfo maps it to a wall time that does exist
    return instant.timestamp()


def _first_at_least(values: tuple[int, ...], v: int) -> int | None:
    i = bisect.bisect_left(values, v)
    return values[i] if i < len(values) else None


def _parse_field(text: str, spec: tuple[str, int, int, tuple[str, ...], int]) -> tuple[int, ...]:
    name, low, high, names, first = spec
    chosen: set[int] = set()
    for item in text.split(","):
        try:
            chosen.update(_parse_item(item, low, high, names, first))
        except ValueError as e:
            raise ValueError(f"{name} field {text!r}: {e}") from None
    return tuple(sorted(chosen))


def _parse_item(item: str, low: int, high: int, names: tuple[str, ...], first: int) -> range:
    if not item:
        raise ValueError("an empty list item")
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or not 1 <= int(step_text) <= high - low + 1:
            raise ValueError(f"step {step_text!r} must be a number from 1 to {high - low + 1}")
        step = int(step_text)
    if body == "*":
        return range(low, high + 1, step)
    start_text, dash, end_text = body.partition("-")
    start = _value(start_text, low, high, names, first)
    if not dash:
        if slash:
            raise ValueError(f"a step needs a range or * before it (e.g. */{step} or {start}-{high}/{step})")
        return range(start, start + 1)
    end = _value(end_text, low, high, names, first)
    if end < start:
        raise ValueError(f"range {body!r} goes backwards")
    return range(start, end + 1, step)


def _value(text: str, low: int, high: int, names: tuple[str, ...], first: int) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + first
    if not text.isdigit():
        known = f" or a name ({names[0]}..{names[-1]})" if names else ""
        raise ValueError(f"{text!r} is not a number{known}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range {low}-{high}")
    return value
