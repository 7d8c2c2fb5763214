"""Russian business calendar and the SLA deadline rule (regulations, clause 2.3).

Clause 2.3: requests are processed in order of arrival; the first processing takes at most
5 business days. "Business day" follows the Russian production calendar: Saturdays and Sundays
are off, the non-working public holidays of Labour Code art. 112 are off, and the weekend
transfers decreed by the Government every year apply (a Saturday made a working day is worked,
a Monday made a day off is not). Operators can correct the data with an override file.

The deadline rule
-----------------
1. The clock starts at arrival if the request arrives on a working day before the end of working
   hours (arrival before opening counts from the opening). A request that arrives after working
   hours, or on a day off, starts the clock at the opening of the next working day.
2. The deadline is the same wall-clock moment N working days after the day the clock started
   (N = 5). If that moment is past the close of a shortened day, the deadline is that close.
3. A clock that starts exactly at an opening is due at the close of the Nth working day counting
   the start day as day 1: the opening of the (N+1)th day and the close of the Nth are the same
   point in working time, and the close keeps the deadline inside the N days the regulation grants.

Examples (Moscow time): arrival Friday 19:30 -> clock starts Monday 09:00 -> due Friday 18:00;
arrival Wednesday 14:00 -> due next Wednesday 14:00 (holidays and days off in between are skipped).
On ordinary weeks this equals "start + N x 9 working hours". A shortened day inside the window still
counts as one whole business day, so the deadline never drifts past the Nth business day.

"Time left" for alerts and cards is measured in working time (`business_time_between`) and
expressed in standard working days of 9 hours (`business_days_left`).

Shortened (pre-holiday) days, art. 95: the `holidays` package does not model them, so they are
derived: a working day immediately followed by a statutory holiday is one hour shorter, and so is
a decreed working Saturday right before a run of days off that contains a statutory holiday
(e.g. 2024-12-28, 2025-11-01), as in the published production calendars. Operators correct edge
cases with `[short_days]` / `[full_days]` in the override file.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
from holidays.countries.russia import RussiaStaticHolidays

# The year up to which the pinned `holidays` release carries Russia's decreed weekend transfers.
# Derived from the package data (the per-year decree table); the constant is only a fallback for a
# release that reorganised that table. tests/test_calendar.py fails if the pinned package disagrees.
_FALLBACK_VERIFIED_THROUGH = 2027

# A safety bound for "find the next working day" walks: a misconfigured override file must not hang
# the bot. No real calendar has a gap of non-working days anywhere near this long.
_MAX_DAY_WALK = 400

_OVERRIDE_SECTIONS = ("days_off", "working_days", "short_days", "full_days")

# The January holidays (1-8) are not moved automatically when they fall on a weekend (art. 112 p.2):
# the Government moves two of them by decree instead.
_JANUARY_HOLIDAY_LAST_DAY = 8


def _decree_table() -> dict[int, object]:
    return getattr(RussiaStaticHolidays, "special_public_holidays", {}) or {}


def _derive_verified_through() -> int:
    table = _decree_table()
    return max(table) if table else _FALLBACK_VERIFIED_THROUGH


def _decreed_days_off(year: int) -> set[date]:
    """Days off created by the year's transfer decree (the "to" side of each transfer)."""
    entries = _decree_table().get(year, ())
    if entries and isinstance(entries[0], int):  # a single transfer is stored unwrapped
        entries = (entries,)
    return {date(year, e[0], e[1]) for e in entries if isinstance(e, tuple) and len(e) >= 4}


@dataclass(frozen=True, slots=True)
class CalendarOverrides:
    """Operator corrections, applied on top of the package data."""

    days_off: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()
    short_days: frozenset[date] = frozenset()
    full_days: frozenset[date] = frozenset()  # cancels a derived shortened day

    @classmethod
    def load(cls, path: Path) -> CalendarOverrides:
        with path.open("rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"calendar override file {path}: invalid TOML: {exc}") from exc
        unknown = set(data) - set(_OVERRIDE_SECTIONS)
        if unknown:
            # A typo like [day_off] would otherwise silently do nothing.
            raise ValueError(
                f"calendar override file {path}: unknown section(s) {sorted(unknown)}; "
                f"expected {list(_OVERRIDE_SECTIONS)}"
            )
        parsed = {name: _parse_dates(path, name, data.get(name, {})) for name in _OVERRIDE_SECTIONS}
        for a, b in (("days_off", "working_days"), ("short_days", "full_days")):
            clash = parsed[a] & parsed[b]
            if clash:
                raise ValueError(
                    f"calendar override file {path}: {sorted(d.isoformat() for d in clash)} "
                    f"listed in both [{a}] and [{b}]"
                )
        return cls(**parsed)


def _parse_dates(path: Path, section: str, table: object) -> frozenset[date]:
    if not isinstance(table, dict) or set(table) - {"dates"}:
        raise ValueError(f"calendar override file {path}: [{section}] must contain only 'dates = [...]'")
    out: set[date] = set()
    for item in table.get("dates", []):
        if isinstance(item, date) and not isinstance(item, datetime):
            out.add(item)  # TOML local date literal
            continue
        try:
            out.add(date.fromisoformat(str(item)))
        except ValueError:
            raise ValueError(
                f"calendar override file {path}: [{section}] has {item!r}, expected YYYY-MM-DD"
            ) from None
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class _YearData:
    working: frozenset[date]  # working days of the year per package data (+ art. 112 fallback)
    statutory: frozenset[date]  # the art. 112 non-working holidays themselves (not transfers)
    weekend_workdays: frozenset[date]  # decreed working Saturdays/Sundays


class BusinessCalendar:
    """Working days and working-time arithmetic in one timezone. Pure: the clock is passed in."""

    verified_through: int = _derive_verified_through()

    def __init__(
        self,
        tz: str = "Europe/Moscow",
        *,
        workday_start: time = time(9),
        workday_end: time = time(18),
        override_path: Path | None = None,
    ) -> None:
        if workday_start.tzinfo is not None or workday_end.tzinfo is not None:
            raise ValueError("workday_start/workday_end must be naive local times")
        # A shortened day is one hour shorter; it must still be a non-empty interval.
        if _minutes(workday_end) - _minutes(workday_start) <= 60:
            raise ValueError("the working day must be longer than one hour (start < end - 1h)")
        self.tz = ZoneInfo(tz)
        self.workday_start = workday_start
        self.workday_end = workday_end
        self.overrides = CalendarOverrides.load(override_path) if override_path else CalendarOverrides()
        self._years: dict[int, _YearData] = {}

    # ----- day classification -------------------------------------------------------------

    @property
    def standard_day(self) -> timedelta:
        """Length of an ordinary working day: the unit of "business days left"."""
        return timedelta(minutes=_minutes(self.workday_end) - _minutes(self.workday_start))

    def beyond_verified(self, d: date) -> bool:
        """True when the package has no decree data for d's year: warn operators to check overrides."""
        return d.year > self.verified_through

    def is_working_day(self, d: date) -> bool:
        if d in self.overrides.days_off:
            return False
        if d in self.overrides.working_days:
            return True
        return d in self._year(d.year).working

    def is_short_day(self, d: date) -> bool:
        if not self.is_working_day(d):
            return False
        if d in self.overrides.full_days:
            return False
        return d in self.overrides.short_days or self._derived_short(d)

    def working_hours(self, d: date) -> tuple[datetime, datetime] | None:
        if not self.is_working_day(d):
            return None
        start = datetime.combine(d, self.workday_start, tzinfo=self.tz)
        end = datetime.combine(d, self.workday_end, tzinfo=self.tz)
        if self.is_short_day(d):
            end = _local(end.astimezone(UTC) - timedelta(hours=1), self.tz)
        return start, end

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after d."""
        for _ in range(_MAX_DAY_WALK):
            d += timedelta(days=1)
            if self.is_working_day(d):
                return d
        raise RuntimeError(f"no working day within {_MAX_DAY_WALK} days after {d}: check calendar overrides")

    # ----- the SLA rule --------------------------------------------------------------------

    def clock_start(self, arrival: datetime) -> datetime:
        """When the SLA clock starts for a request that arrived at `arrival` (rule 1)."""
        local = self._to_local(arrival)
        hours = self.working_hours(local.date())
        if hours is not None and _u(local) < _u(hours[1]):
            return max(local, hours[0], key=_u)
        return self._opening(self.next_working_day(local.date()))

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """The deadline for a request arriving at `start` with `days` business days (module docstring)."""
        if days < 0:
            raise ValueError("days must be >= 0")
        begin = self.clock_start(start)
        if days == 0:
            return begin
        opening = self._opening(begin.date())
        offset = _u(begin) - _u(opening)
        if offset == timedelta(0):
            # Rule 3: the start day is day 1, due at the close of day N.
            day = begin.date()
            for _ in range(days - 1):
                day = self.next_working_day(day)
            return self._closing(day)
        day = begin.date()
        for _ in range(days):
            day = self.next_working_day(day)
        due = _u(self._opening(day)) + offset
        return _local(min(due, _u(self._closing(day))), self.tz)

    # ----- working-time measures -----------------------------------------------------------

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time between two instants; negative if b < a."""
        ua, ub = _u(self._to_local(a)), _u(self._to_local(b))
        if ub < ua:
            return -self.business_time_between(b, a)
        total = timedelta(0)
        d = _local(ua, self.tz).date()
        last = _local(ub, self.tz).date()
        while d <= last:
            hours = self.working_hours(d)
            if hours is not None:
                lo, hi = max(ua, _u(hours[0])), min(ub, _u(hours[1]))
                if hi > lo:
                    total += hi - lo
            d += timedelta(days=1)
        return total

    def business_days_left(self, now: datetime, deadline: datetime) -> float:
        """Working time left, in standard working days (negative when overdue)."""
        return self.business_time_between(now, deadline) / self.standard_day

    def subtract_working_time(self, end: datetime, amount: timedelta) -> datetime:
        """The latest instant that lies `amount` of working time before `end` (alert fire times).

        When the answer sits on a day boundary, the next opening is returned rather than the
        previous close: an alert should arrive when staff are at work.
        """
        if amount < timedelta(0):
            raise ValueError("amount must be >= 0")
        cursor = _u(self._to_local(end))
        remaining = amount
        d = _local(cursor, self.tz).date()
        for _ in range(_MAX_DAY_WALK * max(1, math.ceil(amount / self.standard_day))):
            hours = self.working_hours(d)
            if hours is not None:
                opening, seg_end = _u(hours[0]), min(cursor, _u(hours[1]))
                if seg_end > opening:
                    if seg_end - opening >= remaining:
                        return _local(seg_end - remaining, self.tz)
                    remaining -= seg_end - opening
            if remaining == timedelta(0):  # only when amount == 0 and end lies outside working hours
                return _local(cursor, self.tz)
            d -= timedelta(days=1)
        raise RuntimeError("subtract_working_time walked too far back: check calendar overrides")

    # ----- internals -------------------------------------------------------------------------

    def to_local(self, dt: datetime) -> datetime:
        """An aware instant in the calendar's time zone."""
        return self._to_local(dt)

    def local_date(self, dt: datetime) -> date:
        return self._to_local(dt).date()

    def _to_local(self, dt: datetime) -> datetime:
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"naive datetime {dt!r}: pass an aware datetime (e.g. UTC from IMAP)")
        return dt.astimezone(self.tz)

    def _opening(self, d: date) -> datetime:
        hours = self.working_hours(d)
        assert hours is not None, d
        return hours[0]

    def _closing(self, d: date) -> datetime:
        hours = self.working_hours(d)
        assert hours is not None, d
        return hours[1]

    def _derived_short(self, d: date) -> bool:
        nxt = d + timedelta(days=1)
        if self._is_statutory(nxt):
            return True
        if d not in self._year(d.year).weekend_workdays:
            return False
        # A decreed working Saturday before a run of days off that contains a holiday.
        while not self.is_working_day(nxt):
            if self._is_statutory(nxt):
                return True
            nxt += timedelta(days=1)
        return False

    def _is_statutory(self, d: date) -> bool:
        return d in self._year(d.year).statutory

    def _year(self, year: int) -> _YearData:
        data = self._years.get(year)
        if data is None:
            data = self._years[year] = _build_year(year, beyond_verified=year > self.verified_through)
        return data


def _build_year(year: int, *, beyond_verified: bool) -> _YearData:
    # Neighbouring years are loaded too: a decree may move a day across the year boundary.
    data = holidays.country_holidays("RU", years=range(year - 1, year + 2))
    plain = holidays.country_holidays("RU", years=year, observed=False)
    statutory = {d for d in plain if d.year == year} - _decreed_days_off(year)
    days = [
        date(year, 1, 1) + timedelta(days=i) for i in range((date(year + 1, 1, 1) - date(year, 1, 1)).days)
    ]
    working = {d for d in days if data.is_working_day(d)}
    weekend_workdays = {d for d in data.weekend_workdays if d.year == year}
    has_decree = bool(_decreed_days_off(year)) or any(d.year == year for d in set(data) - set(plain))
    if beyond_verified and not has_decree:
        # No decree in the data. Apply the statutory default (art. 112 p.2): a holiday that falls on a
        # weekend moves to the next working day, January 1-8 excepted. A later decree may differ:
        # operators are warned via beyond_verified() and correct with the override file.
        for hol in sorted(statutory):
            if hol.weekday() < 5 or (hol.month == 1 and hol.day <= _JANUARY_HOLIDAY_LAST_DAY):
                continue
            d = hol + timedelta(days=1)
            while d not in working and d.year == year:
                d += timedelta(days=1)
            working.discard(d)
    return _YearData(frozenset(working), frozenset(statutory), frozenset(weekend_workdays))


def _u(dt: datetime) -> datetime:
    # Aware datetimes sharing a tzinfo compare and subtract by wall clock; UTC keeps DST honest.
    return dt.astimezone(UTC)


def _local(dt: datetime, tz: ZoneInfo) -> datetime:
    return dt.astimezone(tz)


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute
