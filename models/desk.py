"""The staff desk: what the staff do with a ticket (accept, refuse, answer from the FAQ, reply, note, close,
undo a refusal), one call per Telegram handler.

Every decision writes its effects (emails, card edits) as outbox rows in the SAME transaction as the
status change that caused them (models/effects.py); the outbox workers deliver them later, exactly once.
Every status change is a guarded conditional update, so a double click or a faster colleague gets
"already handled" instead of a second email.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.analysed import AnalysedMail, parse_and_analyse
from models.assignment import Assignments
from models.clock import as_utc
from models.deps import Services, UseCaseConfig
from models.effects import Effects
from models.intents import Postable
from models.merge_chain import final_ticket
from models.merging import Merger
from models.metrics_port import events
from models.outcome import Decided, Outcome
from models.policy import PolicyRequest, Verdict
from models.ports import ThreadInfo
from models.saved_replies import SavedReplies, fill
from models.search import SearchDoc, index_messages
from models.store.raw_store import load_content
from models.tables import (
    Client,
    Decision,
    EmailOutbox,
    Message,
    MessageDirection,
    OutboxStatus,
    StaffMember,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)

log = logging.getLogger(__name__)

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
# The Decision kinds that end a refusal, and the idempotency-key prefix of the email each one queues.
REFUSAL_ACTIONS: dict[str, str] = {"refused": "refuse", "refused_after_acceptance": "withdraw"}
# For an "already" answer: the decisions that put a ticket in each status (the latest one is named).
_DECIDED_BY: dict[TicketStatus, tuple[str, ...]] = {
    TicketStatus.ACCEPTED: ("accepted", "replied"),  # see Desk.decided
    TicketStatus.REFUSED: tuple(REFUSAL_ACTIONS),
    TicketStatus.ANSWERED: ("answered_faq",),
    TicketStatus.CLOSED: ("closed",),
}


class _Lost(Exception):
    """Raised inside a decision's transaction to roll back what it wrote when a guarded update lost."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


def _no_offload(raw: bytes) -> Awaitable[AnalysedMail] | None:
    return None


class Desk:
    def __init__(
        self,
        config: UseCaseConfig,
        services: Services,
        effects: Effects,
        *,
        offload_parse: Callable[[bytes], Awaitable[AnalysedMail] | None] = _no_offload,
        saved_replies: SavedReplies | None = None,
    ) -> None:
        self.config = config
        self.policy = services.policy
        self.parser = services.parser
        self.clock = services.clock
        self.effects = effects
        # A re-evaluation's parse off the event loop: the mail processor's pool (mail/processor.py) when
        # there is one; None from it means "no pool", and the parse runs in a thread.
        self.offload_parse = offload_parse
        self.saved_replies = saved_replies or SavedReplies()
        self.assignments = Assignments(effects, services.clock)
        self.merger = Merger(effects, services.clock)

    async def reevaluate(self, ticket: Ticket) -> Verdict:
        """Run the policy again on a stored ticket (the world may have changed since it arrived)."""
        first = await Message.filter(ticket_id=ticket.id, direction=MessageDirection.INBOUND).order_by("id").first()
        raw = await load_content(first.raw_mail_id) if first and first.raw_mail_id else None
        if raw is None:
            return Verdict.from_json(ticket.verdict)
        # Parsing and the rules' text work are CPU work on client text of any size: in the parse pool when
        # there is one, else in a thread, never on the event loop a staff press arrives on (issue 16).
        pooled = self.offload_parse(raw)
        if pooled is not None:
            parsed = await pooled
        else:
            parsed = await asyncio.to_thread(parse_and_analyse, raw, parser=self.parser, analyser=self.policy.analyse)
        return await self.policy.evaluate(
            PolicyRequest(ticket_id=ticket.id, arrived_at=as_utc(ticket.arrived_at), message=parsed.message,
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
        return Decided(status=status.value, action=decision.action, staff_name=name, at=as_utc(decision.created_at))

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
                assignee_id=ticket.assignee_id or staff.id,  # whoever took it keeps it
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
                email = await self.effects.queue_email(ticket, "accepted", {}, f"accept:{decision.id}", staff=staff)
                await self.effects.queue_card_update(ticket_id, f"accepted:{decision.id}")
        if not changed:
            return await self._already(ticket_id)
        log.info("ticket #%s accepted by staff %s", ticket_id, staff.id, extra={"ticket": ticket_id})
        events().decided("accepted")
        self.effects.wake()
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
                email = await self.effects.queue_email(
                    ticket,
                    REFUSAL_EVENTS[reason],
                    context,
                    f"{REFUSAL_ACTIONS[action]}:{decision.id}",
                    staff=staff,
                    not_before=now + self.config.refusal_grace,
                )
                await self.effects.queue_card_update(ticket_id, f"{action}:{decision.id}")
        if not changed:
            return await self._already(ticket_id)
        log.info("ticket #%s %s (%s) by staff %s", ticket_id, action, reason, staff.id, extra={"ticket": ticket_id})
        events().decided(action)
        self.effects.wake()
        return Outcome("done", ticket_id, email_id=email.id if email else None)

    def _local_date(self, value: datetime) -> str:
        """A date for a client email, in TIMEZONE (the day the client was told "accepted")."""
        return as_utc(value).astimezone(ZoneInfo(self.config.timezone)).strftime("%d.%m.%Y")

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
                await self.effects.queue_card_update(ticket_id, f"undo:{undo.id}")
        except _Lost as lost:
            return lost.outcome
        events().decided("refusal_undone")
        self.effects.wake()
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
                email = await self.effects.queue_email(
                    ticket,
                    "faq_answer",
                    {"faq_links": links, "faq_answer_text": answer},
                    f"faq:{decision.id}",
                    staff=staff,
                )
                await self.effects.queue_card_update(ticket_id, f"faq:{decision.id}")
        if not changed:
            return await self._already(ticket_id)
        events().decided("answered_faq")
        self.effects.wake()
        return Outcome("done", ticket_id, email_id=email.id if email else None)

    async def reply(
        self,
        ticket_id: int,
        staff: StaffMember,
        text: str,
        *,
        key: str,
        attachments: list[tuple[str, str, bytes]] | None = None,
        saved_reply: str = "",
    ) -> Outcome:
        """A staff member's reply in Telegram, sent to the client in the same email thread.
        `key` identifies the Telegram message, so a redelivered update sends nothing twice. A reply to
        the card of a merged ticket goes to the ticket it was merged into."""
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        ticket = await final_ticket(ticket)
        ticket_id = ticket.id
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
                        status=TicketStatus.ACCEPTED, first_decided_at=now, assignee_id=ticket.assignee_id or staff.id
                    )
                await Decision.create(
                    ticket_id=ticket_id, staff_id=staff.id, action="replied", comment=text[:4000],
                    details={"saved_reply": saved_reply} if saved_reply else {},
                )
                email = await self.effects.queue_email(
                    ticket,
                    "staff_reply",
                    {"reply_text": text},
                    f"reply:{key}",
                    search_text=text,
                    staff=staff,
                    auto_submitted=False,
                    attachments=attachments,
                )
                if email is None:
                    raise ValueError("no email composed")
                await self.effects.queue_card_update(ticket_id, f"reply:{key}")
        except ValueError as error:
            # The composer refused this email (an address it cannot write, a part it cannot carry). The
            # transaction rolled back, so nothing says "answered"; the outcome carries the reason as a
            # code for the staff side to word (detail: "bad_address:<address>" or "unsendable:<why>").
            log.warning("reply to ticket #%s not composed: %s", ticket_id, error, extra={"ticket": ticket_id})
            if "address" in str(error):
                return Outcome("invalid", ticket_id, detail=f"bad_address:{ticket.sender_address}")
            return Outcome("invalid", ticket_id, detail=f"unsendable:{error}")
        events().decided("replied")
        self.effects.wake()
        return Outcome("done", ticket_id, email_id=email.id)

    async def send_saved_reply(self, ticket_id: int, staff: StaffMember, name: str, *, key: str) -> Outcome:
        """Email a saved reply, its variables filled for this ticket, exactly like a staff reply (same
        thread, same audit: the Decision names the sender and the reply's name)."""
        reply = await self.saved_replies.get(name)
        if reply is None:
            return Outcome("invalid", ticket_id, detail=f"no_reply:{name}")
        text = await self.saved_reply_text(ticket_id, staff, reply.text)
        if text is None:
            return Outcome("not_found", ticket_id)
        return await self.reply(ticket_id, staff, text, key=f"saved:{key}", saved_reply=reply.name)

    async def saved_reply_text(self, ticket_id: int, staff: StaffMember, text: str) -> str | None:
        """The saved reply's text as the client will read it (for the preview and the email)."""
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return None
        ticket = await final_ticket(ticket)
        client = await Client.get_or_none(id=ticket.client_id) if ticket.client_id else None
        verdict = Verdict.from_json(ticket.verdict) if ticket.verdict else None
        links = [link for e in (verdict.faq_entries if verdict else []) for link in e.get("links", [])]
        values = {
            "client": client.name if client else (ticket.sender_name or ticket.sender_address),
            "contact": ticket.sender_name or ticket.sender_address,
            "ticket": str(ticket.id),
            "deadline": self._local_date(ticket.sla_due_at) if ticket.sla_due_at else "",
            "agent": staff.name or (f"@{staff.username}" if staff.username else ""),
            "faq_links": "\n".join(str(link) for link in links),
        }
        return fill(text, values)

    async def note(self, ticket_id: int, staff: StaffMember, text: str) -> Outcome:
        ticket = await Ticket.get_or_none(id=ticket_id)
        if ticket is None:
            return Outcome("not_found", ticket_id)
        ticket_id = (await final_ticket(ticket)).id
        async with in_transaction():  # the note and its search index row together
            message = await Message.create(
                ticket_id=ticket_id, direction=MessageDirection.NOTE, kind="note", text=text, staff_id=staff.id
            )
            await index_messages([SearchDoc(message.id, ticket_id, (text,))])
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
            email = await self.effects.queue_email(ticket, "resolved", {}, f"close:{decision.id}", staff=staff)
            await self.effects.queue_card_update(ticket_id, f"closed:{decision.id}")
        events().decided("closed")
        self.effects.wake()
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
    # Effects (models/effects.py)
    # ------------------------------------------------------------------------------------------------
    def mail_allowed(self, ticket: Ticket) -> bool:
        return self.effects.mail_allowed(ticket)

    async def thread_info(self, ticket: Ticket) -> ThreadInfo:
        return await self.effects.thread_info(ticket)

    async def post(
        self, post: Postable, key: str, *, chat_id: int | None = None, remember: dict[str, Any] | None = None
    ) -> TelegramOutbox:
        """Queue a staff-chat post outside a decision (notices, answers); idempotent by key (see
        `Effects.post` for `remember`)."""
        return await self.effects.post(post, key, chat_id=chat_id, remember=remember)
