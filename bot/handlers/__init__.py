"""The bot's routers, built fresh by a factory (a module-level Router can be attached only once).

Dependencies come as Dispatcher keyword arguments: `desk` (models.desk.Desk) and `board`
(bot.board.TelegramBoard). The staff directory (membership cache) is built here from the settings.

Order matters: outside-the-staff-chat handling first (private /start, my_chat_member), then the staff
chat, where `StaffOnly` admits members only and `CallbackAnswerMiddleware` answers every button press,
even when a handler fails.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.types import CallbackQuery
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware

from bot.handlers.access import InjectDirectory, StaffDirectory, StaffOnly
from bot.handlers.commands import build_commands_router, set_commands
from bot.handlers.content import build_content_router
from bot.handlers.decisions import build_decisions_router
from bot.handlers.desk_tools import build_desk_tools_router
from bot.handlers.membership import build_membership_router
from bot.handlers.replies import build_replies_router
from bot.i18n import t

log = logging.getLogger(__name__)

__all__ = [
    "StaffDirectory", "allowed_updates", "build_router", "register_commands", "set_commands",
]

# Asked for explicitly (long polling and setWebhook alike): Telegram leaves `chat_member` out by
# default, and without it a colleague who left keeps acting until the membership cache expires.
REQUIRED_UPDATES = frozenset({"message", "callback_query", "my_chat_member", "chat_member"})


def allowed_updates(dispatcher: Dispatcher) -> list[str]:
    """The update types to request: what the handlers use, and always the membership changes."""
    return sorted(set(dispatcher.resolve_used_update_types()) | REQUIRED_UPDATES)


def build_router(settings: Any = None, *, directory: StaffDirectory | None = None) -> Router:
    """`settings` (bot.settings.Settings) gives STAFF_CHAT_ID, LANGUAGE and STAFF_CACHE_SECONDS;
    or pass a ready `directory` (tests)."""
    if directory is None:
        if settings is None:
            raise ValueError("build_router needs settings or a StaffDirectory")
        directory = StaffDirectory(
            settings.STAFF_CHAT_ID, language=settings.LANGUAGE, cache_seconds=settings.STAFF_CACHE_SECONDS
        )
    root = Router(name="support-bridge")
    inject = InjectDirectory(directory)
    for observer in (root.message, root.callback_query, root.my_chat_member, root.chat_member):
        observer.outer_middleware(inject)
    root.include_router(build_membership_router())

    staff_chat = Router(name="staff-chat")
    gate = StaffOnly(directory)
    staff_chat.message.outer_middleware(gate)
    staff_chat.callback_query.outer_middleware(gate)
    staff_chat.callback_query.middleware(CallbackAnswerMiddleware())
    staff_chat.include_routers(
        build_decisions_router(),
        build_content_router(),
        build_desk_tools_router(),  # before replies: "/assign @user" and "/merge" as replies are commands
        build_commands_router(),  # before replies: "/note text" as a reply is a command
        build_replies_router(),
        build_stale_router(),  # last: only presses no other handler took
    )
    root.include_router(staff_chat)
    return root


def build_stale_router() -> Router:
    """Every press gets an answer: a button no handler understands (an old keyboard, unknown or
    malformed data, an id out of range) is answered "stale" and changes nothing."""
    router = Router(name="stale-buttons")

    @router.callback_query()
    async def stale(query: CallbackQuery, callback_answer: CallbackAnswer, staff_directory: StaffDirectory) -> None:
        log.info("stale or malformed button from %s: %r", query.from_user.id, (query.data or "")[:80])
        callback_answer.text = t("ans.stale", staff_directory.language)
        callback_answer.show_alert = False

    return router


async def register_commands(bot: Bot, settings: Any) -> None:
    await set_commands(bot, settings.LANGUAGE, settings.STAFF_CHAT_ID)

