"""Telling staff what happened to the emails they caused.

`mail/send.py` reports every delivery attempt as a `DeliveryEvent`; `EmailNotifier.on_email_event`
turns it into staff-chat posts (outbox rows, idempotent by key), written inside the sender's transaction
that records the outcome (the sender wakes the Telegram outbox once it committed):
* a staff reply handed to the SMTP server -> "✉️ Email sent (#N)" as a reply to the card;
* any email that failed for good -> an error notice and a card update (the card shows the failure);
* "retrying" -> nothing (the sender retries with backoff; only the final outcome is news).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from models.desk import REFUSAL_EVENTS
from models.effects import Effects
from models.intents import CardChanged, PostFailed, StaffNotice
from models.tables import TelegramOutbox, Ticket

log = logging.getLogger(__name__)


class DeliveryEventLike(Protocol):
    """The attributes of mail.send.DeliveryEvent this module reads."""

    outbox_id: int
    ticket_id: int | None
    event: str
    outcome: Any  # "sent" | "failed" | "retrying"
    error: str | None
    ambiguous: bool


class EmailNotifier:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def on_email_event(self, event: DeliveryEventLike) -> None:
        outcome = str(getattr(event.outcome, "value", event.outcome))
        ticket_id = event.ticket_id
        if ticket_id is not None and not await Ticket.exists(id=ticket_id):
            ticket_id = None
        if outcome == "sent" and event.event == "staff_reply":
            post = StaffNotice("email_sent", {"ticket_id": ticket_id}, ticket_id=ticket_id)
            await self.effects.queue_post(post, f"email_sent:{event.outbox_id}")
        elif outcome == "sent" and event.event in REFUSAL_EVENTS.values() and ticket_id is not None:
            # The refusal left: its grace period is over, so the card loses its "undo" button.
            await self.effects.queue_post(CardChanged(ticket_id), f"edit:email_sent:{event.outbox_id}")
        elif outcome == "failed":
            facts = {"ticket_id": ticket_id, "error": event.error or "", "event": event.event}
            await self.effects.queue_post(StaffNotice("email_failed", facts, ticket_id=ticket_id),
                                    f"email_failed:{event.outbox_id}")
            if ticket_id is not None:
                await self.effects.queue_post(CardChanged(ticket_id), f"edit:email_failed:{event.outbox_id}")
            log.warning("email %s (%s) failed: %s", event.outbox_id, event.event, event.error)


class TelegramFailureHandler:
    """`TelegramSender(on_failed=...)`: a staff-chat post failed for good. Tell staff, in plain text
    (whatever broke the post cannot break this one), unless the failed post was such a warning. Runs in
    the sender's transaction that marks the row FAILED."""

    def __init__(self, effects: Effects, *, staff_chat_id: int | None = None) -> None:
        self.effects = effects
        self.staff_chat_id = staff_chat_id if staff_chat_id is not None else effects.config.staff_chat_id

    async def on_failed(self, row: TelegramOutbox, reason: str) -> None:
        if row.kind == "post_failed" or row.idempotency_key.startswith("post_failed:"):
            return
        post = PostFailed(row.kind, reason[:500], row.ticket_id or None)
        await self.effects.queue_post(post, f"post_failed:{row.id}", chat_id=self.staff_chat_id)
