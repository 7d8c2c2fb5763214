"""Small helpers shared by the staff-chat handlers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram.types import CallbackQuery
from aiogram.types import Message as TgMessage

from bot.board import TelegramBoard, short
from bot.i18n import t
from bot.views.messages import KeyboardEdit, ViewMessage
from models.desk import Desk, Outcome
from models.tables import OutboxStatus, TelegramOutbox


async def set_keyboard(desk: Desk, query: CallbackQuery, value: dict[str, Any] | None, ticket_id: int | None) -> None:
    """Swap the inline keyboard of the message whose button was pressed, through the outbox (in order
    with the ticket's other posts; "not modified", a double click, is no error there). Keyed by the
    press: a redelivered update changes it once."""
    message = query.message
    if message is None:
        return
    edit = KeyboardEdit(message.chat.id, message.message_id, value, ticket_id=ticket_id)
    await delivered(await desk.post(edit, f"keyboard:{query.id}", chat_id=edit.chat_id))


async def delivered(row: TelegramOutbox, timeout: float = 3.0) -> bool:  # noqa: ASYNC109 - polls our own table
    """Wait (at most `timeout`) until the outbox has delivered `row`, so the press is answered once the
    keyboard or prompt it changed is there, as when handlers called Telegram themselves; the press is
    answered anyway when Telegram is slow (the row still goes, later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        status = await TelegramOutbox.filter(id=row.id).values_list("status", flat=True)
        if not status or status[0] not in (OutboxStatus.PENDING, OutboxStatus.SENDING):
            return True
        await asyncio.sleep(0.05)
    return False


async def answer_message(
    desk: Desk, message: TgMessage, text: str, *, html: bool = True, reply: bool = False, ticket_id: int | None = None,
    keyboard: dict[str, Any] | None = None,
) -> None:
    """Answer a message in its chat through the outbox (paced, retried; once per message: keyed by it).
    `reply`: as a reply to it; `html`: `text` is Telegram HTML (else plain text)."""
    post = ViewMessage(message.chat.id, text, keyboard=keyboard or None,
                       reply_to_message_id=message.message_id if reply else None, ticket_id=ticket_id, html=html)
    await desk.post(post, f"answer:{message.chat.id}:{message.message_id}", chat_id=post.chat_id)


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
