"""Effect queueing shared by the use cases: emails and staff-chat posts become outbox rows, written in
the caller's transaction (the outbox workers deliver them later, exactly once), and the workers are
woken once the transaction is committed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models.clock import utcnow
from models.deps import UseCaseConfig
from models.intents import CardChanged, Postable, StaffNotice
from models.ports import EmailDraft, Mailer, ThreadInfo
from models.post_queue import queue_post
from models.search import SearchDoc, index_messages
from models.store.fast_rows import RowInserter
from models.store.sql import for_dialect, marks
from models.tables import (
    Client,
    Decision,
    EmailOutbox,
    KeyValue,
    Message,
    MessageDirection,
    StaffMember,
    TelegramOutbox,
    Ticket,
)

ACK_EVENT = "acknowledged"
_EMAILS = RowInserter(EmailOutbox)
_MESSAGES = RowInserter(Message)
_NO_REPLY_LOCALS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply")


@dataclass(frozen=True)
class Acknowledgement:
    """A new request to acknowledge (clause 2.3), from what ingest has at hand: no query per request."""

    ticket_id: int
    to_address: str
    to_name: str
    client_name: str
    subject: str
    language: str
    message_id: str | None  # the client's request: the acknowledgement answers it
    references: Sequence[str]
    due_at: datetime | None  # the ticket's sla_due_at (UTC)
    faq_links: Sequence[dict[str, str]] = ()


class Effects:
    def __init__(
        self,
        config: UseCaseConfig,
        *,
        mailer: Mailer,
        clock: Callable[[], datetime] = utcnow,
        on_email_queued: Callable[[], None] = lambda: None,
        on_post_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.mailer = mailer
        self.clock = clock
        self.on_email_queued = on_email_queued
        self.on_post_queued = on_post_queued

    def mail_allowed(self, ticket: Ticket) -> bool:
        """Never an email to our own address or to nobody (loops, RFC 3834)."""
        return self.address_allowed(ticket.sender_address)

    def address_allowed(self, address: str | None) -> bool:
        address = (address or "").lower()
        if not address or "@" not in address:
            return False
        if address in self.config.company_addresses or address == self.config.support_address:
            return False
        local = address.split("@", 1)[0]
        return local not in _NO_REPLY_LOCALS

    async def thread_info(self, ticket: Ticket) -> ThreadInfo:
        messages = await Message.filter(ticket_id=ticket.id).exclude(direction=MessageDirection.NOTE).order_by("id")
        ids = [m.message_id for m in messages if m.message_id]
        last_in = next(
            (m for m in reversed(messages) if m.direction == MessageDirection.INBOUND and m.message_id), None
        )
        client_name = ""
        if ticket.client_id:
            client = await Client.get_or_none(id=ticket.client_id)
            client_name = client.name if client else ""
        return ThreadInfo(
            ticket_id=ticket.id,
            to_address=ticket.sender_address,
            to_name=ticket.sender_name,
            original_subject=ticket.subject,
            in_reply_to=last_in.message_id if last_in else None,
            references=ids[-20:],
            language=ticket.language,
            client_name=client_name or ticket.sender_name,
        )

    async def queue_email(
        self,
        ticket: Ticket,
        event: str,
        context: dict[str, Any],
        key: str,
        *,
        staff: StaffMember | None = None,
        not_before: datetime | None = None,
        auto_submitted: bool = True,
        attachments: list[tuple[str, str, bytes]] | None = None,
        search_text: str | None = None,
    ) -> EmailOutbox | None:
        """The email of `event` as an outbox row and its Message; `search_text`: what the search finds the
        message by (a staff reply: the staff's own words, not the template around them)."""
        if not self.mail_allowed(ticket):
            await Decision.create(ticket_id=ticket.id, action="email_skipped", details={"event": event})
            return None
        thread = await self.thread_info(ticket)
        composed = self.mailer.compose(
            event,
            thread,
            context,
            auto_submitted=auto_submitted,
            attachments=attachments,
            staff_name=staff.name if staff else "",
        )
        row = await EmailOutbox.create(
            idempotency_key=key,
            ticket_id=ticket.id,
            event=event,
            message_id=composed.message_id,
            recipients=composed.recipients,
            content=composed.content,
            not_before=not_before or self.clock(),
        )
        message = await Message.create(
            ticket_id=ticket.id,
            direction=MessageDirection.OUTBOUND,
            kind=event,
            message_id=composed.message_id,
            in_reply_to=thread.in_reply_to,
            references=" ".join(thread.references),
            from_address=self.config.support_address,
            to=thread.to_address,
            subject=composed.subject[:1000],
            text=composed.text,
            new_text=composed.text,
            size=len(composed.content),
            attachments=[{"filename": a[0], "content_type": a[1], "size": len(a[2])} for a in attachments or []],
            staff_id=staff.id if staff else None,
        )
        if search_text is not None:
            await index_messages([SearchDoc(message.id, ticket.id, (search_text,))])
        return row

    async def queue_acknowledgements(self, conn: BaseDBAsyncClient, acks: Sequence[Acknowledgement]) -> int:
        """Inside the ingest transaction of new requests (in arrival order): one "registered" email per
        ticket (key `ack:<ticket>`), threaded to the client's request, with its outbound Message so later
        emails carry it in References. At most `ack_max_per_hour` per address in a rolling hour, counting
        the ones already queued and those earlier in `acks` (a group of 64 from one sender gets 5).
        Returns how many were queued; the caller wakes the email sender after its commit."""
        if not self.config.acknowledge_requests:
            return 0
        wanted = [a for a in acks if self.address_allowed(a.to_address)]
        if not wanted:
            return 0
        now = self.clock()
        sent = await self._recent_acks(conn, {a.to_address.lower() for a in wanted}, now - timedelta(hours=1))
        emails: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for ack in wanted:
            address = ack.to_address.lower()
            if sent[address] >= self.config.ack_max_per_hour:
                continue  # a flood or a loop: the request is registered all the same, only not told twice
            sent[address] += 1
            email, message = self._acknowledgement_rows(ack, now)
            emails.append(email)
            messages.append(message)
        await _EMAILS.insert_many(conn, emails)
        await _MESSAGES.insert_many(conn, messages)
        return len(emails)

    async def _recent_acks(self, conn: BaseDBAsyncClient, addresses: set[str], since: datetime) -> Counter[str]:
        """Acknowledgements queued since `since`, per address: one statement for the whole group, through
        the ticket's sender_address index and the unique idempotency key."""
        if not addresses:
            return Counter()
        sql = (
            "SELECT t.sender_address, COUNT(*) FROM ticket t JOIN email_outbox e ON e.idempotency_key = "
            f"'ack:' || CAST(t.id AS TEXT) WHERE t.sender_address IN ({marks(len(addresses))})"
            " AND e.created_at >= ? GROUP BY t.sender_address"
        )
        since_db = EmailOutbox._meta.fields_map["created_at"].to_db_value(since, None)
        _, rows = await conn.execute_query(for_dialect(sql, conn), [*sorted(addresses), since_db])
        return Counter({str(r[0]).lower(): int(r[1]) for r in rows})

    def _acknowledgement_rows(self, ack: Acknowledgement, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        thread = ThreadInfo(
            ticket_id=ack.ticket_id, to_address=ack.to_address, to_name=ack.to_name,
            original_subject=ack.subject, in_reply_to=ack.message_id, references=list(ack.references),
            language=ack.language, client_name=ack.client_name,
        )
        zone = ZoneInfo(self.config.timezone)
        deadline = ack.due_at.astimezone(zone).strftime("%d.%m.%Y %H:%M") if ack.due_at else ""
        context = {"deadline": deadline, "timezone": self.config.timezone,
                   "faq_links": [dict(link) for link in ack.faq_links]}
        # A draft, not the email: composing it here cost 6.7 ms of this process's CPU per request inside
        # the ingest transaction (a 5,000-mail backlog took twice as long). The sender composes it, in a
        # parse worker, and fills in the Message's subject and text then (mail/drafts.py). Its Message-ID
        # is given now, so a reply to it and the later emails' References find it from the start.
        draft = EmailDraft(ACK_EVENT, thread, context, auto_submitted=True)
        message_id = self.mailer.new_message_id()
        email = dict(
            idempotency_key=f"ack:{ack.ticket_id}", ticket_id=ack.ticket_id, event=ACK_EVENT,
            message_id=message_id, recipients=[ack.to_address], content=b"", draft=draft.to_json(),
            not_before=now, created_at=now,
        )
        message = dict(
            ticket_id=ack.ticket_id, direction=MessageDirection.OUTBOUND, kind=ACK_EVENT,
            message_id=message_id, in_reply_to=ack.message_id, references=" ".join(ack.references)[:20000],
            from_address=self.config.support_address, to=ack.to_address, subject="", text="", new_text="",
            size=0, attachments=[],
        )
        return email, message

    async def queue_card_update(self, ticket_id: int, key: str) -> None:
        """The card is shown again when the edit is delivered: nothing is rendered here."""
        await self.queue_post(CardChanged(ticket_id), f"edit:{key}")

    async def queue_notice(
        self, event: str, facts: dict[str, Any], key: str, *, ticket_id: int | None = None, chat_id: int | None = None
    ) -> TelegramOutbox:
        """A staff notice in the caller's transaction: to the staff chat (as a reply to the ticket's card),
        or to `chat_id` (a colleague's private chat, where the card does not live)."""
        elsewhere = chat_id is not None and chat_id != self.config.staff_chat_id
        notice = StaffNotice(event, facts, ticket_id=ticket_id, reply_to_card=not elsewhere)
        return await self.queue_post(notice, key, chat_id=chat_id)

    async def queue_post(self, post: Postable, key: str, *, chat_id: int | None = None) -> TelegramOutbox:
        """A staff-chat post in the caller's transaction; to the staff chat unless `chat_id` says."""
        chat = self.config.staff_chat_id if chat_id is None else chat_id
        return await queue_post(post, key, chat_id=chat, not_before=self.clock())

    async def post(
        self, post: Postable, key: str, *, chat_id: int | None = None, remember: dict[str, Any] | None = None
    ) -> TelegramOutbox:
        """Queue a staff-chat post outside a decision (notices, answers); idempotent by key. `remember`:
        state kept under the same key, written with the row (a prompt's pending refusal: the reply to the
        posted message finds it by the message id the outbox records)."""
        if remember is None:
            row = await self.queue_post(post, key, chat_id=chat_id)
        else:
            async with in_transaction():
                row = await self.queue_post(post, key, chat_id=chat_id)
                await KeyValue.update_or_create(key=key, defaults={"value": remember})
        self.on_post_queued()
        return row

    def wake(self) -> None:
        self.on_email_queued()
        self.on_post_queued()
