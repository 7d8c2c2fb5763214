"""Who may act: members of the staff chat only.

Two signals, the newer wins:
- Telegram tells us at once: the bot (an administrator of the staff chat) asks for `chat_member`
  updates, and a join, leave, kick or restriction is recorded by `StaffDirectory.record` (handlers in
  bot/handlers/membership.py; `left_chat_member`/`new_chat_members` service messages are a second
  signal). The record goes to this process's cache and to a `KeyValue` mark, so every process of a
  webhook deployment sees it (Telegram delivers the update to one of them only).
- The fallback: `getChatMember` on the staff chat, cached for STAFF_CACHE_SECONDS (an update can be
  missed, e.g. while the bot was not an administrator).

Every person who acts gets a `StaffMember` row (created or refreshed from their Telegram profile),
which the handlers receive as `staff`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, ChatMember, Message, TelegramObject, User

from bot.i18n import t
from models.tables import KeyValue, StaffMember

log = logging.getLogger(__name__)

STAFF_STATUSES = frozenset({"creator", "administrator", "member"})
MARK_KEY = "staff_membership:{chat_id}:{user_id}"


def counts_as_staff(member: ChatMember) -> bool:
    """Creator, administrator, member: yes. Restricted: only while still in the chat AND allowed to
    write; a colleague the admins muted is treated as suspended (the chat is where staff work, and a
    mute there is a moderator's decision). Left, kicked: no."""
    if member.status in STAFF_STATUSES:
        return True
    if member.status == "restricted":
        return bool(getattr(member, "is_member", False)) and bool(getattr(member, "can_send_messages", False))
    return False


class StaffDirectory:
    def __init__(
        self,
        staff_chat_id: int,
        *,
        language: str = "ru",
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: wall-clock seconds; the marks are compared across processes, so not monotonic."""
        self.staff_chat_id = staff_chat_id
        self.language = language
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[int, tuple[float, bool]] = {}  # user id -> (when learnt, allowed)

    async def is_member(self, bot: Bot, user_id: int) -> bool:
        now = self.clock()
        known = self._fresh(self._cache.get(user_id), now)
        mark = self._fresh(await self._read_mark(user_id), now)
        if mark is not None and (known is None or mark[0] >= known[0]):
            known = mark  # a join or leave recorded (maybe by another process) after our last look
        if known is not None:
            return known[1]
        try:
            member = await bot.get_chat_member(self.staff_chat_id, user_id)
        except TelegramAPIError as error:
            # "user not found" and the like: not a member. Not cached, so a hiccup is not remembered.
            log.info("getChatMember for %s failed: %s", user_id, error)
            return False
        allowed = counts_as_staff(member)
        self._cache[user_id] = (now, allowed)
        return allowed

    async def record(self, user_id: int, allowed: bool, status: str) -> None:
        """Telegram said this user joined or left the staff chat: effective at once, in every process."""
        now = self.clock()
        self._cache[user_id] = (now, allowed)
        await KeyValue.update_or_create(
            key=self._mark_key(user_id), defaults={"value": {"at": now, "allowed": allowed, "status": status}}
        )
        log.info("staff chat membership of %s: %s (%s)", user_id, "granted" if allowed else "revoked", status)

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    def _fresh(self, entry: tuple[float, bool] | None, now: float) -> tuple[float, bool] | None:
        """An entry younger than STAFF_CACHE_SECONDS (and not from the future: a clock step back)."""
        if entry is None or not (now - self.cache_seconds < entry[0] <= now + 1.0):
            return None
        return entry

    def _mark_key(self, user_id: int) -> str:
        return MARK_KEY.format(chat_id=self.staff_chat_id, user_id=user_id)

    async def _read_mark(self, user_id: int) -> tuple[float, bool] | None:
        row = await KeyValue.get_or_none(key=self._mark_key(user_id))
        if row is None or not isinstance(row.value, dict):
            return None
        try:
            return float(row.value["at"]), bool(row.value["allowed"])
        except (KeyError, TypeError, ValueError):
            return None

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
