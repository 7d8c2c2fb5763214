"""Registering incoming mail: a stored, parsed raw mail becomes a ticket (or joins one), with its card.

Each path is one transaction that claims the raw mail (`STORED -> PROCESSED`, guarded) and writes the
ticket, its messages and the staff-chat post as outbox rows (models/effects.py): a bounce, a follow-up
in a known thread, an auto-reply nobody answers, and new requests, in groups that share one transaction.
What one mail's data breaks is that mail's problem: it is quarantined with a notice, the others go on.
Parsing, and which mails form a group, is the mail processor's (mail/processor.py): this module never
sees a process pool.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import DBConnectionError, TransactionManagementError
from tortoise.transactions import in_transaction

from models.analysed import AnalysedMail
from models.clock import as_utc
from models.deps import Services, UseCaseConfig
from models.effects import Acknowledgement, Effects
from models.inbound import InboundMessage, MalformedMessage, MessageKind
from models.intents import Followup, NewCard, StaffNotice
from models.merge_chain import final_ticket
from models.metrics_port import events
from models.policy import PolicyRequest, Verdict, month_key
from models.policy.base import FindingCode
from models.policy.group import GroupLookups
from models.policy.records import KnownTicket, PriorTicket
from models.policy.repository import TortoisePolicyRepository
from models.policy.rules.duplicates import request_content_hash
from models.post_queue import post_row
from models.search import inbound_doc, index_messages, indexed
from models.store.fast_rows import RowInserter
from models.store.raw_store import load_content
from models.store.sql import datetime_from_db, for_dialect, marks, reserve_ids
from models.tables import (
    Client,
    Decision,
    EmailOutbox,
    Message,
    MessageDirection,
    RawMail,
    RawMailStatus,
    StaffMember,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)

log = logging.getLogger(__name__)

TICKET_TAG = re.compile(r"\[#(\d{1,9})\]")
# The ingest hot path inserts plain rows (models/store/fast_rows.py): no model instance per row.
_TICKETS = RowInserter(Ticket)
_MESSAGES = RowInserter(Message)
_POSTS = RowInserter(TelegramOutbox)
# Reports about our own emails (bounces, feedback reports): matched by the email they report, never a card.
_REPORTS = frozenset({MessageKind.BOUNCE, MessageKind.FEEDBACK})


class Ingest:
    """Registers parsed mail; the mail processor (mail/processor.py) calls `thread_of`, then `ingest` for a
    mail on its own or `ingest_group` for consecutive new requests, and `failed` when a mail raised."""

    def __init__(self, config: UseCaseConfig, services: Services, effects: Effects) -> None:
        self.config = config
        self.policy = services.policy
        self.calendar = services.calendar
        self.clock = services.clock
        self.effects = effects
        # Transient-looking failures per raw mail (or group) while the database answers (`_outage`).
        self._strikes: dict[object, int] = {}


    async def thread_of(self, parsed: AnalysedMail | Exception) -> Ticket | None:
        """The ticket a mail (not a bounce: those are matched by the mail they report) continues."""
        if isinstance(parsed, Exception) or parsed.message.kind in _REPORTS:
            return None
        return await self._find_thread(parsed.message)

    async def ingest(self, row: StoredRow, parsed: AnalysedMail | Exception, thread: Ticket | None) -> None:
        """One mail that is not a new request (or a new request on its own): by kind and thread."""
        if isinstance(parsed, Exception):
            reason = str(parsed) if isinstance(parsed, MalformedMessage) else f"parser error: {parsed!r}"
            if not isinstance(parsed, MalformedMessage):
                log.error("parser raised on raw mail %s: %r", row.id, parsed)
            code = parsed.code if isinstance(parsed, MalformedMessage) else "unparseable"
            await self._quarantine(row, reason, code=code)
            return
        msg = parsed.message
        if msg.kind in _REPORTS:
            await self._ingest_bounce(row, msg)
            return
        if thread is not None:
            await self._ingest_followup(row, msg, thread, parsed.search)
        elif msg.kind is MessageKind.AUTO_REPLY:
            await self._ingest_unthreaded_auto_reply(row, msg, parsed.search)
        else:
            await self._ingest_new_requests([(row, parsed)])

    # ------------------------------------------------------------------------------------------------
    # Isolation per mail: what one mail's data breaks is that mail's problem, never intake's
    # ------------------------------------------------------------------------------------------------

    async def ingest_group(self, group: Sequence[tuple[StoredRow, AnalysedMail]]) -> None:
        """A group of new requests in one transaction; when it fails, its mails one by one, so only the
        mail that fails alone is quarantined and the others of the group still become tickets."""
        try:
            await self._ingest_new_requests(group)
            return
        except Exception as exc:
            if len(group) == 1:
                await self.failed(group[0][0], group[0][1], exc)
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
                await self.failed(row, parsed, exc)

    async def failed(self, row: StoredRow, parsed: AnalysedMail | Exception, exc: Exception) -> None:
        """Registering this one mail raised: quarantine it with a notice, unless the database itself is
        failing (then raise, nothing is lost: the mail stays STORED and is retried)."""
        if await self._outage(exc, row.id):
            raise exc
        log.error("raw mail %s (UID %s) could not be registered: %r", row.id, row.uid, exc, exc_info=exc,
                  extra={"uid": row.uid})
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
                await self.effects.queue_post(StaffNotice("quarantined", facts), f"quarantine:{row.id}")
        self._strikes.pop(row.id, None)
        log.warning("raw mail %s (UID %s) quarantined: %s", row.id, row.uid, reason[:200], extra={"uid": row.uid})

    async def _find_thread(self, msg: InboundMessage) -> Ticket | None:
        """A reply to one of our emails (or to the client's own earlier mail) joins that ticket."""
        ticket = await self._thread_by_headers(msg)
        # Mail in a merged ticket's thread lands on the ticket it was merged into.
        return await final_ticket(ticket) if ticket is not None else None

    async def _thread_by_headers(self, msg: InboundMessage) -> Ticket | None:
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
        """A report about one of our emails (a bounce, or a feedback report: a spam complaint): recorded on
        that email's ticket, never a card, never answered. A bounce marks the email undelivered; a
        feedback report only says the recipient complained (the email was delivered). A report about an
        email we do not know is quarantined, each kind with its own code."""
        feedback = msg.kind is MessageKind.FEEDBACK
        ids = [i for i in msg.bounced_message_ids if i]
        email = await EmailOutbox.filter(message_id__in=ids).first() if ids else None
        if email is None or email.ticket_id is None:
            if feedback:
                await self._quarantine(row, "feedback report about a message we do not know",
                                       code="unknown_feedback_report")
            else:
                await self._quarantine(row, "delivery failure report for a message we do not know",
                                       code="unknown_bounce")
            return
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            if not feedback:
                await EmailOutbox.filter(id=email.id).update(delivery_failed=True)
            message = await self._store_message(email.ticket_id, row, msg, kind=msg.kind.value)
            note = "feedback:" if feedback else "bounce:"
            post = Followup(email.ticket_id, message.id, note=note + ", ".join(msg.bounced_recipients))
            await self.effects.queue_post(post, f"followup:{message.id}")

    async def _ingest_followup(self, row: StoredRow, msg: InboundMessage, ticket: Ticket, terms: str | None) -> None:
        kind = "auto_reply" if msg.kind is MessageKind.AUTO_REPLY else "followup"
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            message = await self._store_message(ticket.id, row, msg, kind=kind, terms=terms)
            reopened = False
            if kind == "followup" and ticket.status == TicketStatus.CLOSED:
                reopened = bool(
                    await Ticket.filter(id=ticket.id, status=TicketStatus.CLOSED).update(
                        status=TicketStatus.ACCEPTED
                    )
                )
                if reopened:
                    await Decision.create(ticket_id=ticket.id, action="reopened", comment="client wrote again")
            post = Followup(ticket.id, message.id, note="reopened" if reopened else "")
            await self.effects.queue_post(post, f"followup:{message.id}")
            if reopened:
                await self.effects.queue_card_update(ticket.id, f"reopen:{message.id}")
            if kind == "followup" and ticket.assignee_id:
                await self._tell_assignee(ticket, message.id)
        log.info("%s from UID %s joined ticket #%s", kind, row.uid, ticket.id, extra={"ticket": ticket.id, "uid": row.uid})

    async def _tell_assignee(self, ticket: Ticket, message_id: int) -> None:
        """The colleague holding the ticket hears at once that the client wrote again: in their private
        chat when they have started the bot (the follow-up itself is in the staff chat either way)."""
        holder = await StaffMember.get_or_none(id=ticket.assignee_id)
        if holder is None or not holder.started_bot:
            return
        await self.effects.queue_notice(
            "client_wrote_assignee", {"ticket_id": ticket.id, "subject": ticket.subject},
            f"assignee_dm:{message_id}", ticket_id=ticket.id, chat_id=holder.telegram_id,
        )

    async def _ingest_unthreaded_auto_reply(self, row: StoredRow, msg: InboundMessage, terms: str | None) -> None:
        # Recorded, never answered, never counted: a closed ticket without a card keeps it visible.
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            ticket = await Ticket.create(**self._ticket_fields(row, msg, verdict=None, status=TicketStatus.CLOSED))
            await self._store_message(ticket.id, row, msg, kind="auto_reply", terms=terms)
            await Decision.create(ticket_id=ticket.id, action="auto_reply_recorded", comment=msg.kind_reason)

    async def _ingest_new_requests(self, group: Sequence[tuple[StoredRow, AnalysedMail]]) -> None:
        """New requests, in arrival order, in one transaction: claim the rows, then per mail the policy
        and the ticket (the policy of each sees the tickets of the mails before it, as if they had been
        committed one by one), then the messages and the cards of the whole group in one insert each."""
        async with in_transaction() as conn:
            claimed = await self._claim_raws(conn, [row.id for row, _ in group])
            mine = [(row, parsed) for row, parsed in group if row.id in claimed]  # others: another processor's
            requests = [PolicyRequest(ticket_id=None, arrived_at=as_utc(row.internal_date), message=parsed.message,
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
            terms: list[str | None] = []  # the search terms the parse workers made (None: made here)
            acks: list[Acknowledgement] = []
            codes: list[str] = []  # the findings of the group, counted for monitoring after the commit
            for index, ((row, parsed), request) in enumerate(zip(mine, requests, strict=True)):
                msg = parsed.message
                verdict = await self.policy.evaluate(request, repository=lookups)
                codes.extend(str(f.code) for f in verdict.findings)
                fields = self._ticket_fields(row, msg, verdict=verdict, status=TicketStatus.NEW,
                                             analyses=parsed.analyses)
                if lookups is None:
                    ticket_id = await _TICKETS.insert(conn, fields)
                else:
                    ticket_id = reserved[index]
                    pending.append({"id": ticket_id, **fields})
                    lookups.add_created(_known_ticket(ticket_id, fields, msg))
                created.append((row, msg, ticket_id))
                terms.append(parsed.search)
                acks.append(_acknowledgement(ticket_id, fields, msg, verdict))
            await flush()
            if not created:
                return
            # The rows need no NUL guard (no signals fire here): an AnalysedMail's message is NUL-free.
            # Their ids are the search index's keys: reserved for a group, returned for a mail alone.
            messages = [_message_fields(ticket_id, row, msg, kind="request") for row, msg, ticket_id in created]
            if len(messages) == 1:
                message_ids = [await _MESSAGES.insert(conn, messages[0])]
            else:
                message_ids = await reserve_ids(conn, "message", len(messages))
                await _MESSAGES.insert_many(conn, [{"id": message_id, **fields} for message_id, fields
                                                   in zip(message_ids, messages, strict=True)], with_keys=True)
            await index_messages([
                inbound_doc(message_id, ticket_id, msg.subject, msg.new_text, msg.from_name, msg.from_address, made)
                for message_id, (_, msg, ticket_id), made in zip(message_ids, created, terms, strict=True)
            ], conn)
            # After the requests' messages, so a later email's References chain holds request, then ack.
            acknowledged = await self.effects.queue_acknowledgements(conn, acks)
            notes = [note for _, msg, ticket_id in created if (note := _parse_notes(ticket_id, msg)) is not None]
            if notes:
                await Decision.bulk_create(notes, using_db=conn)
            now = self.clock()
            # The ticket is brand new, so its card key cannot exist yet: a plain insert (the unique key
            # still guards it) instead of get_or_create's select + savepoint on the ingest hot path. The
            # card is rendered when it is posted (bot/views), so it shows the ticket as it is then.
            chat_id = self.config.staff_chat_id
            cards = [{"idempotency_key": f"card:{ticket_id}", **post_row(NewCard(ticket_id), chat_id, not_before=now)}
                     for _, _, ticket_id in created]
            await _POSTS.insert_many(conn, cards)
        if acknowledged:
            self.effects.on_email_queued()
        sink = events()  # after the commit: counted once, and only what exists (in-memory, no query)
        sink.requests_registered(len(created))
        sink.findings(codes)
        for row, _, ticket_id in created:  # after the commit: a logged ticket exists
            log.info("ticket #%s registered from UID %s (raw mail %s)", ticket_id, row.uid, row.id,
                     extra={"ticket": ticket_id, "uid": row.uid})

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
        arrived = as_utc(row.internal_date)
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

    async def _store_message(
        self, ticket_id: int, row: StoredRow, msg: InboundMessage, *, kind: str, terms: str | None = None
    ) -> Message:
        """The inbound message, its parse notes, and (a mail of the client's, not a report) its search
        index row, in the caller's transaction."""
        note = _parse_notes(ticket_id, msg)
        if note is not None:
            await note.save()
        message = self._message_row(ticket_id, row, msg, kind=kind)
        await message.save()
        if indexed(MessageDirection.INBOUND, kind):
            await index_messages([inbound_doc(message.id, ticket_id, msg.subject, msg.new_text, msg.from_name,
                                              msg.from_address, terms)])
        return message

    @staticmethod
    def _message_row(ticket_id: int, row: StoredRow, msg: InboundMessage, *, kind: str) -> Message:
        """The inbound Message of a stored mail (not saved yet)."""
        return Message(**_message_fields(ticket_id, row, msg, kind=kind))


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


async def stored_rows(limit: int) -> list[StoredRow]:
    """The oldest raw mails waiting to be ingested, in arrival order. Plain tuples: under a backlog this
    runs for every batch, and building RawMail instances cost more than the query."""
    db = RawMail._meta.db
    _, rows = await db.execute_query(
        for_dialect("SELECT id, uid, internal_date, size FROM raw_mail WHERE status = ?"
                    " ORDER BY internal_date, uid, id LIMIT ?", db),
        [str(RawMailStatus.STORED), limit],
    )
    return [StoredRow(int(r[0]), int(r[1]), datetime_from_db(r[2], _INTERNAL_DATE), int(r[3])) for r in rows]


def is_request(parsed: AnalysedMail | Exception) -> bool:
    """Written by a person (not a parse failure, an auto-reply or a bounce)."""
    return not isinstance(parsed, Exception) and parsed.message.kind is MessageKind.REQUEST


def plainly_new(parsed: AnalysedMail | Exception) -> bool:
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


def _acknowledgement(
    ticket_id: int, fields: Mapping[str, Any], msg: InboundMessage, verdict: Verdict
) -> Acknowledgement:
    """The "registered" email of a new ticket (models/effects.py), from the fields it is inserted with.
    Every new request gets one, a flagged one too (unidentified, over the limit, a duplicate): it is
    registered and will be processed in order (2.3), and the refusal, if any, is a staff decision."""
    return Acknowledgement(
        ticket_id=ticket_id, to_address=fields["sender_address"], to_name=fields["sender_name"],
        client_name=verdict.client.name if verdict.client else fields["sender_name"],
        subject=fields["subject"], language=fields["language"], message_id=(msg.message_id or "")[:998] or None,
        references=msg.references, due_at=fields["sla_due_at"],
        faq_links=[link for entry in verdict.faq_entries for link in entry.get("links", [])],
    )


async def raw_content(raw_mail_id: int) -> bytes:
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
