"""Staff-chat commands: /queue [me], /ticket N, /client TEXT, /stats [YYYY-MM], /oncall [@user], /note, /help,
/search TEXT (also "/найти TEXT": Telegram command names are Latin, but the filter reads the text).
Registered with setMyCommands (the UI language by default, plus the other one for its users). Every
answer goes through the Telegram outbox (`answer_message`), once per command message."""

from __future__ import annotations

import re

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BotCommand, BotCommandScopeChat
from aiogram.types import Message as TgMessage
from tortoise.transactions import in_transaction

from bot.board import TelegramBoard, short
from bot.callbacks import parse_ticket_id
from bot.handlers.common import answer_message
from bot.handlers.replies import ticket_for_message
from bot.handlers.views import client_view_with_buttons, queue_view, search_view, stats_view, ticket_view
from bot.i18n import t
from models.desk import Desk
from models.policy import month_key
from models.search import search_tickets
from models.tables import StaffMember, Ticket

COMMANDS = ("queue", "ticket", "client", "search", "stats", "oncall", "note", "assign", "merge", "replies",
            "savereply", "delreply", "help")
MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


async def set_commands(bot: Bot, language: str, staff_chat_id: int | None = None) -> None:
    """The command menu: default scope in the UI language, and a per-language list for the other one."""
    for lang, code in ((language, None), ("en" if language == "ru" else "ru", "en" if language == "ru" else "ru")):
        commands = [BotCommand(command=c, description=t(f"cmd.{c}", lang)) for c in COMMANDS]
        await bot.set_my_commands(commands, language_code=code)
        if staff_chat_id is not None and code is None:
            await bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id=staff_chat_id))


def _name(staff: StaffMember | None, lang: str) -> str:
    if staff is None:
        return t("cmd.nobody", lang)
    return staff.name + (f" (@{staff.username})" if staff.username else "")


def build_commands_router() -> Router:
    router = Router(name="commands")

    @router.message(Command("queue"))
    async def queue(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard,
                    staff: StaffMember) -> None:
        mine = staff if (command.args or "").strip().lower() in ("me", "я", "мои") else None
        await answer_message(desk, message, await queue_view(board, mine))

    @router.message(Command("ticket"))
    async def ticket(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard) -> None:
        arg = (command.args or "").strip().lstrip("#")
        ticket_id = parse_ticket_id(arg)
        if ticket_id is None or not await Ticket.exists(id=ticket_id):
            usage = t("cmd.usage_ticket", board.lang) if ticket_id is None else t("ans.not_found", board.lang)
            await answer_message(desk, message, board.views.render("notice", board.lang, text=usage))
            return
        await answer_message(desk, message, await ticket_view(board, ticket_id))

    @router.message(Command("client"))
    async def client(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard) -> None:
        query = (command.args or "").strip()
        if len(query) < 2:
            await answer_message(desk, message, board.views.render("notice", board.lang, text=t("cmd.usage_client", board.lang)))
            return
        text, buttons = await client_view_with_buttons(board, query)
        await answer_message(desk, message, text, keyboard=buttons)

    @router.message(Command("search", "найти"))
    async def search(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard) -> None:
        query = (command.args or "").strip()
        text, buttons = search_view(board, query, await search_tickets(query))
        await answer_message(desk, message, text, keyboard=buttons)

    @router.message(Command("stats"))
    async def stats(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard) -> None:
        arg = (command.args or "").strip()
        if arg and not MONTH_RE.match(arg):
            await answer_message(desk, message, board.views.render("notice", board.lang, text=t("cmd.usage_stats", board.lang)))
            return
        month = arg or month_key(board.clock(), board.config.timezone)
        await answer_message(desk, message, await stats_view(board, month))

    @router.message(Command("oncall"))
    async def oncall(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard,
                     staff: StaffMember) -> None:
        lang = board.lang
        who = (command.args or "").strip()
        target = staff
        if who:
            username = who.lstrip("@")
            found = await StaffMember.filter(username__iexact=username).first()
            if found is None:
                await answer_message(desk, message, board.views.render("notice", lang,
                                                         text=t("cmd.oncall_unknown", lang, who=short(who, 60))))
                return
            target = found
        async with in_transaction():
            before = await StaffMember.filter(is_oncall=True).order_by("id")
            await StaffMember.filter(is_oncall=True).exclude(id=target.id).update(is_oncall=False)
            await StaffMember.filter(id=target.id).update(is_oncall=True)
        before_text = ", ".join(_name(s, lang) for s in before) or t("cmd.nobody", lang)
        await answer_message(desk, message, board.views.render("notice", lang,
                                                 text=t("oncall.now", lang, before=before_text,
                                                        after=_name(target, lang))))

    @router.message(Command("note"))
    async def note(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard,
                   staff: StaffMember, bot: Bot) -> None:
        lang = board.lang
        args = (command.args or "").strip()
        ticket_id: int | None = None
        text = args
        match = re.match(r"#?(\d+)\s+(.+)", args, re.S)
        if match:
            ticket_id, text = parse_ticket_id(match.group(1)), match.group(2)
        elif message.reply_to_message is not None and message.reply_to_message.from_user is not None \
                and message.reply_to_message.from_user.id == bot.id:
            ticket_id = await ticket_for_message(message.chat.id, message.reply_to_message.message_id)
        if ticket_id is None or not text.strip():
            await answer_message(desk, message, board.views.render("notice", lang, text=t("cmd.usage_note", lang)))
            return
        outcome = await desk.note(ticket_id, staff, text.strip())
        key = "msg.note_saved" if outcome.ok else "ans.not_found"
        await answer_message(desk, message, board.views.render("notice", lang, text=t(key, lang, n=ticket_id)))

    @router.message(Command("help", "start"))
    async def help_(message: TgMessage, desk: Desk, board: TelegramBoard) -> None:
        await answer_message(desk, message, board.views.render("notice", board.lang, text=t("cmd.help_text", board.lang)))

    return router
