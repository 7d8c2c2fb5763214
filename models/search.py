"""Ticket search (`/search` in the staff chat): the index of message texts and the search over it.

One index row per message worth finding (an inbound mail other than a delivery report, a staff reply, a
note), written in the transaction that writes the message (models/ingest.py, models/desk.py,
models/effects.py); existing messages were indexed by migration 0003. Two implementations of one
`SearchIndex` protocol, chosen by the connection's dialect:

- SQLite: an FTS5 table (`search_fts`, contentless: the rowid is the message id) over the lemmatised
  terms of models/search_terms.py, which the parse workers make beside the policy's analysis (the main
  process lemmatises only what it writes itself, staff replies and notes, and the query);
- PostgreSQL: `search_doc` (message id, ticket id, `tsvector`) with a GIN index, the text parsed by the
  `russian` configuration (its stemmer for words; its parser keeps numbers, codes such as "полярный-7"
  and addresses as exact tokens).

A ticket matches when every term of the query is in one of its messages or names its client (a client
name, INN or contract: read from the registry at query time, so a renamed client is found by its new
name). The filters `client:NAME`, `status:open|closed|refused` and a month `2026-11` narrow the tickets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient

from models.search_terms import INDEX_CHARS, Term, hit_count, index_terms, query_terms, snippet
from models.statuses import MessageDirection, TicketStatus
from models.store.sql import for_dialect, marks
from models.tables import Client, Message, Ticket

LIMIT = 10
STAFF_REPLY = "staff_reply"  # the event (and message kind) of a staff member's reply email
STATUS_FILTERS: dict[str, tuple[TicketStatus, ...]] = {
    "open": (TicketStatus.NEW, TicketStatus.ACCEPTED),
    "closed": (TicketStatus.CLOSED, TicketStatus.ANSWERED),
    "refused": (TicketStatus.REFUSED,),
}
_OPTION = re.compile(r'(?i)\b(client|status):(?:"([^"]*)"|(\S+))')
_MONTH = re.compile(r"(?<![\w-])(\d{4})-(0[1-9]|1[0-2])(?![\w-])")
# Inbound messages that are not the client's words (reports about our own emails) are not indexed.
_NOT_INDEXED_KINDS = ("bounce", "feedback_report")


class BadQuery(ValueError):
    """A filter the search does not know (the staff see the usage)."""


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[Term, ...] = ()
    client: str | None = None
    statuses: tuple[TicketStatus, ...] = ()
    month: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.terms or self.client or self.statuses or self.month)


def parse_query(text: str) -> SearchQuery:
    """`text` of `/search`: words and tokens, `client:NAME` (or `client:"two words"`), `status:...`
    and a month YYYY-MM. Raises BadQuery for an unknown status."""
    client: str | None = None
    statuses: tuple[TicketStatus, ...] = ()
    for match in _OPTION.finditer(text):
        name, value = match.group(1).lower(), (match.group(2) if match.group(2) is not None else match.group(3))
        if name == "client":
            client = value.strip() or None
        elif value.lower() in STATUS_FILTERS:
            statuses = STATUS_FILTERS[value.lower()]
        else:
            raise BadQuery(value)
    rest = _OPTION.sub(" ", text)
    month = None
    found = _MONTH.search(rest)
    if found:
        month = found.group(0)
        rest = rest[: found.start()] + " " + rest[found.end():]
    return SearchQuery(query_terms(rest), client, statuses, month)


@dataclass(frozen=True)
class SearchDoc:
    """One message to index. `terms`: its index terms when a parse worker made them already."""

    message_id: int
    ticket_id: int
    texts: tuple[str, ...]
    terms: str | None = None


@dataclass(frozen=True)
class SearchHit:
    ticket_id: int
    status: TicketStatus
    arrived_at: datetime
    client: str  # the client's name, or the sender when the client is not identified
    subject: str
    snippet: tuple[tuple[str, bool], ...]  # (piece, is a hit) pieces of plain text


@dataclass(frozen=True)
class SearchResult:
    query: SearchQuery
    hits: list[SearchHit]
    more: bool  # more tickets matched than are shown


# The SQLite index row of a ticket: its arrival (whole seconds since 1970) above its id, so the FTS5 rowid
# order is the search's order (newest first, then the higher id) and `rowid & TICKET_MASK` is the ticket.
# Ticket ids stay below 2**30 (a billion tickets); the arrival fits 33 bits (until the year 2242).
TICKET_BITS = 30
TICKET_MASK = (1 << TICKET_BITS) - 1


def _sqlite_key(alias: str = "") -> str:
    """The index rowid of a ticket, from its `ticket` row (`alias.`: a qualified one)."""
    return f"((CAST(strftime('%s', {alias}arrived_at) AS INTEGER) << {TICKET_BITS}) | {alias}id)"


def _fts_string(key: str) -> str:
    """A quoted FTS5 string: its characters are one token by the table's tokenizer (TOKEN_CHARS)."""
    return '"' + key.replace('"', '""') + '"'


class SearchIndex(Protocol):
    async def add(self, conn: BaseDBAsyncClient, docs: Sequence[SearchDoc]) -> None:
        """Index `docs` on `conn` (the transaction writing their messages): their terms join their tickets'."""

    async def merge(self, conn: BaseDBAsyncClient, source_ticket: int, target_ticket: int) -> None:
        """The source ticket's messages moved to the target: its terms are the target's now."""

    async def text_query(self, conn: BaseDBAsyncClient, terms: Sequence[Term]) -> tuple[Any, ...] | None:
        """The parameters asking for every one of `terms` (None when the database ignores them all, as a
        stop word it knows)."""

    def newest_sql(self, params: int) -> str:
        """Ids of the newest tickets whose words match the `params` parameters of `text_query`, in the
        index's order, joined to `ticket t` for the filters: formatted with `{where}` and `{limit}`."""

    def says_sql(self, terms: Sequence[Term], text: tuple[Any, ...]) -> tuple[str, list[Any]]:
        """A condition on `ticket t` and its parameters: its words say every one of `terms` (`text`: their
        `text_query`), for a plan driven by `ticket`, one look at each candidate ticket's row."""


class SqliteSearchIndex:
    """FTS5 `search_fts`: one row per ticket (rowid `_SQLITE_KEY`) holding the terms of all its indexed
    messages, each once; a new message's terms rewrite its ticket's row."""

    async def _keys(self, conn: BaseDBAsyncClient, ticket_ids: Sequence[int]) -> dict[int, int]:
        _, rows = await conn.execute_query(
            f"SELECT id, {_sqlite_key()} FROM ticket WHERE id IN ({marks(len(ticket_ids))})", list(ticket_ids))
        return {int(r[0]): int(r[1]) for r in rows}

    async def _terms(self, conn: BaseDBAsyncClient, keys: Sequence[int]) -> dict[int, str]:
        _, rows = await conn.execute_query(
            f"SELECT rowid, terms FROM search_fts WHERE rowid IN ({marks(len(keys))})", list(keys))
        return {int(r[0]): str(r[1]) for r in rows}

    async def _write(self, conn: BaseDBAsyncClient, new: dict[int, str], old: dict[int, str]) -> None:
        """`new` terms per key, merged into the `old` rows of the same keys."""
        inserts, updates = [], []
        for key, terms in new.items():
            if key not in old:
                inserts.append([key, terms])
                continue
            merged = " ".join(dict.fromkeys(f"{old[key]} {terms}".split()))
            if merged != old[key]:
                updates.append([merged, key])
        if inserts:
            await conn.execute_many("INSERT INTO search_fts (rowid, terms) VALUES (?, ?)", inserts)
        if updates:
            await conn.execute_many("UPDATE search_fts SET terms = ? WHERE rowid = ?", updates)

    async def add(self, conn: BaseDBAsyncClient, docs: Sequence[SearchDoc]) -> None:
        if not docs:
            return
        keys = await self._keys(conn, list(dict.fromkeys(d.ticket_id for d in docs)))
        new: dict[int, str] = {}
        for d in docs:
            terms = d.terms if d.terms is not None else index_terms(d.texts)
            key = keys[d.ticket_id]
            new[key] = f"{new[key]} {terms}" if key in new else terms
        new = {key: " ".join(dict.fromkeys(terms.split())) for key, terms in new.items()}
        await self._write(conn, new, await self._terms(conn, list(new)))

    async def merge(self, conn: BaseDBAsyncClient, source_ticket: int, target_ticket: int) -> None:
        keys = await self._keys(conn, [source_ticket, target_ticket])
        source, target = keys[source_ticket], keys[target_ticket]
        old = await self._terms(conn, [source, target])
        if source not in old:
            return
        await conn.execute_query("DELETE FROM search_fts WHERE rowid = ?", [source])
        await self._write(conn, {target: old[source]}, {k: v for k, v in old.items() if k == target})

    async def text_query(self, conn: BaseDBAsyncClient, terms: Sequence[Term]) -> tuple[Any, ...] | None:
        return (" ".join(_fts_string(term.key) for term in terms),) if terms else None  # FTS5: space is AND

    def newest_sql(self, params: int) -> str:
        # FTS5 walks its rowids downwards and stops at the limit: the common words cost no more than rare ones.
        return (f"SELECT f.rowid & {TICKET_MASK} FROM search_fts f JOIN ticket t ON t.id = (f.rowid & {TICKET_MASK})"
                " WHERE search_fts MATCH ? AND {where} ORDER BY f.rowid DESC LIMIT {limit}")

    def says_sql(self, terms: Sequence[Term], text: tuple[Any, ...]) -> tuple[str, list[Any]]:
        # The row's own terms, each once between spaces, as the query's keys are made: cheaper than a MATCH
        # restricted to one rowid, which still reads the terms' whole doclists.
        found = " AND ".join("instr(' ' || terms || ' ', ?) > 0" for _ in terms)
        return (f"EXISTS (SELECT 1 FROM search_fts WHERE rowid = {_sqlite_key('t.')} AND {found})",
                [f" {term.key} " for term in terms])


class PostgresSearchIndex:
    """`search_doc`: one row per ticket (its id and arrival) with the stripped `tsvector` of all its indexed
    messages; a new message's vector is concatenated to its ticket's."""

    async def add(self, conn: BaseDBAsyncClient, docs: Sequence[SearchDoc]) -> None:
        rows = [[d.ticket_id, pg_text(d.texts)] for d in docs]
        if rows:
            await conn.execute_many(
                "INSERT INTO search_doc (ticket_id, arrived_at, tsv) SELECT id, arrived_at,"
                " strip(to_tsvector('russian', $2)) FROM ticket WHERE id = $1"
                " ON CONFLICT (ticket_id) DO UPDATE SET tsv = search_doc.tsv || EXCLUDED.tsv",
                rows,
            )

    async def merge(self, conn: BaseDBAsyncClient, source_ticket: int, target_ticket: int) -> None:
        await conn.execute_query(
            "INSERT INTO search_doc (ticket_id, arrived_at, tsv) SELECT t.id, t.arrived_at, s.tsv"
            " FROM search_doc s JOIN ticket t ON t.id = $1 WHERE s.ticket_id = $2"
            " ON CONFLICT (ticket_id) DO UPDATE SET tsv = search_doc.tsv || EXCLUDED.tsv",
            [target_ticket, source_ticket],
        )
        await conn.execute_query("DELETE FROM search_doc WHERE ticket_id = $1", [source_ticket])

    async def text_query(self, conn: BaseDBAsyncClient, terms: Sequence[Term]) -> tuple[Any, ...] | None:
        # A term the configuration drops (a stop word it knows) asks nothing: left out of the AND.
        _, rows = await conn.execute_query(
            "SELECT numnode(plainto_tsquery('russian', x)) FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n)"
            " ORDER BY n",
            [[term.typed for term in terms]],
        )
        typed = [term.typed for term, row in zip(terms, rows, strict=True) if int(row[0]) > 0]
        return tuple(typed) if typed else None

    def newest_sql(self, params: int) -> str:
        # The GIN index, then the newest of the matches (a top-N sort of their arrival, kept in the row).
        return ("SELECT d.ticket_id FROM search_doc d JOIN ticket t ON t.id = d.ticket_id"
                f" WHERE d.tsv @@ ({_pg_tsquery(params)}) AND {{where}} ORDER BY d.arrived_at DESC, d.ticket_id DESC"
                " LIMIT {limit}")

    def says_sql(self, terms: Sequence[Term], text: tuple[Any, ...]) -> tuple[str, list[Any]]:
        return (f"EXISTS (SELECT 1 FROM search_doc d WHERE d.ticket_id = t.id AND d.tsv @@ ({_pg_tsquery(len(text))}))",
                list(text))


def _pg_tsquery(params: int) -> str:
    """Every typed term parsed by `russian`, AND-ed; written out (not an array) so the planner sees the
    words and estimates how many tickets say them."""
    return " && ".join("plainto_tsquery('russian', ?)" for _ in range(params))


def _no_tags(text: str) -> str:
    """PostgreSQL's parser reads "<...>" as an HTML tag and drops it, with the text of a <script> or <style>
    element: a client's "<script>покупателю</script>" is still words to find, so the brackets become spaces.
    Two `str.replace` calls, not `str.translate`: translate looks every character up in a dict (about 5 ms
    for 64 K characters of Cyrillic, in the main process, per message); replace scans with memchr (0.04 ms)."""
    return text.replace("<", " ").replace(">", " ")


def pg_text(texts: Sequence[str]) -> str:
    """The text PostgreSQL indexes for one message; an address also under its domain ("romashka.ru")."""
    parts = [_no_tags(t[:INDEX_CHARS]) for t in texts if t]
    parts.extend(t.rsplit("@", 1)[1] for t in texts if "@" in t and " " not in t.strip())
    return "\n".join(parts)


def search_index(conn: BaseDBAsyncClient) -> SearchIndex:
    return PostgresSearchIndex() if conn.capabilities.dialect == "postgres" else SqliteSearchIndex()


def current_connection() -> BaseDBAsyncClient:
    """The connection an ORM write would use now: inside `in_transaction()`, that transaction's."""
    return Message._meta.db


async def move_messages(source_ticket: int, target_ticket: int, conn: BaseDBAsyncClient | None = None) -> None:
    """A merge moved a ticket's messages to another: their terms follow (models/merging.py), in the merge's
    transaction."""
    conn = conn or current_connection()
    await search_index(conn).merge(conn, source_ticket, target_ticket)


async def index_messages(docs: Sequence[SearchDoc], conn: BaseDBAsyncClient | None = None) -> None:
    """Index messages in the transaction that writes them (`conn`, or the current one)."""
    conn = conn or current_connection()
    await search_index(conn).add(conn, docs)


def inbound_doc(message_id: int, ticket_id: int, subject: str, new_text: str, name: str, address: str,
                terms: str | None = None) -> SearchDoc:
    return SearchDoc(message_id, ticket_id, (subject, new_text, name, address), terms)


def indexed(direction: MessageDirection | str, kind: str) -> bool:
    """Whether a message of this direction and kind is searchable: the client's mail (not a report about
    our own), the staff's replies and notes; not the template emails (accepted, refused...)."""
    direction = MessageDirection(direction)
    if direction is MessageDirection.INBOUND:
        return kind not in _NOT_INDEXED_KINDS
    return direction is MessageDirection.NOTE or kind == STAFF_REPLY


# ------------------------------------------------------------------------------------------------
# The search
# ------------------------------------------------------------------------------------------------


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _client_sql(conn: BaseDBAsyncClient, text: str) -> tuple[str, list[Any]]:
    """Client ids whose name contains `text` (any case), or whose INN or contract (any case) is `text`."""
    if conn.capabilities.dialect == "postgres":
        return ("SELECT id FROM client WHERE name ILIKE ? ESCAPE '\\' OR inn = ? OR lower(contract) = lower(?)",
                [_like(text), text, text])
    if len(text) >= 3:
        # The trigram index of names and contracts (migration 0003), case-insensitive for every alphabet; a
        # contract that contains `text` and is as long is `text`.
        return ("SELECT rowid FROM client_fts WHERE client_fts MATCH ? UNION SELECT rowid FROM client_fts"
                " WHERE client_fts MATCH ? AND length(contract) = length(?) UNION SELECT id FROM client WHERE inn = ?",
                ["name : " + _fts_string(text), "contract : " + _fts_string(text), text, text])
    # Shorter than a trigram: the list itself (SQLite's LIKE folds ASCII only, so the usual spellings).
    variants = list(dict.fromkeys((text, text.lower(), text.upper(), text.capitalize(), text.title())))
    names = " OR ".join("name LIKE ? ESCAPE '\\'" for _ in variants)
    return (f"SELECT id FROM client WHERE {names} OR inn = ? OR lower(contract) = lower(?)",
            [*map(_like, variants), text, text])


async def _naming_clients(conn: BaseDBAsyncClient, terms: Sequence[Term]) -> list[bool]:
    """Per term, whether it names a client (then its tickets match the term without saying it)."""
    if not terms:
        return []
    parts, params = [], []
    for term in terms:
        sql, args = _client_sql(conn, term.typed)
        parts.append(f"EXISTS ({sql})")
        params.extend(args)
    _, rows = await conn.execute_query(for_dialect("SELECT " + ", ".join(parts), conn), params)
    return [bool(v) for v in tuple(rows[0])]


def _filters(conn: BaseDBAsyncClient, query: SearchQuery, by_client: bool = False) -> tuple[list[str], list[Any]]:
    """The filters as conditions on `ticket t`. `by_client`: the clients' tickets are the few to start from,
    so SQLite must not start from the status index (a third of all tickets) instead."""
    where: list[str] = []
    params: list[Any] = []
    if query.client:
        client_sql, client_args = _client_sql(conn, query.client)
        # Two narrow reads (the client index; the sender index scanned, not the wide ticket rows).
        where.append(f"t.id IN (SELECT id FROM ticket WHERE client_id IN ({client_sql}) UNION ALL"
                     " SELECT id FROM ticket WHERE lower(sender_address) LIKE ? ESCAPE '\\')")
        params.extend([*client_args, _like(query.client.lower())])
    if query.statuses:
        status = "+t.status" if by_client and conn.capabilities.dialect == "sqlite" else "t.status"
        where.append(f"{status} IN ({marks(len(query.statuses))})")
        params.extend(str(s) for s in query.statuses)
    if query.month:
        where.append("t.month_key = ?")
        params.append(query.month)
    return where, params


async def matching_ticket_ids(query: SearchQuery, limit: int, conn: BaseDBAsyncClient | None = None) -> list[int]:
    """The ids of the tickets matching `query`, newest first (arrival), at most `limit`.

    Without `client:`, the index walks its tickets newest first and stops at the limit (every term in one
    index query): the common words cost no more than rare ones. The tickets of a client, named by a term or
    by `client:`, come from `ticket` (its client index), each checked against its own index row: a term
    naming the ticket's client needs not be in its words. Both sets together, newest first."""
    conn = conn or Ticket._meta.db
    index = search_index(conn)
    where, params = _filters(conn, query)
    if not query.terms:
        return await _from_tickets(conn, where, params, limit)
    text = await index.text_query(conn, query.terms)
    if text is None:  # every term was a stop word: nothing to find by text
        return []
    naming = await _naming_clients(conn, query.terms)
    ids: list[int] = []
    if not query.client:  # every term by the words, newest first from the index
        sql = index.newest_sql(len(text)).format(where=" AND ".join(where) or "TRUE", limit=int(limit))
        _, rows = await conn.execute_query(for_dialect(sql, conn), [*text, *params])
        ids = [int(r[0]) for r in rows]
        if not any(naming):
            return ids
    # From `ticket`: the tickets of the named clients (or of `client:`), each term said by the words unless
    # it names the ticket's client; each candidate ticket's index row is read once.
    conditions, args = [], []
    named = []
    for term, names in zip(query.terms, naming, strict=True):
        own = await index.text_query(conn, [term])
        says, says_args = index.says_sql([term], own) if own is not None else ("FALSE", [])
        if names:
            client_sql, client_args = _client_sql(conn, term.typed)
            named.append((client_sql, client_args))
            conditions.append(f"(t.client_id IN ({client_sql}) OR {says})")
            args.extend([*client_args, *says_args])
        elif own is not None:
            conditions.append(says)
            args.extend(says_args)
    # The driving set first, then the filters, the words last (read for the tickets left).
    where, params = _filters(conn, query, by_client=True)
    if not query.client:  # only the tickets of a named client are left to find
        where.insert(0, "t.client_id IN (" + " UNION ".join(sql for sql, _ in named) + ")")
        params[:0] = [a for _, client_args in named for a in client_args]
    ids.extend(await _from_tickets(conn, where + conditions, params + args, limit))
    if len(ids) <= 1:
        return ids
    return await _from_tickets(conn, [f"t.id IN ({marks(len(set(ids)))})"], list(set(ids)), limit)


async def _from_tickets(conn: BaseDBAsyncClient, where: list[str], params: list[Any], limit: int) -> list[int]:
    sql = (f"SELECT t.id FROM ticket t WHERE {' AND '.join(where) or 'TRUE'}"
           f" ORDER BY t.arrived_at DESC, t.id DESC LIMIT {int(limit)}")
    _, rows = await conn.execute_query(for_dialect(sql, conn), params)
    return [int(r[0]) for r in rows]


async def search_tickets(text: str, limit: int = LIMIT) -> SearchResult:
    """The staff's `/search TEXT`: the newest `limit` matching tickets with a snippet of each. An empty
    query, or one with an unknown filter, comes back `empty` (the caller shows the usage)."""
    try:
        query = parse_query(text)
    except BadQuery:
        query = SearchQuery()
    if query.empty:
        return SearchResult(query, [], False)
    ids = await matching_ticket_ids(query, limit + 1)
    more, ids = len(ids) > limit, ids[:limit]
    if not ids:
        return SearchResult(query, [], False)
    tickets = {t.id: t for t in await Ticket.filter(id__in=ids)}
    clients = {c.id: c.name for c in await Client.filter(id__in={t.client_id for t in tickets.values() if t.client_id})}
    snippets = await _snippets(ids, query.terms)
    hits = [
        SearchHit(
            ticket_id=tid, status=TicketStatus(tickets[tid].status), arrived_at=tickets[tid].arrived_at,
            client=clients.get(tickets[tid].client_id or 0) or tickets[tid].sender_name or tickets[tid].sender_address,
            subject=tickets[tid].subject, snippet=snippets.get(tid, ()),
        )
        for tid in ids if tid in tickets
    ]
    return SearchResult(query, hits, more)


async def _snippets(ticket_ids: Sequence[int], terms: Sequence[Term]) -> dict[int, tuple[tuple[str, bool], ...]]:
    """Per ticket, a snippet of the indexed message saying the most terms (the newest of equals); the
    ticket's first message when none says any (it matched by its client)."""
    conn = Ticket._meta.db
    _, rows = await conn.execute_query(
        for_dialect(
            f"SELECT ticket_id, direction, kind, subject, substr(new_text, 1, 8000), substr(text, 1, 8000)"
            f" FROM message WHERE ticket_id IN ({marks(len(ticket_ids))}) ORDER BY id",
            conn,
        ),
        list(ticket_ids),
    )
    best: dict[int, tuple[int, str]] = {}
    for ticket_id, direction, kind, subject, new_text, text in rows:
        if not indexed(direction, kind):
            continue
        body = "\n".join(x for x in (subject if direction == MessageDirection.INBOUND else "", new_text or text) if x)
        score = hit_count(body, terms) if terms else 0
        if ticket_id not in best or score >= best[ticket_id][0] and score > 0:
            best[ticket_id] = (score, body)
    return {tid: snippet(body, terms) for tid, (_, body) in best.items()}


async def rebuild_index(conn: BaseDBAsyncClient, batch: int = 500) -> int:
    """Index every searchable message into an empty index (migration 0003, benchmarks); returns the count.
    Read in ticket order, so a ticket's messages mostly meet in one batch (a ticket across two is merged)."""
    index = search_index(conn)
    done, last = 0, (0, 0)
    while True:
        _, rows = await conn.execute_query(
            for_dialect(
                "SELECT id, ticket_id, direction, kind, subject, new_text, text, from_name, from_address FROM message"
                " WHERE ticket_id > ? OR ticket_id = ? AND id > ? ORDER BY ticket_id, id LIMIT ?",
                conn,
            ),
            [last[0], last[0], last[1], batch],
        )
        if not rows:
            if conn.capabilities.dialect == "postgres":  # the planner learns how common each word is
                await conn.execute_script("ANALYZE search_doc")
            return done
        docs = []
        for mid, tid, direction, kind, subject, new_text, text, name, address in rows:
            last = (int(tid), int(mid))
            if not indexed(direction, kind):
                continue
            if direction == MessageDirection.INBOUND:
                docs.append(inbound_doc(int(mid), int(tid), subject, new_text, name, address))
            else:
                docs.append(SearchDoc(int(mid), int(tid), (new_text or text,)))
        await index.add(conn, docs)
        done += len(docs)
