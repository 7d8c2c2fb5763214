"""Effect queueing shared by the use cases: emails and staff-chat posts become outbox rows, written in
the caller's transaction (the outbox workers deliver them later, exactly once), and the workers are
woken once the transaction is committed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.clock import utcnow
from models.deps import UseCaseConfig
from models.intents import CardChanged, Postable
from models.ports import Mailer, ThreadInfo
from models.post_queue import queue_post
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
        address = (ticket.sender_address or "").lower()
        if not address or "@" not in address:
            return False
        if address in self.config.company_addresses or address == self.config.support_address:
            return False
        local = address.split("@", 1)[0]
        return local not in ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply")

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
    ) -> EmailOutbox | None:
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
        await Message.create(
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
        return row

    async def queue_card_update(self, ticket_id: int, key: str) -> None:
        """The card is shown again when the edit is delivered: nothing is rendered here."""
        await self.queue_post(CardChanged(ticket_id), f"edit:{key}")

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
