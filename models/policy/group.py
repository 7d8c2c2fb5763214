"""The policy's lookups for a group of new requests ingested in one transaction, in a few statements.

Why: ingesting a backlog, each request's verdict took four lookups (identification, earlier copies,
recent tickets, the month's count), each a round trip to the database thread and back; the ingest
waited on them one after another and they, not the CPU, set its pace (docs/benchmarks.md).

How: `prefetch` reads, before the group's first verdict, everything any verdict of the group may ask
for, in one statement per kind: the client registry rows for every address, INN and contract of the
group; the messages carrying its Message-IDs; the tickets with its content hashes; per client (or
unknown sender) the month's count before the group, the newest tickets before it and every ticket that
arrived inside its time span. The group's own tickets are added as they are created (`add_created`),
so each verdict sees the requests before it exactly as if they had been committed one by one. The
caller may insert those tickets later, all at once: it then passes `flush`, which inserts the ones still
pending, and every question that goes to the database about tickets calls it first.

Every answer is the one `base` would give, or `base` gives it: a question outside what was prefetched
(another client, a cut-off list, a re-evaluation of a stored ticket) goes to the database as before.
tests/policy/test_group.py compares the two on the same requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta

from models.inbound import InboundMessage
from models.policy.base import PolicyConfig, PolicyContext, PolicyData, PolicyRequest
from models.policy.records import (
    MAX_NEAR_CANDIDATES,
    OPEN_STATUSES,
    EarlierCopies,
    GroupHistory,
    Identities,
    KnownTicket,
    PolicyRepository,
    PriorTicket,
    SeenMessage,
)
from models.policy.repository import TortoisePolicyRepository
from models.policy.rules.duplicates import request_content_hash
from models.policy.rules.identification import IdentificationRule, identity_keys
from models.policy.rules.monthly_limit import month_key

_OPEN = frozenset(str(s) for s in OPEN_STATUSES)
_IDENTIFY_LIMIT = 20  # what `identify` returns at most per kind of document
_SEEN_LIMIT = 20
_SAME_HASH_LIMIT = 10


class GroupLookups:
    """A PolicyRepository for the verdicts of one ingest group (see the module's docstring)."""

    def __init__(
        self, base: TortoisePolicyRepository, config: PolicyConfig,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.base = base
        self.config = config
        # Inserts the created tickets not yet in the database (see the module's docstring).
        self._flush = flush
        self._identities: Identities | None = None
        self._keys: tuple[frozenset[str], frozenset[str], frozenset[str]] = (frozenset(),) * 3
        self._history: GroupHistory | None = None
        self._created: list[KnownTicket] = []

    # -- filling -----------------------------------------------------------------------------------
    async def prefetch(self, requests: Sequence[PolicyRequest], data: PolicyData) -> None:
        """Read what the verdicts of `requests` (new mail, in arrival order) may ask for."""
        if not requests:
            return
        values: dict[str, None] = {}
        inns: dict[str, None] = {}
        contracts: dict[str, None] = {}
        for req in requests:
            v, i, c = identity_keys(req, data)
            values.update(dict.fromkeys(v))
            inns.update(dict.fromkeys(i))
            contracts.update(dict.fromkeys(c))
        found, complete = await self.base.identify_all(list(values), list(inns), list(contracts), _IDENTIFY_LIMIT)
        self._identities = found
        self._keys = (frozenset(values), frozenset(inns) if complete[0] else frozenset(),
                      frozenset(contracts) if complete[1] else frozenset())
        # Whose history the verdicts read: each request's client as identification decides it now
        # (in memory, from the rows just read), or its sender when it has none.
        clients: set[int] = set()
        senders: set[str] = set()
        for req in requests:
            ctx = PolicyContext(config=self.config, repository=self, data=data)
            await IdentificationRule().check(req, ctx)
            if ctx.client is not None:
                clients.add(ctx.client.client_id)
            elif req.message.from_address:
                senders.add(req.message.from_address)
        arrivals = [req.arrived_at for req in requests]
        window = timedelta(days=self.config.duplicate_window_days)
        self._history = await self.base.group_history(
            message_ids=sorted({m for req in requests for m in _message_ids(req.message)}),
            content_hashes=sorted({h for req in requests if (h := request_content_hash(req.message, req.analyses))}),
            client_ids=sorted(clients), senders=sorted(senders),
            months=sorted({month_key(a, self.config.timezone) for a in arrivals}), start=min(arrivals), end=max(arrivals),
            since=min(arrivals) - window, count_refused=self.config.count_refused, recent_limit=MAX_NEAR_CANDIDATES,
        )

    def add_created(self, ticket: KnownTicket) -> None:
        """A ticket this group has just created: the next verdicts see it."""
        self._created.append(ticket)

    async def _flushed(self) -> None:
        """Before a question about tickets goes to the database: the group's tickets are in it."""
        if self._flush is not None:
            await self._flush()

    # -- PolicyRepository ----------------------------------------------------------------------------
    async def identify(self, values: Sequence[str], inns: Sequence[str], contracts: Sequence[str]) -> Identities:
        found = self._identities
        values_known, inns_known, contracts_known = self._keys
        if found is None or not (values_known.issuperset(values) and inns_known.issuperset(inns)
                                 and contracts_known.issuperset(contracts)):
            return await self.base.identify(values, inns, contracts)
        wanted_values, wanted_inns, wanted_contracts = set(values), set(inns), set(contracts)
        return Identities(
            addresses=[a for a in found.addresses if a.value in wanted_values],
            by_inn=[c for c in found.by_inn if c.inn in wanted_inns][:_IDENTIFY_LIMIT],
            by_contract=[c for c in found.by_contract if c.contract in wanted_contracts][:_IDENTIFY_LIMIT],
        )

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None, count_refused: bool,
    ) -> int:
        h = self._history
        if (h is None or ticket_id is not None or count_refused != h.count_refused or client_id not in h.client_ids
                or month_key not in h.months or not h.start <= arrived_at <= h.end):
            await self._flushed()
            return await self.base.count_earlier_in_month(client_id, month_key, arrived_at, ticket_id, count_refused)
        count = h.month_counts.get((client_id, month_key), 0)
        for t in h.inside:
            if (t.client_id == client_id and t.month_key == month_key and t.counts_toward_limit
                    and t.prior.arrived_at <= arrived_at and (count_refused or not t.refused)):
                count += 1
        for c in self._created:
            if (c.client_id == client_id and c.month_key == month_key and c.counts_toward_limit
                    and c.prior.arrived_at <= arrived_at):
                count += 1
        return count

    async def counts_toward_limit(self, ticket_id: int) -> bool | None:
        await self._flushed()
        return await self.base.counts_toward_limit(ticket_id)

    async def earlier_copies(
        self, message_ids: Sequence[str], content_hash: str, *, arrived_at: datetime, ticket_id: int | None,
        since: datetime,
    ) -> EarlierCopies:
        h = self._history
        ids = {m for m in message_ids if m}
        if (h is None or ticket_id is not None or not ids <= h.message_ids
                or (content_hash and content_hash not in h.content_hashes) or not h.start <= arrived_at <= h.end
                or since < h.since or h.seen_cut or h.same_hash_cut):
            await self._flushed()
            return await self.base.earlier_copies(message_ids, content_hash, arrived_at=arrived_at,
                                                  ticket_id=ticket_id, since=since)
        # The messages in id order: the stored ones, then the group's (inserted after them).
        seen = [s for s in h.seen if s.message_id in ids]
        seen += [SeenMessage(c.prior.id, m, c.from_address, c.prior.duplicate_of)
                 for c in self._created for m in c.message_ids if m in ids]
        same: list[PriorTicket] = []
        if content_hash:
            stored = [t for t in h.same_hash if t.content_hash == content_hash]
            group = [c.prior for c in self._created if c.prior.content_hash == content_hash]
            same = sorted((t for t in [*stored, *group]
                           if t.arrived_at <= arrived_at and (t.arrived_at >= since or t.status in _OPEN)),
                          key=_arrival)[:_SAME_HASH_LIMIT]
        return EarlierCopies(seen=seen[:_SEEN_LIMIT], same_hash=same)

    async def recent_tickets(
        self, *, client_id: int | None, sender_address: str | None, arrived_at: datetime,
        ticket_id: int | None, since: datetime, limit: int = MAX_NEAR_CANDIDATES,
    ) -> list[PriorTicket]:
        h = self._history
        before = None if h is None else (h.recent_by_client.get(client_id) if client_id is not None
                                         else h.recent_by_sender.get(sender_address or ""))
        if (h is None or before is None or ticket_id is not None or limit != h.recent_limit
                or not h.start <= arrived_at <= h.end or since < h.since):
            await self._flushed()
            return await self.base.recent_tickets(client_id=client_id, sender_address=sender_address,
                                                  arrived_at=arrived_at, ticket_id=ticket_id, since=since, limit=limit)

        def keep(t: PriorTicket) -> bool:
            return t.arrived_at >= since or t.status in _OPEN

        # `before` holds the newest `limit` tickets before the group that were recent or open as of the
        # group's earliest window; one this request's window drops may hide an older open one behind it.
        if len(before) >= limit and not all(keep(t) for t in before):
            await self._flushed()
            return await self.base.recent_tickets(client_id=client_id, sender_address=sender_address,
                                                  arrived_at=arrived_at, ticket_id=ticket_id, since=since, limit=limit)
        if client_id is not None:
            inside = [t.prior for t in h.inside if t.client_id == client_id]
            group = [c.prior for c in self._created if c.client_id == client_id]
        else:
            inside = [t.prior for t in h.inside if t.prior.sender_address == sender_address]
            group = [c.prior for c in self._created if c.prior.sender_address == sender_address]
        later = [t for t in [*inside, *group] if t.arrived_at <= arrived_at]
        return sorted((t for t in [*before, *later] if keep(t)), key=_arrival, reverse=True)[:limit]


def _arrival(t: PriorTicket) -> tuple[datetime, int]:
    return t.arrived_at, t.id


def _message_ids(message: InboundMessage) -> Iterable[str]:
    return (m for m in (message.message_id, message.resent_message_id) if m)


__all__ = ["GroupLookups", "KnownTicket", "PolicyRepository"]
