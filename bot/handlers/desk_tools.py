"""The desk tools in the staff chat (issue 20): take and assign (🙋 button, /assign), saved replies
(/savereply, /replies, /delreply, the ✉️ card button with a preview), and merge (/merge N M, the card's
"…" menu).

Each handler is one call into the domain (models/assignment.py, models/saved_replies.py through the desk,
models/merging.py); cards are edited by the outbox rows those calls write. Answers go through the outbox
(`tell`), paced with everything else; only the answer to a button press is direct.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery
from aiogram.types import Message as TgMessage
from aiogram.utils.callback_answer import CallbackAnswer

from bot.board import TelegramBoard, button, keyboard, short, tg_escape
from bot.callbacks import MergeAction, Op, ReplyOp, SavedReplyAction, TicketAction, parse_ticket_id
from bot.handlers.access import StaffDirectory
from bot.handlers.common import delivered
from bot.handlers.decisions import PROMPT_KIND
from bot.handlers.replies import ticket_for_message
from bot.i18n import t
from bot.views.messages import ViewMessage
from models.desk import Desk, Outcome
from models.saved_replies import VARIABLES, Reply, SavedReplyError
from models.tables import KeyValue, StaffMember

log = logging.getLogger(__name__)



def name_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:10]


def variables_text() -> str:
    return ", ".join("{" + v + "}" for v in VARIABLES)


async def post(
    desk: Desk, board: TelegramBoard, chat_id: int, text: str, key: str, *,
    reply_to: int | None = None, markup: dict[str, Any] | None = None, ticket_id: int | None = None,
    rendered: bool = False,
) -> None:
    """A message in the chat through the outbox, once per `key` (a redelivered update posts nothing)."""
    html = text if rendered else board.views.render("notice", board.lang, text=text)
    view = ViewMessage(chat_id, html, markup, reply_to_message_id=reply_to, ticket_id=ticket_id)
    await desk.post(view, key, chat_id=chat_id)


async def tell(desk: Desk, board: TelegramBoard, message: TgMessage, text: str, **kw: Any) -> None:
    """Answer a staff message (as a reply to it)."""
    await post(desk, board, message.chat.id, text, f"answer:{message.chat.id}:{message.message_id}",
               reply_to=message.message_id, **kw)


async def find_reply(desk: Desk, digest: str) -> Reply | None:
    return next((r for r in await desk.saved_replies.all() if name_hash(r.name) == digest), None)


def reply_error_text(error: SavedReplyError, lang: str) -> str:
    return t(f"reply.err.{error.code}", lang, detail=error.detail, variables=variables_text())


def assign_text(outcome: Outcome, lang: str, *, taken: bool, who: str) -> str:
    n = outcome.ticket_id
    if outcome.status == "done":
        if taken:
            return t("assign.taken", lang, n=n)
        return t("assign.done", lang, n=n, who=who) if who else t("assign.removed", lang, n=n)
    if outcome.status == "already":
        return t("assign.already", lang, n=n, who=outcome.detail) if outcome.detail else t("assign.already_none", lang, n=n)
    if outcome.detail == "closed":
        return t("assign.closed", lang, n=n)
    return t("ans.not_found", lang)


def merge_text(outcome: Outcome, lang: str, source: int, target: int) -> str:
    if outcome.status == "done":
        return t("merge.done", lang, n=source, m=target)
    if outcome.status == "already":
        return t("merge.already", lang, n=source, m=outcome.detail or "?")
    if outcome.status == "needs_confirmation":
        return t("merge.other_client", lang, n=source, m=target)
    detail = outcome.detail
    if detail == "self":
        return t("merge.self", lang)
    if detail.startswith("not_found:"):
        return t("merge.not_found", lang, n=detail.split(":", 1)[1])
    if detail.startswith("into_merged:"):
        return t("merge.into_merged", lang, m=target, k=detail.split(":", 1)[1] or "?")
    return t("ans.invalid", lang, detail=detail or outcome.status)


def build_desk_tools_router() -> Router:
    router = Router(name="desk-tools")

    # Take and assign ---------------------------------------------------------------------------
    @router.callback_query(TicketAction.filter(F.op == Op.TAKE))
    async def take(query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
                   staff: StaffMember, callback_answer: CallbackAnswer) -> None:
        outcome = await desk.assignments.take(callback_data.ticket_id, staff)
        callback_answer.text = short(assign_text(outcome, board.lang, taken=True, who=""), 200)

    @router.message(Command("assign"))
    async def assign(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard,
                     staff: StaffMember, bot: Bot, staff_directory: StaffDirectory) -> None:
        lang = board.lang
        args = (command.args or "").split()
        ticket_id: int | None = None
        if len(args) == 2:
            ticket_id, who = parse_ticket_id(args[0].lstrip("#")), args[1]
        elif len(args) == 1 and message.reply_to_message is not None:
            ticket_id, who = await ticket_for_message(message.chat.id, message.reply_to_message.message_id), args[0]
        if ticket_id is None:
            await tell(desk, board, message, t("cmd.usage_assign", lang))
            return
        target: StaffMember | None = None
        if who != "-":
            target = await StaffMember.filter(username__iexact=who.lstrip("@")).first() if who.startswith("@") \
                else None
            if target is None:
                await tell(desk, board, message, t("assign.unknown", lang, who=short(who, 64)))
                return
            # Only a current member of the staff chat can hold a ticket.
            if not await staff_directory.is_member(bot, target.telegram_id):
                await tell(desk, board, message, t("assign.not_member", lang, who=short(who, 64)))
                return
        outcome = await desk.assignments.assign(ticket_id, target, by=staff)
        await tell(desk, board, message, assign_text(outcome, lang, taken=False, who=outcome.detail),
                   ticket_id=ticket_id)

    # Saved replies ------------------------------------------------------------------------------
    @router.message(Command("savereply"))
    async def save_reply(message: TgMessage, desk: Desk, board: TelegramBoard, staff: StaffMember) -> None:
        lang = board.lang
        first, _, text = (message.text or "").partition("\n")
        parts = first.split(maxsplit=1)
        if len(parts) < 2 or not text.strip():
            await tell(desk, board, message, t("cmd.usage_savereply", lang, variables=variables_text()))
            return
        try:
            reply, replaced = await desk.saved_replies.save(parts[1], text.strip(), staff)
        except SavedReplyError as error:
            await tell(desk, board, message, reply_error_text(error, lang))
            return
        await tell(desk, board, message, t("reply.replaced" if replaced else "reply.saved", lang, name=reply.name))

    @router.message(Command("delreply"))
    async def delete_reply(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard) -> None:
        lang = board.lang
        try:
            reply = await desk.saved_replies.delete((command.args or "").strip())
        except SavedReplyError as error:
            await tell(desk, board, message, reply_error_text(error, lang))
            return
        await tell(desk, board, message, t("reply.deleted", lang, name=reply.name))

    @router.message(Command("replies"))
    async def list_replies(message: TgMessage, desk: Desk, board: TelegramBoard) -> None:
        lang = board.lang
        replies = await desk.saved_replies.all()
        if not replies:
            await tell(desk, board, message, t("reply.none", lang))
            return
        lines = [t("reply.list", lang, count=len(replies))]
        lines += [f"• {r.name}: {short(r.text.replace(chr(10), ' '), 80)}" for r in replies[:40]]
        rows = [
            [button(f"👁 {short(r.name, 30)}", SavedReplyAction(op=ReplyOp.SHOW, ticket_id=0, name_hash=name_hash(r.name))),
             button(f"🗑 {short(r.name, 30)}", SavedReplyAction(op=ReplyOp.DELETE, ticket_id=0,
                                                                 name_hash=name_hash(r.name)))]
            for r in replies[:40] if not r.from_file
        ]
        await tell(desk, board, message, "\n".join(lines), markup=keyboard(rows) if rows else None)

    @router.callback_query(SavedReplyAction.filter(F.op.in_({ReplyOp.SHOW, ReplyOp.DELETE})))
    async def manage_reply(query: CallbackQuery, callback_data: SavedReplyAction, desk: Desk, board: TelegramBoard,
                           callback_answer: CallbackAnswer) -> None:
        lang = board.lang
        reply = await find_reply(desk, callback_data.name_hash)
        if reply is None or query.message is None:
            callback_answer.text = t("ans.stale", lang)
            return
        chat_id = query.message.chat.id
        if callback_data.op == ReplyOp.SHOW:
            text = f"<b>{tg_escape(reply.name)}</b>\n{tg_escape(reply.text)}"
            await post(desk, board, chat_id, text, f"reply_show:{query.id}", rendered=True)
            callback_answer.text = short(reply.name, 200)
            return
        try:
            await desk.saved_replies.delete(reply.name)
        except SavedReplyError as error:
            callback_answer.text = short(reply_error_text(error, lang), 200)
            callback_answer.show_alert = True
            return
        callback_answer.text = short(t("reply.deleted", lang, name=reply.name), 200)

    @router.callback_query(TicketAction.filter(F.op == Op.TEMPLATES))
    async def pick_reply(query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
                         callback_answer: CallbackAnswer) -> None:
        lang = board.lang
        ticket_id = callback_data.ticket_id
        replies = await desk.saved_replies.all()
        if not replies or query.message is None:
            callback_answer.text = short(t("reply.none", lang), 200)
            callback_answer.show_alert = True
            return
        rows = [[button(short(r.name, 60), SavedReplyAction(op=ReplyOp.PREVIEW, ticket_id=ticket_id,
                                                            name_hash=name_hash(r.name)))] for r in replies[:50]]
        await post(desk, board, query.message.chat.id, t("reply.pick", lang, n=ticket_id), f"reply_pick:{query.id}",
                   reply_to=query.message.message_id, markup=keyboard(rows), ticket_id=ticket_id)
        callback_answer.text = short(t("ans.posting", lang), 200)

    @router.callback_query(SavedReplyAction.filter(F.op == ReplyOp.PREVIEW))
    async def preview_reply(query: CallbackQuery, callback_data: SavedReplyAction, desk: Desk, board: TelegramBoard,
                            staff: StaffMember, callback_answer: CallbackAnswer) -> None:
        lang = board.lang
        ticket_id = callback_data.ticket_id
        reply = await find_reply(desk, callback_data.name_hash)
        text = await desk.saved_reply_text(ticket_id, staff, reply.text) if reply else None
        if reply is None or text is None or query.message is None:
            callback_answer.text = t("ans.stale", lang)
            return
        header = t("reply.preview", lang, n=ticket_id, name=reply.name)
        body = f"{tg_escape(header)}\n\n<blockquote>{tg_escape(text)}</blockquote>"
        markup = keyboard([[
            button(t("btn.send", lang), SavedReplyAction(op=ReplyOp.SEND, ticket_id=ticket_id,
                                                         name_hash=callback_data.name_hash)),
            button(t("btn.cancel", lang), SavedReplyAction(op=ReplyOp.CANCEL, ticket_id=ticket_id,
                                                           name_hash=callback_data.name_hash)),
        ]])
        await post(desk, board, query.message.chat.id, body, f"reply_preview:{query.id}", rendered=True,
                   reply_to=query.message.message_id, markup=markup, ticket_id=ticket_id)
        callback_answer.text = short(reply.name, 200)

    @router.callback_query(SavedReplyAction.filter(F.op.in_({ReplyOp.SEND, ReplyOp.CANCEL})))
    async def send_reply(query: CallbackQuery, callback_data: SavedReplyAction, desk: Desk, board: TelegramBoard,
                         staff: StaffMember, callback_answer: CallbackAnswer) -> None:
        lang = board.lang
        ticket_id = callback_data.ticket_id
        if query.message is None:
            return
        chat_id, message_id = query.message.chat.id, query.message.message_id
        if callback_data.op == ReplyOp.CANCEL:
            callback_answer.text = t("reply.cancelled", lang)
            return
        reply = await find_reply(desk, callback_data.name_hash)
        if reply is None:
            callback_answer.text = t("ans.stale", lang)
            return
        # One email per preview, however often Send is pressed (the preview message is the key).
        outcome = await desk.send_saved_reply(ticket_id, staff, reply.name, key=f"{chat_id}:{message_id}")
        if outcome.ok:
            callback_answer.text = short(t("reply.sent", lang, name=reply.name, n=outcome.ticket_id), 200)
        elif outcome.status == "already":
            callback_answer.text = t("ans.already", lang)
        else:
            callback_answer.text = short(t("ans.invalid", lang, detail=outcome.detail or outcome.status), 200)
            callback_answer.show_alert = True

    # Merge --------------------------------------------------------------------------------------
    @router.message(Command("merge"))
    async def merge(message: TgMessage, command: CommandObject, desk: Desk, board: TelegramBoard,
                    staff: StaffMember) -> None:
        match = re.fullmatch(r"#?(\d+)\s+#?(\d+)", (command.args or "").strip())
        source = parse_ticket_id(match.group(1)) if match else None
        target = parse_ticket_id(match.group(2)) if match else None
        if source is None or target is None:
            await tell(desk, board, message, t("cmd.usage_merge", board.lang))
            return
        await merge_and_tell(desk, board, message, staff, source, target)

    @router.callback_query(MergeAction.filter())
    async def merge_confirmed(query: CallbackQuery, callback_data: MergeAction, desk: Desk, board: TelegramBoard,
                              staff: StaffMember, callback_answer: CallbackAnswer) -> None:
        lang = board.lang
        if not callback_data.confirm:
            callback_answer.text = t("ans.cancelled", lang)
            return
        source, target = callback_data.source, callback_data.target
        outcome = await desk.merger.merge(source, target, staff, confirmed=True)
        callback_answer.text = short(merge_text(outcome, lang, source, target), 200)
        callback_answer.show_alert = not outcome.ok

    @router.callback_query(TicketAction.filter(F.op == Op.MERGE))
    async def merge_prompt(query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
                           callback_answer: CallbackAnswer) -> None:
        """"Объединить с…": a prompt whose reply (a ticket number) names the target (replies.py). Like the
        refusal prompt: posted through the outbox, the pending merge remembered under its row's key."""
        lang = board.lang
        if query.message is None:
            return
        chat_id, ticket_id = query.message.chat.id, callback_data.ticket_id
        prompt = ViewMessage(chat_id, board.views.render("notice", lang, text=t("merge.prompt", lang, n=ticket_id)),
                             reply_to_message_id=query.message.message_id, ticket_id=ticket_id, kind=PROMPT_KIND)
        row = await desk.post(prompt, f"prompt:{chat_id}:{query.id}", chat_id=chat_id, remember={"merge": ticket_id})
        await delivered(row)
        callback_answer.text = short(t("merge.prompt", lang, n=ticket_id), 200)

    return router


async def merge_and_tell(desk: Desk, board: TelegramBoard, message: TgMessage, staff: StaffMember,
                         source: int, target: int) -> None:
    lang = board.lang
    outcome = await desk.merger.merge(source, target, staff)
    markup = None
    if outcome.status == "needs_confirmation":
        markup = keyboard([[
            button(t("btn.merge_anyway", lang), MergeAction(confirm=True, source=source, target=target)),
            button(t("btn.cancel", lang), MergeAction(confirm=False, source=source, target=target)),
        ]])
    await tell(desk, board, message, merge_text(outcome, lang, source, target), markup=markup, ticket_id=source)


async def merge_from_prompt(message: TgMessage, desk: Desk, board: TelegramBoard, staff: StaffMember,
                            pending: KeyValue) -> None:
    """A reply to the merge prompt: its text is the target's number."""
    source = int((pending.value or {}).get("merge") or 0)
    target = parse_ticket_id((message.text or "").strip().lstrip("#"))
    if target is None or not source:
        await tell(desk, board, message, t("cmd.usage_merge", board.lang))
        return
    if not await KeyValue.filter(key=pending.key).delete():
        return  # a redelivered update or a second reply: the first one merged
    await merge_and_tell(desk, board, message, staff, source, target)

