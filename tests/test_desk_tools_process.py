"""The desk tools through the real bridge (`python -m bot run`, Dovecot, aiosmtpd, the fake Bot API), driven
by Telegram updates as staff would (issue 20): take, assign with a direct message, a follow-up reaching the
assignee, unassign; a saved reply with variables reaching the client in the ticket's thread; merge, with a
later mail in the merged ticket's thread landing on the target; nothing for a non-member."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from models.tables import Decision, Message, StaffMember, Ticket, TicketStatus
from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_decisions_process import ZONE, answered, card_of, prepared, reply_after
from tests.test_process import button_data

BORIS = 5002
MALLORY = 6666


def client_mail(subject: str, body: str, *, in_reply_to: str | None = None) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = "Иван Иванов <ivanov@romashka.ru>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="romashka.ru")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return bytes(msg), str(msg["Message-ID"])


def said(telegram: FakeTelegram, chat_id: int, needle: str) -> dict | None:
    return next((m for m in reversed(telegram.messages(chat_id)) if needle in (m.get("text") or "")), None)


async def staff_says(telegram: FakeTelegram, user_id: int, text: str, needle: str,
                     reply_to: int | None = None) -> dict:
    """A staff message in the chat, and the bot's answer that contains `needle`."""
    sent = telegram.send_user_message(STAFF_CHAT_ID, user_id, text, reply_to_message_id=reply_to)
    return await telegram.wait_for(lambda: reply_after(telegram, sent["message_id"], needle), timeout=30)


async def ticket_of(telegram: FakeTelegram, card_id: int) -> Ticket:
    """The ticket of a card (the outbox records the card's message id just after Telegram answered)."""
    return await telegram.wait_for(lambda: Ticket.get_or_none(card_message_id=card_id), timeout=30)


async def card_now(telegram: FakeTelegram, card_id: int, needle: str, present: bool = True) -> dict:
    def edited() -> dict | None:
        card = telegram.message(STAFF_CHAT_ID, card_id)
        return card if (needle in card["text"]) == present else None

    return await telegram.wait_for(edited, timeout=30)


async def test_take_assign_saved_reply_and_merge_through_the_real_bridge(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=db, mailbox=mailbox, smtp=smtp_server, telegram=telegram, **ZONE)
    await prepared(tmp_path, env, telegram)
    telegram.add_user(MALLORY, "Mallory", username="mallory")
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        raw, first_id = client_mail("Не работает выгрузка заказов", "Ошибка 500 при выгрузке. ООО Ромашка.")
        await asyncio.to_thread(mailbox.append, raw, internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, "Не работает выгрузка заказов"), timeout=60)
        card_id = card["message_id"]
        ticket = await ticket_of(telegram, card_id)

        # Take: the presser holds it, and the card says so.
        take = telegram.press_button(STAFF_CHAT_ID, card_id, STAFF_USER_ID, button_data(card, "Взять"))
        assert (await answered(telegram, take))["text"] == f"Вы взяли #{ticket.id}."
        await card_now(telegram, card_id, "Исполнитель: Анна")

        # Hand over to Борис, who started the bot: he is told in his private chat.
        telegram.send_user_message(BORIS, BORIS, "/start")
        await telegram.wait_for(lambda: said(telegram, BORIS, "Готово"), timeout=30)
        await staff_says(telegram, STAFF_USER_ID, f"/assign {ticket.id} @boris_support", "исполнитель — Борис")
        await card_now(telegram, card_id, "Исполнитель: Борис")
        await telegram.wait_for(lambda: said(telegram, BORIS, f"передал(а) вам обращение #{ticket.id}"), timeout=30)
        # Only current members can be assigned: Mallory was once known (a former colleague), not a member now.
        await StaffMember.create(telegram_id=MALLORY, name="Mallory", username="mallory")
        await staff_says(telegram, STAFF_USER_ID, f"/assign {ticket.id} @mallory", "не состоит в чате")

        # The client writes again: Борис hears it directly.
        raw, _ = client_mail(f"Re: Не работает выгрузка заказов [#{ticket.id}]", "Ошибка всё ещё есть.",
                             in_reply_to=first_id)
        await asyncio.to_thread(mailbox.append, raw, internal_date=datetime.now(UTC))
        await telegram.wait_for(lambda: said(telegram, BORIS, f"снова написал по вашему обращению #{ticket.id}"),
                                timeout=60)
        # Unassign: back to the queue, the card loses the line.
        await staff_says(telegram, STAFF_USER_ID, f"/assign {ticket.id} -", "вернулось в очередь")
        await card_now(telegram, card_id, "Исполнитель", present=False)

        # A saved reply: refused with an unknown variable, saved, then sent from the card with a preview.
        answer = await staff_says(telegram, STAFF_USER_ID, "/savereply reset\nЗдравствуйте, {name}!", "Неизвестные")
        assert "{client}" in answer["text"]
        await staff_says(telegram, STAFF_USER_ID,
                         "/savereply reset\n{contact}, по обращению №{ticket} пароль сброшен. {agent}", "сохранён")
        card = telegram.message(STAFF_CHAT_ID, card_id)
        pick = telegram.press_button(STAFF_CHAT_ID, card_id, STAFF_USER_ID, button_data(card, "Шаблон"))
        await answered(telegram, pick)
        listing = await telegram.wait_for(lambda: reply_after(telegram, card_id, "Выберите шаблон"), timeout=30)
        preview_q = telegram.press_button(STAFF_CHAT_ID, listing["message_id"], STAFF_USER_ID,
                                          button_data(listing, "reset"))
        await answered(telegram, preview_q)
        preview = await telegram.wait_for(lambda: said(telegram, STAFF_CHAT_ID, "Клиент получит"), timeout=30)
        assert f"Иван Иванов, по обращению №{ticket.id} пароль сброшен. Анна" in preview["text"]
        before = len(smtp_server.messages)
        for _ in range(2):  # a double press sends one email
            send = telegram.press_button(STAFF_CHAT_ID, preview["message_id"], STAFF_USER_ID,
                                         button_data(preview, "Отправить"))
            await answered(telegram, send)
        await smtp_server.wait_for_count(before + 1, timeout=60)
        await asyncio.sleep(1.0)
        sent = [m.message for m in smtp_server.messages[before:]]
        assert len(sent) == 1
        body = sent[0].get_body(("plain",)).get_content()
        assert f"Иван Иванов, по обращению №{ticket.id} пароль сброшен. Анна" in body
        assert f"[#{ticket.id}]" in sent[0]["Subject"]
        assert sent[0]["In-Reply-To"]  # threaded to the client's latest message
        replied = await Decision.filter(ticket_id=ticket.id, action="replied").first()
        assert replied is not None and replied.details == {"saved_reply": "reset"}

        # A second request from the same client, merged into the first: no email, later mail lands on #1.
        raw, _ = client_mail("Ещё про выгрузку", "И ещё: выгрузка остатков тоже падает. ООО Ромашка.")
        await asyncio.to_thread(mailbox.append, raw, internal_date=datetime.now(UTC))
        second_card = await telegram.wait_for(lambda: card_of(telegram, "Ещё про выгрузку"), timeout=60)
        second = await ticket_of(telegram, second_card["message_id"])
        emails_before = len(smtp_server.messages)
        await staff_says(telegram, STAFF_USER_ID, f"/merge {second.id} {ticket.id}", "присоединено")
        merged_card = await card_now(telegram, second_card["message_id"], f"Объединено с #{ticket.id}")
        assert not (merged_card.get("reply_markup") or {}).get("inline_keyboard")
        await card_now(telegram, card_id, f"Присоединено обращение #{second.id}")
        assert (await Ticket.get(id=second.id)).status == TicketStatus.MERGED
        raw, _ = client_mail(f"Re: Ещё про выгрузку [#{second.id}]", "Остатки тоже не выгружаются, скрин.")
        await asyncio.to_thread(mailbox.append, raw, internal_date=datetime.now(UTC))

        async def landed() -> bool:
            return await Message.filter(ticket_id=ticket.id, text__contains="Остатки тоже").exists()

        await telegram.wait_for(landed, timeout=60)
        assert len(smtp_server.messages) == emails_before + sum(
            1 for m in smtp_server.messages[emails_before:] if "зарегистрировано" in str(m.message["Subject"])
        )

        # A stranger gets nothing from the new commands.
        outsider = telegram.send_user_message(STAFF_CHAT_ID, MALLORY, "/savereply x\nтекст")
        await asyncio.sleep(1.5)
        assert reply_after(telegram, outsider["message_id"], "") is None
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    output = process.output()
    assert "Traceback" not in output
    assert not re.search(r"\{(client|contact|ticket)\}", body)
