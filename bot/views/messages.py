"""Messages the bot layer renders itself (command answers, prompts, files, a handler's keyboard swap)
and queues through the outbox like everything else: each becomes a row whose payload is the Bot API
call, ready to send (bot/views/delivery.py). Built only in bot/; the domain stores them as given
(`Desk.post`, models/post_queue.py), so every message posted or edited in a chat is paced and retried
by the one sender."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_NO_PREVIEW = {"is_disabled": True}
# The outbox kinds of the answers to staff actions: the sender posts them before other rows of the chat
# (bot/telegram_outbox.py), as fast as they went when handlers called Telegram directly.
INTERACTIVE = frozenset({"answer", "keyboard", "edit", "refuse_prompt"})


def _reply(card_of: int | None, message_id: int | None) -> dict[str, Any] | None:
    if message_id is not None:
        return {"telegram_message_id": message_id}
    if card_of is not None:
        return {"ticket_card": card_of}
    return None


@dataclass(frozen=True)
class ReadyPost:
    """Any ready Bot API call (files, documents): `payload` in the outbox's form."""

    kind: str
    chat_id: int
    payload: dict[str, Any] = field(hash=False)
    ticket_id: int | None = None

    def to_payload(self) -> dict[str, Any]:
        return self.payload


@dataclass(frozen=True)
class ViewMessage:
    """A message of Telegram HTML, optionally with an inline keyboard (or a ForceReply), answering a
    message of the chat (`reply_to_message_id`) or a ticket's card (`reply_to_card`)."""

    chat_id: int
    text_html: str
    keyboard: dict[str, Any] | None = field(default=None, hash=False)
    reply_to_message_id: int | None = None
    reply_to_card: int | None = None
    ticket_id: int | None = None
    kind: str = "answer"
    html: bool = True

    def to_payload(self) -> dict[str, Any]:
        params: dict[str, Any] = {"text": self.text_html, "link_preview_options": _NO_PREVIEW}
        if self.html:
            params["parse_mode"] = "HTML"
        if self.keyboard is not None:
            params["reply_markup"] = self.keyboard
        payload: dict[str, Any] = {"method": "sendMessage", "params": params}
        reply = _reply(self.reply_to_card, self.reply_to_message_id)
        if reply is not None:
            payload["reply_to"] = reply
        return payload


@dataclass(frozen=True)
class ViewEdit:
    """A new text (and keyboard: None removes it) for one of the bot's messages in `chat_id`."""

    chat_id: int
    message_id: int
    text_html: str
    keyboard: dict[str, Any] | None = field(default=None, hash=False)
    ticket_id: int | None = None
    kind: str = "edit"

    def to_payload(self) -> dict[str, Any]:
        params: dict[str, Any] = {"text": self.text_html, "parse_mode": "HTML", "link_preview_options": _NO_PREVIEW}
        if self.keyboard is not None:
            params["reply_markup"] = self.keyboard
        return {"method": "editMessageText", "params": params, "target": {"telegram_message_id": self.message_id}}


@dataclass(frozen=True)
class KeyboardEdit:
    """Another inline keyboard (None: none) on one of the bot's messages in `chat_id`."""

    chat_id: int
    message_id: int
    keyboard: dict[str, Any] | None = field(default=None, hash=False)
    ticket_id: int | None = None
    kind: str = "keyboard"

    def to_payload(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.keyboard is not None:
            params["reply_markup"] = self.keyboard
        return {"method": "editMessageReplyMarkup", "params": params, "target": {"telegram_message_id": self.message_id}}
