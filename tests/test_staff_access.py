"""The staff side through the real process (`python -m bot run` against Dovecot, aiosmtpd and the fake
Bot API): access follows the staff chat's membership at once, a staff reply that cannot be sent is
answered with the reason, every button press is answered (malformed ones with "кнопка устарела"), and
invisible or bidi control characters from email never reach a card."""

from __future__ import annotations

import asyncio
import contextlib
import random
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from models.store import db as database
from models.tables import Decision, EmailOutbox, Ticket, TicketStatus
from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_crash import ACCEPT, buttons, cards_in_chat, crash_env, prepare, request_mail, until

NEWCOMER = 5002
STALE_RU = "Кнопка устарела"


@dataclass
class Running:
    process: BridgeProcess
    telegram: FakeTelegram
    smtp: SmtpCapture
    cards: dict[int, dict[str, Any]]

    async def answer(self, query_id: str) -> dict[str, Any]:
        await until(lambda: query_id in self.telegram.callback_answers(), 30, f"the answer to {query_id}",
                    self.process, self.telegram)
        return self.telegram.callback_answers()[query_id]

    async def bot_message_after(self, message_id: int, what: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for m in self.telegram.messages(STAFF_CHAT_ID):
                if m["message_id"] > message_id and m["from"]["id"] == self.telegram.bot_id:
                    return m
            return None

        await until(lambda: find() is not None, 30, what, self.process, self.telegram)
        found = find()
        assert found is not None
        return found

    def accept_data(self, ticket: int) -> str:
        return next(d for d in buttons(cards_in_chat(self.telegram)[ticket]) if ACCEPT.match(d))


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp: SmtpCapture, telegram: FakeTelegram,
    mails: list[bytes], **extra: str,
) -> AsyncIterator[Running]:
    """The bridge running with `mails` delivered and their cards posted; stopped cleanly afterwards."""
    env = crash_env(database_url, mailbox, smtp, telegram, **extra)
    await prepare(tmp_path, env, clients=4)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        for raw in mails:
            await asyncio.to_thread(mailbox.append, raw)
        await until(lambda: len(cards_in_chat(telegram)) >= len(mails), 60, "the cards", process, telegram)
        yield Running(process, telegram, smtp, cards_in_chat(telegram))
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]


def clean_requests(count: int) -> list[bytes]:
    """Requests from registered clients that raise no finding (Accept needs no confirmation)."""
    rng = random.Random(16)
    return [request_mail(n, f"office{n}@firm{n}.ru", rng)[0] for n in range(count)]


@contextlib.asynccontextmanager
async def database_of(url: str) -> AsyncIterator[None]:
    await database.init_db(url)
    try:
        yield
    finally:
        await database.close_db()


# ------------------------------------------------------------------------ access follows membership


async def test_a_leaver_is_refused_at_once_and_a_newcomer_can_act_at_once(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    telegram.add_user(NEWCOMER, "Ольга", username="olga_support")
    async with running(tmp_path, database_url, mailbox, smtp_server, telegram, clean_requests(2)) as desk:
        first, second = sorted(desk.cards)
        # Both are known to the bot: the member acted (cached as staff), the newcomer was turned away
        # before joining (cached as a stranger). Each cache entry would last STAFF_CACHE_SECONDS (300 s).
        sent = telegram.send_user_message(STAFF_CHAT_ID, STAFF_USER_ID, "/queue")
        await desk.bot_message_after(sent["message_id"], "the answer to /queue")
        early = telegram.press_button(STAFF_CHAT_ID, desk.cards[second]["message_id"], NEWCOMER,
                                      desk.accept_data(second))
        assert (await desk.answer(early))["show_alert"]

        # The member leaves, the newcomer joins (Telegram sends chat_member updates to the admin bot),
        # and each presses Accept right away.
        telegram.set_member_status(STAFF_CHAT_ID, STAFF_USER_ID, "left", notify=True)
        telegram.set_member_status(STAFF_CHAT_ID, NEWCOMER, "member", notify=True)
        leaver = telegram.press_button(STAFF_CHAT_ID, desk.cards[first]["message_id"], STAFF_USER_ID,
                                       desk.accept_data(first))
        newcomer = telegram.press_button(STAFF_CHAT_ID, desk.cards[second]["message_id"], NEWCOMER,
                                         desk.accept_data(second))
        refused = await desk.answer(leaver)
        assert refused["show_alert"] and refused["text"].startswith("Нет доступа"), refused
        accepted = await desk.answer(newcomer)
        assert accepted["text"].startswith("Принято"), accepted
        await smtp_server.wait_for_count(1, timeout=60)
    assert "chat_member" in telegram._allowed_updates
    async with database_of(database_url):
        tickets = {t.id: t for t in await Ticket.all()}
        assert tickets[first].status == TicketStatus.NEW
        assert not await EmailOutbox.filter(ticket_id=first).exists()
        assert not await Decision.filter(ticket_id=first).exists()
        assert tickets[second].status == TicketStatus.ACCEPTED
    assert len(smtp_server.messages) == 1


async def test_the_leave_service_message_alone_revokes_access(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    """The second signal: a leave seen only as the group's service message (the chat_member update was
    lost) still revokes at once."""
    async with running(tmp_path, database_url, mailbox, smtp_server, telegram, clean_requests(1)) as desk:
        (ticket,) = desk.cards
        sent = telegram.send_user_message(STAFF_CHAT_ID, STAFF_USER_ID, "/queue")
        await desk.bot_message_after(sent["message_id"], "the answer to /queue")
        telegram.set_member_status(STAFF_CHAT_ID, STAFF_USER_ID, "left", notify=False)
        telegram.member_service_message(STAFF_CHAT_ID, STAFF_USER_ID, joined=False)
        query = telegram.press_button(STAFF_CHAT_ID, desk.cards[ticket]["message_id"], STAFF_USER_ID,
                                      desk.accept_data(ticket))
        refused = await desk.answer(query)
        assert refused["show_alert"] and refused["text"].startswith("Нет доступа"), refused
    async with database_of(database_url):
        assert (await Ticket.get(id=ticket)).status == TicketStatus.NEW
        assert not await EmailOutbox.filter(ticket_id=ticket).exists()


# ------------------------------------------------------------------------------------- never silent


def raw_mail(sender: str, name: str, subject: str, body: str,
             attachment: tuple[str, bytes] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if sender.isascii() else "placeholder@example.org"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    raw = bytes(msg)
    if not sender.isascii():  # an internationalised local part, raw UTF-8 as SMTPUTF8 mail carries it
        raw = raw.replace(b"placeholder@example.org", f"{sender}".encode())
    return raw


def answer_to(telegram: FakeTelegram, message_id: int) -> str | None:
    """The text of the bot's reply to staff message `message_id`, if any."""
    for m in telegram.messages(STAFF_CHAT_ID):
        if m["from"]["id"] == telegram.bot_id and (m.get("reply_to_message") or {}).get("message_id") == message_id:
            return str(m.get("text") or "")
    return None


async def test_a_staff_reply_that_cannot_be_sent_is_answered_with_the_reason(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    mails = [
        raw_mail("иван@ромашка.рф", "Иван", "Не работает касса",
                 "Здравствуйте! Касса не печатает чеки со вчерашнего дня, помогите, пожалуйста."),
        clean_requests(2)[1],
    ]
    async with running(tmp_path, database_url, mailbox, smtp_server, telegram, mails) as desk:
        by_sender = {("иван@" in c["text"]): n for n, c in desk.cards.items()}
        unusable, normal = by_sender[True], by_sender[False]
        card = {n: desk.cards[n]["message_id"] for n in desk.cards}
        staff_messages = {
            # The composer refuses a non-ASCII local part (we do not speak SMTPUTF8): before, a traceback.
            "адрес клиента «иван@ромашка.рф» не годится": telegram.send_user_message(
                STAFF_CHAT_ID, STAFF_USER_ID, "Проверили, всё исправлено.", reply_to_message_id=card[unusable]),
            "Стикер не отправить письмом": telegram.send_user_sticker(
                STAFF_CHAT_ID, STAFF_USER_ID, reply_to_message_id=card[normal]),
            "Голосовое сообщение не отправить письмом": telegram.send_user_voice(
                STAFF_CHAT_ID, STAFF_USER_ID, caption="Послушайте", reply_to_message_id=card[normal]),
        }
        for reason, sent in staff_messages.items():
            await until(lambda sent=sent: answer_to(telegram, sent["message_id"]) is not None, 30,
                        f"an answer saying: {reason}", desk.process, telegram)
            text = answer_to(telegram, sent["message_id"]) or ""
            assert text.startswith("Письмо не отправлено: ") and reason in text, text
    log = desk.process.output()
    assert "Traceback" not in log, log[-3000:]
    assert smtp_server.messages == []
    async with database_of(database_url):
        for ticket in (unusable, normal):
            assert (await Ticket.get(id=ticket)).status == TicketStatus.NEW  # nothing says "answered"
            assert not await Decision.filter(ticket_id=ticket, action="replied").exists()
        assert not await EmailOutbox.all().exists()


MALFORMED = [
    "tk:a:99999999999999999999",  # 20 digits: OverflowError on SQLite, out of range on PostgreSQL
    "tk:t:99999999999999999999",
    "rf:p:99999999999999999999:duplicate",
    "tk:a:2147483648",  # one past the integer column
    "tk:a:0",
    "tk:a:-7",
    "tk:a: 1",
    "tk:a:1.0",
    "tk:zz:1",  # unknown action
    "tk:a",  # a field missing
    "tk:a:1:2",  # one too many
    "rf:p:1:no_such_reason",
    "zz:1",  # unknown prefix
    "garbage",
]


async def test_malformed_buttons_from_a_member_are_answered_stale_and_log_no_traceback(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    async with running(tmp_path, database_url, mailbox, smtp_server, telegram, clean_requests(1)) as desk:
        (ticket,) = desk.cards
        queries = {
            data: telegram.press_button(STAFF_CHAT_ID, desk.cards[ticket]["message_id"], STAFF_USER_ID, data,
                                        check_markup=False)
            for data in MALFORMED
        }
        with contextlib.suppress(AssertionError):  # the assertion below names what is missing
            await until(lambda: set(queries.values()) <= set(telegram.callback_answers()), 30,
                        "every press answered", desk.process, telegram)
        answers = telegram.callback_answers()
        texts = {data: (answers.get(query) or {}).get("text") for data, query in queries.items()}
        assert texts == dict.fromkeys(MALFORMED, STALE_RU)
        # Still a working desk: the real button does what it says.
        accepted = await desk.answer(telegram.press_button(
            STAFF_CHAT_ID, desk.cards[ticket]["message_id"], STAFF_USER_ID, desk.accept_data(ticket)))
        assert accepted["text"].startswith("Принято"), accepted
    log = desk.process.output()
    assert "Traceback" not in log and "OverflowError" not in log and " ERROR " not in log, log[-3000:]


# -------------------------------------------------------------------------------- invisible characters

HOSTILE = "\u202e\u200b\u200d\u061c\u2066\u2069\ufeff\u00ad"


def no_format_characters(text: str, allowed: str = "") -> bool:
    return not [c for c in text if unicodedata.category(c) == "Cf" and c not in allowed]


async def test_bidi_and_invisible_characters_from_email_never_reach_the_card(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    mail = raw_mail(
        "office1@firm1.ru",
        "Ива\u202eн Пе\u200bтров\u061c",
        "Счёт\u200d на оплату \u202egpj.exe\u2066 срочно\ufeff",
        "Здравствуйте!\u200b Пришлите сче\u00adт, пожалуйста.\u202e Спасибо. 👩\u200d💻",
        attachment=("invoice\u202egpj.exe", b"%PDF-1.4 test"),
    )
    async with running(tmp_path, database_url, mailbox, smtp_server, telegram, [mail]) as desk:
        (ticket,) = desk.cards
        text = desk.cards[ticket]["text"]
    assert "Иван Петров" in text and "Счёт на оплату gpj.exe срочно" in text, text
    assert "invoicegpj.exe" in text and "Пришлите счет, пожалуйста." in text, text
    assert no_format_characters(text, allowed="\u200d"), [hex(ord(c)) for c in text if c in HOSTILE]
    # The one ZWJ kept joins two emoji (👩‍💻, "woman technologist"); the one in the subject is gone.
    assert text.count("\u200d") == 1 and "👩\u200d💻" in text
