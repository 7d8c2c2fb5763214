"""Membership and the world outside the staff chat: joins and leaves in the staff chat (access follows
them at once), private /start from staff (so SLA alerts can reach them by DM), and leaving any group a
stranger added the bot to."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandStart
from aiogram.types import ChatMemberUpdated
from aiogram.types import Message as TgMessage

from bot.handlers.access import StaffDirectory, counts_as_staff
from bot.handlers.common import answer_message
from bot.i18n import t
from models.desk import Desk
from models.tables import StaffMember

log = logging.getLogger(__name__)

PRESENT = frozenset({"member", "administrator", "creator", "restricted"})


def build_membership_router() -> Router:
    router = Router(name="membership")

    @router.message(CommandStart(), F.chat.type == "private")
    async def start(message: TgMessage, bot: Bot, desk: Desk, staff_directory: StaffDirectory) -> None:
        lang = staff_directory.language
        user = message.from_user
        if user is None or not await staff_directory.is_member(bot, user.id):
            await answer_message(desk, message, t("msg.start_denied", lang), html=False)
            return
        staff = await staff_directory.staff_for(user)
        await StaffMember.filter(id=staff.id).update(started_bot=True)
        await answer_message(desk, message, t("msg.start_ok", lang), html=False)

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

    @router.chat_member()
    async def member_changed(event: ChatMemberUpdated, staff_directory: StaffDirectory, desk: Desk) -> None:
        """A colleague joined, left, was removed or restricted: grant or revoke now, not when the cache
        expires. Telegram sends these only to an administrator that asked for them (allowed_updates)."""
        if event.chat.id != staff_directory.staff_chat_id:
            return
        member = event.new_chat_member
        if member.user.is_bot:
            return
        allowed = counts_as_staff(member)
        await staff_directory.record(member.user.id, allowed, member.status)
        if not allowed:
            await give_back_tickets(desk, member.user.id)

    @router.message(F.left_chat_member)
    async def member_left_message(message: TgMessage, staff_directory: StaffDirectory, desk: Desk) -> None:
        """The service message is a second signal (it arrives with plain `message` updates): a leaver is
        revoked even if the chat_member update was lost or not yet delivered."""
        user = message.left_chat_member
        if message.chat.id != staff_directory.staff_chat_id or user is None or user.is_bot:
            return
        await staff_directory.record(user.id, False, "left")
        await give_back_tickets(desk, user.id)

    @router.message(F.new_chat_members)
    async def members_joined_message(message: TgMessage, bot: Bot, staff_directory: StaffDirectory) -> None:
        """Joins: asked again from Telegram rather than trusted blindly (a join can be followed at once by
        a restriction, and this message does not carry the status)."""
        if message.chat.id != staff_directory.staff_chat_id:
            return
        for user in message.new_chat_members or []:
            if user.is_bot:
                continue
            staff_directory.forget(user.id)
            try:
                member = await bot.get_chat_member(staff_directory.staff_chat_id, user.id)
            except TelegramAPIError as error:
                log.info("getChatMember for new member %s failed: %s", user.id, error)
                continue
            await staff_directory.record(user.id, counts_as_staff(member), member.status)

    @router.message(F.chat.type == "private")
    async def private_other(message: TgMessage) -> None:
        """Anything else in private: ignored (the bot works in the staff chat)."""

    return router


async def give_back_tickets(desk: Desk, telegram_id: int) -> None:
    """A colleague who left keeps no tickets: they return to the queue, with a notice (idempotent: the
    second signal of the same leave finds nothing left to give back)."""
    staff = await StaffMember.get_or_none(telegram_id=telegram_id)
    if staff is not None:
        await desk.assignments.release_member(staff)
