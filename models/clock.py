"""The one time helper: every "now" and every database time goes through here.

Databases hand back datetimes in more than one form: SQLite (and a test's own values) can be naive,
meaning UTC; PostgreSQL's are aware, in the session's zone. `as_utc` makes both one aware UTC value,
so comparing and subtracting them never raises "can't compare offset-naive and offset-aware".
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default `clock` of every component)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime: a naive one is taken to be UTC, an aware one is converted."""
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
