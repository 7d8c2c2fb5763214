"""Following a merged ticket to the ticket it lives on (models/merging.py merges; threading, replies and
notes follow the chain). Apart from merging.py so the desk and ingest can use it without importing the
merge use case."""

from __future__ import annotations

from models.tables import Ticket, TicketStatus

MAX_HOPS = 20  # a merge chain is short; the bound only keeps a corrupt cycle from looping forever


async def final_ticket(ticket: Ticket) -> Ticket:
    """The ticket a merged one lives on (itself when it was never merged)."""
    seen = {ticket.id}
    while ticket.status == TicketStatus.MERGED and ticket.merged_into_id and len(seen) < MAX_HOPS:
        target = await Ticket.get_or_none(id=ticket.merged_into_id)
        if target is None or target.id in seen:
            break
        seen.add(target.id)
        ticket = target
    return ticket


def same_client(a: Ticket, b: Ticket) -> bool:
    """Both from one client of the registry, or (unidentified) from one address."""
    if a.client_id or b.client_id:
        return a.client_id == b.client_id
    return a.sender_address.lower() == b.sender_address.lower()
