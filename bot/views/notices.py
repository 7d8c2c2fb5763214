"""Notices (quarantined mail, email outcomes, SLA alerts and the digest, outages) and thread follow-ups."""

from __future__ import annotations

from typing import Any

from bot.i18n import t
from bot.views.keyboards import Keyboards
from bot.views.text import human_size, short
from mail.drafts import draft_failure
from models.tables import Message


def email_failure_text(error: str | None, lang: str, limit: int) -> str:
    """Why an email failed, for the staff: a draft we could not compose (mail/drafts.DraftError) in the
    chat's language; anything else is the mail server's reply, shown as it came (quoted data)."""
    drafted = draft_failure(error)
    if drafted is not None:
        reason, detail = drafted
        return t(f"msg.email_reason.{reason}", lang, detail=detail)
    return short(error or "?", limit)


class Notices(Keyboards):
    async def followup_text(self, ticket_id: int, message_id: int, note: str = "") -> str:
        message = await Message.get(id=message_id)
        lang = self.lang
        notes: list[str] = []
        if note == "reopened":
            notes.append(t("msg.reopened", lang))
        elif note.startswith("bounce:"):
            notes.append(t("msg.bounce", lang, who=short(note[len("bounce:") :], 300)))
        elif note.startswith("feedback:"):
            notes.append(t("msg.feedback", lang, who=short(note[len("feedback:") :], 300)))
        elif note:
            notes.append(short(note, 300))
        if message.kind == "auto_reply":
            notes.append(t("msg.auto_reply", lang))
        return self.views.render_fitted(
            "followup",
            lang,
            body=(message.new_text or message.text or "").strip() or t("card.no_text", lang),
            title=t("msg.followup", lang, n=ticket_id),
            sender=self._sender(message.from_name, message.from_address),
            subject=short(message.subject, 300),
            notes=notes,
            attachments=self._attachment_line(message.attachments or []),
        )

    def notice_params(self, event: str, facts: dict[str, Any], ticket_id: int | None = None) -> dict[str, Any]:
        text = self.notice_text(event, facts)
        markup = None
        if event == "sla_alert" and ticket_id is not None:
            markup = self.alert_keyboard(ticket_id)
        return self._params(text, markup)

    def notice_text(self, event: str, facts: dict[str, Any]) -> str:
        lang = self.lang
        if event == "quarantined":
            line = self._quarantine_text(facts)
        elif event == "email_sent":
            line = t("msg.email_sent", lang, n=facts.get("ticket_id"))
        elif event == "email_failed":
            error = email_failure_text(facts.get("error"), lang, 500)
            if facts.get("ticket_id"):
                line = t("msg.email_failed", lang, n=facts.get("ticket_id"), error=error)
            else:
                line = t("msg.email_failed_unknown", lang, error=error)
        elif event == "sla_alert":
            key = "msg.sla_breached" if facts.get("breached") else "msg.sla_alert"
            line = t(key, lang, mention=short(str(facts.get("mention") or ""), 100), n=facts.get("ticket_id"),
                     left=facts.get("time_left") or "")
            who = short(str(facts.get("client") or facts.get("sender") or ""), 200)
            line += f"\n{who} · {short(str(facts.get('subject') or ''), 200)}"
        elif event == "sla_digest":
            items = list(facts.get("items") or [])
            key = "msg.sla_digest" if items else "msg.sla_digest_empty"
            lines = [t(key, lang, mention=short(str(facts.get("mention") or ""), 100), date=facts.get("date"),
                       count=len(items))]
            lines += [
                f"#{i.get('ticket_id')} — {i.get('time_left', '')} — {short(str(i.get('subject') or ''), 80)}"
                for i in items[:30]
            ]
            line = "\n".join(lines)
        elif event in ("outage", "recovered"):
            # Facts from bot/outages.py: component, since (a local time string), minutes, detail.
            component = str(facts.get("component") or "")
            try:
                what = t(f"outage.{component}", lang)
            except KeyError:
                what = t("outage.component", lang, name=short(component, 60))
            minutes = facts.get("minutes") or 0
            if event == "outage":
                line = t("msg.outage", lang, what=what, since=facts.get("since") or "", minutes=minutes,
                         detail=short(str(facts.get("detail") or "?"), 500))
            else:
                line = t("msg.recovered", lang, what=what, minutes=minutes)
        elif event == "assigned_to_you":
            line = t("msg.assigned_to_you", lang, by=short(str(facts.get("by") or ""), 80), n=facts.get("ticket_id"),
                     subject=short(str(facts.get("subject") or ""), 200))
        elif event == "client_wrote_assignee":
            line = t("msg.client_wrote_assignee", lang, n=facts.get("ticket_id"),
                     subject=short(str(facts.get("subject") or ""), 200))
        elif event == "returned_to_queue":
            tickets = ", ".join(f"#{n}" for n in list(facts.get("tickets") or [])[:50])
            line = t("msg.returned_to_queue", lang, who=short(str(facts.get("who") or ""), 80), tickets=tickets)
        elif event == "calendar_beyond_verified":
            line = t("msg.calendar", lang, verified=facts.get("verified_through"), year=facts.get("year"))
        else:
            detail = ", ".join(f"{k}: {short(str(v), 200)}" for k, v in list(facts.items())[:10])
            line = short(f"{event}: {detail}" if detail else event, 3000)
        return self.views.render("notice", lang, text=line)

    def _quarantine_text(self, facts: dict[str, Any]) -> str:
        """Which mail (raw id, size, sender and subject when the parse got that far) and why. Plain text:
        the notice template escapes it for Telegram HTML."""
        lang = self.lang
        # The reason in the staff's language; the English detail stays in raw_mail.error and the log.
        # Notices written before reasons had codes carry only the detail.
        code = str(facts.get("code") or "")
        if code == "ingest":  # registering failed after a good parse (models/ingest.py)
            reason = t("quarantine.ingest", lang, error=short(str(facts.get("error_type") or "?"), 100))
        elif code:
            reason = t(f"quarantine.{code}", lang)
        elif facts.get("stage") == "ingest":
            reason = t("quarantine.ingest", lang, error=short(str(facts.get("reason") or ""), 500))
        else:
            reason = short(str(facts.get("reason") or ""), 500)
        line = t("msg.quarantined", lang, id=facts.get("raw_mail_id"),
                 size=human_size(int(facts.get("size") or 0), lang), reason=reason)
        if facts.get("sender") or facts.get("subject"):
            name = short(str(facts.get("name") or ""), 100)
            address = short(str(facts.get("sender") or "?"), 200)
            sender = f"{name} <{address}>" if name else address
            line += "\n" + t("msg.quarantined_mail", lang, sender=sender, subject=short(str(facts.get("subject") or ""), 200))
        if facts.get("stage") == "ingest":
            line += "\n" + t("msg.quarantined_next", lang)
        return line
