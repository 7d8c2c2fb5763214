"""Small helpers shared by the staff-chat handlers."""

from __future__ import annotations

import contextlib
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions

from bot.board import TelegramBoard, short
from bot.i18n import t
from models.desk import Outcome

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def markup(value: dict[str, Any] | None) -> InlineKeyboardMarkup | None:
    return InlineKeyboardMarkup.model_validate(value) if value else None


async def set_keyboard(bot: Bot, chat_id: int, message_id: int, value: dict[str, Any] | None) -> None:
    """Swap a message's inline keyboard; "not modified" (a double click) is not an error."""
    with contextlib.suppress(TelegramBadRequest):
        await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id, reply_markup=markup(value))


def outcome_text(outcome: Outcome, lang: str, done_key: str, **kw: Any) -> str:
    """The short answer to a button press (at most 200 characters, Telegram's limit)."""
    if outcome.status == "done":
        text = t(done_key, lang, **kw)
    elif outcome.status in ("already", "not_found", "too_late"):
        text = t(f"ans.{outcome.status}", lang)
    else:
        text = t("ans.invalid", lang, detail=outcome.detail or outcome.status)
    return short(text, 200)


def answer_text(outcome: Outcome, board: TelegramBoard, done_key: str, **kw: Any) -> str:
    """`outcome_text`, and for "already" who decided first and when (HH:MM in TIMEZONE): the second of
    two agents learns that the request was already accepted, refused or answered, and by whom."""
    decided = outcome.decided
    if outcome.status == "already" and decided is not None and decided.staff_name:
        key = f"ans.already_{decided.status}"
        text = t(key, board.lang, who=short(decided.staff_name, 80), time=board.clock_time(decided.at))
        return short(text, 200)
    if outcome.status == "not_accepted":
        return short(t("ans.not_accepted", board.lang), 200)
    return outcome_text(outcome, board.lang, done_key, **kw)
