"""The queries the policy rules need, behind a Protocol so the rules can be tested with any store.

Every query here is bounded and served by an index on models/tables.py (value, inn, contract,
(client_id, month_key), (client_id, arrived_at), (sender_address, arrived_at), content_hash, message_id,
message (ticket_id, id)), so evaluation stays fast with 100,000 tickets and 10,000 clients: nothing
loads a whole table.

The queries are hand-written SQL rather than tortoise querysets: building a query with tortoise/pypika
cost about 0.5 ms of CPU per statement, several times what SQLite then needs to answer it, and the
policy runs for every request (docs/benchmarks.md). They run on the connection tortoise itself would
use for a query at that moment, so inside `in_transaction()` they see that transaction's own writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.router import router

from models.tables import Message, MessageDirection, Ticket, TicketStatus

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


# -- running hand-written SQL -----------------------------------------------------------------------


def _connection() -> BaseDBAsyncClient:
    """The connection a tortoise queryset on these tables would use right now (`QuerySet._choose_db`):
    a configured router's choice, else the model's connection, which inside `in_transaction()` is the
    transaction's own (tortoise puts it in the context for its duration)."""
    return router.db_for_read(Ticket) or Ticket._meta.db


def _placeholder_style(db: BaseDBAsyncClient) -> str:
    dialect = db.capabilities.dialect
    if dialect == "sqlite":
        return "?"
    if dialect == "postgres":
        # asyncpg numbers its parameters; psycopg (not a dependency, but tortoise supports it) uses %s.
        return "%s" if "psycopg" in type(db).__module__ else "$"
    raise NotImplementedError(f"the policy queries are written for SQLite and PostgreSQL, not {dialect}")


@lru_cache(maxsize=1024)
def _for_dialect(sql: str, style: str) -> str:
    """`sql` is written with `?` placeholders (and no literal "?"): rewritten once per shape."""
    if style == "?":
        return sql
    head, *rest = sql.split("?")
    marks = ("%s" for _ in rest) if style == "%s" else (f"${i}" for i in range(1, len(rest) + 1))
    return head + "".join(m + part for m, part in zip(marks, rest, strict=True))


async def _fetch(sql: str, values: list[Any]) -> Sequence[Any]:
    """Rows (sqlite3.Row or asyncpg Record: both index and unpack like tuples)."""
    db = _connection()
    _, rows = await db.execute_query(_for_dialect(sql, _placeholder_style(db)), values)
    return rows


def _marks(n: int) -> str:
    return ",".join("?" * n)


_ARRIVED_AT = Ticket._meta.fields_map["arrived_at"]
_ATTACHMENTS = Message._meta.fields_map["attachments"]


def _datetime(value: Any) -> datetime:
    """A stored datetime as the ORM returns it (SQLite gives the text it stored, PostgreSQL a datetime)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)  # what tortoise stores on SQLite; much faster than iso8601
        except ValueError:
            pass  # left to tortoise's own parser
    return _ARRIVED_AT.to_python_value(value)


def _earlier(ticket_id: int | None, arrived_at: datetime) -> tuple[str, list[Any]]:
    """Tickets before this one in arrival order (arrived_at, then id), and not this one."""
    if ticket_id is None:
        return "t.arrived_at <= ?", [arrived_at]
    return "(t.arrived_at < ? OR (t.arrived_at = ? AND t.id < ?)) AND t.id <> ?", [
        arrived_at, arrived_at, ticket_id, ticket_id]


_OPEN = [str(s) for s in OPEN_STATUSES]
_TICKET_COLUMNS = "t.id, t.status, t.arrived_at, t.duplicate_of_id, t.subject, t.sender_address, t.content_hash"


def _prior(row: Any, new_text: str = "", attachments: Any = None) -> PriorTicket:
    hashes: tuple[str, ...] = ()
    if attachments:
        files = _ATTACHMENTS.to_python_value(attachments) or []
        hashes = tuple(sorted(a["sha256"] for a in files if isinstance(a, dict) and a.get("sha256")))
    return PriorTicket(id=row[0], status=row[1], arrived_at=_datetime(row[2]), duplicate_of=row[3],
                       subject=row[4], sender_address=row[5], content_hash=row[6], new_text=new_text or "",
                       attachment_hashes=hashes)


def _client(row: Any) -> ClientRow:
    """From the first five columns: id, name, inn, contract, active."""
    return ClientRow(id=row[0], name=row[1], inn=row[2], contract=row[3], active=bool(row[4]))


class TortoisePolicyRepository:
    """PolicyRepository on the tortoise tables (SQLite or PostgreSQL)."""

    async def addresses(self, values: Sequence[str]) -> list[AddressRow]:
        if not values:
            return []
        rows = await _fetch(
            "SELECT c.id, c.name, c.inn, c.contract, c.active, a.value, a.is_domain"
            " FROM client_address a JOIN client c ON c.id = a.client_id"
            f" WHERE a.value IN ({_marks(len(values))}) ORDER BY a.id", list(values))
        return [AddressRow(_client(r), r[5], bool(r[6])) for r in rows]

    async def clients_by_inn(self, inns: Sequence[str]) -> list[ClientRow]:
        if not inns:
            return []
        rows = await _fetch(f"SELECT id, name, inn, contract, active FROM client WHERE inn IN ({_marks(len(inns))})"
                            " LIMIT 20", list(inns))
        return [_client(r) for r in rows]

    async def clients_by_contract(self, contracts: Sequence[str]) -> list[ClientRow]:
        if not contracts:
            return []
        rows = await _fetch("SELECT id, name, inn, contract, active FROM client"
                            f" WHERE contract IN ({_marks(len(contracts))}) LIMIT 20", list(contracts))
        return [_client(r) for r in rows]

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None,
        count_refused: bool,
    ) -> int:
        # Served by the (client_id, month_key) index; the rest filters a handful of rows.
        earlier, values = _earlier(ticket_id, arrived_at)
        sql = ("SELECT COUNT(*) FROM ticket t WHERE t.client_id = ? AND t.month_key = ?"
               f" AND t.counts_toward_limit = ? AND {earlier}")
        values = [client_id, month_key, True, *values]
        if not count_refused:
            sql += " AND t.status <> ?"
            values.append(str(TicketStatus.REFUSED))
        rows = await _fetch(sql, values)
        return int(rows[0][0])

    async def counts_toward_limit(self, ticket_id: int) -> bool | None:
        rows = await _fetch("SELECT counts_toward_limit FROM ticket WHERE id = ?", [ticket_id])
        return bool(rows[0][0]) if rows else None

    async def messages_with_ids(self, message_ids: Sequence[str], exclude_ticket: int | None) -> list[SeenMessage]:
        ids = [m for m in message_ids if m]
        if not ids:
            return []
        sql = ("SELECT m.ticket_id, m.message_id, m.from_address, t.duplicate_of_id"
               " FROM message m JOIN ticket t ON t.id = m.ticket_id"
               f" WHERE m.message_id IN ({_marks(len(ids))}) AND m.direction = ?")
        values: list[Any] = [*ids, str(MessageDirection.INBOUND)]
        if exclude_ticket is not None:
            sql += " AND m.ticket_id <> ?"
            values.append(exclude_ticket)
        rows = await _fetch(sql + " ORDER BY m.id LIMIT 20", values)
        return [SeenMessage(r[0], r[1] or "", r[2], r[3]) for r in rows]

    async def earlier_with_hash(
        self, content_hash: str, arrived_at: datetime, ticket_id: int | None, since: datetime,
    ) -> list[PriorTicket]:
        if not content_hash:
            return []
        earlier, values = _earlier(ticket_id, arrived_at)
        rows = await _fetch(
            f"SELECT {_TICKET_COLUMNS} FROM ticket t WHERE t.content_hash = ? AND {earlier}"
            f" AND (t.arrived_at >= ? OR t.status IN ({_marks(len(_OPEN))})) ORDER BY t.arrived_at, t.id LIMIT 10",
            [content_hash, *values, since, *_OPEN])
        return [_prior(r) for r in rows]

    async def recent_tickets(
        self, *, client_id: int | None, sender_address: str | None, arrived_at: datetime,
        ticket_id: int | None, since: datetime, limit: int = MAX_NEAR_CANDIDATES,
    ) -> list[PriorTicket]:
        if client_id is not None:
            whose, who = "t.client_id = ?", client_id  # (client_id, arrived_at) index
        elif sender_address:
            whose, who = "t.sender_address = ?", sender_address  # (sender_address, arrived_at) index
        else:
            return []
        earlier, values = _earlier(ticket_id, arrived_at)
        # One statement: the newest candidates, each joined with its first inbound message (its request
        # text), found through the message (ticket_id, id) index. Notes and our replies are not requests.
        rows = await _fetch(
            f"SELECT {_TICKET_COLUMNS}, m.new_text, m.attachments FROM ("
            f" SELECT {_TICKET_COLUMNS} FROM ticket t WHERE {whose} AND {earlier}"
            f"  AND (t.arrived_at >= ? OR t.status IN ({_marks(len(_OPEN))}))"
            "  ORDER BY t.arrived_at DESC, t.id DESC LIMIT ?"
            ") t LEFT JOIN message m ON m.id = ("
            " SELECT f.id FROM message f WHERE f.ticket_id = t.id AND f.direction = ? ORDER BY f.id LIMIT 1)"
            " ORDER BY t.arrived_at DESC, t.id DESC",
            [who, *values, since, *_OPEN, limit, str(MessageDirection.INBOUND)])
        return [_prior(r, r[7], r[8]) for r in rows]
