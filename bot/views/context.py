"""What every view renders with: the board's settings, the calendar and clock, the templates, and the
few ticket reads several views share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from bot.i18n import norm_lang, t
from bot.views.templates import TelegramViews
from bot.views.text import human_size, short
from models.calendar import BusinessCalendar
from models.clock import as_utc, utcnow
from models.desk import REFUSAL_ACTIONS
from models.tables import Decision, EmailOutbox, Message, MessageDirection, OutboxStatus, Ticket, TicketStatus


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


class ViewContext:
    """The state the views share; `TelegramBoard` (bot/board.py) is all of them on one object."""

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
