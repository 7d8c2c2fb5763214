"""Telegram replies in the staff chat: to a card or a thread post -> an email to the client (documents
and photos attached), "!text" -> an internal note; to a refusal prompt -> the refusal's comment."""

from __future__ import annotations

import contextlib
import io
import logging

import aiohttp
from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message as TgMessage
from aiogram.types import ReactionTypeEmoji

from bot.board import TelegramBoard, short
from bot.handlers.common import answer_message, answer_text
from bot.handlers.decisions import pending_prompt
from bot.i18n import reason_label, t
from bot.views.messages import ViewEdit, ViewMessage
from models.desk import Desk
from models.tables import KeyValue, Message, StaffMember, TelegramOutbox, Ticket

log = logging.getLogger(__name__)


MAX_DOWNLOAD = 20 * 1024 * 1024  # the Bot API serves files up to 20 MB


async def ticket_for_message(chat_id: int, message_id: int) -> int | None:
    """The ticket a bot message in the staff chat belongs to: its card, a thread post, or any post
    the outbox made for a ticket (notices, full text, files)."""
    ticket = await Ticket.filter(card_message_id=message_id).filter(card_chat_id=chat_id).first()
    if ticket is None:
        ticket = await Ticket.filter(card_message_id=message_id, card_chat_id=None).first()
    if ticket is not None:
        return ticket.id
    message = await Message.filter(telegram_message_id=message_id).order_by("-id").first()
    if message is not None:
        return message.ticket_id
    row = (
        await TelegramOutbox.filter(chat_id=chat_id, result_message_id=message_id)
        .exclude(ticket_id=None)
        .order_by("-id")
        .first()
    )
    return row.ticket_id if row is not None else None


async def download_attachments(bot: Bot, message: TgMessage) -> list[tuple[str, str, bytes]]:
    files: list[tuple[str, str, bytes]] = []
    if message.document is not None:
        doc = message.document
        buffer = io.BytesIO()
        await bot.download(doc.file_id, destination=buffer)
        files.append((doc.file_name or "file", doc.mime_type or "application/octet-stream", buffer.getvalue()))
    if message.photo:
        photo = message.photo[-1]  # the largest size
        buffer = io.BytesIO()
        await bot.download(photo.file_id, destination=buffer)
        files.append((f"photo-{message.message_id}.jpg", "image/jpeg", buffer.getvalue()))
    return files


# What a reply may carry to the client: text (or a caption), documents and photos. Anything else is
# answered with the reason instead of being dropped or sent without the part staff meant to send.
UNSUPPORTED = ("sticker", "voice", "video_note", "video", "audio", "animation", "location", "venue",
               "contact", "poll", "dice", "game", "story", "paid_media")


def unsupported_kind(message: TgMessage) -> str | None:
    """The first part of a staff message that cannot go into an email, or None."""
    for kind in UNSUPPORTED:
        if getattr(message, kind, None):
            return kind
    return None


def build_replies_router() -> Router:
    router = Router(name="replies")

    @router.message(F.reply_to_message)
    async def on_reply(
        message: TgMessage, bot: Bot, desk: Desk, board: TelegramBoard, staff: StaffMember
    ) -> None:
        lang = board.lang
        target = message.reply_to_message
        assert target is not None
        if target.from_user is None or target.from_user.id != bot.id:
            return  # staff talking to each other
        chat_id = message.chat.id
        text = (message.text or message.caption or "").strip()

        pending = await pending_prompt(chat_id, target.message_id)
        if pending is not None and "merge" in (pending.value or {}):
            from bot.handlers.desk_tools import merge_from_prompt  # the tools import this module

            await merge_from_prompt(message, desk, board, staff, pending)
            return
        if pending is not None:
            await _refuse_with_comment(message, desk, board, staff, pending, text)
            return

        ticket_id = await ticket_for_message(chat_id, target.message_id)
        if ticket_id is None:
            await answer_message(desk, message, t("msg.no_ticket", lang), html=False, reply=True)
            return
        try:
            reason = await _send_reply(message, bot, desk, staff, ticket_id, text, lang)
        except Exception:  # noqa: BLE001 - whatever broke, the staff member is told instead of silence
            log.exception("a staff reply to ticket #%s could not be sent", ticket_id, extra={"ticket": ticket_id})
            reason = t("reply.failed", lang)
        if reason:
            await tell(desk, board, message, t("msg.reply_invalid", lang, detail=reason), ticket_id)

    return router


async def _send_reply(
    message: TgMessage, bot: Bot, desk: Desk, staff: StaffMember, ticket_id: int, text: str, lang: str
) -> str | None:
    """Send (or note) a staff reply; the reason it could not go, in the UI language, or None."""
    chat_id = message.chat.id
    if text.startswith("!"):
        note = text[1:].strip()
        if not note:
            return t("reply.empty_note", lang)
        outcome = await desk.note(ticket_id, staff, note)
        if not outcome.ok:
            return _outcome_reason(outcome.status, outcome.detail, lang)
        await answer_message(desk, message, t("msg.note_saved", lang, n=ticket_id), html=False, reply=True,
                             ticket_id=ticket_id)
        return None
    kind = unsupported_kind(message)
    if kind is not None:
        return t("reply.unsupported", lang, kind=t(f"content.{kind}", lang))
    if message.document is None and not message.photo and not text:
        return t("reply.empty", lang)
    too_big = (message.document is not None and (message.document.file_size or 0) > MAX_DOWNLOAD) or (
        bool(message.photo) and (message.photo[-1].file_size or 0) > MAX_DOWNLOAD
    )
    if too_big:
        return t("reply.too_big", lang)
    try:
        attachments = await download_attachments(bot, message)
    except (TelegramAPIError, aiohttp.ClientError, TimeoutError, OSError) as error:
        log.warning("could not download a staff attachment: %s", error)
        return t("reply.download_failed", lang, error=short(str(error) or type(error).__name__, 200))
    outcome = await desk.reply(
        ticket_id, staff, text, key=f"{chat_id}:{message.message_id}", attachments=attachments or None
    )
    if outcome.ok:
        try:
            await bot.set_message_reaction(chat_id, message.message_id, [ReactionTypeEmoji(emoji="👀")])
        except TelegramAPIError:
            pass  # a reaction is a courtesy; the SMTP confirmation follows anyway
        return None
    if outcome.status == "already":
        return None  # a redelivered update: the first delivery was answered
    return _outcome_reason(outcome.status, outcome.detail, lang)


def _outcome_reason(status: str, detail: str, lang: str) -> str:
    """Desk outcomes of a reply as staff read them (the desk speaks codes, not languages)."""
    if status == "not_found":
        return t("ans.not_found", lang)
    if detail == "no_mail":
        return t("reply.no_mail", lang)
    if detail.startswith("bad_address:"):
        return t("reply.bad_address", lang, address=short(detail.split(":", 1)[1], 200))
    if detail.startswith("unsendable:"):
        return t("reply.unsendable", lang, error=short(detail.split(":", 1)[1], 300))
    return t("reply.failed", lang)


async def tell(desk: Desk, board: TelegramBoard, message: TgMessage, text: str, ticket_id: int) -> None:
    """Answer a staff message in the chat through the outbox (paced, retried, once per message)."""
    post = ViewMessage(message.chat.id, board.views.render("notice", board.lang, text=text),
                       reply_to_message_id=message.message_id, ticket_id=ticket_id, kind="notice")
    try:
        await desk.post(post, f"reply_refused:{message.chat.id}:{message.message_id}", chat_id=post.chat_id)
    except Exception:  # noqa: BLE001 - the database itself failed: say it directly, as a last resort
        log.exception("could not queue the answer to staff message %s", message.message_id)
        with contextlib.suppress(TelegramAPIError):
            await message.reply(text)


async def _refuse_with_comment(
    message: TgMessage, desk: Desk, board: TelegramBoard, staff: StaffMember, pending: KeyValue, comment: str,
) -> None:
    lang = board.lang
    ticket_id = int(pending.value["ticket_id"])
    reason = str(pending.value["reason"])
    # Claim the prompt first: a redelivered update or a second reply finds nothing to do.
    if not await KeyValue.filter(key=pending.key).delete():
        return
    withdrawing = bool(pending.value.get("withdraw"))  # a prompt of "refuse after acceptance"
    refuse = desk.withdraw_acceptance_and_refuse if withdrawing else desk.refuse
    outcome = await refuse(ticket_id, staff, reason, comment=comment)
    if not outcome.ok:
        await answer_message(desk, message, answer_text(outcome, board, "ans.refused", seconds=0), html=False,
                             reply=True, ticket_id=ticket_id)
        return
    text = t(
        "msg.withdraw_done" if withdrawing else "msg.refuse_done", lang, n=ticket_id, reason=reason_label(reason, lang),
        comment=t("msg.comment", lang, text=short(comment, 500)) if comment else "",
    )
    target = message.reply_to_message
    assert target is not None
    edit = ViewEdit(message.chat.id, target.message_id, board.views.render("notice", lang, text=text),
                    ticket_id=ticket_id)
    await desk.post(edit, f"prompt_done:{message.chat.id}:{message.message_id}", chat_id=edit.chat_id)
