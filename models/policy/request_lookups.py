"""The lookups of one request after identification, in one statement instead of up to three.

Why: the chain asks the store, one after another, who the client is (identification), for earlier
copies (the duplicate rule), for the client's recent tickets (its near-duplicate check) and for the
month's count (the monthly limit). On SQLite each is a call into the process; on PostgreSQL each is a
round trip over the network that the request waits for. The last three depend only on the client, so
once identification has run `prefetch` reads them together (`request_history`) and `RequestLookups`
answers the rules from that.

Every answer is the one the store would give: a question with other arguments than the prefetched
ones goes to the store as before. tests/policy/test_request_lookups.py compares the two.
An ingest group has its own lookups for all its requests (models/policy/group.py); this is for a
request evaluated alone (a mail alone in its group, a re-evaluation, the benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from models.policy.base import PolicyContext, PolicyRequest
from models.policy.records import (
    MAX_NEAR_CANDIDATES,
    EarlierCopies,
    Identities,
    PolicyRepository,
    PriorTicket,
    RequestHistory,
)
from models.policy.rules.duplicates import request_content_hash
from models.policy.rules.monthly_limit import month_key


@dataclass(frozen=True)
class _Asked:
    """The arguments the prefetch answered for."""

    message_ids: tuple[str, ...]
    content_hash: str
    arrived_at: datetime
    ticket_id: int | None
    since: datetime
    client_id: int | None
    sender_address: str | None
    month_key: str
    count_refused: bool


class RequestLookups:
    """A PolicyRepository for the rest of one request's chain (see the module's docstring)."""

    def __init__(self, base: Any, asked: _Asked, history: RequestHistory) -> None:
        self.base = base
        self._asked = asked
        self._history = history

    async def identify(self, values: Sequence[str], inns: Sequence[str], contracts: Sequence[str]) -> Identities:
        return await self.base.identify(values, inns, contracts)

    async def counts_toward_limit(self, ticket_id: int) -> bool | None:
        return await self.base.counts_toward_limit(ticket_id)

    async def earlier_copies(
        self, message_ids: Sequence[str], content_hash: str, *, arrived_at: datetime, ticket_id: int | None,
        since: datetime,
    ) -> EarlierCopies:
        a = self._asked
        if (tuple(m for m in message_ids if m), content_hash, arrived_at, ticket_id, since) != (
                a.message_ids, a.content_hash, a.arrived_at, a.ticket_id, a.since):
            return await self.base.earlier_copies(message_ids, content_hash, arrived_at=arrived_at,
                                                  ticket_id=ticket_id, since=since)
        return self._history.copies

    async def recent_tickets(
        self, *, client_id: int | None, sender_address: str | None, arrived_at: datetime,
        ticket_id: int | None, since: datetime, limit: int = MAX_NEAR_CANDIDATES,
    ) -> list[PriorTicket]:
        a = self._asked
        if (client_id, sender_address, arrived_at, ticket_id, since, limit) != (
                a.client_id, a.sender_address, a.arrived_at, a.ticket_id, a.since, MAX_NEAR_CANDIDATES):
            return await self.base.recent_tickets(client_id=client_id, sender_address=sender_address,
                                                  arrived_at=arrived_at, ticket_id=ticket_id, since=since, limit=limit)
        return list(self._history.recent)

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None, count_refused: bool,
    ) -> int:
        a = self._asked
        if self._history.month_count is None or (client_id, month_key, arrived_at, ticket_id, count_refused) != (
                a.client_id, a.month_key, a.arrived_at, a.ticket_id, a.count_refused):
            return await self.base.count_earlier_in_month(client_id, month_key, arrived_at, ticket_id, count_refused)
        return self._history.month_count


async def prefetch(repository: PolicyRepository, req: PolicyRequest, ctx: PolicyContext) -> PolicyRepository:
    """After identification: `repository` answering the rest of the chain from one statement, when it
    can read all of it at once (`request_history`); else `repository` itself."""
    read = getattr(repository, "request_history", None)
    if read is None:
        return repository
    cfg = ctx.config
    msg = req.message
    client_id = ctx.client.client_id if ctx.client else None
    # As the duplicate and monthly-limit rules will ask (a difference only costs the prefetch).
    asked = _Asked(
        message_ids=tuple(m for m in (msg.message_id, msg.resent_message_id) if m),
        content_hash=request_content_hash(msg, req.analyses), arrived_at=req.arrived_at, ticket_id=req.ticket_id,
        since=req.arrived_at - timedelta(days=cfg.duplicate_window_days), client_id=client_id,
        sender_address=None if ctx.client else msg.from_address, month_key=month_key(req.arrived_at, cfg.timezone),
        count_refused=cfg.count_refused,
    )
    history = await read(
        message_ids=asked.message_ids, content_hash=asked.content_hash, arrived_at=asked.arrived_at,
        ticket_id=asked.ticket_id, since=asked.since, client_id=asked.client_id,
        sender_address=asked.sender_address, month_key=asked.month_key, count_refused=asked.count_refused,
    )
    return RequestLookups(repository, asked, history)
