"""Use cases: turning stored mail into tickets, and the staff decisions on them.

Every use case writes its effects (emails, Telegram posts) as outbox rows in the SAME transaction as
the state change that caused them; the outbox workers deliver them later, exactly once. Every status
change is a guarded conditional update, so a double click or a faster colleague gets "already handled"
instead of a second email.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.calendar import BusinessCalendar
from models.inbound import InboundMessage, MalformedMessage, MessageKind, without_nul
from models.policy import PolicyEngine, PolicyRequest, Verdict, content_hash, month_key
from models.policy.base import FindingCode
from models.ports import BoardPost, Mailer, StaffBoard, ThreadInfo
from models.raw_store import load_content, load_contents
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


def utcnow() -> datetime:
    return datetime.now(UTC)


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


@dataclass
class Outcome:
    """What a staff action did, for the handler to answer the button press."""

    status: str  # done | already | needs_confirmation | not_found | too_late | invalid
    ticket_id: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    older_waiting: list[int] = field(default_factory=list)
    email_id: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "done"


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
        parse_stored: Callable[[int], InboundMessage | None] | None = None,
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
        self.on_email_queued = on_email_queued
        self.on_post_queued = on_post_queued

    # ------------------------------------------------------------------------------------------------
    # Mail in: stored raw mail -> tickets
    # ------------------------------------------------------------------------------------------------
    async def process_stored(self, batch: int = 50) -> int:
        """Turn up to `batch` stored raw emails into tickets, in arrival order; returns how many."""
        # The bytes are in raw_mail_content: a worker that reads them itself (parse_stored) never makes
        # the main process hold them, and the other paths load them only where they are needed.
        rows = await RawMail.filter(status=RawMailStatus.STORED).order_by("internal_date", "uid", "id").limit(batch)
        if not rows:
            return 0
        pending = await self._submit_parses(rows)
        try:
            for i, row in enumerate(rows):
                # With a pool, each mail is ingested as soon as its own parse is done, in arrival order,
                # while the workers are still parsing the later ones: parsing and ingesting (database,
                # policy) overlap instead of taking turns.
                if pending:
                    parsed = await _outcome(pending[i])
                    if parsed is None:  # the worker's connection could not see the row yet: hand it over
                        parsed = await _outcome(self._submit_bytes(await _raw_content(row.id)))
                        parsed = parsed or RuntimeError("the parser returned nothing")
                else:
                    parsed = self._safe_parse(await _raw_content(row.id))
                await self._ingest(row, parsed)
        finally:
            for future in pending:  # only matters when an ingest raised: nothing is left running for it
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: no "exception was never retrieved" noise
                else:
                    future.cancel()
        self.on_post_queued()
        self.on_email_queued()
        return len(rows)

    async def _submit_parses(self, rows: Sequence[RawMail]) -> list[asyncio.Future[Any]]:
        """Start parsing every row in the process pool (none without a pool: parsed inline, one by one)."""
        # Parsing is CPU work: a process pool keeps it off the event loop and uses both cores for a backlog.
        if self.parse_executor is None:
            return []
        if self.parse_stored is not None:  # the worker reads the bytes itself
            loop = asyncio.get_running_loop()
            return [loop.run_in_executor(self.parse_executor, self.parse_stored, r.id) for r in rows]
        contents = await load_contents(r.id for r in rows)
        return [self._submit_bytes(contents.get(r.id) or b"") for r in rows]

    def _submit_bytes(self, content: bytes) -> asyncio.Future[Any]:
        assert self.parse_executor is not None
        return asyncio.get_running_loop().run_in_executor(self.parse_executor, self.parser, bytes(content))

    def _safe_parse(self, content: bytes) -> InboundMessage | Exception:
        try:
            return self.parser(bytes(content))
        except Exception as exc:  # the parser promises MalformedMessage only; anything else is ours
            return exc

    async def _ingest(self, row: RawMail, parsed: InboundMessage | Exception) -> None:
        if isinstance(parsed, InboundMessage):
            parsed = without_nul(parsed)
        if isinstance(parsed, Exception):
            reason = str(parsed) if isinstance(parsed, MalformedMessage) else f"parser error: {parsed!r}"
            if not isinstance(parsed, MalformedMessage):
                log.error("parser raised on raw mail %s: %r", row.id, parsed)
            await self._quarantine(row, reason)
            return
        msg = parsed
        if msg.kind is MessageKind.BOUNCE:
            await self._ingest_bounce(row, msg)
            return
        ticket = await self._find_thread(msg)
        if ticket is not None:
            await self._ingest_followup(row, msg, ticket)
        elif msg.kind is MessageKind.AUTO_REPLY:
            await self._ingest_unthreaded_auto_reply(row, msg)
        else:
            await self._ingest_new_request(row, msg)

    async def _quarantine(self, row: RawMail, reason: str) -> None:
        async with in_transaction():
            changed = await RawMail.filter(id=row.id, status=RawMailStatus.STORED).update(
                status=RawMailStatus.QUARANTINED, error=reason[:2000]
            )
            if changed:
                post = await self.board.notice(
                    "quarantined", {"raw_mail_id": row.id, "reason": reason[:500], "size": row.size}
                )
                await self._queue_post(post, f"quarantine:{row.id}")
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

    async def _ingest_bounce(self, row: RawMail, msg: InboundMessage) -> None:
        ids = [i for i in msg.bounced_message_ids if i]
        email = await EmailOutbox.filter(message_id__in=ids).first() if ids else None
        if email is None or email.ticket_id is None:
            await self._quarantine(row, "delivery failure report for a message we do not know")
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

    async def _ingest_followup(self, row: RawMail, msg: InboundMessage, ticket: Ticket) -> None:
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

    async def _ingest_unthreaded_auto_reply(self, row: RawMail, msg: InboundMessage) -> None:
        # Recorded, never answered, never counted: a closed ticket without a card keeps it visible.
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            ticket = await self._create_ticket(row, msg, verdict=None, status=TicketStatus.CLOSED)
            await self._store_message(ticket.id, row, msg, kind="auto_reply")
            await Decision.create(ticket_id=ticket.id, action="auto_reply_recorded", comment=msg.kind_reason)

    async def _ingest_new_request(self, row: RawMail, msg: InboundMessage) -> None:
        arrived = _aware(row.internal_date)
        # The policy reads only; evaluated before the write transaction, with ticket_id None because the
        # ticket does not exist yet (so it excludes nothing and counts only earlier requests).
        verdict = await self.policy.evaluate(PolicyRequest(ticket_id=None, arrived_at=arrived, message=msg))
        async with in_transaction():
            if not await self._claim_raw(row):
                return
            ticket = await self._create_ticket(row, msg, verdict=verdict, status=TicketStatus.NEW)
            await self._store_message(ticket.id, row, msg, kind="request")
            post = self.board.new_card(ticket.id)
            # The ticket is brand new, so its card key cannot exist yet: a plain insert (the unique key
            # still guards it) instead of get_or_create's select + savepoint on the ingest hot path.
            await TelegramOutbox.create(
                idempotency_key=f"card:{ticket.id}",
                kind=post.kind,
                chat_id=post.chat_id,
                payload=post.payload,
                not_before=self.clock(),
                **post.extra,
            )

    async def _claim_raw(self, row: RawMail) -> bool:
        """Inside the ingest transaction: only one processor turns a stored mail into a ticket."""
        return bool(
            await RawMail.filter(id=row.id, status=RawMailStatus.STORED).update(status=RawMailStatus.PROCESSED)
        )

    async def _create_ticket(
        self, row: RawMail, msg: InboundMessage, *, verdict: Verdict | None, status: TicketStatus
    ) -> Ticket:
        arrived = _aware(row.internal_date)
        counts = bool(
            verdict is not None
            and verdict.client is not None
            and not verdict.has(FindingCode.DUPLICATE)
            and status is TicketStatus.NEW
        )
        return await Ticket.create(
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
            content_hash=content_hash(msg),
            verdict=verdict.to_json() if verdict else {},
            duplicate_of_id=verdict.duplicate_of if verdict else None,
            language=self.config.language,
        )

    async def _store_message(self, ticket_id: int, row: RawMail, msg: InboundMessage, *, kind: str) -> Message:
        if msg.oversize or msg.defects:
            # Staff must know the text may be partial (size cap, broken MIME): the card shows this note.
            await Decision.create(
                ticket_id=ticket_id,
                action="parse_notes",
                details={"oversize": msg.oversize, "size": msg.raw_size, "defects": msg.defects[:10]},
            )
        return await Message.create(
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

    # ------------------------------------------------------------------------------------------------
    # Staff decisions
    # ------------------------------------------------------------------------------------------------
    async def reevaluate(self, ticket: Ticket) -> Verdict:
        """Run the policy again on a stored ticket (the world may have changed since it arrived)."""
        first = await Message.filter(ticket_id=ticket.id, direction=MessageDirection.INBOUND).order_by("id").first()
        raw = await load_content(first.raw_mail_id) if first and first.raw_mail_id else None
        if raw is None:
            return Verdict.from_json(ticket.verdict)
        msg = without_nul(self.parser(raw))
        return await self.policy.evaluate(
            PolicyRequest(ticket_id=ticket.id, arrived_at=_aware(ticket.arrived_at), message=msg)
        )

    async def accept(self, ticket_id: int, staff: StaffMember, *, confirmed: bool = False) -> Outcome:
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        if ticket.status != TicketStatus.NEW:
            return Outcome("already", ticket_id, detail=ticket.status.value)
        verdict = await self.reevaluate(ticket)
        concerns = [f.to_json() for f in verdict.findings if f.severity in ("block", "warn")]
        if concerns and not confirmed:
            return Outcome("needs_confirmation", ticket_id, findings=concerns)
        now = self.clock()
        async with in_transaction():
            changed = await Ticket.filter(id=ticket_id, status=TicketStatus.NEW).update(
                status=TicketStatus.ACCEPTED,
                assignee_id=staff.id,
                first_decided_at=now,
                verdict=verdict.to_json(),
                client_id=verdict.client.client_id if verdict.client else ticket.client_id,
            )
            if not changed:
                return Outcome("already", ticket_id)
            decision = await Decision.create(
                ticket_id=ticket_id,
                staff_id=staff.id,
                action="accepted",
                details={"despite": [f["code"] for f in concerns]},
            )
            email = await self._queue_email(ticket, "accepted", {}, f"accept:{decision.id}", staff=staff)
            await self._queue_card_update(ticket_id, f"accepted:{decision.id}")
        self._wake()
        older = await self.older_waiting(ticket)
        return Outcome("done", ticket_id, older_waiting=older, email_id=email.id if email else None)

    async def refuse(self, ticket_id: int, staff: StaffMember, reason: str, comment: str = "") -> Outcome:
        if reason not in REFUSAL_EVENTS:
            return Outcome("invalid", ticket_id, detail=f"unknown reason {reason!r}")
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        now = self.clock()
        async with in_transaction():
            changed = await Ticket.filter(id=ticket_id, status__in=OPEN_STATUSES).update(
                status=TicketStatus.REFUSED,
                refuse_reason=reason,
                first_decided_at=ticket.first_decided_at or now,
                assignee_id=ticket.assignee_id or staff.id,
            )
            if not changed:
                return Outcome("already", ticket_id, detail=ticket.status.value)
            decision = await Decision.create(
                ticket_id=ticket_id,
                staff_id=staff.id,
                action="refused",
                reason=reason,
                comment=comment,
                details={"clause": REFUSAL_CLAUSES[reason], "previous_status": ticket.status.value},
            )
            context: dict[str, Any] = {"comment": comment, "monthly_limit": self.config.monthly_limit}
            if reason == "duplicate":
                context["original_ticket_number"] = ticket.duplicate_of_id or Verdict.from_json(
                    ticket.verdict
                ).duplicate_of or ticket_id
            email = await self._queue_email(
                ticket,
                REFUSAL_EVENTS[reason],
                context,
                f"refuse:{decision.id}",
                staff=staff,
                not_before=now + self.config.refusal_grace,
            )
            await self._queue_card_update(ticket_id, f"refused:{decision.id}")
        self._wake()
        return Outcome("done", ticket_id, email_id=email.id if email else None)

    async def undo_refusal(self, ticket_id: int, staff: StaffMember) -> Outcome:
        """Within the grace period the refusal email has not left: cancel it and reopen the request."""
        decision = await Decision.filter(ticket_id=ticket_id, action="refused").order_by("-id").first()
        if decision is None:
            return Outcome("not_found", ticket_id)
        email = await EmailOutbox.get_or_none(idempotency_key=f"refuse:{decision.id}")
        previous = TicketStatus(decision.details.get("previous_status", TicketStatus.NEW.value))
        async with in_transaction():
            if email is not None:
                cancelled = await EmailOutbox.filter(id=email.id, status=OutboxStatus.PENDING).update(
                    status=OutboxStatus.CANCELLED
                )
                if not cancelled:
                    return Outcome("too_late", ticket_id)
                await Message.filter(message_id=email.message_id).delete()
            changed = await Ticket.filter(id=ticket_id, status=TicketStatus.REFUSED).update(
                status=previous,
                refuse_reason=None,
                first_decided_at=None if previous == TicketStatus.NEW else self.clock(),
            )
            if not changed:
                return Outcome("already", ticket_id)
            undo = await Decision.create(
                ticket_id=ticket_id, staff_id=staff.id, action="refusal_undone", details={"decision": decision.id}
            )
            await self._queue_card_update(ticket_id, f"undo:{undo.id}")
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
            changed = await Ticket.filter(id=ticket_id, status__in=OPEN_STATUSES).update(
                status=TicketStatus.ANSWERED,
                first_decided_at=ticket.first_decided_at or now,
                assignee_id=ticket.assignee_id or staff.id,
            )
            if not changed:
                return Outcome("already", ticket_id)
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
        now = self.clock()
        async with in_transaction():
            # A reply is a first processing too (2.3) when nobody decided yet.
            if ticket.status == TicketStatus.NEW:
                await Ticket.filter(id=ticket_id, status=TicketStatus.NEW).update(
                    status=TicketStatus.ACCEPTED, first_decided_at=now, assignee_id=staff.id
                )
            await Decision.create(ticket_id=ticket_id, staff_id=staff.id, action="replied", comment=text[:4000])
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
                return Outcome("invalid", ticket_id, detail="this sender is not emailed (auto-reply, list or ours)")
            await self._queue_card_update(ticket_id, f"reply:{key}")
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


async def _outcome(future: asyncio.Future[Any]) -> InboundMessage | Exception | None:
    """A parse in the pool as a value: the parser's exception (or a dead worker's) quarantines that mail;
    None from a worker that reads the row itself means it could not see the row."""
    try:
        result = await future
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc
    if result is None or isinstance(result, InboundMessage):
        return result
    return RuntimeError(str(result))


async def _raw_content(raw_mail_id: int) -> bytes:
    return await load_content(raw_mail_id) or b""


def _aware(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
