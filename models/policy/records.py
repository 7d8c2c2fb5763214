"""What the policy's lookups answer with, and the Protocol of the store that answers them.

Apart from the tortoise implementation (models/policy/repository.py) so that the rules, and the text
analysis the parse workers run, import neither tortoise nor the ORM models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from models.statuses import TicketStatus

# Statuses of a request that is still being worked on: a re-send of it is a duplicate whatever its age.
OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.ACCEPTED)
MAX_NEAR_CANDIDATES = 50
GROUP_CAP = 1000  # rows a group-wide lookup reads at most; past it the requests ask one by one


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


@dataclass(frozen=True, slots=True)
class Identities:
    """What may identify a client, each list in a stable order (address rows by id, clients by id)."""

    addresses: list[AddressRow]  # registered addresses/domains whose value is one of those asked
    by_inn: list[ClientRow]  # at most 20
    by_contract: list[ClientRow]  # at most 20


@dataclass(frozen=True, slots=True)
class EarlierCopies:
    seen: list[SeenMessage]  # inbound messages carrying one of the Message-IDs, oldest first, at most 20
    same_hash: list[PriorTicket]  # earlier tickets with the content hash, oldest arrival first, at most 10


@dataclass(frozen=True, slots=True)
class KnownTicket:
    """A ticket with what the monthly count and the duplicate checks compare (models/policy/group.py)."""

    prior: PriorTicket  # with the text and attachment hashes of its request message
    client_id: int | None
    month_key: str
    counts_toward_limit: bool
    message_ids: tuple[str, ...] = ()  # of its inbound message, for a ticket the group created
    from_address: str = ""

    @property
    def refused(self) -> bool:
        return self.prior.status == str(TicketStatus.REFUSED)


@dataclass(frozen=True, slots=True)
class GroupHistory:
    """What the verdicts of one ingest group may read, fetched at once (`group_history`). Each list is
    complete for what it covers unless its `_cut` flag says it was cut off at the cap."""

    start: datetime  # the group's earliest and latest arrival
    end: datetime
    since: datetime  # the earliest duplicate window among the group's requests
    count_refused: bool
    message_ids: frozenset[str]
    seen: list[SeenMessage]  # inbound messages with one of message_ids, in message id order
    seen_cut: bool
    content_hashes: frozenset[str]
    same_hash: list[PriorTicket]  # tickets with one of the hashes, arrived by `end`, recent or open
    same_hash_cut: bool
    client_ids: frozenset[int]
    months: frozenset[str]
    month_counts: dict[tuple[int, str], int]  # counted tickets per (client, month) arrived before start
    inside: list[KnownTicket]  # every ticket of the clients and senders arrived from start to end
    recent_limit: int
    recent_by_client: dict[int, list[PriorTicket]]  # newest before start, recent (since) or open
    recent_by_sender: dict[str, list[PriorTicket]]


@dataclass(frozen=True, slots=True)
class RequestHistory:
    """What the duplicate and monthly-limit checks of one request read once it is identified, fetched in
    one statement (`request_history`, models/policy/request_lookups.py)."""

    copies: EarlierCopies
    recent: list[PriorTicket]  # as `recent_tickets` answers for the client (or, without one, the sender)
    month_count: int | None  # as `count_earlier_in_month` answers; None without a client


class PolicyRepository(Protocol):
    async def identify(self, values: Sequence[str], inns: Sequence[str], contracts: Sequence[str]) -> Identities:
        """Registered addresses/domains whose value is one of `values` (exact, lower-case) with their
        clients, and the clients with one of the INNs or contract numbers: one round trip."""
        ...

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None,
        count_refused: bool,
    ) -> int:
        """The client's tickets counting toward the limit in `month_key` that arrived before this one."""
        ...

    async def counts_toward_limit(self, ticket_id: int) -> bool | None:
        """The stored flag of this ticket (None when it does not exist)."""
        ...

    async def earlier_copies(
        self, message_ids: Sequence[str], content_hash: str, *, arrived_at: datetime, ticket_id: int | None,
        since: datetime,
    ) -> EarlierCopies:
        """Inbound messages of other tickets with one of `message_ids`, and earlier tickets with this
        content hash arrived since `since` or still open: the duplicate rule's first two checks in one
        round trip."""
        ...

    async def recent_tickets(
        self, *, client_id: int | None, sender_address: str | None, arrived_at: datetime,
        ticket_id: int | None, since: datetime, limit: int = MAX_NEAR_CANDIDATES,
    ) -> list[PriorTicket]:
        """The newest earlier tickets of the client (or, without one, of the sender address) arrived
        since `since` or still open, with the text of their first inbound message."""
        ...


# -- running hand-written SQL -----------------------------------------------------------------------
