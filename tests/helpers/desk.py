"""`Desk`: the staff chat end to end, for tests.

A real FakeTelegram server with a staff supergroup, a real aiogram Bot and Dispatcher polling it, the
real TelegramSender delivering outbox rows (rate limited), and the real use cases (`desk`, `ingest`,
`processor`: policy, calendar, TemplateMailer, TelegramBoard, parser) on the test database. Emails are read from EmailOutbox rows;
the SMTP side is tested elsewhere.

    async with Desk.open(language="ru") as desk:
        ticket = await desk.deliver(raw_bytes)
        card = await desk.card(ticket.id)
        query = desk.press(card["message_id"], desk.ALICE, TicketAction(op=Op.ACCEPT, ticket_id=ticket.id))
        answer = await desk.answer(query)
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import hashlib
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters.callback_data import CallbackData
from tortoise.transactions import in_transaction

from bot.board import BoardConfig, TelegramBoard
from bot.handlers import StaffDirectory, build_router, set_commands
from bot.notifications import EmailNotifier
from bot.ratelimit import RateLimiter
from bot.telegram_outbox import TelegramSender
from mail.drafts import MailerRecipe, compose_draft
from mail.parse import parse_message
from mail.processor import MailProcessor
from models.calendar import BusinessCalendar
from models.deps import Services, UseCaseConfig
from models.desk import Desk as StaffDesk
from models.effects import ACK_EVENT, Effects
from models.ingest import Ingest
from models.policy import PolicyConfig, PolicyEngine, TortoisePolicyRepository
from models.store.raw_store import store_contents
from models.tables import EmailOutbox, OutboxStatus, RawMail, TelegramOutbox, Ticket
from tests.rig.fake_telegram import FakeTelegram

STAFF_CHAT = -1001234567890
SUPPORT = "support@storeolis.ru"


def make_email(
    *,
    sender: str = "ivan@romashka.ru",
    name: str = "Иван Петров",
    subject: str = "Не работает выгрузка заказов",
    body: str = "Здравствуйте! Со вчерашнего дня в личном кабинете не открывается раздел заказов, "
    "страница выдаёт ошибку 502. Проверьте, пожалуйста.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    date: datetime | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=sender.split("@", 1)[1])
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    msg.set_content(body)
    for filename, ctype, content in attachments:
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


def email_text(row: EmailOutbox) -> str:
    """The plain-text part of a queued email (what the client reads)."""
    msg = email.message_from_bytes(bytes(row.content), policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


def email_attachments(row: EmailOutbox) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(bytes(row.content), policy=email.policy.default)
    return [(part.get_filename() or "", part.get_content()) for part in msg.iter_attachments()]  # type: ignore[attr-defined]


class Desk:
    ALICE = 1001  # staff
    BOB = 1002  # staff
    MALLORY = 6666  # not in the staff chat

    def __init__(
        self, fake: FakeTelegram, *, language: str, grace: timedelta, acknowledge: bool = True, ack_max_per_hour: int = 5
    ) -> None:
        self.fake = fake
        self.language = language
        self.chat_id = STAFF_CHAT
        self._uids = itertools.count(1)
        fake.add_group(STAFF_CHAT, "Storeolis support", [self.ALICE, self.BOB])
        fake.add_user(self.ALICE, "Алиса", "alice")
        fake.add_user(self.BOB, "Борис", "bob")
        fake.add_user(self.MALLORY, "Mallory", "mallory")
        self.bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url), timeout=10))
        self.calendar = BusinessCalendar()
        self.board = TelegramBoard(
            BoardConfig(staff_chat_id=STAFF_CHAT, language=language, refusal_grace=grace), calendar=self.calendar
        )
        self.sender = TelegramSender(
            self.bot,
            limiter=RateLimiter(time_scale=0.02),
            staff_chat_id=STAFF_CHAT,
            language=language,
            poll_interval=0.2,
            card_wait=0.2,
            backoff_base=0.1,
            backoff_max=1.0,
            digest_threshold=10_000,
            render=self.board.render_deferred,
        )
        self.recipe = MailerRecipe(from_address=SUPPORT, from_name="Storeolis")
        config = UseCaseConfig(staff_chat_id=STAFF_CHAT, language=language, refusal_grace=grace,
                               acknowledge_requests=acknowledge, ack_max_per_hour=ack_max_per_hour)
        services = Services(
            policy=PolicyEngine(PolicyConfig(), TortoisePolicyRepository()),
            calendar=self.calendar,
            mailer=self.recipe.build(),
            parser=functools.partial(parse_message),
        )
        self.effects = Effects(config, mailer=services.mailer, on_post_queued=self.sender.wake)
        self.ingest = Ingest(config, services, self.effects)
        self.processor = MailProcessor(self.ingest, services.parser, on_done=self.effects.wake)
        self.desk = StaffDesk(config, services, self.effects, offload_parse=self.processor.offload_parse)
        self.notifier = EmailNotifier(self.effects)
        self.directory = StaffDirectory(STAFF_CHAT, language=language, cache_seconds=300)
        self.dispatcher = Dispatcher(desk=self.desk, board=self.board)
        self.dispatcher.include_router(build_router(directory=self.directory))
        self._tasks: list[asyncio.Task[Any]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, *, language: str = "ru", grace: timedelta = timedelta(seconds=30), acknowledge: bool = True,
        ack_max_per_hour: int = 5,
    ) -> AsyncIterator[Desk]:
        async with FakeTelegram() as fake:
            desk = cls(fake, language=language, grace=grace, acknowledge=acknowledge, ack_max_per_hour=ack_max_per_hour)
            await set_commands(desk.bot, language, STAFF_CHAT)
            desk._tasks = [
                asyncio.create_task(desk.dispatcher.start_polling(desk.bot, handle_signals=False, polling_timeout=1)),
                asyncio.create_task(desk.sender.run()),
            ]
            try:
                yield desk
            finally:
                with contextlib.suppress(RuntimeError):
                    await desk.dispatcher.stop_polling()
                for task in desk._tasks:
                    task.cancel()
                for task in desk._tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await desk.bot.session.close()

    # Mail in ---------------------------------------------------------------------------------------
    async def deliver(self, raw: bytes, internal_date: datetime | None = None) -> Ticket | None:
        """Store a raw email as intake would, process it; the ticket it created or joined."""
        uid = next(self._uids)
        row = await store_raw_mail(
            raw,
            mailbox="INBOX",
            uidvalidity=1,
            uid=uid,
            internal_date=internal_date or datetime.now(UTC) - timedelta(minutes=30) + timedelta(seconds=uid),
            sha256=hashlib.sha256(raw + str(uid).encode()).hexdigest(),
            size=len(raw),
        )
        await self.processor.process_stored()
        message = await row.messages.all().first()
        return await Ticket.get(id=message.ticket_id) if message else None

    # Telegram side ---------------------------------------------------------------------------------
    async def card(self, ticket_id: int, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        async def posted() -> int | None:
            ticket = await Ticket.get(id=ticket_id)
            return ticket.card_message_id

        message_id = await self.fake.wait_for(posted, timeout)
        return self.fake.message(STAFF_CHAT, message_id)

    async def settled(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Wait until every Telegram outbox row is delivered (or given up)."""

        async def idle() -> bool:
            return not await TelegramOutbox.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]).exists()

        self.sender.wake()
        await self.fake.wait_for(idle, timeout)

    async def card_text(self, ticket_id: int) -> str:
        """The card's visible text once every queued edit is applied."""
        await self.settled()
        return (await self.card(ticket_id))["text"]

    def press(self, message_id: int, user_id: int, data: CallbackData | str, check_markup: bool = True) -> str:
        packed = data if isinstance(data, str) else data.pack()
        return self.fake.press_button(STAFF_CHAT, message_id, user_id, packed, check_markup=check_markup)

    async def answer(self, query_id: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The answer to a press, once what the press queued (a keyboard, a prompt) is posted: the handler
        posts through the outbox, and the answer comes before the sender has delivered it."""
        answer = await self.fake.wait_for(lambda: self.fake.callback_answers().get(query_id), timeout)
        await self.settled()
        return answer

    def buttons(self, message_id: int) -> list[dict[str, str]]:
        markup = self.fake.message(STAFF_CHAT, message_id).get("reply_markup") or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]

    def say(self, user_id: int, text: str, reply_to: int | None = None) -> dict[str, Any]:
        return self.fake.send_user_message(STAFF_CHAT, user_id, text, reply_to_message_id=reply_to)

    async def bot_reply_after(self, message_id: int, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The bot's first message in the staff chat after `message_id`."""

        def find() -> dict[str, Any] | None:
            for m in self.fake.messages(STAFF_CHAT):
                if m["message_id"] > message_id and m["from"]["id"] == self.fake.bot_id:
                    return m
            return None

        return await self.fake.wait_for(find, timeout)

    async def emails(self, ticket_id: int, event: str | None = None, *, with_ack: bool = False) -> list[EmailOutbox]:
        """The ticket's emails of `event`, or of every staff decision: the acknowledgement every new request
        gets on arrival (tests/test_acknowledgement.py) only when asked by name or `with_ack`."""
        rows = EmailOutbox.filter(ticket_id=ticket_id)
        if event is not None:
            rows = rows.filter(event=event)
        elif not with_ack:
            rows = rows.exclude(event=ACK_EVENT)
        found = await rows.order_by("id")
        for row in found:
            if not row.content and row.draft:
                # A draft (the acknowledgement) is composed by the email sender when it is sent: shown here
                # as that composition makes it, under the Message-ID it was queued with.
                row.content = compose_draft(self.recipe, row.draft, row.message_id).content
        return found


async def store_raw_mail(content: bytes, **fields: Any) -> RawMail:
    """A RawMail row and its bytes (RawMailContent), committed together as intake stores them."""
    async with in_transaction() as conn:
        row = await RawMail.create(using_db=conn, **fields)
        await store_contents(conn, [(row.id, content)])
    return row
