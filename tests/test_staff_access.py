"""The staff side through the real process (`python -m bot run` against Dovecot, aiosmtpd and the fake
Bot API): access follows the staff chat's membership at once, a staff reply that cannot be sent is
answered with the reason, every button press is answered (malformed ones with "кнопка устарела"), and
invisible or bidi control characters from email never reach a card."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import db as database
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
