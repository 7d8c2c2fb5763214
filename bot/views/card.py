"""The ticket card: status, client, the policy's findings with their evidence, queue place, time left, who
decided what, and the body, fitted within Telegram's limit; with the keyboard for the ticket's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.i18n import RU, finding_title, norm_lang, reason_label, t
from bot.text import visible_len
from bot.views.keyboards import Keyboards
from bot.views.notices import email_failure_text
from bot.views.templates import SAFE_LIMIT
from bot.views.text import human_size, short
from models.assignment import OPEN_STATUSES, staff_label
from models.clock import as_utc
from models.desk import REFUSAL_ACTIONS
from models.policy.base import Verdict
from models.sla_rules import format_time_left
from models.tables import (
    Client,
    Decision,
    EmailOutbox,
    Message,
    MessageDirection,
    OutboxStatus,
    StaffMember,
    Ticket,
    TicketStatus,
)

STATUS_ICONS = {
    TicketStatus.NEW: "🆕",
    TicketStatus.ACCEPTED: "✅",
    TicketStatus.REFUSED: "⛔",
    TicketStatus.ANSWERED: "📘",
    TicketStatus.CLOSED: "🔒",
    TicketStatus.MERGED: "🔗",
}
SEVERITY_ICONS = {"block": "🚫", "warn": "⚠️", "info": "ℹ️"}


class Cards(Keyboards):
    async def _merged_message_ids(self, ticket_id: int) -> list[int]:
        decision = await Decision.filter(ticket_id=ticket_id, action="merged_into").order_by("-id").first()
        return list((decision.details or {}).get("message_ids") or []) if decision else []

    async def _staff_name(self, staff_id: int) -> str:
        staff = await StaffMember.get_or_none(id=staff_id)
        return staff_label(staff) if staff else "?"

    # The card --------------------------------------------------------------------------------
    async def render_card(self, ticket_id: int, limit: int = SAFE_LIMIT) -> tuple[str, dict[str, Any]]:
        """The card's HTML text and its inline keyboard, as the ticket is now."""
        ticket = await Ticket.get(id=ticket_id)
        lang = self.lang
        now = self.clock()
        verdict = Verdict.from_json(ticket.verdict) if ticket.verdict else None
        first = (
            await Message.filter(ticket_id=ticket_id, direction=MessageDirection.INBOUND).order_by("id").first()
        )
        if first is None and ticket.status == TicketStatus.MERGED:
            # Its messages moved to the ticket it was merged into: the card still shows what it said.
            first = await Message.filter(direction=MessageDirection.INBOUND,
                                         id__in=await self._merged_message_ids(ticket_id)).order_by("id").first()
        files = await self.ticket_files(ticket_id)
        client = await Client.get_or_none(id=ticket.client_id) if ticket.client_id else None
        status = TicketStatus(ticket.status)

        due = left = ""
        if ticket.sla_due_at is not None:
            due = self.when(ticket.sla_due_at)
            if status == TicketStatus.NEW:
                left = format_time_left(self.calendar, now, as_utc(ticket.sla_due_at), lang)

        client_ctx: dict[str, str] | None = None
        candidates = ""
        if client is not None:
            month = ""
            if verdict is not None and verdict.client is not None and verdict.month_count:
                month = t("card.month", lang, count=verdict.month_count, limit=verdict.monthly_limit)
            client_ctx = {"name": short(client.name, 200), "inn": client.inn or "", "month": month}
        elif verdict is not None and verdict.candidates:
            candidates = ", ".join(
                short(f"{c.name}" + (f" ({c.inn})" if c.inn else ""), 80) for c in verdict.candidates[:3]
            )

        findings = []
        if verdict is not None:
            for f in verdict.findings[:8]:
                data = f.to_json()
                findings.append(
                    {
                        "icon": SEVERITY_ICONS.get(f.severity, "•"),
                        "title": short(finding_title(data, lang), 120),
                        "clause": f.clause,
                        "evidence": evidence_text(data, lang, verdict),
                    }
                )

        queue = ""
        if status == TicketStatus.NEW:
            pos, total = await self.queue_position(ticket)
            queue = t("card.queue", lang, pos=pos, total=total)

        state = await self._state_lines(ticket, status, now)
        undo = status == TicketStatus.REFUSED and await self._undo_possible(ticket_id)
        body = ((first.new_text or first.text) if first else "") or ""
        context = {
            "n": ticket.id,
            "icon": STATUS_ICONS.get(status, ""),
            "status": t(f"status.{status.value}", lang),
            "arrived": self.when(ticket.arrived_at),
            "due": due,
            "left": left,
            "client": client_ctx,
            "candidates": candidates,
            "sender": self._sender(ticket.sender_name, ticket.sender_address),
            "subject": short(ticket.subject, 300) or t("card.no_subject", lang),
            "attachments": self._attachment_line([f for _, f in files]),
            "findings": findings,
            "queue": queue,
            "state": state,
        }
        text = self.views.render_fitted(
            "card", lang, body=body.strip() or t("card.no_text", lang), limit=limit, **context
        )
        if visible_len(text) > limit:  # pathological headers: drop the evidence and the file names
            for f in findings:
                f["evidence"] = ""
            context["attachments"] = self._attachment_line([f for _, f in files][:3])
            text = self.views.render_fitted("card", lang, body=body.strip() or "-", limit=limit, **context)
        has_faq = bool(verdict and verdict.faq_entries)
        return text, self.card_keyboard(ticket.id, status, has_faq=has_faq, undo=undo)

    async def _state_lines(self, ticket: Ticket, status: TicketStatus, now: datetime) -> list[str]:
        lang = self.lang
        lines: list[str] = []
        decisions = await Decision.filter(ticket_id=ticket.id).order_by("id")
        staff_ids = {d.staff_id for d in decisions if d.staff_id}
        names = {s.id: s.name or (s.username or str(s.telegram_id)) for s in await StaffMember.filter(id__in=staff_ids)}

        def who(d: Decision) -> str:
            return short(names.get(d.staff_id or 0, t("system", lang)), 80)

        last = {d.action: d for d in decisions}
        if status == TicketStatus.MERGED and "merged_into" in last:
            d = last["merged_into"]
            lines.append("🔗 " + t("card.merged_into", lang, m=(d.details or {}).get("into", ticket.merged_into_id),
                                   who=who(d), when=self.when(d.created_at)))
        for d in decisions:
            if d.action == "merged_from":
                lines.append("🔗 " + t("card.merged_from", lang, n=(d.details or {}).get("from", "?")))
        if ticket.assignee_id and status in OPEN_STATUSES:
            holder = names.get(ticket.assignee_id) or await self._staff_name(ticket.assignee_id)
            lines.append("🙋 " + t("card.assignee", lang, who=short(holder, 80)))
        if "parse_notes" in last:
            notes = last["parse_notes"].details or {}
            if notes.get("oversize"):
                lines.append("⚠️ " + t("card.oversize", lang, size=human_size(int(notes.get("size") or 0), lang)))
            elif notes.get("defects"):
                lines.append("⚠️ " + t("card.defects", lang, what=short("; ".join(notes["defects"][:3]), 200)))
        if status in (TicketStatus.ACCEPTED, TicketStatus.CLOSED) and "accepted" in last:
            d = last["accepted"]
            lines.append("✅ " + t("card.accepted_by", lang, who=who(d), when=self.when(d.created_at)))
        refusals = [d for d in decisions if d.action in REFUSAL_ACTIONS]
        if status == TicketStatus.REFUSED and refusals:
            d = refusals[-1]
            withdrawn = d.action == "refused_after_acceptance"
            if withdrawn and "accepted" in last:
                a = last["accepted"]
                lines.append("✅ " + t("card.accepted_by", lang, who=who(a), when=self.when(a.created_at)))
            lines.append(
                "⛔ "
                + t("card.withdrawn_by" if withdrawn else "card.refused_by", lang,
                    reason=reason_label(d.reason or "", lang), who=who(d), when=self.when(d.created_at))
            )
            if d.comment:
                lines.append(t("msg.comment", lang, text=short(d.comment, 300)).strip())
            email = await EmailOutbox.get_or_none(idempotency_key=f"{REFUSAL_ACTIONS[d.action]}:{d.id}")
            if email is not None and email.status == OutboxStatus.PENDING:
                lines.append("↩️ " + t("card.undo_until", lang, when=self.when(email.not_before, seconds=True)))
        if status in (TicketStatus.ANSWERED, TicketStatus.CLOSED) and "answered_faq" in last:
            d = last["answered_faq"]
            lines.append("📘 " + t("card.answered_by", lang, who=who(d), when=self.when(d.created_at)))
        if "replied" in last and status != TicketStatus.REFUSED:
            d = last["replied"]
            lines.append("💬 " + t("card.last_reply", lang, who=who(d), when=self.when(d.created_at)))
        if status == TicketStatus.CLOSED and "closed" in last:
            lines.append("🔒 " + t("card.closed", lang, when=self.when(last["closed"].created_at)))
        if ticket.sla_due_at is not None:
            due = as_utc(ticket.sla_due_at)
            decided = as_utc(ticket.first_decided_at) if ticket.first_decided_at else None
            if (decided is not None and decided > due) or (decided is None and now > due):
                lines.append("🔥 " + t("card.sla_breached", lang))
        failed = (
            await EmailOutbox.filter(ticket_id=ticket.id)
            .filter(status=OutboxStatus.FAILED)
            .order_by("-id")
            .first()
        )
        bounced = await EmailOutbox.filter(ticket_id=ticket.id, delivery_failed=True).order_by("-id").first()
        if failed is not None:
            lines.append("❗ " + t("card.delivery_failed", lang, error=email_failure_text(failed.last_error, lang, 300)))
        elif bounced is not None:
            lines.append("❗ " + t("card.delivery_failed", lang, error=t("card.delivery_bounced", lang)))
        return lines


def evidence_text(finding: dict[str, Any], lang: str, verdict: Verdict | None = None) -> str:
    """A one-line summary of a finding's evidence: the matched words, the original ticket, the count."""
    ev = finding.get("evidence") or {}
    parts: list[str] = []
    hits = ev.get("hits")
    if isinstance(hits, list) and hits:
        words = list(dict.fromkeys(str(h.get("word", "")) for h in hits if isinstance(h, dict)))
        parts.append(t("card.evidence.words", lang, words=", ".join(f"«{w}»" for w in words[:5] if w)))
    matches = ev.get("matches")
    if isinstance(matches, dict):  # FAQ: entry id -> hits
        matches = [h for hs in matches.values() if isinstance(hs, list) for h in hs]
    if isinstance(matches, list) and matches:
        words = list(dict.fromkeys(str(h.get("text") or h.get("phrase") or "") for h in matches if isinstance(h, dict)))
        parts.append(t("card.evidence.matches", lang, words=", ".join(f"«{w}»" for w in words[:5] if w)))
    if "original_ticket" in ev and ev["original_ticket"]:
        parts.append(t("card.evidence.original", lang, n=ev["original_ticket"]))
    if "count" in ev and "limit" in ev:
        parts.append(t("card.evidence.count", lang, count=ev["count"], limit=ev["limit"]))
    if finding.get("code") == "faq" and verdict is not None and verdict.faq_entries:
        key = "title_en" if norm_lang(lang) == "en" else "title_ru"
        titles = ", ".join(str(e.get(key) or e.get("id")) for e in verdict.faq_entries[:3])
        parts.append(t("card.evidence.entries", lang, titles=titles))
    if finding.get("code") == "unclear":  # the nudge's words as written, or that only a signature was left
        nudge = ev.get("nudge")
        if isinstance(nudge, list) and nudge:
            parts.append(t("card.evidence.nudge", lang, words=", ".join(f"«{w}»" for w in nudge[:5])))
        elif ev.get("signature") and not ev.get("meaningful_words"):
            parts.append(t("card.evidence.signature", lang))
    model = ev.get("model")  # out of scope, unclear: found by a trained model, not by the rule (its probability)
    if finding.get("code") in ("out_of_scope", "unclear") and isinstance(model, int | float) and not isinstance(model, bool):
        parts.append(t("card.evidence.model", lang, percent=round(model * 100)))
    english = norm_lang(lang) == "en"
    topic = ev.get("topic_en") if english else ev.get("topic_ru")  # out of scope: the topic, titled in config
    if isinstance(topic, str) and topic:
        parts.insert(0, t("card.evidence.topic", lang, topic=topic))
    warning = ev.get("warning") if english else ev.get("warning_ru")
    reason = ev.get("reason")
    if warning:
        parts.append(str(warning))
    elif isinstance(reason, str) and reason:
        # Reasons are codes ("ambiguous_domain"): the card says them in its own language. A reason the
        # catalogue does not know is shown raw on an English card only, never as English in a Russian one.
        key = f"card.evidence.reason.{reason}"
        if key in RU:
            parts.append(t(key, lang))
        elif english:
            parts.append(reason.replace("_", " "))
    return short("; ".join(p for p in parts if p), 200)


