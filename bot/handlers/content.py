"""The "…" keyboard's content buttons: full text, attachments, the original .eml, the client's history, and
"open #N".

What they post goes through the outbox (`desk.post`), paced with everything else; the keys include
the callback query id, so a redelivered update posts nothing twice while a new press posts again.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery
from aiogram.utils.callback_answer import CallbackAnswer

from bot.board import MAX_FILE_BYTES, TelegramBoard, human_size, short, strip_invisible, tg_escape
from bot.callbacks import Op, TicketAction
from bot.handlers.views import client_history_view, ticket_view
from bot.i18n import t
from bot.text import cut_utf16
from bot.views.messages import ReadyPost, ViewMessage
from models.desk import Desk
from models.tables import Message, MessageDirection, Ticket

CHUNK = 3800  # UTF-16 units of text per message, leaving room for the header line
MAX_CHUNKS = 3  # longer texts go as one .txt document
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_PHOTO_BYTES = 10 * 1024 * 1024


def split_utf16(text: str, size: int) -> list[str]:
    """Pieces of at most `size` UTF-16 units, preferring to break at a newline."""
    pieces: list[str] = []
    rest = text
    while rest:
        piece = cut_utf16(rest, size)
        if len(piece) < len(rest):
            newline = piece.rfind("\n")
            if newline > len(piece) // 2:
                piece = piece[: newline + 1]
        pieces.append(piece)
        rest = rest[len(piece) :]
    return pieces


def build_content_router() -> Router:
    router = Router(name="content")

    @router.callback_query(TicketAction.filter(F.op.in_({Op.FULL_TEXT, Op.FILES, Op.EML})))
    async def content(
        query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
        callback_answer: CallbackAnswer,
    ) -> None:
        lang = board.lang
        ticket_id = callback_data.ticket_id
        first = (
            await Message.filter(ticket_id=ticket_id, direction=MessageDirection.INBOUND).order_by("id").first()
        )
        if first is None:
            callback_answer.text = t("ans.not_found", lang)
            return
        chat_id = board.config.staff_chat_id
        posts: list[ReadyPost] = []
        reply_to = {"ticket_card": ticket_id}
        if callback_data.op == Op.FULL_TEXT:
            full = (first.text or first.new_text or "").strip() or t("card.no_text", lang)
            pieces = split_utf16(full, CHUNK)
            if len(pieces) > MAX_CHUNKS:
                posts.append(ReadyPost("document", chat_id, {
                    "method": "sendDocument",
                    "params": {"caption": str(tg_escape(t("msg.full_text_header", lang, n=ticket_id, part=1, parts=1))),
                               "parse_mode": "HTML"},
                    "reply_to": reply_to,
                    "file": {"text": full, "filename": f"ticket-{ticket_id}.txt"},
                }, ticket_id))
            else:
                for i, piece in enumerate(pieces, 1):
                    header = t("msg.full_text_header", lang, n=ticket_id, part=i, parts=len(pieces))
                    text = f"<b>{tg_escape(header)}</b>\n{tg_escape(piece)}"
                    posts.append(ReadyPost("full_text", chat_id, {
                        "method": "sendMessage",
                        "params": {"text": text, "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}},
                        "reply_to": reply_to,
                    }, ticket_id))
        elif callback_data.op == Op.FILES:
            files = await board.ticket_files(ticket_id)
            if not files:
                callback_answer.text = t("ans.no_files", lang)
                return
            for message, att in files:
                name = strip_invisible(str(att.get("filename") or "file"))  # the upload's name too
                size = int(att.get("size") or 0)
                caption = str(tg_escape(short(f"{name} ({human_size(size, lang)})", 1000)))
                if size > MAX_FILE_BYTES or message.raw_mail_id is None:
                    # Too big for the Bot API: named here, the file stays in the mailbox.
                    text = str(tg_escape(t("msg.big_file", lang, name=short(name, 200), size=human_size(size, lang))))
                    posts.append(ReadyPost("notice", chat_id, {
                        "method": "sendMessage", "params": {"text": text, "parse_mode": "HTML"},
                        "reply_to": reply_to}, ticket_id))
                    continue
                is_photo = att.get("content_type") in PHOTO_TYPES and size <= MAX_PHOTO_BYTES
                posts.append(ReadyPost("photo" if is_photo else "document", chat_id, {
                    "method": "sendPhoto" if is_photo else "sendDocument",
                    "params": {"caption": caption, "parse_mode": "HTML"},
                    "reply_to": reply_to,
                    "file": {"raw_mail_attachment": [message.raw_mail_id, int(att.get("part_index") or 0)],
                             "filename": short(name, 200) or "file"},
                }, ticket_id))
        else:
            if first.raw_mail_id is None:
                callback_answer.text = t("ans.no_eml", lang)
                return
            posts.append(ReadyPost("document", chat_id, {
                "method": "sendDocument",
                "params": {"caption": f"#{ticket_id}"},
                "reply_to": reply_to,
                "file": {"raw_mail_eml": first.raw_mail_id, "filename": f"ticket-{ticket_id}.eml"},
            }, ticket_id))
        for i, post in enumerate(posts):
            await desk.post(post, f"{callback_data.op.name.lower()}:{ticket_id}:{query.id}:{i}", chat_id=chat_id)
        callback_answer.text = t("ans.posting", lang)

    @router.callback_query(TicketAction.filter(F.op == Op.OPEN))
    async def open_ticket(
        query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
        callback_answer: CallbackAnswer,
    ) -> None:
        ticket = await Ticket.get_or_none(id=callback_data.ticket_id)
        if ticket is None or query.message is None:
            callback_answer.text = t("ans.not_found", board.lang)
            return
        chat_id = query.message.chat.id
        same_chat = ticket.card_chat_id in (None, chat_id)
        view = ViewMessage(chat_id, await ticket_view(board, ticket.id),
                           reply_to_message_id=ticket.card_message_id if same_chat else None, ticket_id=ticket.id)
        await desk.post(view, f"open:{ticket.id}:{query.id}", chat_id=chat_id)

    @router.callback_query(TicketAction.filter(F.op == Op.CLIENT_HISTORY))
    async def client_history(
        query: CallbackQuery, callback_data: TicketAction, desk: Desk, board: TelegramBoard,
        callback_answer: CallbackAnswer,
    ) -> None:
        if query.message is None:
            return
        chat_id = query.message.chat.id
        text, buttons = await client_history_view(board, callback_data.ticket_id)
        view = ViewMessage(chat_id, text, keyboard=buttons or None, reply_to_message_id=query.message.message_id,
                           ticket_id=callback_data.ticket_id)
        await desk.post(view, f"history:{callback_data.ticket_id}:{query.id}", chat_id=chat_id)

    return router
