"""SLA alerts (clause 2.3) with a controllable clock and a real database.

The staff-chat side is the real `TelegramBoard`; what the alerts would post is read from the
Telegram outbox (delivery itself is tested in test_telegram_outbox.py and end to end elsewhere).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.board import BoardConfig, TelegramBoard
from bot.settings import SettingsError, load_settings
from bot.views.delivery import shape
from models.calendar import BusinessCalendar
from models.policy import month_key
from models.sla import SlaConfig, SlaService, load_rotation, rotation_for
from models.sla_rules import parse_thresholds
from models.tables import SlaAlert, StaffMember, TelegramOutbox, Ticket, TicketStatus

STAFF_CHAT = -100777
ONCALL_CHAT = -100888
MSK = "Europe/Moscow"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def msk(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(y, m, d, hh, mm, tzinfo=ZoneInfo(MSK)).astimezone(UTC)


@pytest.fixture
def calendar() -> BusinessCalendar:
    return BusinessCalendar(MSK)


def make_service(
    calendar: BusinessCalendar, clock: Clock, *, oncall_chat: int | None = None, rotation: Path | None = None,
    digest_time: str = "09:30",
) -> SlaService:
    config = SlaConfig(
        thresholds=tuple(parse_thresholds("1d,4h,breach")),
        breach_repeat=timedelta(hours=4),
        staff_chat_id=STAFF_CHAT,
        oncall_chat_id=oncall_chat,
        language="ru",
        rotation_path=rotation,
        digest_time=digest_time,
    )
    return SlaService(config, calendar=calendar, clock=clock)


async def posted_text(row: TelegramOutbox) -> str:
    """What the sender posts for `row`: the intent rendered as the bot renders it at delivery."""
    board = TelegramBoard(BoardConfig(staff_chat_id=STAFF_CHAT, language="ru", timezone=MSK),
                          calendar=BusinessCalendar(MSK))
    return str((await board.render_deferred(shape(row.payload)["render"]))["text"])


async def new_ticket(calendar: BusinessCalendar, arrived: datetime, subject: str = "Не работает касса") -> Ticket:
    return await Ticket.create(
        arrived_at=arrived,
        month_key=month_key(arrived, MSK),
        sla_due_at=calendar.add_business_days(arrived, 5).astimezone(UTC),
        subject=subject,
        sender_address="ivanov@romashka.ru",
    )


async def alerts_of(ticket: Ticket) -> list[str]:
    return sorted(await SlaAlert.filter(ticket_id=ticket.id).values_list("threshold", flat=True))


async def alert_posts() -> list[TelegramOutbox]:
    return await TelegramOutbox.filter(kind="alert").order_by("id")


async def test_each_threshold_fires_once_at_its_time_even_across_a_restart(db: str, calendar: BusinessCalendar) -> None:
    arrived = msk(2026, 11, 23, 10, 0)  # Monday 10:00 -> due Monday 30 Nov 10:00
    ticket = await new_ticket(calendar, arrived)
    assert ticket.sla_due_at == msk(2026, 11, 30, 10, 0)
    clock = Clock(msk(2026, 11, 26, 9, 0))
    service = make_service(calendar, clock)
    assert await service.run_due() == 0  # more than a business day left

    clock.now = msk(2026, 11, 27, 10, 0)  # exactly one business day left
    assert await service.run_due() == 1
    assert await alerts_of(ticket) == ["1d"]
    assert await service.run_due() == 0  # not again

    restarted = make_service(calendar, clock)  # a new process: the plan comes from the database
    assert await restarted.run_due() == 0
    clock.now = msk(2026, 11, 27, 15, 0)  # 4 working hours left (15:00-18:00 Fri + 09:00-10:00 Mon)
    assert await restarted.run_due() == 1
    assert await alerts_of(ticket) == ["1d", "4h"]

    clock.now = msk(2026, 11, 30, 10, 0)  # the deadline
    assert await restarted.run_due() == 1
    assert await alerts_of(ticket) == ["1d", "4h", "breach"]
    clock.now = msk(2026, 11, 30, 13, 0)
    assert await restarted.run_due() == 0  # the reminder comes 4 hours after the breach
    clock.now = msk(2026, 11, 30, 14, 1)
    assert await restarted.run_due() == 1
    assert await alerts_of(ticket) == ["1d", "4h", "breach", "breach:1"]
    posts = await alert_posts()
    assert len(posts) == 4
    assert all(p.chat_id == STAFF_CHAT for p in posts)
    assert f"#{ticket.id}" in await posted_text(posts[-1])


async def test_a_decided_request_gets_no_alert(db: str, calendar: BusinessCalendar) -> None:
    arrived = msk(2026, 11, 16, 10, 0)
    ticket = await new_ticket(calendar, arrived)
    await Ticket.filter(id=ticket.id).update(status=TicketStatus.ACCEPTED, first_decided_at=arrived)
    service = make_service(calendar, Clock(msk(2026, 12, 1, 12, 0)))  # long overdue
    assert await service.run_due() == 0
    assert await alerts_of(ticket) == []


async def test_a_request_already_past_its_deadline_on_arrival_is_alerted_at_once_with_one_post(
    db: str, calendar: BusinessCalendar
) -> None:
    arrived = msk(2026, 11, 2, 10, 0)  # waited in the mailbox for weeks (e.g. a backlog)
    ticket = await new_ticket(calendar, arrived)
    service = make_service(calendar, Clock(msk(2026, 11, 25, 12, 0)))
    assert await service.run_due() == 1
    # Every passed threshold is recorded (so none fires later) but only one alert is posted: the breach.
    assert await alerts_of(ticket) == ["1d", "4h", "breach"]
    posts = await alert_posts()
    assert len(posts) == 1
    text = await posted_text(posts[0])
    assert "просрочено" in text.lower() or "срок" in text


async def test_alert_goes_to_the_oncall_agent_directly_when_they_started_the_bot(
    db: str, calendar: BusinessCalendar
) -> None:
    await StaffMember.create(telegram_id=42, name="Анна", username="anna", is_oncall=True, started_bot=True)
    ticket = await new_ticket(calendar, msk(2026, 11, 2, 10, 0))
    await make_service(calendar, Clock(msk(2026, 11, 25, 12, 0))).run_due()
    posts = await alert_posts()
    assert [p.chat_id for p in posts] == [42]
    assert "reply_to" not in shape(posts[0].payload)  # the card lives in another chat
    assert posts[0].ticket_id == ticket.id


async def test_alert_falls_back_to_the_oncall_chat_with_a_mention(db: str, calendar: BusinessCalendar) -> None:
    await StaffMember.create(telegram_id=43, name="Борис", username="boris", is_oncall=True, started_bot=False)
    await new_ticket(calendar, msk(2026, 11, 2, 10, 0))
    await make_service(calendar, Clock(msk(2026, 11, 25, 12, 0)), oncall_chat=ONCALL_CHAT).run_due()
    posts = await alert_posts()
    assert [p.chat_id for p in posts] == [ONCALL_CHAT]
    assert "@boris" in await posted_text(posts[0])


async def test_rotation_file_names_the_agent_when_nobody_took_the_duty(
    db: str, calendar: BusinessCalendar, tmp_path: Path
) -> None:
    rotation = tmp_path / "oncall.toml"
    rotation.write_text('[weekly]\nwed = "@vera"\nthu = "@gleb"\n[dates]\n"2026-11-26" = "@dina"\n', encoding="utf-8")
    parsed = load_rotation(rotation)
    assert rotation_for(parsed, datetime(2026, 11, 25).date()) == "@vera"
    assert rotation_for(parsed, datetime(2026, 11, 26).date()) == "@dina"  # a date beats the weekday
    await StaffMember.create(telegram_id=44, name="Вера", username="vera", started_bot=True)
    await new_ticket(calendar, msk(2026, 11, 2, 10, 0))
    await make_service(calendar, Clock(msk(2026, 11, 25, 12, 0)), rotation=rotation).run_due()
    assert [p.chat_id for p in await alert_posts()] == [44]


async def test_bad_rotation_file_is_rejected_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "oncall.toml"
    bad.write_text('[weekly]\nfunday = "@x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown weekday"):
        load_rotation(bad)


async def test_morning_digest_lists_requests_at_risk_once_a_working_day(db: str, calendar: BusinessCalendar) -> None:
    risky = await new_ticket(calendar, msk(2026, 11, 18, 10, 0), subject="Срочно: касса")  # due 25 Nov 10:00
    await new_ticket(calendar, msk(2026, 11, 25, 8, 0), subject="Новый вопрос")  # due 2 Dec
    clock = Clock(msk(2026, 11, 25, 9, 0))
    service = make_service(calendar, clock)
    assert await service.morning_digest() is False  # before 09:30
    clock.now = msk(2026, 11, 25, 9, 45)
    assert await service.morning_digest() is True
    assert await service.morning_digest() is False  # once a day
    digest = await TelegramOutbox.get(idempotency_key="digest:2026-11-25")
    text = await posted_text(digest)
    assert f"#{risky.id}" in text and "Новый вопрос" not in text
    clock.now = msk(2026, 11, 28, 10, 0)  # Saturday: no digest
    assert await service.morning_digest() is False


async def test_a_desk_may_switch_the_morning_digest_off(db: str, calendar: BusinessCalendar) -> None:
    await new_ticket(calendar, msk(2026, 11, 18, 10, 0), subject="Срочно: касса")  # due 25 Nov 10:00
    clock = Clock(msk(2026, 11, 25, 9, 45))
    assert await make_service(calendar, clock, digest_time="off").morning_digest() is False
    assert not await TelegramOutbox.filter(kind="digest").exists()
    assert await make_service(calendar, clock).morning_digest() is True  # the same day, the digest on
    # The setting: "off" or a time of day, nothing else.
    required = {"TELEGRAM_BOT_TOKEN": "1:real", "STAFF_CHAT_ID": -1, "IMAP_HOST": "h", "IMAP_USER": "u",
                "IMAP_PASSWORD": "p", "SMTP_HOST": "h"}
    assert load_settings(None, **required, SLA_DIGEST_TIME="off").SLA_DIGEST_TIME == "off"
    with pytest.raises(SettingsError, match="SLA_DIGEST_TIME"):
        load_settings(None, **required, SLA_DIGEST_TIME="none")


async def test_deadline_beyond_the_verified_calendar_warns_once(db: str, calendar: BusinessCalendar) -> None:
    service = make_service(calendar, Clock(msk(2028, 3, 1, 12, 0)))
    await new_ticket(calendar, msk(2028, 3, 1, 10, 0))
    await new_ticket(calendar, msk(2028, 3, 2, 10, 0))
    await service.run_due()
    await service.run_due()
    warnings = await TelegramOutbox.filter(idempotency_key="calendar_beyond_verified:2028")
    assert len(warnings) == 1
    assert "2027" in await posted_text(warnings[0])


async def test_due_alerts_are_found_by_an_indexed_query(db: str, calendar: BusinessCalendar) -> None:
    from tortoise import Tortoise

    connection = Tortoise.get_connection("default")
    if connection.capabilities.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans depend on table statistics")
    _, rows = await connection.execute_query(
        "EXPLAIN QUERY PLAN SELECT id FROM ticket WHERE status = 'new' AND next_alert_at <= '2026-11-25' "
        "ORDER BY next_alert_at LIMIT 200"
    )
    plan = " ".join(str(dict(r)) for r in rows)
    assert "INDEX" in plan and "next_alert_at" in plan and "SCAN" not in plan, plan
