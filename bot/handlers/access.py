"""Who may act: members of the staff chat only.

Membership is asked from Telegram (`getChatMember` on the staff chat) and cached for
STAFF_CACHE_SECONDS, so a colleague removed from the chat loses the buttons within that time. Every
person who acts gets a `StaffMember` row (created or refreshed from their Telegram profile), which
the handlers receive as `staff`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from bot.i18n import t
from models.tables import StaffMember

log = logging.getLogger(__name__)

STAFF_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})


class StaffDirectory:
    def __init__(
        self,
        staff_chat_id: int,
        *,
        language: str = "ru",
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.staff_chat_id = staff_chat_id
        self.language = language
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[int, tuple[float, bool]] = {}

    async def is_member(self, bot: Bot, user_id: int) -> bool:
        now = self.clock()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            member = await bot.get_chat_member(self.staff_chat_id, user_id)
            allowed = member.status in STAFF_STATUSES
            if member.status == "restricted":
                allowed = bool(getattr(member, "is_member", True))
        except TelegramAPIError as error:
            # "user not found" and the like: not a member. Not cached, so a hiccup is not remembered.
            log.info("getChatMember for %s failed: %s", user_id, error)
            return False
        self._cache[user_id] = (now + self.cache_seconds, allowed)
        return allowed

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    async def staff_for(self, user: User) -> StaffMember:
        """The StaffMember row of a Telegram user, created or refreshed (name, username)."""
        name = " ".join(p for p in (user.first_name, user.last_name) if p)[:200]
        username = (user.username or None) and user.username[:100]
        staff, created = await StaffMember.get_or_create(
            telegram_id=user.id, defaults={"name": name, "username": username}
        )
        if not created and (staff.name != name or staff.username != username):
            await StaffMember.filter(id=staff.id).update(name=name, username=username)
            staff.name, staff.username = name, username
        return staff


class InjectDirectory(BaseMiddleware):
    """Makes the directory available to handlers as `staff_directory`."""

    def __init__(self, directory: StaffDirectory) -> None:
        self.directory = directory

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        data["staff_directory"] = self.directory
        return await handler(event, data)


class StaffOnly(BaseMiddleware):
    """Outer middleware of the staff-chat router: events from elsewhere are ignored, presses from
    non-members get a short alert and change nothing."""

    def __init__(self, directory: StaffDirectory) -> None:
        self.directory = directory

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        directory = self.directory
        data["staff_directory"] = directory
        bot: Bot = data["bot"]
        if isinstance(event, CallbackQuery):
            chat = event.message.chat.id if event.message is not None else None
            user = event.from_user
            if chat != directory.staff_chat_id or not await directory.is_member(bot, user.id):
                await event.answer(t("ans.denied", directory.language), show_alert=True)
                return None
        elif isinstance(event, Message):
            user = event.from_user
            if event.chat.id != directory.staff_chat_id or user is None or user.is_bot:
                return None
            if not await directory.is_member(bot, user.id):
                return None
        else:
            return await handler(event, data)
        data["staff"] = await directory.staff_for(user)
        return await handler(event, data)
