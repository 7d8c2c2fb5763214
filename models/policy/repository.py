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
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.router import router

from models.policy.records import (
    GROUP_CAP,
    MAX_NEAR_CANDIDATES,
    OPEN_STATUSES,
    AddressRow,
    ClientRow,
    EarlierCopies,
    GroupHistory,
    Identities,
    KnownTicket,
    PriorTicket,
    RequestHistory,
    SeenMessage,
)
from models.store.sql import datetime_from_db, for_dialect, marks
from models.tables import Message, MessageDirection, Ticket, TicketStatus


def _connection() -> BaseDBAsyncClient:
    """The connection a tortoise queryset on these tables would use right now (`QuerySet._choose_db`):
    a configured router's choice, else the model's connection, which inside `in_transaction()` is the
    transaction's own (tortoise puts it in the context for its duration)."""
    return router.db_for_read(Ticket) or Ticket._meta.db


async def _fetch(sql: str, values: list[Any]) -> Sequence[Any]:
    """Rows (sqlite3.Row or asyncpg Record: both index and unpack like tuples)."""
    db = _connection()
    _, rows = await db.execute_query(for_dialect(sql, db), values)
    return rows


_ARRIVED_AT = Ticket._meta.fields_map["arrived_at"]
_ATTACHMENTS = Message._meta.fields_map["attachments"]


def _datetime(value: Any) -> datetime:
    return datetime_from_db(value, _ARRIVED_AT)



_NONE_MESSAGE = "CAST(NULL AS VARCHAR(998)) AS message_id, CAST(NULL AS VARCHAR(320)) AS from_address"


def _copy_branches(
    message_ids: Sequence[str], content_hash: str, *, ticket_id: int | None, arrived_at: datetime, since: datetime,
    extra: str = "",
) -> tuple[list[str], list[Any]]:
    """The earlier-copies branches of a UNION ALL and their parameters: k=0 the messages with one of the
    Message-IDs (in message id order, o), k=1 the tickets with the hash (in arrival order), served by the
    message_id and content_hash indexes. `extra`: typed NULL columns the caller's other branches need."""
    branches: list[str] = []
    params: list[Any] = []
    ids = [m for m in message_ids if m]
    if ids:
        exclude = " AND m.ticket_id <> ?" if ticket_id is not None else ""
        branches.append(
            f"SELECT * FROM (SELECT 0 AS k, m.id AS o, {_TICKET_COLUMNS}, m.message_id, m.from_address{extra}"
            " FROM message m JOIN ticket t ON t.id = m.ticket_id"
            f" WHERE m.message_id IN ({marks(len(ids))}) AND m.direction = ?{exclude}"
            " ORDER BY m.id LIMIT 20) s")
        params += [*ids, str(MessageDirection.INBOUND)] + ([ticket_id] if exclude else [])
    if content_hash:
        earlier, values = _earlier(ticket_id, arrived_at)
        branches.append(
            f"SELECT * FROM (SELECT 1 AS k, 0 AS o, {_TICKET_COLUMNS}, {_NONE_MESSAGE}{extra} FROM ticket t"
            f" WHERE t.content_hash = ? AND {earlier} AND (t.arrived_at >= ? OR t.status IN ({marks(len(_OPEN))}))"
            " ORDER BY t.arrived_at, t.id LIMIT 10) h")
        params += [content_hash, *values, since, *_OPEN]
    return branches, params

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

    @property
    def answers_over_network(self) -> bool:
        """True when each statement is a round trip to a server (PostgreSQL): the engine then makes the
        text analyses while the first one is answered. SQLite answers in-process, on aiosqlite's thread,
        which the analyses would only contend with for the GIL (measured: no gain, slightly worse)."""
        return _connection().capabilities.dialect == "postgres"

    async def identify(
        self, values: Sequence[str], inns: Sequence[str], contracts: Sequence[str], *, limit: int = 20,
    ) -> Identities:
        # One statement, a branch per kind of evidence (k), each in a stable order (o); NULL columns are
        # typed so that PostgreSQL can unite the branches.
        branches: list[str] = []
        params: list[Any] = []
        if values:
            branches.append(
                "SELECT * FROM (SELECT 0 AS k, a.id AS o, c.id, c.name, c.inn, c.contract, c.active, a.value,"
                " a.is_domain FROM client_address a JOIN client c ON c.id = a.client_id"
                f" WHERE a.value IN ({marks(len(values))})) ad")
            params += values
        for k, column, wanted in ((1, "inn", inns), (2, "contract", contracts)):
            if wanted:
                branches.append(
                    f"SELECT * FROM (SELECT {k} AS k, id AS o, id, name, inn, contract, active,"
                    " CAST(NULL AS VARCHAR(320)) AS value, CAST(NULL AS BOOLEAN) AS is_domain"
                    f" FROM client WHERE {column} IN ({marks(len(wanted))}) ORDER BY id LIMIT ?) c{k}")
                params += [*wanted, limit]
        found = Identities([], [], [])
        if not branches:
            return found
        for r in await _fetch(" UNION ALL ".join(branches) + " ORDER BY k, o", params):
            k, row = r[0], r[2:]
            if k == 0:
                found.addresses.append(AddressRow(_client(row), row[5], bool(row[6])))
            else:
                (found.by_inn if k == 1 else found.by_contract).append(_client(row))
        return found

    async def count_earlier_in_month(
        self, client_id: int, month_key: str, arrived_at: datetime, ticket_id: int | None,
        count_refused: bool,
    ) -> int:
        # Served by the (client_id, month_key) or (client_id, arrived_at) index: a client's few tickets.
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

    async def earlier_copies(
        self, message_ids: Sequence[str], content_hash: str, *, arrived_at: datetime, ticket_id: int | None,
        since: datetime,
    ) -> EarlierCopies:
        branches, params = _copy_branches(message_ids, content_hash, ticket_id=ticket_id, arrived_at=arrived_at,
                                          since=since)
        found = EarlierCopies([], [])
        if not branches:
            return found
        for r in await _fetch(" UNION ALL ".join(branches) + " ORDER BY k, o, arrived_at, id", params):
            row = r[2:]
            if r[0] == 0:
                found.seen.append(SeenMessage(row[0], row[7] or "", row[8], row[3]))
            else:
                found.same_hash.append(_prior(row))
        return found

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
            f"  AND (t.arrived_at >= ? OR t.status IN ({marks(len(_OPEN))}))"
            "  ORDER BY t.arrived_at DESC, t.id DESC LIMIT ?"
            ") t LEFT JOIN message m ON m.id = ("
            " SELECT f.id FROM message f WHERE f.ticket_id = t.id AND f.direction = ? ORDER BY f.id LIMIT 1)"
            " ORDER BY t.arrived_at DESC, t.id DESC",
            [who, *values, since, *_OPEN, limit, str(MessageDirection.INBOUND)])
        return [_prior(r, r[7], r[8]) for r in rows]

    # -- one request once identified (models/policy/request_lookups.py) --------------------------------

    async def request_history(
        self, *, message_ids: Sequence[str], content_hash: str, arrived_at: datetime, ticket_id: int | None,
        since: datetime, client_id: int | None, sender_address: str | None, month_key: str, count_refused: bool,
        limit: int = MAX_NEAR_CANDIDATES,
    ) -> RequestHistory:
        """`earlier_copies`, `recent_tickets` (client, else sender) and, with a client,
        `count_earlier_in_month`, in ONE statement: each branch is the statement those methods run, its
        rows tagged with the branch (k) and sorted here. On PostgreSQL each statement is a round trip
        over the network: three dependent ones became one (docs/notes/pg.md)."""
        # Columns: k, o, the ticket's seven, message_id, from_address, new_text, attachments, n (a count).
        # NULLs inside a subquery are typed: PostgreSQL gives an untyped one `text`, which `UNION` could
        # not unite with a timestamp or jsonb of another branch.
        none_msg = "CAST(NULL AS VARCHAR(998)), CAST(NULL AS VARCHAR(320))"
        none_text = "CAST(NULL AS TEXT), CAST(NULL AS JSONB)"
        none_n = "CAST(NULL AS BIGINT)"
        branches, params = _copy_branches(message_ids, content_hash, ticket_id=ticket_id, arrived_at=arrived_at,
                                          since=since, extra=f", {none_text}, {none_n}")
        whose = ("t.client_id = ?", client_id) if client_id is not None else (
            ("t.sender_address = ?", sender_address) if sender_address else None)
        if whose is not None:
            earlier, values = _earlier(ticket_id, arrived_at)
            branches.append(
                f"SELECT * FROM (SELECT 2 AS k, 0 AS o, {_TICKET_COLUMNS}, {none_msg}, m.new_text, m.attachments,"
                f" {none_n} FROM (SELECT {_TICKET_COLUMNS} FROM ticket t WHERE {whose[0]} AND {earlier}"
                f"  AND (t.arrived_at >= ? OR t.status IN ({marks(len(_OPEN))}))"
                "  ORDER BY t.arrived_at DESC, t.id DESC LIMIT ?"
                ") t LEFT JOIN message m ON m.id = ("
                " SELECT f.id FROM message f WHERE f.ticket_id = t.id AND f.direction = ? ORDER BY f.id LIMIT 1)) r")
            params += [whose[1], *values, since, *_OPEN, limit, str(MessageDirection.INBOUND)]
        if client_id is not None:
            earlier, values = _earlier(ticket_id, arrived_at)
            refused = "" if count_refused else " AND t.status <> ?"
            branches.append(
                "SELECT * FROM (SELECT 3 AS k, 0 AS o, CAST(NULL AS INT), CAST(NULL AS VARCHAR(32)),"
                " CAST(NULL AS TIMESTAMPTZ), CAST(NULL AS INT), CAST(NULL AS TEXT), CAST(NULL AS VARCHAR(320)),"
                f" CAST(NULL AS VARCHAR(64)), {none_msg}, {none_text}, COUNT(*) FROM ticket t"
                f" WHERE t.client_id = ? AND t.month_key = ? AND t.counts_toward_limit = ? AND {earlier}{refused}) c")
            params += [client_id, month_key, True, *values] + ([] if count_refused else [str(TicketStatus.REFUSED)])
        seen: list[tuple[int, SeenMessage]] = []
        same: list[PriorTicket] = []
        recent: list[PriorTicket] = []
        count: int | None = None
        for r in await _fetch(" UNION ALL ".join(branches), params) if branches else []:
            k, row = r[0], tuple(r)[2:]
            if k == 0:
                seen.append((r[1], SeenMessage(row[0], row[7] or "", row[8], row[3])))
            elif k == 1:
                same.append(_prior(row))
            elif k == 2:
                recent.append(_prior(row, row[9], row[10]))
            else:
                count = int(row[11])
        seen.sort(key=lambda pair: pair[0])
        same.sort(key=lambda t: (t.arrived_at, t.id))
        recent.sort(key=lambda t: (t.arrived_at, t.id), reverse=True)
        return RequestHistory(EarlierCopies([s for _, s in seen], same), recent, count)

    # -- a whole ingest group at once (models/policy/group.py) ----------------------------------------

    async def identify_all(
        self, values: Sequence[str], inns: Sequence[str], contracts: Sequence[str], per_request_limit: int,
    ) -> tuple[Identities, tuple[bool, bool]]:
        """`identify` for the keys of a whole group: the INN and contract rows are capped at
        GROUP_CAP instead of `per_request_limit`; the flags say whether each list is complete."""
        found = await self.identify(values, inns, contracts, limit=GROUP_CAP + 1)
        complete = (len(found.by_inn) <= GROUP_CAP, len(found.by_contract) <= GROUP_CAP)
        return found, complete

    async def group_history(
        self, *, message_ids: Sequence[str], content_hashes: Sequence[str], client_ids: Sequence[int],
        senders: Sequence[str], months: Sequence[str], start: datetime, end: datetime, since: datetime,
        count_refused: bool, recent_limit: int,
    ) -> GroupHistory:
        """What the duplicate and monthly-limit checks of a group arrived from `start` to `end` may read,
        in at most five statements (see GroupHistory)."""
        seen: list[SeenMessage] = []
        if message_ids:
            rows = await _fetch(
                "SELECT t.id, m.message_id, m.from_address, t.duplicate_of_id FROM message m"
                " JOIN ticket t ON t.id = m.ticket_id"
                f" WHERE m.message_id IN ({marks(len(message_ids))}) AND m.direction = ? ORDER BY m.id LIMIT ?",
                [*message_ids, str(MessageDirection.INBOUND), GROUP_CAP + 1])
            seen = [SeenMessage(r[0], r[1] or "", r[2], r[3]) for r in rows]
        same: list[PriorTicket] = []
        if content_hashes:
            rows = await _fetch(
                f"SELECT {_TICKET_COLUMNS} FROM ticket t WHERE t.content_hash IN ({marks(len(content_hashes))})"
                f" AND t.arrived_at <= ? AND (t.arrived_at >= ? OR t.status IN ({marks(len(_OPEN))}))"
                " ORDER BY t.arrived_at, t.id LIMIT ?",
                [*content_hashes, end, since, *_OPEN, GROUP_CAP + 1])
            same = [_prior(r) for r in rows]
        counts: dict[tuple[int, str], int] = {}
        if client_ids and months:
            sql = (f"SELECT t.client_id, t.month_key, COUNT(*) FROM ticket t WHERE t.client_id IN ({marks(len(client_ids))})"
                   f" AND t.month_key IN ({marks(len(months))}) AND t.counts_toward_limit = ? AND t.arrived_at < ?")
            values: list[Any] = [*client_ids, *months, True, start]
            if not count_refused:
                sql += " AND t.status <> ?"
                values.append(str(TicketStatus.REFUSED))
            for r in await _fetch(sql + " GROUP BY t.client_id, t.month_key", values):
                counts[(int(r[0]), r[1])] = int(r[2])
        inside: list[KnownTicket] = []
        recent_by_client: dict[int, list[PriorTicket]] = {c: [] for c in client_ids}
        recent_by_sender: dict[str, list[PriorTicket]] = {s: [] for s in senders}
        whose = [("t.client_id = ?", c) for c in client_ids] + [("t.sender_address = ?", s) for s in senders]
        if whose:
            # Every ticket of these clients and senders inside the group's span (usually none: the group is
            # the newest mail), with its request text.
            rows = await _fetch(
                f"SELECT {_TICKET_COLUMNS}, m.new_text, m.attachments, t.client_id, t.month_key,"
                " t.counts_toward_limit FROM ticket t LEFT JOIN message m ON m.id = ("
                " SELECT f.id FROM message f WHERE f.ticket_id = t.id AND f.direction = ? ORDER BY f.id LIMIT 1)"
                f" WHERE ({' OR '.join(w for w, _ in whose)}) AND t.arrived_at >= ? AND t.arrived_at <= ?"
                " ORDER BY t.arrived_at, t.id",
                [str(MessageDirection.INBOUND), *(v for _, v in whose), start, end])
            inside = [KnownTicket(_prior(r, r[7], r[8]), r[9], r[10], bool(r[11])) for r in rows]
            # Per client or sender, the newest tickets before the group, each branch on its own index.
            branches = [
                f"SELECT * FROM (SELECT {k} AS k, {_TICKET_COLUMNS} FROM ticket t WHERE {w} AND t.arrived_at < ?"
                f" AND (t.arrived_at >= ? OR t.status IN ({marks(len(_OPEN))}))"
                f" ORDER BY t.arrived_at DESC, t.id DESC LIMIT ?) b{k}"
                for k, (w, _) in enumerate(whose)
            ]
            params: list[Any] = []
            for _, v in whose:
                params += [v, start, since, *_OPEN, recent_limit]
            rows = await _fetch(
                f"SELECT t.k, {_TICKET_COLUMNS}, m.new_text, m.attachments FROM ("
                + " UNION ALL ".join(branches) + ") t LEFT JOIN message m ON m.id = ("
                " SELECT f.id FROM message f WHERE f.ticket_id = t.id AND f.direction = ? ORDER BY f.id LIMIT 1)"
                " ORDER BY t.k, t.arrived_at DESC, t.id DESC",
                [*params, str(MessageDirection.INBOUND)])
            for r in rows:
                k = int(r[0])
                prior = _prior(tuple(r)[1:], r[8], r[9])
                _, who = whose[k]
                (recent_by_client[who] if k < len(client_ids) else recent_by_sender[who]).append(prior)  # type: ignore[index]
        return GroupHistory(
            start=start, end=end, since=since, count_refused=count_refused,
            message_ids=frozenset(message_ids), seen=seen[:GROUP_CAP], seen_cut=len(seen) > GROUP_CAP,
            content_hashes=frozenset(content_hashes), same_hash=same[:GROUP_CAP], same_hash_cut=len(same) > GROUP_CAP,
            client_ids=frozenset(client_ids), months=frozenset(months), month_counts=counts, inside=inside,
            recent_limit=recent_limit, recent_by_client=recent_by_client, recent_by_sender=recent_by_sender,
        )

