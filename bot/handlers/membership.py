"""Outside the staff chat: private /start from staff (so SLA alerts can reach them by DM), and leaving
any group a stranger added the bot to."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandStart
from aiogram.types import ChatMemberUpdated
from aiogram.types import Message as TgMessage

from bot.handlers.access import StaffDirectory
from bot.i18n import t
from models.tables import StaffMember

log = logging.getLogger(__name__)

PRESENT = frozenset({"member", "administrator", "creator", "restricted"})


def build_membership_router() -> Router:
    router = Router(name="membership")

    @router.message(CommandStart(), F.chat.type == "private")
    async def start(message: TgMessage, bot: Bot, staff_directory: StaffDirectory) -> None:
        lang = staff_directory.language
        user = message.from_user
        if user is None or not await staff_directory.is_member(bot, user.id):
            await message.answer(t("msg.start_denied", lang))
            return
        staff = await staff_directory.staff_for(user)
        await StaffMember.filter(id=staff.id).update(started_bot=True)
        await message.answer(t("msg.start_ok", lang))

    @router.my_chat_member()
    async def added_somewhere(event: ChatMemberUpdated, bot: Bot, staff_directory: StaffDirectory) -> None:
        chat = event.chat
        if chat.id == staff_directory.staff_chat_id or chat.type not in ("group", "supergroup", "channel"):
            return
        if event.new_chat_member.status not in PRESENT:
            return
        log.warning("added to chat %s (%s) by user %s: leaving", chat.id, chat.type,
                    event.from_user.id if event.from_user else "?")
        try:
            await bot.leave_chat(chat.id)
        except TelegramAPIError as error:
            log.warning("could not leave chat %s: %s", chat.id, error)

    @router.message(F.chat.type == "private")
    async def private_other(message: TgMessage) -> None:
        """Anything else in private: ignored (the bot works in the staff chat)."""

    return router
