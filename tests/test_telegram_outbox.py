"""The Telegram sender against the fake Bot API server, through a real aiogram Bot and a real database."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from tortoise.exceptions import OperationalError

from bot.ratelimit import RateLimiter
from bot.telegram_outbox import TelegramSender
from mail.parse import extract_attachment
from models.tables import Message, MessageDirection, OutboxStatus, RawMail, TelegramOutbox, Ticket
from tests.helpers.desk import store_raw_mail
from tests.rig.fake_telegram import FakeTelegram

GROUP = -1001234567890
ALICE, STRANGER = 1001, 1003
CORPUS = Path(__file__).parent / "corpus"
_keys = itertools.count(1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    server.add_group(GROUP, "Storeolis staff", [ALICE])
    server.add_user(ALICE, "Alice", "alice", started_bot=True)
    server.add_user(STRANGER, "Stan", started_bot=False)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))
    try:
        yield bot
    finally:
        await bot.session.close()


def make_sender(bot: Bot, **kwargs: Any) -> TelegramSender:
    kwargs.setdefault("limiter", RateLimiter(time_scale=0.01, slack=0.0))
    kwargs.setdefault("backoff_base", 0.05)
    kwargs.setdefault("backoff_max", 0.2)
    kwargs.setdefault("card_wait", 0.05)
    kwargs.setdefault("poll_interval", 0.2)
    return TelegramSender(bot, **kwargs)


async def drain_until(sender: TelegramSender, predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Drain repeatedly (rows in backoff become due) until `predicate()` (awaitable) is true."""
    async with asyncio.timeout(timeout):
        while True:
            await sender.drain()
            if await predicate():
                return
            await asyncio.sleep(0.05)


def all_done() -> Any:
    async def check() -> bool:
        return not await TelegramOutbox.filter(
            status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
        ).exists()

    return check


async def new_ticket(subject: str = "Не работает касса") -> Ticket:
    return await Ticket.create(arrived_at=datetime.now(UTC), month_key="2026-11", subject=subject)


async def add_row(kind: str, payload: dict[str, Any], chat_id: int = GROUP, ticket: Ticket | None = None,
                  **fields: Any) -> TelegramOutbox:  # fmt: skip
    return await TelegramOutbox.create(
        idempotency_key=f"{kind}:{next(_keys)}", kind=kind, chat_id=chat_id, ticket=ticket, payload=payload,
        not_before=datetime.now(UTC), **fields,
    )  # fmt: skip


def keyboard(ticket_id: int) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": "Принять", "callback_data": f"t:{ticket_id}:accept"}]]}


async def add_card(ticket: Ticket, text: str | None = None, chat_id: int = GROUP) -> TelegramOutbox:
    params = {"text": text or f"<b>#{ticket.id}</b> {ticket.subject}", "parse_mode": "HTML",
              "reply_markup": keyboard(ticket.id), "link_preview_options": {"is_disabled": True}}  # fmt: skip
    return await add_row(
        "card", {"method": "sendMessage", "params": params, "record": {"ticket_card": ticket.id}},
        chat_id=chat_id, ticket=ticket,
    )  # fmt: skip


async def add_card_to_render(ticket: Ticket) -> TelegramOutbox:
    """A new card as the workflow writes it: the sender renders it when it posts it."""
    payload = {"method": "sendMessage", "render": {"ticket_card": ticket.id}, "record": {"ticket_card": ticket.id}}
    return await add_row("card", payload, ticket=ticket)


async def add_edit(ticket: Ticket, text: str) -> TelegramOutbox:
    params = {"text": text, "parse_mode": "HTML", "reply_markup": keyboard(ticket.id)}
    return await add_row(
        "card_edit",
        {"method": "editMessageText", "params": params, "target": {"ticket_card": ticket.id}},
        ticket=ticket,
    )


async def add_raw_mail(path: Path) -> RawMail:
    content = await asyncio.to_thread(path.read_bytes)
    return await store_raw_mail(
        content, mailbox="INBOX", uidvalidity=1, uid=next(_keys), internal_date=datetime.now(UTC),
        sha256=hashlib.sha256(content).hexdigest(), size=len(content),
    )  # fmt: skip


def sends(fake: FakeTelegram, method: str = "sendMessage") -> list[dict[str, Any]]:
    return [s for s in fake.sent if s["method"] == method]


# ------------------------------------------------------------------------------------------ cards


async def test_card_is_posted_and_its_message_id_recorded(db: str, fake: FakeTelegram, bot: Bot) -> None:
    ticket = await new_ticket()
    row = await add_card(ticket)

    assert await make_sender(bot).drain() == 1

    [sent] = sends(fake)
    await row.refresh_from_db()
    await ticket.refresh_from_db()
    assert row.status == OutboxStatus.SENT and row.attempts == 1 and row.sent_at is not None
    assert row.result_message_id == sent["message_id"]
    assert (ticket.card_chat_id, ticket.card_message_id) == (GROUP, sent["message_id"])
    message = fake.message(GROUP, sent["message_id"])
    assert message["text"] == f"#{ticket.id} Не работает касса"
    assert message["reply_markup"] == keyboard(ticket.id)
    assert await make_sender(bot).drain() == 0  # nothing left: a second pass posts nothing
    assert len(sends(fake)) == 1


async def test_a_card_to_render_is_rendered_after_its_claim_as_the_ticket_is_then(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    ticket = await new_ticket()
    row = await add_card_to_render(ticket)
    await Ticket.filter(id=ticket.id).update(subject="Тема, изменённая до отправки")
    seen: list[tuple[dict[str, Any], str]] = []

    async def render(spec: dict[str, Any]) -> dict[str, Any]:
        current = await Ticket.get(id=spec["ticket_card"])
        claimed = await TelegramOutbox.get(id=row.id)
        seen.append((spec, claimed.status))
        return {"text": f"<b>#{current.id}</b> {current.subject}", "parse_mode": "HTML",
                "reply_markup": keyboard(current.id)}  # fmt: skip

    assert await make_sender(bot, render=render).drain() == 1

    assert seen == [({"ticket_card": ticket.id}, OutboxStatus.SENDING)]
    [sent] = sends(fake)
    assert fake.message(GROUP, sent["message_id"])["text"] == f"#{ticket.id} Тема, изменённая до отправки"
    await ticket.refresh_from_db()
    assert ticket.card_message_id == sent["message_id"]


async def test_a_database_error_while_rendering_retries_the_card_instead_of_failing_it(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    ticket = await new_ticket()
    row = await add_card_to_render(ticket)
    calls = 0

    async def flaky_render(spec: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("database is locked")
        return {"text": f"#{spec['ticket_card']} карточка"}

    sender = make_sender(bot, render=flaky_render)
    await drain_until(sender, all_done())

    await row.refresh_from_db()
    assert calls == 2 and row.status == OutboxStatus.SENT and row.attempts == 1
    assert [fake.message(GROUP, s["message_id"])["text"] for s in sends(fake)] == [f"#{ticket.id} карточка"]


async def _render_a_missing_ticket(spec: dict[str, Any]) -> dict[str, Any]:
    await Ticket.get(id=spec["ticket_card"] + 1000)  # DoesNotExist
    return {}


@pytest.mark.parametrize(("render", "error"), [(None, "no renderer"), (_render_a_missing_ticket, "nothing to render")])
async def test_a_card_that_cannot_be_rendered_fails_once_and_posts_nothing(
    db: str, fake: FakeTelegram, bot: Bot, render: Any, error: str
) -> None:
    row = await add_card_to_render(await new_ticket())

    await make_sender(bot, render=render).drain()

    await row.refresh_from_db()
    assert row.status == OutboxStatus.FAILED and error in (row.last_error or "")
    assert sends(fake) == []


async def test_edit_written_before_its_card_waits_and_applies_after(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    ticket = await new_ticket()
    edit = await add_edit(ticket, f"<b>#{ticket.id}</b> принято")  # written first: lower id
    await add_card(ticket)
    sender = make_sender(bot)

    await drain_until(sender, all_done())

    await ticket.refresh_from_db()
    assert [s["method"] for s in fake.sent] == ["sendMessage", "editMessageText"]
    assert fake.message(GROUP, ticket.card_message_id)["text"] == f"#{ticket.id} принято"
    await edit.refresh_from_db()
    assert edit.status == OutboxStatus.SENT and edit.result_message_id == ticket.card_message_id


async def test_edit_waits_while_the_card_is_retried(db: str, fake: FakeTelegram, bot: Bot) -> None:
    ticket = await new_ticket()
    await add_card(ticket)
    edit = await add_edit(ticket, "принято")
    fake.fail_next("sendMessage", 502, "Bad Gateway", times=2)
    sender = make_sender(bot)

    await sender.drain()
    await edit.refresh_from_db()
    assert edit.status == OutboxStatus.PENDING and edit.attempts == 0  # never tried, no failure counted

    await drain_until(sender, all_done())
    assert [s["method"] for s in fake.sent] == ["sendMessage", "editMessageText"]


async def test_edits_of_one_card_are_applied_in_order(db: str, fake: FakeTelegram, bot: Bot) -> None:
    ticket = await new_ticket()
    await add_card(ticket)
    sender = make_sender(bot)
    await sender.drain()
    for version in ("v1", "v2", "v3"):
        await add_edit(ticket, version)
    fake.fail_next("editMessageText", 500, "Internal Server Error")  # v1 goes into backoff first

    await drain_until(sender, all_done())

    assert [s["text"] for s in sends(fake, "editMessageText")] == ["v1", "v2", "v3"]
    await ticket.refresh_from_db()
    assert fake.message(GROUP, ticket.card_message_id)["text"] == "v3"


async def test_reply_to_a_card_becomes_a_reply_and_records_the_message(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    ticket = await new_ticket()
    message = await Message.create(ticket=ticket, direction=MessageDirection.INBOUND, kind="followup")
    followup = await add_row(
        "followup",
        {"method": "sendMessage", "params": {"text": "Клиент дописал"}, "reply_to": {"ticket_card": ticket.id},
         "record": {"message_row": message.id}},
        ticket=ticket,
    )  # fmt: skip
    await add_card(ticket)  # the card comes later: the reply waits for it

    await drain_until(make_sender(bot), all_done())

    await ticket.refresh_from_db()
    await message.refresh_from_db()
    card, reply = sends(fake)
    assert reply["reply_to_message_id"] == ticket.card_message_id == card["message_id"]
    assert message.telegram_message_id == reply["message_id"]
    await followup.refresh_from_db()
    assert followup.result_message_id == reply["message_id"] and followup.last_error is None


async def test_when_the_card_failed_edits_are_dropped_and_replies_go_without_reply(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    ticket = await new_ticket()
    card = await add_card(ticket)
    edit = await add_edit(ticket, "принято")
    reply = await add_row(
        "followup",
        {"method": "sendMessage", "params": {"text": "Клиент дописал"}, "reply_to": {"ticket_card": ticket.id}},
        ticket=ticket,
    )  # fmt: skip
    fake.fail_next("sendMessage", 400, "Bad Request: BUTTON_DATA_INVALID")
    failures: list[tuple[int, str]] = []

    async def on_failed(row: TelegramOutbox, reason: str) -> None:
        failures.append((row.id, reason))

    await drain_until(make_sender(bot, on_failed=on_failed), all_done())

    await card.refresh_from_db()
    await edit.refresh_from_db()
    await reply.refresh_from_db()
    assert card.status == OutboxStatus.FAILED and failures == [(card.id, "Bad Request: BUTTON_DATA_INVALID")]
    assert edit.status == OutboxStatus.SENT and "never posted" in (edit.last_error or "")
    assert sends(fake, "editMessageText") == []
    [posted] = sends(fake)
    assert posted["text"] == "Клиент дописал" and posted["reply_to_message_id"] is None
    assert reply.status == OutboxStatus.SENT and "without reply" in (reply.last_error or "")


async def test_edit_with_identical_content_counts_as_success(db: str, fake: FakeTelegram, bot: Bot) -> None:
    ticket = await new_ticket()
    await add_card(ticket, text="<b>#1</b> same")
    sender = make_sender(bot)
    await sender.drain()
    edit = await add_edit(ticket, "<b>#1</b> same")

    assert await sender.drain() == 1

    await edit.refresh_from_db()
    await ticket.refresh_from_db()
    assert edit.status == OutboxStatus.SENT and edit.result_message_id == ticket.card_message_id
    assert [m for m, _ in fake.calls].count("editMessageText") == 1  # tried once, answered "not modified"
    assert sends(fake, "editMessageText") == []  # Telegram changed nothing


async def test_edit_of_a_deleted_message_is_done_with_a_note(db: str, fake: FakeTelegram, bot: Bot) -> None:
    row = await add_row(
        "card_edit",
        {"method": "editMessageText", "params": {"text": "x"}, "target": {"telegram_message_id": 999}},
    )
    assert await make_sender(bot).drain() == 1
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT and "message to edit not found" in (row.last_error or "")


async def test_html_telegram_refuses_is_delivered_once_as_plain_text(
    db: str, fake: FakeTelegram, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    row = await add_row(
        "notice", {"method": "sendMessage", "params": {"text": "<b>Счёт <x>№5</x></b> &amp; акт", "parse_mode": "HTML"}}
    )  # fmt: skip

    with caplog.at_level(logging.ERROR, logger="bot.telegram_outbox"):
        await make_sender(bot).drain()

    [sent] = sends(fake)
    assert sent["parse_mode"] is None and sent["plain_text"] == "Счёт №5 & акт"
    assert "refused our HTML" in caplog.text
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT and "plain text" in (row.last_error or "")


async def test_too_long_text_is_delivered_truncated(db: str, fake: FakeTelegram, bot: Bot) -> None:
    await add_row("notice", {"method": "sendMessage", "params": {"text": "я" * 5000}})
    await make_sender(bot).drain()
    [sent] = sends(fake)
    assert len(sent["plain_text"]) == 4096 and sent["plain_text"].endswith("…")


# ------------------------------------------------------------------------------ failures, limits


async def test_flood_control_delays_and_delivers_exactly_once(db: str, fake: FakeTelegram, bot: Bot) -> None:
    row = await add_row("notice", {"method": "sendMessage", "params": {"text": "hello"}})
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    sender = make_sender(bot)

    await sender.drain()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.attempts == 0  # a 429 is not a failed attempt
    assert row.not_before > datetime.now(UTC)
    assert sends(fake) == []

    await drain_until(sender, all_done())
    assert [s["text"] for s in sends(fake)] == ["hello"]


async def test_server_outage_is_ridden_out(db: str, fake: FakeTelegram, bot: Bot) -> None:
    row = await add_row("notice", {"method": "sendMessage", "params": {"text": "hello"}})
    fake.set_down("500")
    sender = make_sender(bot)
    await sender.drain()
    await sender.drain()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and "Internal Server Error" in (row.last_error or "")
    fake.set_down(None)

    await drain_until(sender, all_done())
    assert [s["text"] for s in sends(fake)] == ["hello"]


async def test_connection_refused_is_retried(db: str, fake: FakeTelegram, bot: Bot) -> None:
    await add_row("notice", {"method": "sendMessage", "params": {"text": "hello"}})
    fake.set_down("refuse")
    sender = make_sender(bot)
    await sender.drain()
    fake.set_down(None)
    await drain_until(sender, all_done())
    assert [s["text"] for s in sends(fake)] == ["hello"]


async def test_hundred_cards_to_one_group_are_paced_under_the_limit(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    scale = 0.03  # "20 a minute" becomes 20 per 1.8 s; 100 cards take about 9 s
    fake.set_rate_limit(per_chat_per_minute=20, per_chat_per_second=1, global_per_second=30, time_scale=scale)
    tickets = [await new_ticket(f"Вопрос {n}") for n in range(100)]
    for ticket in tickets:
        await add_card(ticket)
    sender = make_sender(bot, limiter=RateLimiter(time_scale=scale))
    task = asyncio.create_task(sender.run())
    try:
        await fake.wait_for(lambda: len(sends(fake)) >= 100, timeout=40)
        await fake.wait_for(all_done(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    texts = [s["plain_text"] for s in sends(fake)]
    assert texts == [f"#{t.id} Вопрос {n}" for n, t in enumerate(tickets)]  # each once, oldest first
    assert fake.too_many_requests <= 2
    assert await Ticket.filter(card_message_id__isnull=True).count() == 0


async def test_burst_is_announced_by_one_digest_even_across_a_restart(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    scale = 0.02  # 20 per 1.2 s: slow enough to stop the sender in the middle of the burst
    fake.set_rate_limit(per_chat_per_minute=20, per_chat_per_second=1, global_per_second=30, time_scale=scale)
    tickets = [await new_ticket(f"Вопрос {n}") for n in range(30)]
    for ticket in tickets:
        await add_card(ticket)

    first = make_sender(bot, limiter=RateLimiter(time_scale=scale), staff_chat_id=GROUP)
    task = asyncio.create_task(first.run())
    await fake.wait_for(lambda: len(sends(fake)) >= 6, timeout=10)
    task.cancel()  # a restart in the middle of the burst: more than `digest_threshold` cards still wait
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await TelegramOutbox.filter(kind="card", status=OutboxStatus.PENDING).count() > 10

    second = make_sender(bot, limiter=RateLimiter(time_scale=scale), staff_chat_id=GROUP)
    task = asyncio.create_task(second.run())
    try:
        await fake.wait_for(all_done(), timeout=20)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    texts = [s["plain_text"] for s in sends(fake)]
    assert texts[0] == "Поступило 30 новых обращений; карточки следуют по очереди, начиная с самых старых."
    assert texts[1:] == [f"#{t.id} Вопрос {n}" for n, t in enumerate(tickets)]
    assert await TelegramOutbox.filter(kind="digest").count() == 1


async def test_small_batches_get_no_digest(db: str, fake: FakeTelegram, bot: Bot) -> None:
    for n in range(10):
        await add_card(await new_ticket(f"Вопрос {n}"))
    await make_sender(bot, staff_chat_id=GROUP).drain()
    assert len(sends(fake)) == 10 and not await TelegramOutbox.filter(kind="digest").exists()


async def test_forbidden_private_chat_fails_and_tells_the_caller(
    db: str, fake: FakeTelegram, bot: Bot
) -> None:
    row = await add_row("alert", {"method": "sendMessage", "params": {"text": "SLA"}}, chat_id=STRANGER)
    calls: list[tuple[int, str, OutboxStatus]] = []

    async def on_failed(failed: TelegramOutbox, reason: str) -> None:
        calls.append((failed.id, reason, failed.status))

    assert await make_sender(bot, on_failed=on_failed).drain() == 1

    await row.refresh_from_db()
    assert row.status == OutboxStatus.FAILED
    assert calls == [(row.id, "Forbidden: bot can't initiate conversation with a user", OutboxStatus.FAILED)]
    assert sends(fake) == []


# ------------------------------------------------------------------------------------ documents


async def test_documents_from_a_stored_mail_and_from_text(db: str, fake: FakeTelegram, bot: Bot) -> None:
    raw = await add_raw_mail(CORPUS / "attachments_pdf_image.eml")
    eml = (CORPUS / "attachments_pdf_image.eml").read_bytes()
    filename, _, pdf = extract_attachment(eml, 2)
    ticket = await new_ticket()
    await add_card(ticket)
    await add_row(
        "document",
        {"method": "sendDocument", "params": {"caption": "Вложение"}, "reply_to": {"ticket_card": ticket.id},
         "file": {"raw_mail_attachment": [raw.id, 2]}},
        ticket=ticket,
    )  # fmt: skip
    await add_row("document", {"method": "sendDocument", "params": {},
                               "file": {"raw_mail_eml": raw.id, "filename": "original.eml"}})  # fmt: skip
    await add_row("document", {"method": "sendDocument", "params": {},
                               "file": {"text": "Полный текст письма", "filename": "message.txt"}})  # fmt: skip

    await drain_until(make_sender(bot), all_done())

    docs = sends(fake, "sendDocument")
    assert [d["document"] for d in docs] == [
        (filename, pdf),
        ("original.eml", eml),
        ("message.txt", "Полный текст письма".encode()),
    ]
    await ticket.refresh_from_db()
    assert filename == "check.pdf" and docs[0]["reply_to_message_id"] == ticket.card_message_id
    assert docs[0]["caption"] == "Вложение"


# ------------------------------------------------------------------------------------- recovery


async def test_row_left_sending_by_a_crash_is_sent_on_start(
    db: str, fake: FakeTelegram, bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    ticket = await new_ticket()
    row = await add_card(ticket)
    await TelegramOutbox.filter(id=row.id).update(status=OutboxStatus.SENDING, attempts=1)
    sender = make_sender(bot)
    assert await sender.drain() == 0  # a SENDING row belongs to someone: never taken in passing

    with caplog.at_level(logging.WARNING, logger="bot.telegram_outbox"):
        task = asyncio.create_task(sender.run())
        try:
            await fake.wait_for(all_done(), timeout=10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    assert "duplicate post is possible" in caplog.text
    await row.refresh_from_db()
    await ticket.refresh_from_db()
    assert row.status == OutboxStatus.SENT and row.attempts == 2
    assert len(sends(fake)) == 1 and ticket.card_message_id == sends(fake)[0]["message_id"]


async def test_run_wakes_up_for_new_rows(db: str, fake: FakeTelegram, bot: Bot) -> None:
    sender = make_sender(bot, poll_interval=30)  # only wake() can make it look again in time
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.1)
        await add_row("notice", {"method": "sendMessage", "params": {"text": "now"}})
        sender.wake()
        await fake.wait_for(lambda: sends(fake), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
