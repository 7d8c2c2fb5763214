"""Use cases: turning stored mail into tickets, and the staff decisions on them.

Every use case writes its effects (emails, Telegram posts) as outbox rows in the SAME transaction as
the state change that caused them; the outbox workers deliver them later, exactly once. Every status
change is a guarded conditional update, so a double click or a faster colleague gets "already handled"
instead of a second email.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import DBConnectionError, TransactionManagementError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.analysed import AnalysedMail, parse_and_analyse
from models.calendar import BusinessCalendar
from models.clock import as_utc as _aware
from models.clock import utcnow
from models.fast_rows import RowInserter
from models.inbound import InboundMessage, MalformedMessage, MessageKind, without_nul
from models.policy import PolicyEngine, PolicyRequest, Verdict, month_key
from models.policy.base import FindingCode
from models.policy.group import GroupLookups
from models.policy.records import KnownTicket, PriorTicket
from models.policy.repository import TortoisePolicyRepository
from models.policy.rules.duplicates import request_content_hash
from models.pool_chunks import submit_chunked
from models.ports import BoardPost, Mailer, StaffBoard, ThreadInfo
from models.raw_store import load_content, load_contents
from models.sql import datetime_from_db, for_dialect, marks, reserve_ids
from models.tables import (
    Client,
    Decision,
    EmailOutbox,
    Message,
    MessageDirection,
    OutboxStatus,
    RawMail,
    RawMailStatus,
    StaffMember,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)

log = logging.getLogger(__name__)

TICKET_TAG = re.compile(r"\[#(\d{1,9})\]")

# Refusal reasons of clause 2.6 (plus 2.4 consulting) and the email template each one sends.
REFUSAL_EVENTS: dict[str, str] = {
    "unidentified": "refused_unidentified",
    "out_of_scope": "refused_out_of_scope",
    "profanity": "refused_profanity",
    "duplicate": "refused_duplicate",
    "monthly_limit": "refused_monthly_limit",
    "consulting": "consulting_not_provided",
}
REFUSAL_CLAUSES: dict[str, str] = {
    "unidentified": "2.6",
    "out_of_scope": "2.6",
    "profanity": "2.6",
    "duplicate": "2.6",
    "monthly_limit": "2.6",
    "consulting": "2.4",
}
OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.ACCEPTED)
# The Decision kinds that end a refusal, and the idempotency-key prefix of the email each one queues.
REFUSAL_ACTIONS: dict[str, str] = {"refused": "refuse", "refused_after_acceptance": "withdraw"}
# For an "already" answer: the decisions that put a ticket in each status (the latest one is named).
_DECIDED_BY: dict[TicketStatus, tuple[str, ...]] = {
    TicketStatus.ACCEPTED: ("accepted", "replied"),  # see Workflow.decided
    TicketStatus.REFUSED: tuple(REFUSAL_ACTIONS),
    TicketStatus.ANSWERED: ("answered_faq",),
    TicketStatus.CLOSED: ("closed",),
}
# The ingest hot path inserts plain rows (models/fast_rows.py): no model instance per row.
_TICKETS = RowInserter(Ticket)
_MESSAGES = RowInserter(Message)
_POSTS = RowInserter(TelegramOutbox)



@dataclass(frozen=True)
class WorkflowConfig:
    staff_chat_id: int
    support_address: str = "support@storeolis.ru"
    company_addresses: frozenset[str] = frozenset({"support@storeolis.ru"})
    language: str = "ru"
    timezone: str = "Europe/Moscow"
    sla_business_days: int = 5
    refusal_grace: timedelta = timedelta(seconds=30)
    monthly_limit: int = 3


@dataclass(frozen=True)
class Decided:
    """Who took a ticket out of the waiting state, and when: what "already accepted by X at HH:MM" names."""

    status: str  # the ticket's status: accepted | refused | answered | closed
    action: str  # the Decision row's kind
    staff_name: str
    at: datetime


@dataclass
class Outcome:
    """What a staff action did, for the handler to answer the button press."""

    status: str  # done | already | needs_confirmation | not_found | too_late | invalid | not_accepted
    ticket_id: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    older_waiting: list[int] = field(default_factory=list)
    email_id: int | None = None
    detail: str = ""
    decided: Decided | None = None  # with "already": the decision that got there first

    @property
    def ok(self) -> bool:
        return self.status == "done"


class _Lost(Exception):
    """Raised inside a decision's transaction to roll back what it wrote when a guarded update lost."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


class Workflow:
    def __init__(
        self,
        config: WorkflowConfig,
        *,
        policy: PolicyEngine,
        calendar: BusinessCalendar,
        mailer: Mailer,
        board: StaffBoard,
        parser: Callable[[bytes], InboundMessage],
        clock: Callable[[], datetime] = utcnow,
        parse_executor: Executor | None = None,
        parse_stored: Callable[[int], AnalysedMail | InboundMessage | None] | None = None,
        analyser: Callable[[InboundMessage], dict[str, Any]] | None = None,
        max_group: int = 64,
        parse_ahead: int = 100,
        parse_chunk: int = 10,
        on_email_queued: Callable[[], None] = lambda: None,
        on_post_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.calendar = calendar
        self.mailer = mailer
        self.board = board
        self.parser = parser
        self.clock = clock
        self.parse_executor = parse_executor
        # In the pool: raw mail id -> parsed message, read by the worker itself (mail/stored.py).
        self.parse_stored = parse_stored
        # The policy's text work (`PolicyEngine.analyse`), run in the pool beside the parser; picklable.
        self.analyser = analyser
        # At most this many new requests share one ingest transaction: it holds the database's write
        # lock while their policies run, so staff actions wait for one group at most.
        self.max_group = max_group
        # With a pool, the parses of this many rows after the current batch are started early.
        self.parse_ahead = parse_ahead
        self._ahead: dict[int, asyncio.Future[Any]] = {}  # raw mail id -> its parse, started ahead
        # Mails per pool task when the workers read them by id (models/pool_chunks.py).
        self.parse_chunk = parse_chunk
        self.on_email_queued = on_email_queued
        self.on_post_queued = on_post_queued
        # Transient-looking failures per raw mail (or group) while the database answers (`_outage`).
        self._strikes: dict[object, int] = {}

    # ------------------------------------------------------------------------------------------------
    # Mail in: stored raw mail -> tickets
    # ------------------------------------------------------------------------------------------------
    async def process_stored(self, batch: int = 50) -> int:
        """Turn up to `batch` stored raw emails into tickets, in arrival order; returns how many."""
        # The bytes are in raw_mail_content: a worker that reads them itself (parse_stored) never makes
        # the main process hold them, and the other paths load them only where they are needed.
        # The next calls' rows are read too and their parses started now (`parse_ahead`): the workers never
        # wait for this batch's last group to be ingested before they get more to parse.
        ahead = self.parse_ahead if self.parse_executor is not None else 0
        rows = await _stored_rows(batch + ahead)
        pending = await self._parses_for(rows)
        rows, later = rows[:batch], rows[batch:]
        self._ahead = {row.id: future for row, future in zip(later, pending[batch:], strict=True)}
        pending = pending[:batch]
        if not rows:
            return 0
        seen: dict[int, AnalysedMail | Exception] = {}  # a lookahead that ends a group is not parsed twice
        try:
            i = 0
            while i < len(rows):
                # With a pool, each mail is ingested as soon as its own parse is done, in arrival order,
                # while the workers are still parsing the later ones: parsing and ingesting overlap.
                parsed = seen.pop(i, None) or await self._parsed(rows[i], pending[i] if pending else None)
                try:
                    thread = await self._thread_of(parsed)
                    if thread is not None or not _is_request(parsed):
                        await self._ingest(rows[i], parsed, thread)
                        i += 1
                        continue
                except Exception as exc:  # this mail's data (or the database): see _failed
                    await self._failed(rows[i], parsed, exc)
                    i += 1
                    continue
                # New requests whose parses are already done go in together: one transaction, one claim
                # and one insert per table for the group instead of a chain of round trips per mail.
                group = [(rows[i], parsed)]
                i += 1
                while i < len(rows) and len(group) < self.max_group and pending and pending[i].done():
                    parsed = seen[i] = await self._parsed(rows[i], pending[i])
                    if not _plainly_new(parsed):
                        break  # ingested on its own, in order, by the outer loop
                    group.append((rows[i], seen.pop(i)))
                    i += 1
                await self._ingest_group(group)  # type: ignore[arg-type]  # _is_request checked
        finally:
            for future in pending:  # only matters when an ingest raised: nothing is left running for it
                _discard(future)
        self.on_post_queued()
        self.on_email_queued()
        return len(rows)

    async def _parses_for(self, rows: Sequence[StoredRow]) -> list[asyncio.Future[Any]]:
        """A started parse for every row (none without a pool): those begun ahead by the previous call,
        new ones for the rest. Parses begun ahead for rows no longer waiting are dropped."""
        if self.parse_executor is None:
            return []
        started, self._ahead = self._ahead, {}
        wanted = {row.id for row in rows}
        for raw_mail_id, future in started.items():
            if raw_mail_id not in wanted:  # taken by another processor meanwhile
                _discard(future)
        missing = [row for row in rows if row.id not in started]
        new = dict(zip([row.id for row in missing], await self._submit_parses(missing), strict=True))
        return [started.get(row.id) or new[row.id] for row in rows]

    async def _parsed(self, row: StoredRow, future: asyncio.Future[Any] | None) -> AnalysedMail | Exception:
        """The parse of one row: from the pool (awaited; a done future may be awaited again) or inline."""
        if future is None:
            return self._safe_parse(await _raw_content(row.id))
        parsed = await _outcome(future)
        if parsed is None:  # the worker's connection could not see the row yet: hand the bytes over
            parsed = await _outcome(self._submit_bytes(await _raw_content(row.id)))
        return parsed or RuntimeError("the parser returned nothing")

    async def _submit_parses(self, rows: Sequence[StoredRow]) -> list[asyncio.Future[Any]]:
        """Start parsing every row in the process pool (none without a pool: parsed inline, one by one)."""
        # Parsing is CPU work: a process pool keeps it off the event loop and uses both cores for a backlog.
        if self.parse_executor is None or not rows:
            return []
        if self.parse_stored is not None:  # the worker reads the bytes itself; a few ids per task
            return submit_chunked(self.parse_executor, self.parse_stored, [r.id for r in rows], self.parse_chunk)
        contents = await load_contents(r.id for r in rows)
        return [self._submit_bytes(contents.get(r.id) or b"") for r in rows]

    def _submit_bytes(self, content: bytes) -> asyncio.Future[Any]:
        assert self.parse_executor is not None
        work = functools.partial(parse_and_analyse, parser=self.parser, analyser=self.analyser)
        return asyncio.get_running_loop().run_in_executor(self.parse_executor, work, bytes(content))

    def _safe_parse(self, content: bytes) -> AnalysedMail | Exception:
        try:
            # Inline (no pool): the rules analyse the text themselves while they run.
            return AnalysedMail(without_nul(self.parser(bytes(content))))
        except Exception as exc:  # the parser promises MalformedMessage only; anything else is ours
            return exc

    async def _thread_of(self, parsed: AnalysedMail | Exception) -> Ticket | None:
        """The ticket a mail (not a bounce: those are matched by the mail they report) continues."""
        if isinstance(parsed, Exception) or parsed.message.kind is MessageKind.BOUNCE:
            return None
        return await self._find_thread(parsed.message)

    async def _ingest(self, row: StoredRow, parsed: AnalysedMail | Exception, thread: Ticket | None) -> None:
        """One mail that is not a new request (or a new request on its own): by kind and thread."""
        if isinstance(parsed, Exception):
            reason = str(parsed) if isinstance(parsed, MalformedMessage) else f"parser error: {parsed!r}"
            if not isinstance(parsed, MalformedMessage):
                log.error("parser raised on raw mail %s: %r", row.id, parsed)
            code = parsed.code if isinstance(parsed, MalformedMessage) else "unparseable"
            await self._quarantine(row, reason, code=code)
            return
        msg = parsed.message
        if msg.kind is MessageKind.BOUNCE:
            await self._ingest_bounce(row, msg)
            return
        if thread is not None:
            await self._ingest_followup(row, msg, thread)
        elif msg.kind is MessageKind.AUTO_REPLY:
            await self._ingest_unthreaded_auto_reply(row, msg)
        else:
            await self._ingest_new_requests([(row, parsed)])

    # ------------------------------------------------------------------------------------------------
    # Isolation per mail: what one mail's data breaks is that mail's problem, never intake's
    # ------------------------------------------------------------------------------------------------
    async def _ingest_group(self, group: Sequence[tuple[StoredRow, AnalysedMail]]) -> None:
        """A group of new requests in one transaction; when it fails, its mails one by one, so only the
        mail that fails alone is quarantined and the others of the group still become tickets."""
        try:
            await self._ingest_new_requests(group)
            return
        except Exception as exc:
            if len(group) == 1:
                await self._failed(group[0][0], group[0][1], exc)
                return
            # The transaction is rolled back (on PostgreSQL a failed statement aborts it anyway): nothing of
            # the group is committed. An outage is not the mails' fault: raised, the supervisor retries.
            if await self._outage(exc, ("group", group[0][0].id)):
                raise
            log.warning("ingest group of %d mails (raw %s..%s) failed (%r): one by one",
                        len(group), group[0][0].id, group[-1][0].id, exc)
        for row, parsed in group:  # in arrival order, each in its own transaction
            try:
                await self._ingest_new_requests([(row, parsed)])
            except Exception as exc:
                await self._failed(row, parsed, exc)

    async def _failed(self, row: StoredRow, parsed: AnalysedMail | Exception, exc: Exception) -> None:
        """Registering this one mail raised: quarantine it with a notice, unless the database itself is
        failing (then raise, nothing is lost: the mail stays STORED and is retried)."""
        if await self._outage(exc, row.id):
            raise exc
        log.error("raw mail %s could not be registered: %r", row.id, exc, exc_info=exc)
        msg = parsed.message if isinstance(parsed, AnalysedMail) else None
        await self._quarantine(row, _error_text(exc), stage="ingest", code="ingest", message=msg,
                               error_type=type(exc).__name__)

    async def _outage(self, exc: Exception, key: object) -> bool:
        """True when `exc` should be retried later rather than quarantine a mail: the database does not
        answer, or the error is of the transient kind (connection, lock, I/O) and has not yet repeated
        MAX_STRIKES times for the same mail; data that keeps raising "transient" errors is quarantined
        in the end, so nothing crash-loops for ever."""
        if not await _database_answers():
            return True
        if not _transient(exc):
            return False
        strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
        if len(self._strikes) > 10_000:  # bounded: old keys are of mails long since ingested
            self._strikes = {key: strikes}
        return strikes < MAX_STRIKES

    async def _quarantine(
        self, row: StoredRow, reason: str, *, code: str, stage: str = "parse",
        message: InboundMessage | None = None, error_type: str = "",
    ) -> None:
        """Keep the raw bytes, mark the mail QUARANTINED and tell the staff which mail and why, in one
        transaction (the notice is an outbox row). `reason` is the English detail kept in raw_mail.error;
        the notice says `code` in the staff's language (and the exception's class for `ingest`)."""
        reason = _storable(reason)
        facts: dict[str, Any] = {"raw_mail_id": row.id, "reason": reason[:500], "size": row.size, "stage": stage,
                                 "code": code, "error_type": error_type[:100]}
        if message is not None:
            facts.update(sender=_storable(message.from_address)[:320], name=_storable(message.from_name)[:300],
                         subject=_storable(message.subject)[:300])
        async with in_transaction():
            changed = await RawMail.filter(id=row.id, status=RawMailStatus.STORED).update(
                status=RawMailStatus.QUARANTINED, error=reason[:2000]
            )
            if changed:
                post = await self.board.notice("quarantined", facts)
                await self._queue_post(post, f"quarantine:{row.id}")
        self._strikes.pop(row.id, None)
        log.warning("raw mail %s quarantined: %s", row.id, reason[:200])

    async def _find_thread(self, msg: InboundMessage) -> Ticket | None:
        """A reply to one of our emails (or to the client's own earlier mail) joins that ticket."""
        ids = [i for i in [msg.in_reply_to, *reversed(msg.references)] if i]
        if ids:
            known = await Message.filter(message_id__in=ids[:50]).order_by("-id").first()
            if known is not None:
                return await Ticket.get(id=known.ticket_id)
            sent = await EmailOutbox.filter(message_id__in=ids[:50]).exclude(ticket_id=None).first()
            if sent is not None:
                return await Ticket.get(id=sent.ticket_id)
        tag = TICKET_TAG.search(msg.subject or "")
        if tag:
            ticket = await Ticket.get_or_none(id=int(tag.group(1)))
            # The tag alone is easy to forge: accept it only from the same sender or the same client.
            if ticket is not None and await self._same_party(ticket, msg.from_address):
                return ticket
        return None

    async def _same_party(self, ticket: Ticket, address: str) -> bool:
        if address and address == ticket.sender_address:
            return True
        if ticket.client_id is None or not address:
            return False
        domain = "@" + address.split("@", 1)[-1]
        return await Client.filter(id=ticket.client_id, addresses__value__in=[address, domain]).exists()

    async def _ingest_bounce(self, row: StoredRow, msg: InboundMessage) -> None:
        ids = [i for i in msg.bounced_message_ids if i]
        email = await EmailOutbox.filter(message_id__in=ids).first() if ids else None
        if email is None or email.ticket_id is None:
            await self._quarantine(row, "delivery failure report for a message we do not know", code="unknown_bounce")
            return
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            await EmailOutbox.filter(id=email.id).update(delivery_failed=True)
            message = await self._store_message(email.ticket_id, row, msg, kind="bounce")
            post = await self.board.followup(
                email.ticket_id, message.id, note="bounce:" + ", ".join(msg.bounced_recipients)
            )
            await self._queue_post(post, f"followup:{message.id}")

    async def _ingest_followup(self, row: StoredRow, msg: InboundMessage, ticket: Ticket) -> None:
        kind = "auto_reply" if msg.kind is MessageKind.AUTO_REPLY else "followup"
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            message = await self._store_message(ticket.id, row, msg, kind=kind)
            reopened = False
            if kind == "followup" and ticket.status == TicketStatus.CLOSED:
                reopened = bool(
                    await Ticket.filter(id=ticket.id, status=TicketStatus.CLOSED).update(
                        status=TicketStatus.ACCEPTED
                    )
                )
                if reopened:
                    await Decision.create(ticket_id=ticket.id, action="reopened", comment="client wrote again")
            post = await self.board.followup(ticket.id, message.id, note="reopened" if reopened else "")
            await self._queue_post(post, f"followup:{message.id}")
            if reopened:
                await self._queue_card_update(ticket.id, f"reopen:{message.id}")

    async def _ingest_unthreaded_auto_reply(self, row: StoredRow, msg: InboundMessage) -> None:
        # Recorded, never answered, never counted: a closed ticket without a card keeps it visible.
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            ticket = await Ticket.create(**self._ticket_fields(row, msg, verdict=None, status=TicketStatus.CLOSED))
            await self._store_message(ticket.id, row, msg, kind="auto_reply")
            await Decision.create(ticket_id=ticket.id, action="auto_reply_recorded", comment=msg.kind_reason)

    async def _ingest_new_requests(self, group: Sequence[tuple[StoredRow, AnalysedMail]]) -> None:
        """New requests, in arrival order, in one transaction: claim the rows, then per mail the policy
        and the ticket (the policy of each sees the tickets of the mails before it, as if they had been
        committed one by one), then the messages and the cards of the whole group in one insert each."""
        async with in_transaction() as conn:
            claimed = await self._claim_raws(conn, [row.id for row, _ in group])
            mine = [(row, parsed) for row, parsed in group if row.id in claimed]  # others: another processor's
            requests = [PolicyRequest(ticket_id=None, arrived_at=_aware(row.internal_date), message=parsed.message,
                                      analyses=parsed.analyses) for row, parsed in mine]
            # The group's lookups in a few statements instead of four round trips per mail (a mail alone
            # asks its four directly: fewer than the prefetch's six).
            # With the lookups, the tickets' numbers are reserved first and the tickets inserted in one
            # statement at the end (or before any lookup the database answers: `flush`); the verdicts
            # see them through the lookups meanwhile. Alone, a mail's ticket is inserted for its number.
            pending: list[dict[str, Any]] = []

            async def flush() -> None:
                if pending:
                    await _TICKETS.insert_many(conn, pending, with_keys=True)
                    pending.clear()

            lookups = self._group_lookups(flush) if len(requests) > 1 else None
            reserved: list[int] = []
            if lookups is not None:
                await lookups.prefetch(requests, self.policy.data)
                reserved = await reserve_ids(conn, "ticket", len(requests))  # the claim holds the write lock
            created: list[tuple[StoredRow, InboundMessage, int]] = []
            for index, ((row, parsed), request) in enumerate(zip(mine, requests, strict=True)):
                msg = parsed.message
                verdict = await self.policy.evaluate(request, repository=lookups)
                fields = self._ticket_fields(row, msg, verdict=verdict, status=TicketStatus.NEW,
                                             analyses=parsed.analyses)
                if lookups is None:
                    ticket_id = await _TICKETS.insert(conn, fields)
                else:
                    ticket_id = reserved[index]
                    pending.append({"id": ticket_id, **fields})
                    lookups.add_created(_known_ticket(ticket_id, fields, msg))
                created.append((row, msg, ticket_id))
            await flush()
            if not created:
                return
            # The rows need no NUL guard (no signals fire here): an AnalysedMail's message is NUL-free.
            await _MESSAGES.insert_many(
                conn, [_message_fields(ticket_id, row, msg, kind="request") for row, msg, ticket_id in created])
            notes = [note for _, msg, ticket_id in created if (note := _parse_notes(ticket_id, msg)) is not None]
            if notes:
                await Decision.bulk_create(notes, using_db=conn)
            now = self.clock()
            cards = []
            for _, _, ticket_id in created:
                post = self.board.new_card(ticket_id)
                # The ticket is brand new, so its card key cannot exist yet: a plain insert (the unique key
                # still guards it) instead of get_or_create's select + savepoint on the ingest hot path.
                cards.append(dict(idempotency_key=f"card:{ticket_id}", kind=post.kind, chat_id=post.chat_id,
                                  payload=post.payload, not_before=now, **post.extra))
            await _POSTS.insert_many(conn, cards)

    def _group_lookups(self, flush: Callable[[], Awaitable[None]]) -> GroupLookups | None:
        """Batched lookups for an ingest group, when the policy reads our own tables (test doubles of the
        repository are asked directly)."""
        repository = self.policy.repository
        if not isinstance(repository, TortoisePolicyRepository):
            return None
        return GroupLookups(repository, self.policy.config, flush)

    async def _claim_raws(self, conn: BaseDBAsyncClient, ids: list[int]) -> set[int]:
        """Inside the ingest transaction: STORED -> PROCESSED for the rows still STORED, in one statement;
        returns the ids this transaction claimed (another processor may have taken some)."""
        if len(ids) == 1:
            return set(ids) if await self._claim_raw_id(ids[0]) else set()
        # UPDATE ... RETURNING (SQLite 3.35+, PostgreSQL): which rows changed, without a second query.
        sql = f"UPDATE raw_mail SET status = ? WHERE status = ? AND id IN ({marks(len(ids))}) RETURNING id"
        if conn.capabilities.dialect == "postgres":
            # tortoise's asyncpg client runs a statement that starts with UPDATE without fetching its rows;
            # as a data-modifying WITH it is a query like any other.
            sql = f"WITH claimed AS ({sql}) SELECT id FROM claimed"
        _, rows = await conn.execute_query(
            for_dialect(sql, conn), [str(RawMailStatus.PROCESSED), str(RawMailStatus.STORED), *ids]
        )
        return {int(r[0]) for r in rows}

    async def _claim_raw(self, row: StoredRow) -> bool:
        """Inside the ingest transaction: only one processor turns a stored mail into a ticket."""
        return await self._claim_raw_id(row.id)

    @staticmethod
    async def _claim_raw_id(raw_mail_id: int) -> bool:
        return bool(
            await RawMail.filter(id=raw_mail_id, status=RawMailStatus.STORED).update(status=RawMailStatus.PROCESSED)
        )

    def _ticket_fields(
        self,
        row: StoredRow,
        msg: InboundMessage,
        *,
        verdict: Verdict | None,
        status: TicketStatus,
        analyses: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        arrived = _aware(row.internal_date)
        counts = bool(
            verdict is not None
            and verdict.client is not None
            and not verdict.has(FindingCode.DUPLICATE)
            and status is TicketStatus.NEW
        )
        return dict(
            client_id=verdict.client.client_id if verdict and verdict.client else None,
            status=status,
            arrived_at=arrived,
            arrival_uid=row.uid,
            month_key=month_key(arrived, self.config.timezone),
            counts_toward_limit=counts,
            # UTC in the database: SQLite compares datetimes as text, so one offset keeps the order right.
            sla_due_at=self.calendar.add_business_days(arrived, self.config.sla_business_days).astimezone(UTC)
            if status is TicketStatus.NEW
            else None,
            subject=msg.subject[:1000],
            sender_address=msg.from_address[:320],
            sender_name=msg.from_name[:300],
            content_hash=request_content_hash(msg, analyses),
            verdict=verdict.to_json() if verdict else {},
            duplicate_of_id=verdict.duplicate_of if verdict else None,
            language=self.config.language,
        )

    async def _store_message(self, ticket_id: int, row: StoredRow, msg: InboundMessage, *, kind: str) -> Message:
        note = _parse_notes(ticket_id, msg)
        if note is not None:
            await note.save()
        message = self._message_row(ticket_id, row, msg, kind=kind)
        await message.save()
        return message

    @staticmethod
    def _message_row(ticket_id: int, row: StoredRow, msg: InboundMessage, *, kind: str) -> Message:
        """The inbound Message of a stored mail (not saved yet)."""
        return Message(**_message_fields(ticket_id, row, msg, kind=kind))


    # ------------------------------------------------------------------------------------------------
    # Staff decisions
    # ------------------------------------------------------------------------------------------------
    async def reevaluate(self, ticket: Ticket) -> Verdict:
        """Run the policy again on a stored ticket (the world may have changed since it arrived)."""
        first = await Message.filter(ticket_id=ticket.id, direction=MessageDirection.INBOUND).order_by("id").first()
        raw = await load_content(first.raw_mail_id) if first and first.raw_mail_id else None
        if raw is None:
            return Verdict.from_json(ticket.verdict)
        # Parsing and the rules' text work are CPU work on client text of any size: in the parse pool when
        # there is one, else in a thread, never on the event loop a staff press arrives on (issue 16).
        if self.parse_executor is not None and self.analyser is not None:
            parsed = await self._submit_bytes(raw)
        else:
            parsed = await asyncio.to_thread(parse_and_analyse, raw, parser=self.parser, analyser=self.policy.analyse)
        return await self.policy.evaluate(
            PolicyRequest(ticket_id=ticket.id, arrived_at=_aware(ticket.arrived_at), message=parsed.message,
                          analyses=parsed.analyses)
        )

    async def decided(self, ticket_id: int) -> Decided | None:
        """The decision that took the ticket out of the waiting state (the latest one of the kind its
        status comes from), with the staff member's name; None while it waits or if nobody is recorded."""
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return None
        status = TicketStatus(ticket.status)
        actions = _DECIDED_BY.get(status)
        if not actions:
            return None
        if status == TicketStatus.ACCEPTED:
            # The "accepted" row; a reply to a waiting request accepts it too (2.3), and only then does
            # the earliest reply name who took it.
            decision = await Decision.filter(ticket_id=ticket_id, action="accepted").order_by("-id").first()
            if decision is None:
                decision = await Decision.filter(ticket_id=ticket_id, action="replied").order_by("id").first()
        else:
            decision = await Decision.filter(ticket_id=ticket_id, action__in=actions).order_by("-id").first()
        if decision is None:
            return None
        staff = await StaffMember.get_or_none(id=decision.staff_id) if decision.staff_id else None
        name = (staff.name or staff.username or str(staff.telegram_id)) if staff else ""
        return Decided(status=status.value, action=decision.action, staff_name=name, at=_aware(decision.created_at))

    async def _already(self, ticket_id: int) -> Outcome:
        """The answer to the loser of a race (or a stale button): who decided first, and when."""
        decided = await self.decided(ticket_id)
        return Outcome("already", ticket_id, detail=decided.status if decided else "", decided=decided)

    async def accept(self, ticket_id: int, staff: StaffMember, *, confirmed: bool = False) -> Outcome:
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        if ticket.status != TicketStatus.NEW:
            return await self._already(ticket_id)
        verdict = await self.reevaluate(ticket)
        concerns = [f.to_json() for f in verdict.findings if f.severity in ("block", "warn")]
        if concerns and not confirmed:
            return Outcome("needs_confirmation", ticket_id, findings=concerns)
        now = self.clock()
        async with in_transaction():
            # Taken only from the waiting state: a colleague's refusal or FAQ answer that committed first
            # makes this update change nothing, and nothing below is written.
            changed = await Ticket.filter(id=ticket_id, status=TicketStatus.NEW).update(
                status=TicketStatus.ACCEPTED,
                assignee_id=staff.id,
                first_decided_at=now,
                verdict=verdict.to_json(),
                client_id=verdict.client.client_id if verdict.client else ticket.client_id,
            )
            if changed:
                decision = await Decision.create(
                    ticket_id=ticket_id,
                    staff_id=staff.id,
                    action="accepted",
                    details={"despite": [f["code"] for f in concerns]},
                )
                email = await self._queue_email(ticket, "accepted", {}, f"accept:{decision.id}", staff=staff)
                await self._queue_card_update(ticket_id, f"accepted:{decision.id}")
        if not changed:
            return await self._already(ticket_id)
        self._wake()
        older = await self.older_waiting(ticket)
        return Outcome("done", ticket_id, older_waiting=older, email_id=email.id if email else None)

    async def refuse(self, ticket_id: int, staff: StaffMember, reason: str, comment: str = "") -> Outcome:
        """Refuse a waiting request. An accepted one is refused only by `withdraw_acceptance_and_refuse`,
        so a stale Refuse button never sends a refusal after an acceptance email."""
        if reason not in REFUSAL_EVENTS:
            return Outcome("invalid", ticket_id, detail=f"unknown reason {reason!r}")
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        return await self._refuse(ticket, staff, reason, comment, from_status=TicketStatus.NEW)

    async def withdraw_acceptance_and_refuse(
        self, ticket_id: int, staff: StaffMember, reason: str, comment: str = ""
    ) -> Outcome:
        """The explicit "refuse after acceptance": only from ACCEPTED, its own Decision kind
        (`refused_after_acceptance`) and email key (`withdraw:<decision>`); the email says the earlier
        acceptance is withdrawn. Undone within the grace period like any refusal (back to accepted)."""
        if reason not in REFUSAL_EVENTS:
            return Outcome("invalid", ticket_id, detail=f"unknown reason {reason!r}")
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        if ticket.status == TicketStatus.NEW:
            return Outcome("not_accepted", ticket_id)
        return await self._refuse(ticket, staff, reason, comment, from_status=TicketStatus.ACCEPTED)

    async def _refuse(
        self, ticket: Ticket, staff: StaffMember, reason: str, comment: str, *, from_status: TicketStatus
    ) -> Outcome:
        ticket_id = ticket.id
        withdrawing = from_status == TicketStatus.ACCEPTED
        action = "refused_after_acceptance" if withdrawing else "refused"
        acceptance = await self.decided(ticket_id) if withdrawing else None
        now = self.clock()
        async with in_transaction():
            changed = await Ticket.filter(id=ticket_id, status=from_status).update(
                status=TicketStatus.REFUSED,
                refuse_reason=reason,
                first_decided_at=ticket.first_decided_at or now,
                assignee_id=ticket.assignee_id or staff.id,
            )
            if changed:
                details: dict[str, Any] = {"clause": REFUSAL_CLAUSES[reason], "previous_status": from_status.value}
                context: dict[str, Any] = {"comment": comment, "monthly_limit": self.config.monthly_limit}
                if acceptance is not None:
                    details["withdrawn"] = {"by": acceptance.staff_name, "at": acceptance.at.isoformat()}
                    context["withdrawn_acceptance"] = self._local_date(acceptance.at)
                elif withdrawing:
                    context["withdrawn_acceptance"] = self._local_date(ticket.first_decided_at or now)
                decision = await Decision.create(
                    ticket_id=ticket_id, staff_id=staff.id, action=action, reason=reason, comment=comment,
                    details=details,
                )
                if reason == "duplicate":
                    context["original_ticket_number"] = ticket.duplicate_of_id or Verdict.from_json(
                        ticket.verdict
                    ).duplicate_of or ticket_id
                email = await self._queue_email(
                    ticket,
                    REFUSAL_EVENTS[reason],
                    context,
                    f"{REFUSAL_ACTIONS[action]}:{decision.id}",
                    staff=staff,
                    not_before=now + self.config.refusal_grace,
                )
                await self._queue_card_update(ticket_id, f"{action}:{decision.id}")
        if not changed:
            return await self._already(ticket_id)
        self._wake()
        return Outcome("done", ticket_id, email_id=email.id if email else None)

    def _local_date(self, value: datetime) -> str:
        """A date for a client email, in TIMEZONE (the day the client was told "accepted")."""
        return _aware(value).astimezone(ZoneInfo(self.config.timezone)).strftime("%d.%m.%Y")

    async def undo_refusal(self, ticket_id: int, staff: StaffMember) -> Outcome:
        """Within the grace period the refusal email has not left: cancel it and put the request back
        where it was (waiting, or accepted for a refusal after acceptance)."""
        decision = (
            await Decision.filter(ticket_id=ticket_id, action__in=list(REFUSAL_ACTIONS)).order_by("-id").first()
        )
        if decision is None:
            return Outcome("not_found", ticket_id)
        email = await EmailOutbox.get_or_none(idempotency_key=f"{REFUSAL_ACTIONS[decision.action]}:{decision.id}")
        previous = TicketStatus(decision.details.get("previous_status", TicketStatus.NEW.value))
        # Back to waiting clears the first-processing time; back to accepted keeps the acceptance's.
        restored: dict[str, Any] = {"status": previous, "refuse_reason": None}
        if previous == TicketStatus.NEW:
            restored["first_decided_at"] = None
        try:
            async with in_transaction():
                if not await Ticket.filter(id=ticket_id, status=TicketStatus.REFUSED).update(**restored):
                    raise _Lost(Outcome("already", ticket_id))
                if email is not None:
                    cancelled = await EmailOutbox.filter(id=email.id, status=OutboxStatus.PENDING).update(
                        status=OutboxStatus.CANCELLED
                    )
                    if not cancelled:  # it has left: the ticket stays refused (rolled back)
                        raise _Lost(Outcome("too_late", ticket_id))
                    await Message.filter(message_id=email.message_id).delete()
                undo = await Decision.create(
                    ticket_id=ticket_id, staff_id=staff.id, action="refusal_undone", details={"decision": decision.id}
                )
                await self._queue_card_update(ticket_id, f"undo:{undo.id}")
        except _Lost as lost:
            return lost.outcome
        self._wake()
        return Outcome("done", ticket_id)

    async def answer_faq(self, ticket_id: int, staff: StaffMember) -> Outcome:
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        entries = Verdict.from_json(ticket.verdict).faq_entries if ticket.verdict else []
        if not entries:
            return Outcome("invalid", ticket_id, detail="no FAQ match")
        language = ticket.language
        links = [link for e in entries for link in e.get("links", [])]
        answer = "\n\n".join(str(e.get(f"answer_{language}") or e.get("answer") or "") for e in entries).strip()
        now = self.clock()
        async with in_transaction():
            # A first decision like accept and refuse: only from the waiting state.
            changed = await Ticket.filter(id=ticket_id, status=TicketStatus.NEW).update(
                status=TicketStatus.ANSWERED,
                first_decided_at=ticket.first_decided_at or now,
                assignee_id=ticket.assignee_id or staff.id,
            )
            if changed:
                decision = await Decision.create(
                    ticket_id=ticket_id,
                    staff_id=staff.id,
                    action="answered_faq",
                    details={"faq": [e.get("id") for e in entries]},
                )
                email = await self._queue_email(
                    ticket,
                    "faq_answer",
                    {"faq_links": links, "faq_answer_text": answer},
                    f"faq:{decision.id}",
                    staff=staff,
                )
                await self._queue_card_update(ticket_id, f"faq:{decision.id}")
        if not changed:
            return await self._already(ticket_id)
        self._wake()
        return Outcome("done", ticket_id, email_id=email.id if email else None)

    async def reply(
        self,
        ticket_id: int,
        staff: StaffMember,
        text: str,
        *,
        key: str,
        attachments: list[tuple[str, str, bytes]] | None = None,
    ) -> Outcome:
        """A staff member's reply in Telegram, sent to the client in the same email thread.
        `key` identifies the Telegram message, so a redelivered update sends nothing twice."""
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        if await EmailOutbox.filter(idempotency_key=f"reply:{key}").exists():
            return Outcome("already", ticket_id)
        if not self.mail_allowed(ticket):
            # Checked before anything is written: a reply that cannot go must not mark the ticket answered.
            return Outcome("invalid", ticket_id, detail="no_mail")
        now = self.clock()
        try:
            async with in_transaction():
                # A reply is a first processing too (2.3) when nobody decided yet.
                if ticket.status == TicketStatus.NEW:
                    await Ticket.filter(id=ticket_id, status=TicketStatus.NEW).update(
                        status=TicketStatus.ACCEPTED, first_decided_at=now, assignee_id=staff.id
                    )
                await Decision.create(
                    ticket_id=ticket_id, staff_id=staff.id, action="replied", comment=text[:4000]
                )
                email = await self._queue_email(
                    ticket,
                    "staff_reply",
                    {"reply_text": text},
                    f"reply:{key}",
                    staff=staff,
                    auto_submitted=False,
                    attachments=attachments,
                )
                if email is None:
                    raise ValueError("no email composed")
                await self._queue_card_update(ticket_id, f"reply:{key}")
        except ValueError as error:
            # The composer refused this email (an address it cannot write, a part it cannot carry). The
            # transaction rolled back, so nothing says "answered"; the outcome carries the reason as a
            # code for the staff side to word (detail: "bad_address:<address>" or "unsendable:<why>").
            log.warning("reply to ticket #%s not composed: %s", ticket_id, error)
            if "address" in str(error):
                return Outcome("invalid", ticket_id, detail=f"bad_address:{ticket.sender_address}")
            return Outcome("invalid", ticket_id, detail=f"unsendable:{error}")
        self._wake()
        return Outcome("done", ticket_id, email_id=email.id)

    async def note(self, ticket_id: int, staff: StaffMember, text: str) -> Outcome:
        if not await Ticket.exists(id=ticket_id):
            return Outcome("not_found", ticket_id)
        await Message.create(
            ticket_id=ticket_id, direction=MessageDirection.NOTE, kind="note", text=text, staff_id=staff.id
        )
        await Decision.create(ticket_id=ticket_id, staff_id=staff.id, action="note", comment=text[:4000])
        return Outcome("done", ticket_id)

    async def close(self, ticket_id: int, staff: StaffMember) -> Outcome:
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        now = self.clock()
        async with in_transaction():
            changed = await Ticket.filter(
                id=ticket_id, status__in=(TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.ANSWERED)
            ).update(status=TicketStatus.CLOSED, first_decided_at=ticket.first_decided_at or now)
            if not changed:
                return Outcome("already", ticket_id)
            decision = await Decision.create(ticket_id=ticket_id, staff_id=staff.id, action="closed")
            email = await self._queue_email(ticket, "resolved", {}, f"close:{decision.id}", staff=staff)
            await self._queue_card_update(ticket_id, f"closed:{decision.id}")
        self._wake()
        return Outcome("done", ticket_id, email_id=email.id if email else None)

    async def older_waiting(self, ticket: Ticket, limit: int = 5) -> list[int]:
        """Requests still waiting that arrived before this one (2.3: order of arrival)."""
        rows = (
            await Ticket.filter(status=TicketStatus.NEW)
            .filter(
                Q(arrived_at__lt=ticket.arrived_at)
                | Q(arrived_at=ticket.arrived_at, arrival_uid__lt=ticket.arrival_uid)
            )
            .order_by("arrived_at", "arrival_uid")
            .limit(limit)
            .values_list("id", flat=True)
        )
        return list(rows)

    # ------------------------------------------------------------------------------------------------
    # Effects
    # ------------------------------------------------------------------------------------------------
    def mail_allowed(self, ticket: Ticket) -> bool:
        """Never an email to our own address or to nobody (loops, RFC 3834)."""
        address = (ticket.sender_address or "").lower()
        if not address or "@" not in address:
            return False
        if address in self.config.company_addresses or address == self.config.support_address:
            return False
        local = address.split("@", 1)[0]
        return local not in ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply")

    async def thread_info(self, ticket: Ticket) -> ThreadInfo:
        messages = await Message.filter(ticket_id=ticket.id).exclude(direction=MessageDirection.NOTE).order_by("id")
        ids = [m.message_id for m in messages if m.message_id]
        last_in = next(
            (m for m in reversed(messages) if m.direction == MessageDirection.INBOUND and m.message_id), None
        )
        client_name = ""
        if ticket.client_id:
            client = await Client.get_or_none(id=ticket.client_id)
            client_name = client.name if client else ""
        return ThreadInfo(
            ticket_id=ticket.id,
            to_address=ticket.sender_address,
            to_name=ticket.sender_name,
            original_subject=ticket.subject,
            in_reply_to=last_in.message_id if last_in else None,
            references=ids[-20:],
            language=ticket.language,
            client_name=client_name or ticket.sender_name,
        )

    async def _queue_email(
        self,
        ticket: Ticket,
        event: str,
        context: dict[str, Any],
        key: str,
        *,
        staff: StaffMember | None = None,
        not_before: datetime | None = None,
        auto_submitted: bool = True,
        attachments: list[tuple[str, str, bytes]] | None = None,
    ) -> EmailOutbox | None:
        if not self.mail_allowed(ticket):
            await Decision.create(ticket_id=ticket.id, action="email_skipped", details={"event": event})
            return None
        thread = await self.thread_info(ticket)
        composed = self.mailer.compose(
            event,
            thread,
            context,
            auto_submitted=auto_submitted,
            attachments=attachments,
            staff_name=staff.name if staff else "",
        )
        row = await EmailOutbox.create(
            idempotency_key=key,
            ticket_id=ticket.id,
            event=event,
            message_id=composed.message_id,
            recipients=composed.recipients,
            content=composed.content,
            not_before=not_before or self.clock(),
        )
        await Message.create(
            ticket_id=ticket.id,
            direction=MessageDirection.OUTBOUND,
            kind=event,
            message_id=composed.message_id,
            in_reply_to=thread.in_reply_to,
            references=" ".join(thread.references),
            from_address=self.config.support_address,
            to=thread.to_address,
            subject=composed.subject[:1000],
            text=composed.text,
            new_text=composed.text,
            size=len(composed.content),
            attachments=[{"filename": a[0], "content_type": a[1], "size": len(a[2])} for a in attachments or []],
            staff_id=staff.id if staff else None,
        )
        return row

    async def _queue_card_update(self, ticket_id: int, key: str) -> None:
        post = await self.board.card_update(ticket_id)
        await self._queue_post(post, f"edit:{key}")

    async def _queue_post(self, post: BoardPost, key: str) -> TelegramOutbox:
        row, _ = await TelegramOutbox.get_or_create(
            idempotency_key=key,
            defaults={
                "kind": post.kind,
                "chat_id": post.chat_id,
                "payload": post.payload,
                "not_before": self.clock(),
                **post.extra,
            },
        )
        return row

    async def post(self, post: BoardPost, key: str) -> TelegramOutbox:
        """Queue a staff-chat post outside a decision (notices, alerts); idempotent by key."""
        row = await self._queue_post(post, key)
        self.on_post_queued()
        return row

    def _wake(self) -> None:
        self.on_email_queued()
        self.on_post_queued()


async def _outcome(future: asyncio.Future[Any]) -> AnalysedMail | Exception | None:
    """A parse in the pool as a value: the parser's exception (or a dead worker's) quarantines that mail;
    None from a worker that reads the row itself means it could not see the row."""
    try:
        result = await future
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc
    if result is None or isinstance(result, AnalysedMail):
        return result
    if isinstance(result, InboundMessage):  # a plain parser in the pool (tests, custom set-ups)
        return AnalysedMail(without_nul(result))
    return RuntimeError(str(result))


MAX_STRIKES = 5  # transient-looking failures of one mail, with the database answering, before quarantine
# SQLSTATE classes of errors that are the server's state, not the data: connection (08), transaction
# rollback such as serialization and deadlock (40), resources (53), operator intervention (57), system (58).
_TRANSIENT_SQLSTATE = ("08", "40", "53", "57", "58", "55P03")
_TRANSIENT_TEXT = ("database is locked", "database table is locked", "disk i/o error", "unable to open database")


def _transient(exc: BaseException) -> bool:
    """An error of the infrastructure (connection, lock, I/O) rather than of one mail's data."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # tortoise wraps the driver's error
        seen.add(id(current))
        if isinstance(current, OSError | DBConnectionError | TransactionManagementError | TimeoutError):
            return True
        sqlstate = str(getattr(current, "sqlstate", "") or "")
        if sqlstate.startswith(_TRANSIENT_SQLSTATE) or type(current).__name__ in _DRIVER_CONNECTION_ERRORS:
            return True
        if any(text in str(current).lower() for text in _TRANSIENT_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


# asyncpg's connection-level errors carry no SQLSTATE (models/ does not import the driver).
_DRIVER_CONNECTION_ERRORS = frozenset({"InterfaceError", "ConnectionDoesNotExistError", "InternalClientError"})


async def _database_answers() -> bool:
    """A trivial query on a fresh statement: False when the database itself is down or unreachable."""
    try:
        db = RawMail._meta.db
        await asyncio.wait_for(db.execute_query("SELECT 1"), 10)
    except Exception:
        return False
    return True


def _error_text(exc: BaseException) -> str:
    """"ValidationError: message_id: Length of ..." for the staff notice and raw_mail.error."""
    return f"{type(exc).__name__}: {exc}"


def _storable(text: str) -> str:
    """Text any database column can hold: no NUL (PostgreSQL), no lone surrogates (UTF-8)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class StoredRow(NamedTuple):
    """What ingesting needs of a stored raw mail (RawMail has the same attributes)."""

    id: int
    uid: int
    internal_date: datetime
    size: int


_INTERNAL_DATE = RawMail._meta.fields_map["internal_date"]


async def _stored_rows(limit: int) -> list[StoredRow]:
    """The oldest raw mails waiting to be ingested, in arrival order. Plain tuples: under a backlog this
    runs for every batch, and building RawMail instances cost more than the query."""
    db = RawMail._meta.db
    _, rows = await db.execute_query(
        for_dialect("SELECT id, uid, internal_date, size FROM raw_mail WHERE status = ?"
                    " ORDER BY internal_date, uid, id LIMIT ?", db),
        [str(RawMailStatus.STORED), limit],
    )
    return [StoredRow(int(r[0]), int(r[1]), datetime_from_db(r[2], _INTERNAL_DATE), int(r[3])) for r in rows]


def _discard(future: asyncio.Future[Any]) -> None:
    """A parse no longer wanted: cancelled if it has not run, its outcome retrieved if it has (no
    "exception was never retrieved" noise)."""
    if future.done() and not future.cancelled():
        future.exception()
    else:
        future.cancel()


def _is_request(parsed: AnalysedMail | Exception) -> bool:
    """Written by a person (not a parse failure, an auto-reply or a bounce)."""
    return not isinstance(parsed, Exception) and parsed.message.kind is MessageKind.REQUEST


def _plainly_new(parsed: AnalysedMail | Exception) -> bool:
    """A new request that needs no lookup to know it: no threading hint at all. A mail that names a
    Message-ID or a ticket may reply to a mail earlier in the same group, not committed yet, so it is
    looked up on its own after that group instead."""
    if isinstance(parsed, Exception):
        return False
    msg = parsed.message
    return (
        msg.kind is MessageKind.REQUEST
        and not msg.in_reply_to
        and not msg.references
        and TICKET_TAG.search(msg.subject or "") is None
    )


def _parse_notes(ticket_id: int, msg: InboundMessage) -> Decision | None:
    """Staff must know the text may be partial (size cap, broken MIME): the card shows this note."""
    if not (msg.oversize or msg.defects):
        return None
    return Decision(
        ticket_id=ticket_id,
        action="parse_notes",
        details={"oversize": msg.oversize, "size": msg.raw_size, "defects": msg.defects[:10]},
    )


def _known_ticket(ticket_id: int, fields: Mapping[str, Any], msg: InboundMessage) -> KnownTicket:
    """A ticket just inserted from `fields`, as the policy's lookups would read it back."""
    prior = PriorTicket(
        id=ticket_id, status=str(fields["status"]), arrived_at=fields["arrived_at"],
        duplicate_of=fields["duplicate_of_id"], subject=fields["subject"], sender_address=fields["sender_address"],
        content_hash=fields["content_hash"], new_text=msg.new_text,
        attachment_hashes=tuple(sorted(a.sha256 for a in msg.attachments if a.sha256)),
    )
    message_id = (msg.message_id or "")[:998]
    return KnownTicket(prior, fields["client_id"], fields["month_key"], fields["counts_toward_limit"],
                       message_ids=(message_id,) if message_id else (), from_address=msg.from_address[:320])


async def _raw_content(raw_mail_id: int) -> bytes:
    return await load_content(raw_mail_id) or b""



def _message_fields(ticket_id: int, row: StoredRow, msg: InboundMessage, *, kind: str) -> dict[str, Any]:
    """The fields of the inbound Message of a stored mail."""
    return dict(
        ticket_id=ticket_id,
        direction=MessageDirection.INBOUND,
        kind=kind,
        message_id=(msg.message_id or "")[:998] or None,
        in_reply_to=(msg.in_reply_to or "")[:998] or None,
        references=" ".join(msg.references)[:20000],
        from_address=msg.from_address[:320],
        from_name=msg.from_name[:300],
        to=", ".join(msg.to)[:5000],
        cc=", ".join(msg.cc)[:5000],
        subject=msg.subject[:1000],
        text=msg.text,
        new_text=msg.new_text,
        size=msg.raw_size,
        attachments=[
            {
                "part_index": a.part_index,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in msg.attachments
        ],
        raw_mail_id=row.id,
    )
