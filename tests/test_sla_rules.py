"""SLA alert thresholds and the compact "time left" text, driven by a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.calendar import BusinessCalendar
from models.sla_rules import (
    DEFAULT_THRESHOLDS,
    Threshold,
    breach_repeat_due,
    due_thresholds,
    format_time_left,
    parse_thresholds,
    threshold_fire_time,
)

MSK = ZoneInfo("Europe/Moscow")


def msk(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=MSK)


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar()


ONE_DAY = Threshold("1d", "business_days_left", 1.0)
FOUR_HOURS = Threshold("4h", "working_hours_left", 4.0)
BREACH = Threshold("breach", "breached", 0.0)


# ----- parsing --------------------------------------------------------------------------------------


def test_parse_default() -> None:
    assert parse_thresholds(DEFAULT_THRESHOLDS) == [ONE_DAY, FOUR_HOURS, BREACH]


def test_parse_tolerates_spacing_and_case() -> None:
    parsed = parse_thresholds(" 2D , 1.5h ,BREACH ")
    assert [t.code for t in parsed] == ["2d", "1.5h", "breach"]
    assert parsed[1] == Threshold("1.5h", "working_hours_left", 1.5)


def test_parse_empty_disables_alerts() -> None:
    assert parse_thresholds("") == []
    assert parse_thresholds("   ") == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1x", "cannot parse '1x'"),
        ("d", "cannot parse"),
        ("-1d", "cannot parse"),
        ("0h", "greater than zero"),
        ("1d,1d", "given twice"),
        ("1d,1.0d", "given twice"),
        ("1d,,4h", "empty item"),
        ("breach,breached", "given twice"),
    ],
)
def test_parse_invalid(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_thresholds(spec)


# ----- fire times -----------------------------------------------------------------------------------


def test_fire_times_midweek(cal: BusinessCalendar) -> None:
    arrived, deadline = msk(2026, 11, 25, 14), msk(2026, 12, 2, 14)
    assert threshold_fire_time(cal, arrived, deadline, ONE_DAY) == msk(2026, 12, 1, 14)
    assert threshold_fire_time(cal, arrived, deadline, FOUR_HOURS) == msk(2026, 12, 2, 10)
    assert threshold_fire_time(cal, arrived, deadline, BREACH) == deadline


def test_fire_times_deadline_at_close(cal: BusinessCalendar) -> None:
    arrived, deadline = msk(2026, 11, 20, 19, 30), msk(2026, 11, 27, 18)
    # "1 day left" comes at the Friday opening, when staff are at work.
    assert threshold_fire_time(cal, arrived, deadline, ONE_DAY) == msk(2026, 11, 27, 9)
    assert threshold_fire_time(cal, arrived, deadline, FOUR_HOURS) == msk(2026, 11, 27, 14)


def test_fire_time_skips_weekend(cal: BusinessCalendar) -> None:
    arrived = msk(2026, 11, 23, 11)
    deadline = cal.add_business_days(arrived, 5)
    assert deadline == msk(2026, 11, 30, 11)
    assert threshold_fire_time(cal, arrived, deadline, FOUR_HOURS) == msk(2026, 11, 27, 16)


def test_fire_time_never_before_arrival(cal: BusinessCalendar) -> None:
    arrived, deadline = msk(2026, 11, 25, 14), msk(2026, 12, 2, 14)
    ten_days = Threshold("10d", "business_days_left", 10.0)
    assert threshold_fire_time(cal, arrived, deadline, ten_days) == arrived


# ----- due thresholds -----------------------------------------------------------------------------------


def test_each_threshold_fires_exactly_once(cal: BusinessCalendar) -> None:
    arrived = msk(2026, 11, 25, 14)
    deadline = cal.add_business_days(arrived, 5)
    thresholds = parse_thresholds(DEFAULT_THRESHOLDS)
    fired: set[str] = set()
    log: list[tuple[str, datetime]] = []
    now = arrived
    while now <= deadline + timedelta(days=3):  # a scheduler ticking every 15 minutes
        for t in due_thresholds(cal, now, arrived, deadline, thresholds, fired):
            fired.add(t.code)
            log.append((t.code, now))
        now += timedelta(minutes=15)
    assert log == [
        ("1d", msk(2026, 12, 1, 14)),
        ("4h", msk(2026, 12, 2, 10)),
        ("breach", msk(2026, 12, 2, 14)),
    ]


def test_due_after_downtime_returns_all_in_order(cal: BusinessCalendar) -> None:
    arrived, deadline = msk(2026, 11, 25, 14), msk(2026, 12, 2, 14)
    thresholds = parse_thresholds(DEFAULT_THRESHOLDS)
    now = msk(2026, 12, 3, 10)
    assert due_thresholds(cal, now, arrived, deadline, thresholds, set()) == [ONE_DAY, FOUR_HOURS, BREACH]
    assert due_thresholds(cal, now, arrived, deadline, thresholds, {"1d", "4h"}) == [BREACH]
    assert due_thresholds(cal, now, arrived, deadline, thresholds, {"1d", "4h", "breach"}) == []


def test_nothing_due_early(cal: BusinessCalendar) -> None:
    arrived, deadline = msk(2026, 11, 25, 14), msk(2026, 12, 2, 14)
    thresholds = parse_thresholds(DEFAULT_THRESHOLDS)
    assert due_thresholds(cal, msk(2026, 12, 1, 13, 59), arrived, deadline, thresholds, set()) == []


def test_due_accepts_utc_now(cal: BusinessCalendar) -> None:
    arrived, deadline = msk(2026, 11, 25, 14), msk(2026, 12, 2, 14)
    now_utc = datetime(2026, 12, 1, 11, tzinfo=UTC)  # 14:00 in Moscow
    assert due_thresholds(cal, now_utc, arrived, deadline, [ONE_DAY], set()) == [ONE_DAY]


# ----- breach repeats ------------------------------------------------------------------------------------


def test_breach_repeat() -> None:
    last = msk(2026, 12, 2, 14)
    every = timedelta(hours=3)
    assert not breach_repeat_due(msk(2026, 12, 2, 15), None, every)
    assert not breach_repeat_due(msk(2026, 12, 2, 16, 59), last, every)
    assert breach_repeat_due(msk(2026, 12, 2, 17), last, every)
    with pytest.raises(ValueError):
        breach_repeat_due(msk(2026, 12, 2, 17), last, timedelta(0))


# ----- time left text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "ru", "en"),
    [
        (msk(2026, 11, 26, 15), "осталось 1 раб. дн. 3 ч", "1 business day 3 h left"),
        (msk(2026, 11, 25, 18), "осталось 2 раб. дн.", "2 business days left"),
        (msk(2026, 11, 27, 17, 15), "осталось 45 мин", "45 min left"),
        (msk(2026, 11, 30, 11), "просрочено на 2 ч", "overdue by 2 h"),
        (msk(2026, 12, 1, 18), "просрочено на 2 раб. дн.", "overdue by 2 business days"),
        (msk(2026, 12, 1, 12), "просрочено на 1 раб. дн. 3 ч", "overdue by 1 business day 3 h"),
        (msk(2026, 11, 27, 17, 59, 30), "срок истекает сейчас", "due now"),
        (msk(2026, 11, 27, 20), "срок истёк", "overdue"),
    ],
)
def test_format_time_left(cal: BusinessCalendar, now: datetime, ru: str, en: str) -> None:
    deadline = msk(2026, 11, 27, 18)
    assert format_time_left(cal, now, deadline, "ru") == ru
    assert format_time_left(cal, now, deadline, "ru-RU") == ru
    assert format_time_left(cal, now, deadline, "en") == en
