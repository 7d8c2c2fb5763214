"""SLA alert thresholds: when a ticket's "time is running out" alerts become due, and how time left
is shown on a card. Pure functions over a `BusinessCalendar`; the current time is always passed in.

Threshold setting format: comma-separated tokens, e.g. "1d,4h,breach" (the default):
- "<N>d": N standard working days before the deadline (working time, 1 d = one ordinary working day);
- "<N>h": N working hours before the deadline;
- "breach": the deadline itself. Breach alerts then repeat (`breach_repeat_due`) until someone acts.
An empty setting disables the alerts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from models.calendar import BusinessCalendar

DEFAULT_THRESHOLDS = "1d,4h,breach"

ThresholdKind = Literal["business_days_left", "working_hours_left", "breached"]

_TOKEN = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[dh])$")
_BREACH_WORDS = frozenset({"breach", "breached"})


@dataclass(frozen=True)
class Threshold:
    code: str  # stable identifier stored in "already fired" sets, e.g. "1d", "4h", "breach"
    kind: ThresholdKind
    amount: float  # days or hours before the deadline; 0 for "breached"


def parse_thresholds(spec: str) -> list[Threshold]:
    """Parse the alert threshold setting; raises ValueError naming the bad token."""
    result: list[Threshold] = []
    seen: set[str] = set()
    for raw in spec.split(","):
        token = raw.strip().lower()
        if not token:
            if spec.strip():  # "1d,,4h" is a typo, not "no alerts"
                raise ValueError(f"SLA thresholds {spec!r}: empty item")
            continue
        if token in _BREACH_WORDS:
            threshold = Threshold("breach", "breached", 0.0)
        else:
            match = _TOKEN.match(token)
            if match is None:
                raise ValueError(
                    f"SLA thresholds {spec!r}: cannot parse {raw.strip()!r}; "
                    "expected items like '1d' (business days), '4h' (working hours) or 'breach'"
                )
            amount = float(match["amount"])
            if amount <= 0:
                raise ValueError(f"SLA thresholds {spec!r}: {raw.strip()!r} must be greater than zero")
            unit = match["unit"]
            kind: ThresholdKind = "business_days_left" if unit == "d" else "working_hours_left"
            threshold = Threshold(f"{amount:g}{unit}", kind, amount)
        if threshold.code in seen:
            raise ValueError(f"SLA thresholds {spec!r}: {threshold.code!r} given twice")
        seen.add(threshold.code)
        result.append(threshold)
    return result


def threshold_fire_time(
    cal: BusinessCalendar, arrived_at: datetime, deadline: datetime, t: Threshold
) -> datetime:
    """The instant an alert becomes due: the deadline minus the threshold, in working time.

    Never earlier than the arrival: a request that arrives with less time left than the threshold
    gets that alert at once, not an alert dated before the request existed.
    """
    if t.kind == "breached":
        fire = deadline
    elif t.kind == "business_days_left":
        fire = cal.subtract_working_time(deadline, cal.standard_day * t.amount)
    else:
        fire = cal.subtract_working_time(deadline, timedelta(hours=t.amount))
    return max(fire, arrived_at.astimezone(fire.tzinfo))


def due_thresholds(
    cal: BusinessCalendar,
    now: datetime,
    arrived_at: datetime,
    deadline: datetime,
    thresholds: Iterable[Threshold],
    already_fired: set[str],
) -> list[Threshold]:
    """Thresholds whose fire time has come and that were not fired yet, earliest first.

    After downtime several may be due at once; the last one is the most urgent. The caller should
    record all of them as fired (so none repeats) and may post only the last.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    pending = [
        (threshold_fire_time(cal, arrived_at, deadline, t), t)
        for t in thresholds
        if t.code not in already_fired
    ]
    return [t for fire, t in sorted(pending, key=lambda p: p[0]) if fire <= now]


def breach_repeat_due(now: datetime, last_breach_alert_at: datetime | None, every: timedelta) -> bool:
    """Whether a breached ticket should be announced again.

    None means no breach alert was sent yet: the first one comes from `due_thresholds`, so no repeat.
    """
    if every <= timedelta(0):
        raise ValueError("breach repeat interval must be positive")
    if last_breach_alert_at is None:
        return False
    return now - last_breach_alert_at >= every


_WORDS = {
    "ru": {
        "days": "раб. дн.",
        "h": "ч",
        "min": "мин",
        "left": "осталось {}",
        "over": "просрочено на {}",
        "now": "срок истекает сейчас",
        "expired": "срок истёк",
    },
    "en": {
        "h": "h",
        "min": "min",
        "left": "{} left",
        "over": "overdue by {}",
        "now": "due now",
        "expired": "overdue",
    },
}


def format_time_left(cal: BusinessCalendar, now: datetime, deadline: datetime, language: str) -> str:
    """Compact working time left (or overdue) for a card: "осталось 1 раб. дн. 3 ч", "overdue by 2 h".

    Days are standard working days (`cal.standard_day`); the remainder is cut to whole hours, and
    minutes are shown only under an hour. Overdue time is working time too: a ticket due on Friday
    evening is not "overdue by 2 days" on Monday morning, staff had no working time to act.
    """
    lang = "ru" if language.lower().startswith("ru") else "en"
    words = _WORDS[lang]
    left = cal.business_time_between(now, deadline)
    overdue = left <= timedelta(0)
    seconds = abs(left.total_seconds())
    minutes = math.floor(seconds / 60)
    if minutes == 0:
        # e.g. Friday evening after an 18:00 deadline: no working time has passed, yet it is breached.
        return words["expired"] if now >= deadline else words["now"]
    day_minutes = int(cal.standard_day.total_seconds() // 60)
    days, rest = divmod(minutes, day_minutes)
    hours, mins = divmod(rest, 60)
    parts: list[str] = []
    if days:
        parts.append(
            f"{days} {words['days']}" if lang == "ru" else f"{days} business day{'s' if days > 1 else ''}"
        )
    if hours:
        parts.append(f"{hours} {words['h']}")
    if not parts:
        parts.append(f"{mins} {words['min']}")
    return (words["over"] if overdue else words["left"]).format(" ".join(parts))
