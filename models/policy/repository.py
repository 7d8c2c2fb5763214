"""The queries the policy rules need, behind a Protocol so the rules can be tested with any store.

Every query here is bounded and served by an index on models/tables.py (value, inn, contract,
(client_id, month_key), sender_address, content_hash, message_id), so evaluation stays fast with
100,000 tickets and 10,000 clients: nothing loads a whole table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from tortoise.expressions import Q

from models.tables import Client, ClientAddress, Message, MessageDirection, Ticket, TicketStatus

# Statuses of a request that is still being worked on: a re-send of it is a duplicate whatever its age.
OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.ACCEPTED)
MAX_NEAR_CANDIDATES = 50


@dataclass(frozen=True, slots=True)
class ClientRow:
    id: int
    name: str
    inn: str | None
    contract: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class AddressRow:
    client: ClientRow
    value: str  # "a@b.ru" or "@b.ru"
    is_domain: bool


@dataclass(frozen=True, slots=True)
class SeenMessage:
    ticket_id: int
    message_id: str
    from_address: str
    ticket_duplicate_of: int | None


@dataclass(frozen=True, slots=True)
class PriorTicket:
    id: int
    status: str
    arrived_at: datetime
    duplicate_of: int | None
    subject: str
    sender_address: str
    content_hash: str
    new_text: str = ""  # of the first inbound message; filled only where the rule needs it
    attachment_hashes: tuple[str, ...] = ()


class PolicyRepository(Protocol):
    async def addresses(self, values: Sequence[str]) -> list[AddressRow]:
        """Registered addresses/domains whose value is one of `values` (exact, lower-case)."""
        ...

    async def clients_by_inn(self, inns: Sequence[str]) -> list[ClientRow]: ...

    async def clients_by_contract(self, contracts: Sequence[str]) -> list[ClientRow]: ...

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None,
        count_refused: bool,
    ) -> int:
        """The client's tickets counting toward the limit in `month_key` that arrived before this one."""
        ...

    async def counts_toward_limit(self, ticket_id: int) -> bool | None:
        """The stored flag of this ticket (None when it does not exist)."""
        ...

    async def messages_with_ids(self, message_ids: Sequence[str], exclude_ticket: int | None) -> list[SeenMessage]:
        ...

    async def earlier_with_hash(
        self, content_hash: str, arrived_at: datetime, ticket_id: int | None, since: datetime,
    ) -> list[PriorTicket]:
        """Earlier tickets with this content hash, arrived since `since` or still open, oldest first."""
        ...

    async def recent_tickets(
        self, *, client_id: int | None, sender_address: str | None, arrived_at: datetime,
        ticket_id: int | None, since: datetime, limit: int = MAX_NEAR_CANDIDATES,
    ) -> list[PriorTicket]:
        """The newest earlier tickets of the client (or, without one, of the sender address) arrived
        since `since` or still open, with the text of their first inbound message."""
        ...


def _row(c: Client) -> ClientRow:
    return ClientRow(id=c.id, name=c.name, inn=c.inn, contract=c.contract, active=c.active)


def _earlier(arrived_at: datetime, ticket_id: int | None) -> Q:
    """Tickets before this one in arrival order (arrived_at, then id)."""
    if ticket_id is None:
        return Q(arrived_at__lte=arrived_at)
    return Q(arrived_at__lt=arrived_at) | Q(arrived_at=arrived_at, id__lt=ticket_id)


def _prior(t: Ticket) -> PriorTicket:
    return PriorTicket(id=t.id, status=str(t.status), arrived_at=t.arrived_at,
                       duplicate_of=t.duplicate_of_id,  # type: ignore[attr-defined]
                       subject=t.subject, sender_address=t.sender_address, content_hash=t.content_hash)


class TortoisePolicyRepository:
    """PolicyRepository on the tortoise tables."""

    async def addresses(self, values: Sequence[str]) -> list[AddressRow]:
        if not values:
            return []
        rows = await ClientAddress.filter(value__in=list(values)).select_related("client")
        return [AddressRow(_row(r.client), r.value, r.is_domain) for r in rows]

    async def clients_by_inn(self, inns: Sequence[str]) -> list[ClientRow]:
        if not inns:
            return []
        return [_row(c) for c in await Client.filter(inn__in=list(inns)).limit(20)]

    async def clients_by_contract(self, contracts: Sequence[str]) -> list[ClientRow]:
        if not contracts:
            return []
        return [_row(c) for c in await Client.filter(contract__in=list(contracts)).limit(20)]

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None,
        count_refused: bool,
    ) -> int:
        # Served by the (client_id, month_key) index; the rest filters a handful of rows.
        qs = Ticket.filter(client_id=client_id, month_key=month_key, counts_toward_limit=True).filter(
            _earlier(arrived_at, ticket_id))
        if ticket_id is not None:
            qs = qs.exclude(id=ticket_id)
        if not count_refused:
            qs = qs.exclude(status=TicketStatus.REFUSED)
        return await qs.count()

    async def counts_toward_limit(self, ticket_id: int) -> bool | None:
        rows = await Ticket.filter(id=ticket_id).values_list("counts_toward_limit", flat=True)
        return bool(rows[0]) if rows else None

    async def messages_with_ids(self, message_ids: Sequence[str], exclude_ticket: int | None) -> list[SeenMessage]:
        ids = [m for m in message_ids if m]
        if not ids:
            return []
        qs = Message.filter(message_id__in=ids, direction=MessageDirection.INBOUND)
        if exclude_ticket is not None:
            qs = qs.exclude(ticket_id=exclude_ticket)
        rows = await qs.order_by("id").limit(20).select_related("ticket")
        return [SeenMessage(r.ticket_id, r.message_id or "", r.from_address,  # type: ignore[attr-defined]
                            r.ticket.duplicate_of_id) for r in rows]  # type: ignore[attr-defined]

    async def earlier_with_hash(
        self, content_hash: str, arrived_at: datetime, ticket_id: int | None, since: datetime,
    ) -> list[PriorTicket]:
        if not content_hash:
            return []
        qs = (Ticket.filter(content_hash=content_hash)
              .filter(_earlier(arrived_at, ticket_id))
              .filter(Q(arrived_at__gte=since) | Q(status__in=list(OPEN_STATUSES))))
        if ticket_id is not None:
            qs = qs.exclude(id=ticket_id)
        return [_prior(t) for t in await qs.order_by("arrived_at", "id").limit(10)]

    async def recent_tickets(
        self, *, client_id: int | None, sender_address: str | None, arrived_at: datetime,
        ticket_id: int | None, since: datetime, limit: int = MAX_NEAR_CANDIDATES,
    ) -> list[PriorTicket]:
        if client_id is not None:
            qs = Ticket.filter(client_id=client_id)  # (client_id, month_key) index prefix
        elif sender_address:
            qs = Ticket.filter(sender_address=sender_address)  # sender_address index
        else:
            return []
        qs = qs.filter(_earlier(arrived_at, ticket_id)).filter(
            Q(arrived_at__gte=since) | Q(status__in=list(OPEN_STATUSES)))
        if ticket_id is not None:
            qs = qs.exclude(id=ticket_id)
        tickets = await qs.order_by("-arrived_at", "-id").limit(limit)
        if not tickets:
            return []
        # The first inbound message of each candidate is its request text. Bounded by `limit` tickets;
        # needs an index on message.ticket_id to avoid scanning the message table (see report).
        first: dict[int, Message] = {}
        for m in await Message.filter(ticket_id__in=[t.id for t in tickets],
                                      direction=MessageDirection.INBOUND).order_by("id"):
            first.setdefault(m.ticket_id, m)  # type: ignore[attr-defined]
        out: list[PriorTicket] = []
        for t in tickets:
            p = _prior(t)
            m = first.get(t.id)
            if m is not None:
                hashes = tuple(sorted(a["sha256"] for a in (m.attachments or [])
                                      if isinstance(a, dict) and a.get("sha256")))
                p = replace(p, new_text=m.new_text, attachment_hashes=hashes)
            out.append(p)
        return out

