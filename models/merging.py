"""Merging a ticket into another (issue 20): the client's second mail about the same thing joins the first.

`merge(N, M)` moves N's messages (with their attachments and notes) to M, where they sort among M's by
arrival; N is closed as `merged` with `merged_into = M` and stops counting towards the monthly limit
(clause 2.6: it was not a separate request); both cards are edited, N's without buttons. The client gets
no email. Later mail in N's thread lands on M: the moved messages carry N's Message-IDs, and the threading
(models/ingest.py) follows `merged_into` for the rest (our emails sent from N, the `[#N]` subject tag).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from tortoise.transactions import in_transaction

from models.effects import Effects
from models.merge_chain import same_client
from models.metrics_port import events
from models.outcome import Outcome
from models.search import move_messages
from models.tables import Decision, Message, StaffMember, Ticket, TicketStatus

log = logging.getLogger(__name__)

class Merger:
    def __init__(self, effects: Effects, clock: Callable[[], datetime]) -> None:
        self.effects = effects
        self.clock = clock

    async def merge(self, source_id: int, target_id: int, staff: StaffMember, *, confirmed: bool = False) -> Outcome:
        """Outcomes: done; invalid with detail self | into_merged:<K> | not_found:<id>; already (N is
        merged); needs_confirmation with detail other_client (the staff confirm, then call again)."""
        if source_id == target_id:
            return Outcome("invalid", source_id, detail="self")
        source = await Ticket.get_or_none(id=source_id)
        target = await Ticket.get_or_none(id=target_id)
        if source is None or target is None:
            return Outcome("invalid", source_id, detail=f"not_found:{source_id if source is None else target_id}")
        if source.status == TicketStatus.MERGED:
            return Outcome("already", source_id, detail=str(source.merged_into_id or ""))
        if target.status == TicketStatus.MERGED:
            return Outcome("invalid", source_id, detail=f"into_merged:{target.merged_into_id or ''}")
        if not same_client(source, target) and not confirmed:
            return Outcome("needs_confirmation", source_id, detail="other_client")
        try:
            async with in_transaction():
                # Guarded on both ends: a concurrent merge of N, or of M into a third ticket, makes this one
                # write nothing.
                changed = await Ticket.filter(id=source_id).exclude(status=TicketStatus.MERGED).update(
                    status=TicketStatus.MERGED, merged_into_id=target_id, counts_toward_limit=False,
                    next_alert_at=None,
                )
                if changed and await Ticket.filter(id=target_id, status=TicketStatus.MERGED).exists():
                    raise _Raced()
                if changed:
                    ids = list(await Message.filter(ticket_id=source_id).order_by("id").values_list("id", flat=True))
                    await Message.filter(id__in=ids).update(ticket_id=target_id)
                    await move_messages(source_id, target_id)
                    # The moved ids let N's card still show what N said (bot/board.py).
                    details = {"into": target_id, "from": source_id, "message_ids": ids[:1000],
                               "previous_status": str(source.status)}
                    first = await Decision.create(ticket_id=source_id, staff_id=staff.id, action="merged_into",
                                                  details=details)
                    await Decision.create(ticket_id=target_id, staff_id=staff.id, action="merged_from",
                                          details=details)
                    await self.effects.queue_card_update(source_id, f"merged:{first.id}")
                    await self.effects.queue_card_update(target_id, f"merged_into:{first.id}")
        except _Raced:
            return Outcome("invalid", source_id, detail="into_merged:")
        if not changed:
            return Outcome("already", source_id)
        log.info("ticket #%s merged into #%s by staff %s", source_id, target_id, staff.id,
                 extra={"ticket": source_id})
        events().decided("merged")
        self.effects.wake()
        return Outcome("done", source_id, detail=str(target_id))


class _Raced(Exception):
    """The target was merged away while this merge ran: roll back."""
