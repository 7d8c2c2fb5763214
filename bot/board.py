"""`TelegramBoard`: what the staff chat shows, rendered from the database (bot/views) — the domain's intents
when the outbox delivers them (`render_deferred`), and the keyboards and views the handlers show.

Two guarantees, whatever a client put in an email:
* every piece of email text is escaped (`html.escape(text, quote=False)` through the Environment's
  `finalize`, bot/views/templates.py), and the templates use only Telegram's tags, so Telegram's entity
  parser never fails;
* a post never exceeds 4096 characters after entity parsing, counted in UTF-16 units as Telegram
  counts: fields are capped first, then the body (never the markup) is shortened to what is left.
"""

from __future__ import annotations

from typing import Any

from bot.i18n import t
from bot.views.card import SEVERITY_ICONS, STATUS_ICONS, Cards, evidence_text
from bot.views.context import BoardConfig
from bot.views.keyboards import REASONS, button, keyboard
from bot.views.notices import Notices
from bot.views.templates import SAFE_LIMIT, TEMPLATES_DIR, TelegramViews
from bot.views.text import INVISIBLE_RANGES, human_size, short, strip_invisible, tg_escape
from models.intents import CardChanged, Followup, NewCard, StaffNotice, from_payload, is_intent

__all__ = [
    "INVISIBLE_RANGES", "MAX_FILE_BYTES", "REASONS", "SAFE_LIMIT", "SEVERITY_ICONS", "STATUS_ICONS", "TEMPLATES_DIR",
    "BoardConfig", "TelegramBoard", "TelegramViews", "button", "evidence_text", "human_size", "keyboard", "short",
    "strip_invisible", "tg_escape",
]

MAX_FILE_BYTES = 50 * 1024 * 1024  # the Bot API's upload limit


class TelegramBoard(Cards, Notices):
    """Renders the domain's intents at delivery, plus the keyboards and views the handlers show."""

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

