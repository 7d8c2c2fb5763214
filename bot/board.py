"""`TelegramBoard`: what the staff chat shows, rendered from the database into outbox payloads.

The domain stores intents (models/intents.py) as `TelegramOutbox` rows; `bot.telegram_outbox.TelegramSender`
renders each with `render_deferred` when it delivers the row. The handlers use it too, for keyboards and
for the command views.

Two guarantees, whatever a client put in an email:
* every piece of email text is escaped (`html.escape(text, quote=False)` through the Environment's
  `finalize`), and the templates use only Telegram's tags, so Telegram's entity parser never fails;
* a post never exceeds 4096 characters after entity parsing, counted in UTF-16 units as Telegram
  counts: fields are capped first, then the body (never the markup) is shortened to what is left.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiogram.filters.callback_data import CallbackData
from markupsafe import Markup

from bot.callbacks import Op, Reason, RefuseAction, RefuseOp, TicketAction, WithdrawAction, WithdrawOp
from bot.i18n import RU, finding_title, norm_lang, reason_label, t
from bot.text import cut_utf16, truncate_utf16, utf16_len, visible_len, visible_text
from models.calendar import BusinessCalendar
from models.clock import as_utc, utcnow
from models.desk import REFUSAL_ACTIONS
from models.intents import CardChanged, Followup, NewCard, StaffNotice, from_payload, is_intent
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

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "telegram"

# Room kept below the hard limit: Telegram's own trimming is the only thing we do not model exactly.
SAFE_LIMIT = 4000
MAX_FILE_BYTES = 50 * 1024 * 1024  # the Bot API's upload limit

STATUS_ICONS = {
    TicketStatus.NEW: "🆕",
    TicketStatus.ACCEPTED: "✅",
    TicketStatus.REFUSED: "⛔",
    TicketStatus.ANSWERED: "📘",
    TicketStatus.CLOSED: "🔒",
}
SEVERITY_ICONS = {"block": "🚫", "warn": "⚠️", "info": "ℹ️"}
REASONS: tuple[str, ...] = tuple(r.value for r in Reason)



# ------------------------------------------------------------------------------------------------
# Text helpers
# ------------------------------------------------------------------------------------------------
# Unicode format characters (category Cf): invisible, and some reorder what is shown (U+202E turns
# "invoice_gpj.exe" into "invoice_exe.jpg"). Written out as ranges rather than computed from unicodedata
# at import (a scan of 1.1 M code points costs start-up time); tests/test_board.py checks the list
# still covers every Cf character Python knows.
_ZWJ = "\u200d"
_INVISIBLE_BMP = (  # without ZWJ (see _drop_invisible)
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200c\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_INVISIBLE_ASTRAL = (
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
INVISIBLE_RANGES = _INVISIBLE_BMP + _INVISIBLE_ASTRAL + _ZWJ
# Two classes: a class with astral ranges is about 3 times slower on every character (CPU time on 5.5 MB
# of Cyrillic: 0.045 s against 0.13 s), so that one runs only on text that has astral characters.
_INVISIBLE_BMP_RE = re.compile(f"[{_INVISIBLE_BMP}]")
_INVISIBLE_ASTRAL_RE = re.compile(f"[{_INVISIBLE_ASTRAL}]")
_ZWJ_RE = re.compile(_ZWJ)


def _is_pictograph(char: str) -> bool:
    """Emoji-ish: a symbol (So), a skin-tone modifier or the emoji variation selector."""
    return unicodedata.category(char) == "So" or "\U0001f3fb" <= char <= "\U0001f3ff" or char == "\ufe0f"


def _drop_invisible(match: re.Match[str]) -> str:
    # ZWJ between two pictographs builds one emoji (👩‍💻): kept. Anywhere else it is an invisible
    # character that splits words (and keyword checks), so it goes like every other one.
    if match.group() == _ZWJ:
        text, at = match.string, match.start()
        if 0 < at < len(text) - 1 and _is_pictograph(text[at - 1]) and _is_pictograph(text[at + 1]):
            return _ZWJ
    return ""


def strip_invisible(text: str) -> str:
    """`text` without format characters (bidi overrides and isolates, zero-width ones, the BOM, soft
    hyphens, Arabic letter mark, tags): what a client writes is shown in the order and with the
    characters it really has."""
    # Plain substitutions run in C; only ZWJs (rare) get the per-match look at their neighbours.
    text = _INVISIBLE_BMP_RE.sub("", text)
    if utf16_len(text) != len(text):  # has astral characters (a C-speed check: 4 ms for 5 MB)
        text = _INVISIBLE_ASTRAL_RE.sub("", text)
    return _ZWJ_RE.sub(_drop_invisible, text) if _ZWJ in text else text


def tg_escape(value: Any) -> Markup:
    """Telegram-HTML-safe text: invisible format characters removed (strip_invisible), <, > and &
    escaped; quotes left alone (Telegram needs no more). Every value a Telegram template renders goes
    through here (the jinja finalize), so every card field from email is cleaned in one place."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(strip_invisible(str(value)), quote=False))


def short(text: str | None, limit: int) -> str:
    """One line, at most `limit` UTF-16 units, an ellipsis when cut."""
    return truncate_utf16(" ".join((text or "").split()), limit)


def human_size(size: int, lang: str) -> str:
    units = ("Б", "КБ", "МБ", "ГБ") if norm_lang(lang) == "ru" else ("B", "KB", "MB", "GB")
    value = float(size)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == units[0] else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} {units[0]}"


def button(text: str, data: CallbackData) -> dict[str, str]:
    return {"text": text, "callback_data": data.pack()}


def keyboard(rows: list[list[dict[str, str]]]) -> dict[str, Any]:
    return {"inline_keyboard": [row for row in rows if row]}


@dataclass(frozen=True)
class BoardConfig:
    staff_chat_id: int
    language: str = "ru"
    timezone: str = "Europe/Moscow"
    refusal_grace: timedelta = timedelta(seconds=30)
    monthly_limit: int = 3

    @classmethod
    def from_settings(cls, settings: Any) -> BoardConfig:
        return cls(
            staff_chat_id=settings.STAFF_CHAT_ID,
            language=settings.LANGUAGE,
            timezone=settings.TIMEZONE,
            refusal_grace=timedelta(seconds=settings.REFUSAL_GRACE_SECONDS),
            monthly_limit=settings.MONTHLY_LIMIT,
        )


class TelegramViews:
    """One jinja2 Environment for templates/telegram/<view>.<lang>.html (an override dir first)."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=True,
            # finalize runs before autoescape: it escapes the Telegram way and marks the result safe.
            finalize=tg_escape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def render(self, view: str, lang: str, **context: Any) -> str:
        return self.env.get_template(f"{view}.{norm_lang(lang)}.html").render(**context).strip()

    def render_fitted(
        self, view: str, lang: str, body: str, cut_key: str = "card.cut", limit: int = SAFE_LIMIT, **context: Any
    ) -> str:
        """Render with as much of `body` as fits in `limit`; the markup is never cut."""
        # A body of more than `limit` characters (each at least one UTF-16 unit, all shown) cannot fit:
        # it is not rendered, escaped and measured whole first. A 5 MB body cost the event loop about a
        # second per card that way (issue 16); now only the part that fits is ever rendered.
        if len(body.strip()) <= limit:
            full = self.render(view, lang, body=body, cut="", **context)
            if visible_len(full) <= limit:
                return full
        cut = t(cut_key, lang, n=len(body))
        base = self.render(view, lang, body="", cut=cut, **context)
        budget = limit - visible_len(base) - 2
        return self.render(view, lang, body=cut_utf16(body, budget).rstrip(), cut=cut, **context)

    def render_list(self, view: str, lang: str, items: list[Any], **context: Any) -> str:
        """Render a list view, dropping items from the end (with "… and N more") until it fits."""
        count = min(len(items), 60)
        while True:
            more = t("more_items", lang, n=len(items) - count) if count < len(items) else ""
            text = self.render(view, lang, items=items[:count], more=more, **context)
            if visible_len(text) <= SAFE_LIMIT or count == 0:
                return text if visible_len(text) <= SAFE_LIMIT else cut_utf16(visible_text(text), SAFE_LIMIT)
            count -= 1 if count < 10 else max(1, count // 5)


# ------------------------------------------------------------------------------------------------
# The board
# ------------------------------------------------------------------------------------------------
class TelegramBoard:
    """Renders the domain's intents at delivery, plus the keyboards and views the handlers show."""

    def __init__(
        self,
        config: BoardConfig | Any,
        *,
        calendar: BusinessCalendar,
        clock: Callable[[], datetime] = utcnow,
        views: TelegramViews | None = None,
    ) -> None:
        """`config` is a BoardConfig, or the Settings it is built from (the composition root's choice)."""
        if not isinstance(config, BoardConfig):
            override = getattr(config, "CONFIG_DIR", None)
            if views is None and override is not None and (override / "telegram").is_dir():
                views = TelegramViews(override / "telegram")
            config = BoardConfig.from_settings(config)
        self.config = config
        self.calendar = calendar
        self.clock = clock
        self.views = views or TelegramViews()
        self.tz = ZoneInfo(config.timezone)

    @property
    def lang(self) -> str:
        return norm_lang(self.config.language)

    def clock_time(self, value: datetime | None) -> str:
        """"14:05" in TIMEZONE for today, "12.03.2026 14:05" for another day (an "already ... at" answer)."""
        if value is None:
            return ""
        local = as_utc(value).astimezone(self.tz)
        if local.date() == as_utc(self.clock()).astimezone(self.tz).date():
            return local.strftime("%H:%M")
        return local.strftime("%d.%m.%Y %H:%M")

    def when(self, value: datetime | None, seconds: bool = False) -> str:
        if value is None:
            return ""
        return as_utc(value).astimezone(self.tz).strftime("%d.%m.%Y %H:%M:%S" if seconds else "%d.%m.%Y %H:%M")

    # Intents, rendered when the outbox delivers them -------------------------------------------
    async def render_deferred(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The params of a row the sender renders just before posting (`TelegramSender(render=...)`):
        an intent of the domain (models/intents.py), or {"ticket_card": id} (a new card of an older
        version). Rendered then, a card shows the ticket's state, queue place and time left as they are
        when it is posted, even after minutes behind Telegram's group limit."""
        if not is_intent(spec):
            return self._params(*await self.render_card(int(spec["ticket_card"])))
        intent = from_payload(spec)
        if isinstance(intent, NewCard | CardChanged):
            return self._params(*await self.render_card(intent.ticket_id))
        if isinstance(intent, Followup):
            return self._params(await self.followup_text(intent.ticket_id, intent.message_id, intent.note), None)
        if isinstance(intent, StaffNotice):
            return self.notice_params(intent.event, dict(intent.facts), intent.ticket_id)
        ticket = f" #{intent.ticket_id}" if intent.ticket_id else ""
        # Plain text: whatever broke the failed post cannot break this one.
        return {"text": t("msg.post_failed", self.lang, ticket=ticket, kind=intent.row_kind, reason=intent.reason[:500])}

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
            # The on-call agent acts from the alert itself: open the request or take it.
            markup = keyboard(
                [
                    [
                        button(t("btn.open", self.lang, n=ticket_id), TicketAction(op=Op.OPEN, ticket_id=ticket_id)),
                        button(t("btn.accept", self.lang), TicketAction(op=Op.ACCEPT, ticket_id=ticket_id)),
                    ]
                ]
            )
        return self._params(text, markup)

    def notice_text(self, event: str, facts: dict[str, Any]) -> str:
        lang = self.lang
        if event == "quarantined":
            line = self._quarantine_text(facts)
        elif event == "email_sent":
            line = t("msg.email_sent", lang, n=facts.get("ticket_id"))
        elif event == "email_failed":
            error = short(str(facts.get("error") or "?"), 500)
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

    @staticmethod
    def _params(text: str, markup: dict[str, Any] | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if markup is not None:
            params["reply_markup"] = markup
        return params

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
            lines.append("❗ " + t("card.delivery_failed", lang, error=short(failed.last_error or "?", 300)))
        elif bounced is not None:
            lines.append("❗ " + t("card.delivery_failed", lang, error="bounce"))
        return lines

    async def _undo_possible(self, ticket_id: int) -> bool:
        decision = (
            await Decision.filter(ticket_id=ticket_id, action__in=list(REFUSAL_ACTIONS)).order_by("-id").first()
        )
        if decision is None:
            return False
        email = await EmailOutbox.get_or_none(idempotency_key=f"{REFUSAL_ACTIONS[decision.action]}:{decision.id}")
        if email is None:  # nothing to hold back (no email is sent to this sender): undo stays possible
            return True
        return email.status == OutboxStatus.PENDING

    async def queue_position(self, ticket: Ticket) -> tuple[int, int]:
        """(position among waiting requests by arrival order, how many wait): 2.3."""
        from tortoise.expressions import Q

        before = await Ticket.filter(status=TicketStatus.NEW).filter(
            Q(arrived_at__lt=ticket.arrived_at)
            | Q(arrived_at=ticket.arrived_at, arrival_uid__lt=ticket.arrival_uid)
            | Q(arrived_at=ticket.arrived_at, arrival_uid=ticket.arrival_uid, id__lt=ticket.id)
        ).count()
        total = await Ticket.filter(status=TicketStatus.NEW).count()
        return before + 1, total

    async def ticket_files(self, ticket_id: int) -> list[tuple[Message, dict[str, Any]]]:
        """Attachments of the client's emails in this ticket, oldest first."""
        messages = await Message.filter(ticket_id=ticket_id, direction=MessageDirection.INBOUND).order_by("id")
        return [(m, a) for m in messages for a in (m.attachments or []) if isinstance(a, dict)]

    def _sender(self, name: str | None, address: str | None) -> str:
        name = short(name, 100)
        address = short(address, 200)
        return f"{name} <{address}>" if name and address else (address or name or "?")

    def _attachment_line(self, attachments: list[dict[str, Any]]) -> str:
        shown = [
            f"{short(a.get('filename') or 'file', 80)} ({human_size(int(a.get('size') or 0), self.lang)})"
            for a in attachments[:10]
        ]
        if len(attachments) > 10:
            shown.append(t("more_items", self.lang, n=len(attachments) - 10))
        return ", ".join(shown)

    # Keyboards ------------------------------------------------------------------------------
    def card_keyboard(self, ticket_id: int, status: TicketStatus, *, has_faq: bool, undo: bool) -> dict[str, Any]:
        lang = self.lang

        def b(key: str, op: Op, **kw: Any) -> dict[str, str]:
            return button(t(key, lang, **kw), TicketAction(op=op, ticket_id=ticket_id))

        more = b("btn.more", Op.MORE)
        if status == TicketStatus.NEW:
            rows = [[b("btn.accept", Op.ACCEPT), b("btn.refuse", Op.REFUSE)]]
            if has_faq:
                rows.append([b("btn.faq", Op.FAQ)])
            rows.append([more])
        elif status == TicketStatus.ACCEPTED:
            rows = [[b("btn.reply_hint", Op.HINT_REPLY)], [b("btn.close", Op.CLOSE), more]]
        elif status == TicketStatus.ANSWERED:
            rows = [[b("btn.close", Op.CLOSE), more]]
        elif status == TicketStatus.REFUSED and undo:
            rows = [[b("btn.undo", Op.UNDO)], [more]]
        else:
            rows = [[more]]
        return keyboard(rows)

    async def card_keyboard_now(self, ticket_id: int) -> dict[str, Any]:
        ticket = await Ticket.get(id=ticket_id)
        status = TicketStatus(ticket.status)
        has_faq = bool(ticket.verdict and Verdict.from_json(ticket.verdict).faq_entries)
        undo = status == TicketStatus.REFUSED and await self._undo_possible(ticket_id)
        return self.card_keyboard(ticket_id, status, has_faq=has_faq, undo=undo)

    async def more_keyboard(self, ticket_id: int) -> dict[str, Any]:
        lang = self.lang
        ticket = await Ticket.get(id=ticket_id)
        files = await self.ticket_files(ticket_id)

        def b(key: str, op: Op, **kw: Any) -> dict[str, str]:
            return button(t(key, lang, **kw), TicketAction(op=op, ticket_id=ticket_id))

        rows = [[b("btn.full_text", Op.FULL_TEXT)]]
        if files:
            rows.append([b("btn.files", Op.FILES, n=len(files))])
        rows.append([b("btn.eml", Op.EML)])
        if ticket.status in (TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.ANSWERED):
            rows.append([b("btn.close", Op.CLOSE)])
        if ticket.status == TicketStatus.ACCEPTED:
            # Refusing an accepted request is its own, confirmed action (never the plain Refuse button).
            rows.append([button(t("btn.withdraw", lang), WithdrawAction(op=WithdrawOp.ASK, ticket_id=ticket_id))])
        rows.append([b("btn.back", Op.BACK)])
        return keyboard(rows)

    def refuse_keyboard(self, ticket_id: int, suggested: str | None, *, withdrawing: bool = False) -> dict[str, Any]:
        """The reason picker; `withdrawing`: of a refusal after acceptance (its own callback prefix)."""
        lang = self.lang
        order = sorted(REASONS, key=lambda r: r != suggested)
        rows = []
        for reason in order:
            label = reason_label(reason, lang)
            if reason == suggested:
                label = "⭐ " + label
            data: CallbackData = (
                WithdrawAction(op=WithdrawOp.PICK, ticket_id=ticket_id, reason=Reason(reason))
                if withdrawing
                else RefuseAction(op=RefuseOp.PICK, ticket_id=ticket_id, reason=Reason(reason))
            )
            rows.append([button(label, data)])
        rows.append([button(t("btn.back", lang), TicketAction(op=Op.BACK, ticket_id=ticket_id))])
        return keyboard(rows)

    def refuse_prompt_keyboard(self, ticket_id: int, reason: str, *, withdrawing: bool = False) -> dict[str, Any]:
        lang = self.lang
        r = Reason(reason)
        if withdrawing:
            return keyboard(
                [
                    [button(t("btn.no_comment", lang),
                            WithdrawAction(op=WithdrawOp.NO_COMMENT, ticket_id=ticket_id, reason=r))],
                    [button(t("btn.cancel", lang), WithdrawAction(op=WithdrawOp.CANCEL, ticket_id=ticket_id, reason=r))],
                ]
            )
        return keyboard(
            [
                [button(t("btn.no_comment", lang), RefuseAction(op=RefuseOp.NO_COMMENT, ticket_id=ticket_id, reason=r))],
                [button(t("btn.cancel", lang), RefuseAction(op=RefuseOp.CANCEL, ticket_id=ticket_id, reason=r))],
            ]
        )

    def confirm_keyboard(self, ticket_id: int, findings: list[dict[str, Any]]) -> dict[str, Any]:
        lang = self.lang
        what = short(", ".join(finding_title(f, lang) for f in findings), 60)
        return keyboard(
            [
                [button(t("btn.confirm_accept", lang, what=what), TicketAction(op=Op.CONFIRM_ACCEPT, ticket_id=ticket_id))],
                [button(t("btn.back", lang), TicketAction(op=Op.BACK, ticket_id=ticket_id))],
            ]
        )

    def withdraw_confirm_keyboard(self, ticket_id: int) -> dict[str, Any]:
        """The confirmation of a refusal after acceptance (the press is answered with who accepted when)."""
        lang = self.lang
        return keyboard(
            [
                [button(t("btn.withdraw_confirm", lang), WithdrawAction(op=WithdrawOp.CONFIRM, ticket_id=ticket_id))],
                [button(t("btn.back", lang), TicketAction(op=Op.BACK, ticket_id=ticket_id))],
            ]
        )

    def open_keyboard(self, ticket_id: int) -> dict[str, Any]:
        return keyboard([[button(t("btn.open", self.lang, n=ticket_id), TicketAction(op=Op.OPEN, ticket_id=ticket_id))]])


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

