"""BusinessCalendar: Russian production calendar data, overrides and the SLA deadline rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from models.calendar import BusinessCalendar

MSK = ZoneInfo("Europe/Moscow")
SLA_DAYS = 5


def msk(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=MSK)


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar()


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# ----- package data -----------------------------------------------------------------------------


def test_verified_through_matches_pinned_package(cal: BusinessCalendar) -> None:
    # If this fails after a holidays upgrade, re-check the decree data and the README's note.
    assert cal.verified_through == 2027
    # ...and the package really carries the 2027 decree (Saturday 2027-02-20 worked for Monday 02-22).
    assert cal.is_working_day(date(2027, 2, 20))
    assert not cal.is_working_day(date(2027, 2, 22))


def test_beyond_verified(cal: BusinessCalendar) -> None:
    assert not cal.beyond_verified(date(2027, 12, 31))
    assert cal.beyond_verified(date(2028, 1, 10))


def test_transfer_2025_working_saturday_and_monday_off(cal: BusinessCalendar) -> None:
    assert date(2025, 11, 1).weekday() == 5
    assert cal.is_working_day(date(2025, 11, 1))
    assert not cal.is_working_day(date(2025, 11, 3))
    assert not cal.is_working_day(date(2025, 11, 4))
    assert cal.is_working_day(date(2025, 11, 5))


def test_new_year_holidays_2026(cal: BusinessCalendar) -> None:
    for d in _days(date(2026, 1, 1), date(2026, 1, 11)):
        assert not cal.is_working_day(d), d
    # 2026-01-09 is a day off moved from Saturday 2026-01-03.
    assert not cal.is_working_day(date(2026, 1, 9))
    assert cal.is_working_day(date(2026, 1, 12))
    assert not cal.is_working_day(date(2026, 12, 31))  # moved from 2026-01-04


def test_may_and_other_holidays_2026(cal: BusinessCalendar) -> None:
    assert not cal.is_working_day(date(2026, 5, 1))
    assert [cal.is_working_day(d) for d in _days(date(2026, 5, 4), date(2026, 5, 8))] == [True] * 5
    assert not cal.is_working_day(date(2026, 5, 9))  # Saturday, Victory Day
    assert not cal.is_working_day(date(2026, 5, 11))  # moved from Saturday 9 May
    assert cal.is_working_day(date(2026, 5, 12))
    assert not cal.is_working_day(date(2026, 3, 9))  # 8 March fell on a Sunday
    assert not cal.is_working_day(date(2026, 6, 12))
    assert not cal.is_working_day(date(2026, 11, 4))
    assert not cal.is_working_day(date(2026, 2, 23))
    assert cal.is_working_day(date(2026, 11, 3))


def test_ordinary_weekend_and_weekday(cal: BusinessCalendar) -> None:
    assert cal.is_working_day(date(2026, 11, 25))
    assert not cal.is_working_day(date(2026, 11, 28))
    assert not cal.is_working_day(date(2026, 11, 29))


def test_short_days(cal: BusinessCalendar) -> None:
    # Day before a holiday (art. 95), and decreed working Saturdays before a holiday break.
    for d in (date(2026, 4, 30), date(2026, 5, 8), date(2026, 6, 11), date(2026, 11, 3)):
        assert cal.is_short_day(d), d
    assert cal.is_short_day(date(2025, 11, 1))
    assert cal.is_short_day(date(2024, 12, 28))
    assert cal.is_short_day(date(2027, 2, 20))
    # A Friday before a weekend that precedes a Monday holiday is a full day; so is the day before
    # a transferred day off.
    assert not cal.is_short_day(date(2026, 2, 20))
    assert not cal.is_short_day(date(2025, 12, 30))
    assert not cal.is_short_day(date(2026, 11, 25))
    assert not cal.is_short_day(date(2026, 11, 4))  # a holiday is not a short working day


def test_working_hours(cal: BusinessCalendar) -> None:
    assert cal.working_hours(date(2026, 11, 25)) == (msk(2026, 11, 25, 9), msk(2026, 11, 25, 18))
    assert cal.working_hours(date(2026, 11, 3)) == (msk(2026, 11, 3, 9), msk(2026, 11, 3, 17))
    assert cal.working_hours(date(2026, 11, 4)) is None
    start, _ = cal.working_hours(date(2026, 11, 25)) or (None, None)
    assert start is not None and start.tzinfo == MSK


def test_custom_hours_and_timezone() -> None:
    c = BusinessCalendar("Asia/Yekaterinburg", workday_start=time(10), workday_end=time(19))
    ekb = ZoneInfo("Asia/Yekaterinburg")
    assert c.working_hours(date(2026, 11, 25)) == (
        datetime(2026, 11, 25, 10, tzinfo=ekb),
        datetime(2026, 11, 25, 19, tzinfo=ekb),
    )
    assert c.standard_day == timedelta(hours=9)


def test_invalid_working_hours() -> None:
    with pytest.raises(ValueError):
        BusinessCalendar(workday_start=time(18), workday_end=time(9))


# ----- the deadline rule --------------------------------------------------------------------------


def test_deadline_friday_evening(cal: BusinessCalendar) -> None:
    arrival = msk(2026, 11, 20, 19, 30)
    assert cal.clock_start(arrival) == msk(2026, 11, 23, 9)
    assert cal.add_business_days(arrival, SLA_DAYS) == msk(2026, 11, 27, 18)


def test_deadline_midweek_crosses_month(cal: BusinessCalendar) -> None:
    arrival = msk(2026, 11, 25, 14)
    deadline = cal.add_business_days(arrival, SLA_DAYS)
    assert deadline == msk(2026, 12, 2, 14)
    # On an ordinary week the rule equals "5 x 9 working hours".
    assert cal.business_time_between(arrival, deadline) == timedelta(hours=45)


def test_deadline_before_opening_counts_the_day(cal: BusinessCalendar) -> None:
    assert cal.clock_start(msk(2026, 11, 25, 7)) == msk(2026, 11, 25, 9)
    assert cal.add_business_days(msk(2026, 11, 25, 7), SLA_DAYS) == msk(2026, 12, 1, 18)


def test_deadline_arrival_at_closing_starts_next_day(cal: BusinessCalendar) -> None:
    assert cal.clock_start(msk(2026, 11, 25, 18)) == msk(2026, 11, 26, 9)
    assert cal.add_business_days(msk(2026, 11, 25, 18), SLA_DAYS) == msk(2026, 12, 2, 18)


def test_deadline_arrival_on_day_off_before_new_year(cal: BusinessCalendar) -> None:
    # 2026-12-31 is a day off, 2027-01-01..08 holidays, 9-10 a weekend: the clock starts on 11 January.
    arrival = msk(2026, 12, 31, 12)
    assert cal.clock_start(arrival) == msk(2027, 1, 11, 9)
    assert cal.add_business_days(arrival, SLA_DAYS) == msk(2027, 1, 15, 18)


def test_deadline_across_new_year_holidays(cal: BusinessCalendar) -> None:
    # Day 0 is 30 Dec 2025; days 1..5 are 12..16 January 2026.
    assert cal.add_business_days(msk(2025, 12, 30, 15), SLA_DAYS) == msk(2026, 1, 16, 15)


def test_deadline_arrival_on_holiday(cal: BusinessCalendar) -> None:
    arrival = msk(2026, 6, 12, 10)  # Russia Day, a Friday
    assert cal.add_business_days(arrival, SLA_DAYS) == msk(2026, 6, 19, 18)


def test_deadline_over_may_holidays_with_short_day(cal: BusinessCalendar) -> None:
    arrival = msk(2026, 4, 29, 12)
    deadline = cal.add_business_days(arrival, SLA_DAYS)
    assert deadline == msk(2026, 5, 7, 12)
    # The shortened 30 April still counts as a whole business day: 44 working hours, not 45.
    assert cal.business_time_between(arrival, deadline) == timedelta(hours=44)


def test_deadline_with_working_saturday_in_window(cal: BusinessCalendar) -> None:
    # 2027-02-20 (Saturday) is worked; 22 (transfer) and 23 February are off.
    assert cal.add_business_days(msk(2027, 2, 17, 11), SLA_DAYS) == msk(2027, 2, 25, 11)
    # 2025-11-01 (Saturday) is worked; 3 and 4 November are off.
    assert cal.add_business_days(msk(2025, 10, 29, 10), SLA_DAYS) == msk(2025, 11, 6, 10)


def test_deadline_clamped_to_short_day_close(cal: BusinessCalendar) -> None:
    # Day 5 is 2026-11-03, a shortened day ending at 17:00.
    assert cal.add_business_days(msk(2026, 10, 27, 17, 30), SLA_DAYS) == msk(2026, 11, 3, 17)


def test_deadline_from_utc_input(cal: BusinessCalendar) -> None:
    arrival_utc = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)  # 19:30 in Moscow
    deadline = cal.add_business_days(arrival_utc, SLA_DAYS)
    assert deadline == msk(2026, 11, 27, 18)
    assert deadline.tzinfo == MSK
    assert deadline.astimezone(UTC) == datetime(2026, 11, 27, 15, tzinfo=UTC)
    # 06:30 UTC is 09:30 in Moscow: inside working hours, same-day start.
    assert cal.add_business_days(datetime(2026, 11, 25, 6, 30, tzinfo=UTC), SLA_DAYS) == msk(
        2026, 12, 2, 9, 30
    )


def test_naive_datetimes_rejected(cal: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        cal.add_business_days(datetime(2026, 11, 25, 14), SLA_DAYS)
    with pytest.raises(ValueError, match="naive"):
        cal.business_time_between(datetime(2026, 11, 25, 14), msk(2026, 11, 26))


def test_zero_and_negative_days(cal: BusinessCalendar) -> None:
    assert cal.add_business_days(msk(2026, 11, 21, 12), 0) == msk(2026, 11, 23, 9)
    with pytest.raises(ValueError):
        cal.add_business_days(msk(2026, 11, 25, 12), -1)


# ----- working-time measures ------------------------------------------------------------------------


def test_business_time_between(cal: BusinessCalendar) -> None:
    fri, mon = msk(2026, 11, 20, 17), msk(2026, 11, 23, 10)
    assert cal.business_time_between(fri, mon) == timedelta(hours=2)
    assert cal.business_time_between(mon, fri) == timedelta(hours=-2)
    # 3 November is short (ends 17:00), 4 November a holiday.
    assert cal.business_time_between(msk(2026, 11, 3, 16), msk(2026, 11, 5, 10)) == timedelta(hours=2)
    assert cal.business_time_between(msk(2026, 11, 28, 10), msk(2026, 11, 29, 20)) == timedelta(0)


def test_business_days_left(cal: BusinessCalendar) -> None:
    deadline = msk(2026, 11, 27, 18)
    assert cal.business_days_left(msk(2026, 11, 23, 9), deadline) == pytest.approx(5.0)
    assert cal.business_days_left(msk(2026, 11, 27, 14), deadline) == pytest.approx(4 / 9)
    assert cal.business_days_left(msk(2026, 11, 30, 10), deadline) == pytest.approx(-1 / 9)


def test_subtract_working_time(cal: BusinessCalendar) -> None:
    deadline = msk(2026, 11, 27, 18)
    # A whole day back lands on the opening, not on the previous evening's close.
    assert cal.subtract_working_time(deadline, timedelta(hours=9)) == msk(2026, 11, 27, 9)
    assert cal.subtract_working_time(deadline, timedelta(hours=4)) == msk(2026, 11, 27, 14)
    assert cal.subtract_working_time(msk(2026, 11, 30, 10), timedelta(hours=4)) == msk(2026, 11, 27, 15)
    assert cal.subtract_working_time(deadline, timedelta(0)) == deadline


# ----- operator overrides -----------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overrides.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_override_day_off_shifts_deadline(tmp_path: Path) -> None:
    c = BusinessCalendar(override_path=_write(tmp_path, '[days_off]\ndates = ["2026-11-26"]\n'))
    assert not c.is_working_day(date(2026, 11, 26))
    assert c.add_business_days(msk(2026, 11, 25, 14), SLA_DAYS) == msk(2026, 12, 3, 14)


def test_override_working_day_pulls_deadline(tmp_path: Path) -> None:
    c = BusinessCalendar(override_path=_write(tmp_path, '[working_days]\ndates = ["2026-11-28"]\n'))
    assert c.is_working_day(date(2026, 11, 28))
    assert c.add_business_days(msk(2026, 11, 25, 14), SLA_DAYS) == msk(2026, 12, 1, 14)


def test_override_short_and_full_days(tmp_path: Path) -> None:
    text = '[short_days]\ndates = ["2026-11-27"]\n[full_days]\ndates = [2026-11-03]\n'
    c = BusinessCalendar(override_path=_write(tmp_path, text))
    assert c.working_hours(date(2026, 11, 27)) == (msk(2026, 11, 27, 9), msk(2026, 11, 27, 17))
    assert c.working_hours(date(2026, 11, 3)) == (msk(2026, 11, 3, 9), msk(2026, 11, 3, 18))


def test_example_override_file_loads() -> None:
    example = Path(__file__).resolve().parents[1] / "config/defaults/calendar_overrides.example.toml"
    c = BusinessCalendar(override_path=example)
    assert c.is_working_day(date(2026, 11, 25))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[day_off]\ndates = ["2026-11-26"]\n', "unknown section"),
        ('[days_off]\ndates = ["26.11.2026"]\n', "YYYY-MM-DD"),
        ('[days_off]\ndates = ["2026-11-26"]\n[working_days]\ndates = ["2026-11-26"]\n', "both"),
        ('[days_off]\ndate = ["2026-11-26"]\n', "only 'dates"),
        ("[days_off\n", "invalid TOML"),
    ],
)
def test_override_file_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(override_path=_write(tmp_path, text))


# ----- beyond the package data ------------------------------------------------------------------------


def test_2028_uses_statutory_default_and_overrides(tmp_path: Path, cal: BusinessCalendar) -> None:
    # No 2028 decree in the data: 4 November 2028 (Saturday) moves to Monday 6 November by art. 112.
    assert cal.beyond_verified(date(2028, 11, 6))
    assert not cal.is_working_day(date(2028, 11, 6))
    assert cal.is_working_day(date(2028, 11, 7))
    # New Year holidays are still known.
    assert not cal.is_working_day(date(2028, 1, 3))
    # When the decree says otherwise, the operator override wins.
    c = BusinessCalendar(override_path=_write(tmp_path, '[working_days]\ndates = ["2028-11-06"]\n'))
    assert c.is_working_day(date(2028, 11, 6))
