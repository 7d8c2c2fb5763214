"""Who holds a ticket (issue 20): take, assign, unassign, and giving back the tickets of a colleague who left.

Each change is a guarded update of `ticket.assignee_id` with its Decision (the audit), the card edit and,
for a colleague who is handed a ticket, a direct message, all in one transaction. Whether the new holder
is a current member of the staff chat is the caller's check (it needs Telegram); the domain only refuses
tickets that are no longer open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from tortoise.transactions import in_transaction

from models.effects import Effects
from models.metrics_port import events
from models.outcome import Outcome
from models.tables import Decision, StaffMember, Ticket, TicketStatus

log = logging.getLogger(__name__)

# A ticket can change hands while somebody still has work to do on it.
OPEN_STATUSES: tuple[TicketStatus, ...] = (TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.ANSWERED)


def staff_label(staff: StaffMember | None) -> str:
    if staff is None:
        return ""
    return staff.name or (f"@{staff.username}" if staff.username else str(staff.telegram_id))


class Assignments:
    def __init__(self, effects: Effects, clock: Callable[[], datetime]) -> None:
        self.effects = effects
        self.clock = clock

    async def take(self, ticket_id: int, staff: StaffMember) -> Outcome:
        return await self.assign(ticket_id, staff, by=staff)

    async def assign(self, ticket_id: int, to: StaffMember | None, *, by: StaffMember) -> Outcome:
        """Give the ticket to `to` (None: back to the queue). "already" when it is theirs already;
        "invalid" with detail "closed" when the ticket is no longer open."""
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        if ticket.status not in OPEN_STATUSES:
            return Outcome("invalid", ticket_id, detail="closed")
        target = to.id if to else None
        if ticket.assignee_id == target:
            return Outcome("already", ticket_id, detail=staff_label(to))
        async with in_transaction():
            # Guarded by the holder we read: two presses of "Take" at once give the ticket to one of them.
            changed = await Ticket.filter(
                id=ticket_id, assignee_id=ticket.assignee_id, status__in=OPEN_STATUSES
            ).update(assignee_id=target)
            if changed:
                action = "assigned" if to else "unassigned"
                decision = await Decision.create(
                    ticket_id=ticket_id, staff_id=by.id, action=action,
                    details={"to": target, "from": ticket.assignee_id},
                )
                await self.effects.queue_card_update(ticket_id, f"{action}:{decision.id}")
                if to is not None and to.id != by.id and to.started_bot:
                    await self.effects.queue_notice(
                        "assigned_to_you",
                        {"ticket_id": ticket_id, "by": staff_label(by), "subject": ticket.subject},
                        f"assigned_dm:{decision.id}",
                        ticket_id=ticket_id,
                        chat_id=to.telegram_id,
                    )
        if not changed:
            fresh = await Ticket.get_or_none(id=ticket_id)
            holder = await StaffMember.get_or_none(id=fresh.assignee_id) if fresh and fresh.assignee_id else None
            return Outcome("already", ticket_id, detail=staff_label(holder))
        log.info("ticket #%s %s by staff %s", ticket_id, f"assigned to staff {target}" if to else "unassigned",
                 by.id, extra={"ticket": ticket_id})
        events().decided("assigned" if to else "unassigned")
        self.effects.wake()
        return Outcome("done", ticket_id, detail=staff_label(to))

    async def release_member(self, staff: StaffMember) -> list[int]:
        """A colleague left the staff chat: their open tickets go back to the queue, each card edited,
        and one notice in the staff chat names the tickets. Returns the ticket numbers."""
        async with in_transaction():
            ids = list(
                await Ticket.filter(assignee_id=staff.id, status__in=OPEN_STATUSES)
                .order_by("id")
                .values_list("id", flat=True)
            )
            if not ids:
                return []
            await Ticket.filter(id__in=ids, assignee_id=staff.id).update(assignee_id=None)
            for ticket_id in ids:
                decision = await Decision.create(
                    ticket_id=ticket_id, action="unassigned", details={"from": staff.id, "reason": "left_chat"}
                )
                await self.effects.queue_card_update(ticket_id, f"unassigned:{decision.id}")
            await self.effects.queue_notice(
                "returned_to_queue",
                {"who": staff_label(staff), "tickets": ids},
                f"returned:{staff.id}:{decision.id}",
            )
        log.info("staff %s left the chat: tickets %s back in the queue", staff.id, ids)
        self.effects.wake()
        return ids
