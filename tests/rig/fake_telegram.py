"""A fake Telegram Bot API server for tests.

The bot under test reaches it exactly as it reaches Telegram: aiogram
``Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))`` POSTs to
``{url}/bot{token}/{method}`` and downloads files from ``{url}/file/bot{token}/{file_path}``.

Why a fake and not mocks: the bot's real failure modes are on the wire (HTML that Telegram refuses,
4096-character limits measured after entity parsing, 429 flood control, 409 polling conflicts, a
user who never pressed Start). The fake answers with the same JSON shapes and error texts as the
real server (see /work/shared/TESTING-NOTES.md), so aiogram raises the same exceptions it would in
production.

Deliberate differences from the real server:

* HTML entities are stricter by default: an unknown entity (``&nbsp;``) or a bare ``&`` is a 400,
  because the project's rule is "escape everything with html.escape" and the real server would
  silently show the raw text to a customer. Set ``strict_html_entities = False`` for Telegram's
  lenient behaviour.
* Markdown/MarkdownV2 are accepted but not parsed (text is kept as is).
* ``sendChatAction`` is neither recorded in ``sent`` nor rate limited (it produces no message).
* ``per_chat_per_minute`` applies to groups only, as Telegram's "20 messages per minute in the same
  group" does.
* Some rarely hit error texts (marked "approximate") are best guesses.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
import json
import math
import mimetypes
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JsonDict = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_INLINE_BUTTONS = 100
MAX_INLINE_BUTTONS_PER_ROW = 8

# Fields that Telegram (and aiogram's form encoder) carry as JSON strings inside form fields.
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "link_preview_options",
        "allowed_updates",
        "entities",
        "caption_entities",
        "media",
        "commands",
        "scope",
        "reaction",
    }
)

DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)  # Telegram's default leaves out chat_member, message_reaction and message_reaction_count.

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

BUTTON_ACTION_FIELDS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted", "left", "kicked"})
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


class ApiError(Exception):
    """An error answer: becomes ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after


def bad_request(text: str) -> ApiError:
    return ApiError(400, f"Bad Request: {text}")


# --------------------------------------------------------------------------------------------------
# HTML parse mode, modelled on tdlib's parse_html (the code the Bot API server runs).


class HtmlParseError(ValueError):
    """Text after "Bad Request: can't parse entities: "."""


_ALLOWED_TAGS = frozenset(
    {
        "a", "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "tg-spoiler", "tg-emoji",
        "span", "pre", "code", "blockquote",
    }
)  # fmt: skip
_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_STRICT_ENTITY_RE = re.compile(r"&(?:#x([0-9a-fA-F]{1,6})|#([0-9]{1,7})|([a-zA-Z][a-zA-Z0-9]*));")
_LENIENT_ENTITY_RE = re.compile(r"&(?:#x([0-9a-fA-F]{1,6})|#([0-9]{1,7})|([a-zA-Z]+));?")


def utf16_len(text: str) -> int:
    """Telegram measures text (limits, entity offsets) in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    # tdlib reports positions as byte offsets into the UTF-8 text.
    return len(text[:index].encode("utf-8"))


def _decode_entity(text: str, pos: int, strict: bool) -> tuple[str, int] | None:
    """Decode the HTML entity at text[pos] == "&"; None when it is not one Telegram knows."""
    match = (_STRICT_ENTITY_RE if strict else _LENIENT_ENTITY_RE).match(text, pos)
    if match is None:
        return None
    hex_digits, dec_digits, name = match.groups()
    if name is not None:
        char = _NAMED_ENTITIES.get(name)
        if char is None:
            return None
        return char, match.end()
    code = int(hex_digits, 16) if hex_digits is not None else int(dec_digits)
    if code == 0 or code >= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), match.end()


@dataclass
class _OpenTag:
    name: str
    argument: str
    offset16: int
    expandable: bool = False


def parse_html(text: str, strict_entities: bool = True) -> tuple[str, list[JsonDict]]:
    """Return (plain text, entities) or raise HtmlParseError with Telegram's wording."""
    out: list[str] = []
    pos16 = 0
    stack: list[_OpenTag] = []
    entities: list[JsonDict] = []
    n = len(text)
    i = 0

    def append(chunk: str) -> None:
        nonlocal pos16
        out.append(chunk)
        pos16 += utf16_len(chunk)

    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_entity(text, i, strict_entities)
            if decoded is not None:
                append(decoded[0])
                i = decoded[1]
                continue
            if strict_entities:
                word = re.match(r"&[#a-zA-Z0-9]*;?", text[i:])
                found = word.group(0) if word else "&"
                if found in ("&", "&;"):
                    raise HtmlParseError(f'Unescaped "&" at byte offset {_byte_offset(text, i)}')
                raise HtmlParseError(
                    f'Unsupported HTML entity "{found}" at byte offset {_byte_offset(text, i)}'
                )
            append("&")
            i += 1
            continue
        if c != "<":
            append(c)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":
            i = _close_tag(text, i + 1, begin, stack, entities, pos16)
            continue

        j = i
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        if j >= n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        tag = text[i:j].lower()
        if tag not in _ALLOWED_TAGS:
            raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}')
        opened, i = _read_attributes(text, j, begin, tag, strict_entities)
        opened.offset16 = pos16
        stack.append(opened)

    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _read_attributes(text: str, i: int, begin: int, tag: str, strict: bool) -> tuple[_OpenTag, int]:
    """Parse attributes from text[i] up to ">"; return the open tag and the index after ">"."""
    n = len(text)
    at = _byte_offset(text, begin)
    opened = _OpenTag(tag, "", 0)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {at}')
        if text[i] == ">":
            i += 1
            break
        name_begin = i
        while i < n and not text[i].isspace() and text[i] not in "=>":
            i += 1
        attr = text[name_begin:i].lower()
        if not attr:
            raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {at}')
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            if tag == "blockquote" and attr == "expandable":
                opened.expandable = True
                continue
            raise HtmlParseError(
                f'Expected equal sign in declaration of an attribute of the tag "{tag}" at byte offset {at}'
            )
        i += 1
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {at}')
        value_chars: list[str] = []
        if text[i] in "'\"":
            quote = text[i]
            i += 1
            while i < n and text[i] != quote:
                if text[i] == "&":
                    decoded = _decode_entity(text, i, strict)
                    if decoded is not None:
                        value_chars.append(decoded[0])
                        i = decoded[1]
                        continue
                value_chars.append(text[i])
                i += 1
            if i >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {at}")
            i += 1
            value = "".join(value_chars)
        else:
            token_begin = i
            while i < n and (text[i].isalnum() or text[i] in ".-"):
                i += 1
            value = text[token_begin:i].lower()
            if i < n and not text[i].isspace() and text[i] != ">":
                raise HtmlParseError(
                    f"Unexpected end of name token at byte offset {_byte_offset(text, token_begin)}"
                )
        if tag == "a" and attr == "href":
            opened.argument = value
        elif tag == "code" and attr == "class" and value.startswith("language-"):
            opened.argument = value[len("language-") :]
        elif tag == "span" and attr == "class" and value.startswith("tg-"):
            opened.argument = value[len("tg-") :]
        elif tag == "tg-emoji" and attr == "emoji-id":
            opened.argument = value
        # Other attributes are ignored, as Telegram does.
    if tag == "span" and opened.argument != "spoiler":
        raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at}')
    if tag == "tg-emoji" and not opened.argument.isdigit():
        # approximate wording
        raise HtmlParseError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {at}')
    return opened, i


def _close_tag(
    text: str, i: int, begin: int, stack: list[_OpenTag], entities: list[JsonDict], pos16: int
) -> int:
    """Handle "</name>" starting after "</"; append the finished entity; return the next index."""
    n = len(text)
    at = _byte_offset(text, begin)
    if not stack:
        raise HtmlParseError(f"Unexpected end tag at byte offset {at}")
    j = i
    while j < n and not text[j].isspace() and text[j] != ">":
        j += 1
    end_name = text[i:j].lower()
    while j < n and text[j].isspace():
        j += 1
    if j >= n or text[j] != ">":
        raise HtmlParseError(f"Unclosed end tag at byte offset {at}")
    opened = stack.pop()
    if end_name and end_name != opened.name:
        raise HtmlParseError(
            f'Unmatched end tag at byte offset {at}, expected "</{opened.name}>", found "</{end_name}>"'
        )
    length = pos16 - opened.offset16
    if length > 0:
        _add_entity(opened, length, stack, entities)
    return j + 1


def _add_entity(opened: _OpenTag, length: int, stack: list[_OpenTag], entities: list[JsonDict]) -> None:
    kind = _TAG_ENTITY[opened.name]
    # <pre><code class="language-x">...</code></pre> is one pre entity with a language.
    if kind == "code" and opened.argument and stack and stack[-1].name == "pre":
        if stack[-1].offset16 == opened.offset16:
            stack[-1].argument = opened.argument
            return
    entity: JsonDict = {"type": kind, "offset": opened.offset16, "length": length}
    if kind == "text_link":
        if not opened.argument:
            return  # Telegram drops <a> without a usable href
        entity["url"] = opened.argument
    elif kind == "pre" and opened.argument:
        entity["language"] = opened.argument
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = opened.argument
    elif kind == "blockquote" and opened.expandable:
        entity["type"] = "expandable_blockquote"
    entities.append(entity)


def strip_formatted(text: str, entities: list[JsonDict]) -> tuple[str, list[JsonDict]]:
    """Telegram trims leading/trailing whitespace of a message; entities move with the text."""
    stripped = text.strip()
    if not stripped:
        return "", []
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    limit = utf16_len(stripped)
    result = []
    for entity in entities:
        start = max(0, entity["offset"] - shift)
        end = min(limit, entity["offset"] + entity["length"] - shift)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


# --------------------------------------------------------------------------------------------------
# State.


@dataclass
class UploadedFile:
    """A multipart file part as the bot uploaded it."""

    filename: str
    content: bytes
    content_type: str

    def __repr__(self) -> str:  # keep `calls` readable when it holds megabytes
        return f"UploadedFile({self.filename!r}, {len(self.content)} bytes, {self.content_type!r})"


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes
    file_name: str
    mime_type: str


@dataclass
class _User:
    id: int
    first_name: str
    username: str | None
    started_bot: bool
    blocked: bool = False

    def as_dict(self) -> JsonDict:
        user: JsonDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        return user


@dataclass
class _Chat:
    id: int
    type: str
    title: str | None = None
    user: _User | None = None  # the other side of a private chat
    members: dict[int, str] = field(default_factory=dict)
    messages: dict[int, JsonDict] = field(default_factory=dict)
    last_message_id: int = 0
    pinned_message_id: int | None = None

    def as_dict(self) -> JsonDict:
        if self.type == "private" and self.user is not None:
            chat = {"id": self.id, "type": "private", "first_name": self.user.first_name}
            if self.user.username:
                chat["username"] = self.user.username
            return chat
        return {"id": self.id, "type": self.type, "title": self.title or str(self.id)}

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")


@dataclass
class _Fault:
    error_code: int
    description: str
    retry_after: int | None
    times: int


@dataclass
class _RateLimit:
    per_chat_per_minute: int | None
    per_chat_per_second: int | None
    global_per_second: int | None
    time_scale: float


def _now() -> int:
    return int(time.time())


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(f"invalid {name} specified")
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise bad_request(f"invalid {name} specified") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _json_value(params: JsonDict, key: str, kind: type) -> Any:
    """A JSON field that _read_params could not decode stays a str: that is a client bug."""
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, kind):
        raise bad_request(f"can't parse {key} JSON object")
    return value


def _inline_buttons(markup: JsonDict | None) -> list[JsonDict]:
    if not markup:
        return []
    return [button for row in markup.get("inline_keyboard", []) for button in row]


class FakeTelegram:
    """In-process fake of api.telegram.org; see the module docstring.

    Reading what the bot did:

    * ``sent``: one dict per successful message-producing call (send*, edit*; one per album item)
      with "method", "chat_id", "message_id", "parse_mode", "reply_markup" (parsed JSON),
      "reply_to_message_id", "time" (time.monotonic()), and per method "text" (as sent, HTML
      included) plus "plain_text" (what users see), "caption", "document"/"photo" as
      (filename, bytes), "media_group_id"/"media_type" for albums.
    * ``calls``: (method, params) for every API call, failed ones too; JSON fields are decoded and
      uploads are ``UploadedFile`` objects.
    * ``messages(chat_id)`` / ``message(chat_id, id)``: Telegram Message dicts as they are now.
    * ``callback_answers()``, ``reactions``, ``commands``, ``too_many_requests``, ``pending_updates``.
    """

    def __init__(self, token: str = "123456:TEST-TOKEN", bot_username: str = "storeolis_test_bot") -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.url = ""
        self.strict_html_entities = True
        self.sent: list[JsonDict] = []
        self.calls: list[tuple[str, JsonDict]] = []
        self.too_many_requests = 0
        self.reactions: dict[tuple[int, int], list[JsonDict]] = {}
        self.commands: dict[tuple[str, str], list[JsonDict]] = {}
        self.webhook_url = ""

        self._users: dict[int, _User] = {}
        self._chats: dict[int, _Chat] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_counter = itertools.count(1)
        self._updates: list[JsonDict] = []
        self._update_ids = itertools.count(100_000_001)
        self._callback_ids = itertools.count(7_000_000_000_000_000_001)
        self._media_group_ids = itertools.count(13_000_000_000_001)
        self._callbacks: dict[str, JsonDict] = {}
        self._callback_answers: dict[str, JsonDict] = {}
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._poll_generation = 0
        self._updates_changed = asyncio.Event()
        self._faults: dict[str, list[_Fault]] = {}
        self._sticky_faults: list[tuple[str, str, _Fault]] = []  # (method, text marker, fault)
        self._rate: _RateLimit | None = None
        self._chat_hits: dict[int, deque[float]] = {}
        self._global_hits: deque[float] = deque()
        self._down: str | None = None
        self._down_changed = asyncio.Event()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Callable[[JsonDict], Any]] = {
            name.lower(): getattr(self, f"_m_{name}")
            for name in (
                "getMe", "getUpdates", "deleteWebhook", "setWebhook", "getWebhookInfo", "setMyCommands",
                "getMyCommands", "deleteMyCommands", "sendMessage", "editMessageText",
                "editMessageReplyMarkup", "editMessageCaption", "deleteMessage", "answerCallbackQuery",
                "getChatMember", "getChat", "leaveChat", "sendDocument", "sendPhoto", "sendMediaGroup",
                "getFile", "sendChatAction", "pinChatMessage", "setMessageReaction",
            )
        }  # fmt: skip

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        # Room for a 50 MB document plus form overhead; bigger bodies get our JSON 413.
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 256 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        # handler_cancellation: a client that gives up (timeout) must not have its hung request
        # processed later, which would record a send the bot believes failed.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopping = True
        self._wake_down_waiters()
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------------------- chats, members

    def add_group(self, chat_id: int, title: str, members: list[int]) -> None:
        """A supergroup where the bot is an administrator and `members` are members."""
        chat = _Chat(id=chat_id, type="supergroup", title=title)
        chat.members[self.bot_id] = "administrator"
        for user_id in members:
            self._ensure_user(user_id)
            chat.members[user_id] = "member"
        self._chats[chat_id] = chat

    def add_user(
        self, user_id: int, first_name: str, username: str | None = None, started_bot: bool = False
    ) -> None:
        """A user and their private chat with the bot (chat id == user id)."""
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(user_id, first_name, username, started_bot)
        else:
            user.first_name, user.username, user.started_bot = first_name, username, started_bot
        if user_id not in self._chats:
            self._chats[user_id] = _Chat(id=user_id, type="private", user=user)

    def set_blocked(self, user_id: int, blocked: bool = True) -> None:
        """The user blocked the bot: sends to them answer 403 "bot was blocked by the user"."""
        self._ensure_user(user_id).blocked = blocked

    def set_member_status(self, chat_id: int, user_id: int, status: str, notify: bool = False) -> None:
        """Change a member's status (the bot's too). notify=True queues the (my_)chat_member update
        Telegram would send."""
        if status not in MEMBER_STATUSES:
            raise ValueError(f"unknown status {status!r}; use one of {sorted(MEMBER_STATUSES)}")
        chat = self._chat_or_fail(chat_id)
        if user_id != self.bot_id:
            self._ensure_user(user_id)
        old = chat.members.get(user_id, "left")
        chat.members[user_id] = status
        if notify:
            kind = "my_chat_member" if user_id == self.bot_id else "chat_member"
            self._queue_update(kind, self._member_update(chat, user_id, user_id, old, status))

    def member_service_message(self, chat_id: int, user_id: int, joined: bool) -> JsonDict:
        """The service message a group shows when `user_id` joins or leaves (a `message` update, as
        Telegram sends it: `new_chat_members` plus the deprecated `new_chat_member`/`new_chat_participant`,
        or `left_chat_member` plus `left_chat_participant`). The status itself is set with
        set_member_status."""
        chat = self._chat_or_fail(chat_id)
        user = self._ensure_user(user_id).as_dict()
        if joined:
            fields: JsonDict = {"new_chat_participant": user, "new_chat_member": user, "new_chat_members": [user]}
        else:
            fields = {"left_chat_participant": user, "left_chat_member": user}
        message = self._add_message(chat, user, fields, None)
        self._queue_update("message", message)
        return copy.deepcopy(message)

    def add_bot_to_group(self, chat_id: int, by_user_id: int) -> None:
        """Someone adds the bot to a group (created if unknown): queues a my_chat_member update."""
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(id=chat_id, type="supergroup", title=f"Group {chat_id}")
        self._ensure_user(by_user_id)
        chat.members.setdefault(by_user_id, "member")
        old = chat.members.get(self.bot_id, "left")
        chat.members[self.bot_id] = "member"
        self._queue_update(
            "my_chat_member", self._member_update(chat, by_user_id, self.bot_id, old, "member")
        )

    # ------------------------------------------------------------------------- injecting updates

    def send_user_message(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        reply_to_message_id: int | None = None,
        entities: list[JsonDict] | None = None,
    ) -> JsonDict:
        """A user writes `text`; a leading "/command" gets its bot_command entity."""
        fields: JsonDict = {"text": text}
        if entities is None:
            command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
            if command:
                entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))}]
        if entities:
            fields["entities"] = entities
        return self._user_message(chat_id, user_id, fields, reply_to_message_id)

    def send_user_document(
        self,
        chat_id: int,
        user_id: int,
        filename: str,
        content: bytes,
        caption: str | None = None,
        reply_to_message_id: int | None = None,
        mime_type: str = "application/octet-stream",
    ) -> JsonDict:
        stored = self._store_file("documents", filename, content, mime_type)
        fields: JsonDict = {"document": self._document_dict(stored)}
        if caption:
            fields["caption"] = caption
        return self._user_message(chat_id, user_id, fields, reply_to_message_id)

    def send_user_photo(
        self,
        chat_id: int,
        user_id: int,
        content: bytes,
        caption: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JsonDict:
        stored = self._store_file("photos", "photo.jpg", content, "image/jpeg")
        fields: JsonDict = {"photo": self._photo_sizes(stored)}
        if caption:
            fields["caption"] = caption
        return self._user_message(chat_id, user_id, fields, reply_to_message_id)

    def send_user_sticker(
        self, chat_id: int, user_id: int, emoji: str = "👍", reply_to_message_id: int | None = None
    ) -> JsonDict:
        """A regular (static .webp) sticker, shaped as the Bot API sends it."""
        stored = self._store_file("stickers", "sticker.webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp")
        sticker = {
            "file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": emoji,
            "set_name": "StoreolisTest", "file_size": len(stored.content),
        }  # fmt: skip
        return self._user_message(chat_id, user_id, {"sticker": sticker}, reply_to_message_id)

    def send_user_voice(
        self, chat_id: int, user_id: int, caption: str | None = None, reply_to_message_id: int | None = None
    ) -> JsonDict:
        """A voice message (OGG/Opus), optionally with a caption."""
        stored = self._store_file("voice", "voice.oga", b"OggS\x00\x02" + b"\x00" * 64, "audio/ogg")
        voice = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "duration": 3,
                 "mime_type": "audio/ogg", "file_size": len(stored.content)}
        fields: JsonDict = {"voice": voice}
        if caption:
            fields["caption"] = caption
        return self._user_message(chat_id, user_id, fields, reply_to_message_id)

    def press_button(
        self, chat_id: int, message_id: int, user_id: int, callback_data: str, check_markup: bool = True
    ) -> str:
        """A user presses an inline button; returns the callback query id.

        check_markup: the button must be on the message now (catches tests pressing stale keyboards)."""
        message = self.message(chat_id, message_id)
        if check_markup:
            datas = [b.get("callback_data") for b in _inline_buttons(message.get("reply_markup"))]
            if callback_data not in datas:
                raise AssertionError(
                    f"message {message_id} in chat {chat_id} has no button with callback_data "
                    f"{callback_data!r}; its buttons carry {datas!r}"
                )
        user = self._ensure_user(user_id)
        query_id = str(next(self._callback_ids))
        query = {
            "id": query_id,
            "from": user.as_dict(),
            "message": message,
            "chat_instance": str(-abs(chat_id) * 7919),
            "data": callback_data,
        }
        self._callbacks[query_id] = query
        self._queue_update("callback_query", query)
        return query_id

    # ------------------------------------------------------------------------ reading the state

    def messages(self, chat_id: int) -> list[JsonDict]:
        """Current messages of a chat (edits applied, deletions removed), oldest first."""
        return [copy.deepcopy(m) for m in self._chat_or_fail(chat_id).messages.values()]

    def message(self, chat_id: int, message_id: int) -> JsonDict:
        messages = self._chat_or_fail(chat_id).messages
        if message_id not in messages:
            raise KeyError(f"no message {message_id} in chat {chat_id} (deleted or never sent)")
        return copy.deepcopy(messages[message_id])

    def callback_answers(self) -> dict[str, JsonDict]:
        return copy.deepcopy(self._callback_answers)

    def file_content(self, file_id: str) -> bytes:
        return self._files[file_id].content

    @property
    def pending_updates(self) -> list[JsonDict]:
        """Updates not yet confirmed by a getUpdates offset."""
        return copy.deepcopy(self._updates)

    async def wait_for(
        self,
        predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling our own state, not for I/O
    ) -> Any:
        """Poll `predicate` every 20 ms until it returns something truthy and return that.

        Exceptions from the predicate (an IndexError from ``sent[-1]``...) count as "not yet"."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error: BaseException | None = None
        while True:
            try:
                value = predicate()
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:  # noqa: BLE001 - reported on timeout
                value, last_error = None, exc
            if value:
                return value
            if loop.time() >= deadline:
                raise AssertionError(self._describe_timeout(predicate, timeout, last_error))
            await asyncio.sleep(0.02)

    def _describe_timeout(
        self, predicate: Callable[..., Any], timeout: float, error: BaseException | None
    ) -> str:
        name = getattr(predicate, "__qualname__", repr(predicate))
        try:
            source = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            source = name
        recent_calls = [method for method, _ in self.calls[-15:]]
        recent_sent = [
            (s["method"], s.get("chat_id"), (s.get("text") or s.get("caption") or "")[:80])
            for s in self.sent[-5:]
        ]
        return (
            f"FakeTelegram.wait_for timed out after {timeout}s: {source}\n"
            f"  last predicate error: {error!r}\n  recent API calls: {recent_calls}\n  recent sends: {recent_sent}"
        )

    # ---------------------------------------------------------------------------- fault injection

    def fail_next(
        self, method: str, error_code: int, description: str, retry_after: int | None = None, times: int = 1
    ) -> None:
        """The next `times` calls of `method` answer this error (before any validation)."""
        self._faults.setdefault(method.lower(), []).append(
            _Fault(error_code, description, retry_after, times)
        )

    def fail_matching(self, method: str, marker: str, error_code: int, description: str) -> None:
        """Every call of `method` whose text or caption contains `marker` answers this error, until
        `clear_matching()`: one message Telegram keeps refusing while the others go through."""
        self._sticky_faults.append((method.lower(), marker, _Fault(error_code, description, None, 0)))

    def clear_matching(self) -> None:
        self._sticky_faults.clear()

    def set_rate_limit(
        self,
        per_chat_per_minute: int | None = 20,
        per_chat_per_second: int | None = 1,
        global_per_second: int | None = 30,
        time_scale: float = 1.0,
    ) -> None:
        """Enforce flood control on message-producing send*/edit* calls (sliding windows).

        time_scale shrinks (or stretches) the windows: 0.1 makes "per minute" six seconds.
        retry_after is the real wait in whole seconds, rounded up."""
        self._rate = _RateLimit(per_chat_per_minute, per_chat_per_second, global_per_second, time_scale)
        self._chat_hits.clear()
        self._global_hits.clear()

    def clear_rate_limit(self) -> None:
        self._rate = None

    def set_down(self, mode: str | None) -> None:
        """None, "500", "timeout" (hang until the client gives up) or "refuse" (drop the connection)."""
        if mode not in (None, "500", "timeout", "refuse"):
            raise ValueError(f"unknown down mode {mode!r}")
        self._down = mode
        self._wake_down_waiters()

    # ----------------------------------------------------------------------------- HTTP plumbing

    def _wake_down_waiters(self) -> None:
        self._down_changed.set()
        self._down_changed = asyncio.Event()

    def _wake_pollers(self) -> None:
        self._updates_changed.set()
        self._updates_changed = asyncio.Event()

    async def _apply_down_mode(self, request: web.Request) -> web.StreamResponse | None:
        while self._down == "timeout" and not self._stopping:
            await self._down_changed.wait()
        if self._stopping:
            return web.json_response(
                {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
            )
        if self._down == "500":
            body = {"ok": False, "error_code": 500, "description": "Internal Server Error"}
            return web.json_response(body, status=500)
        if self._down == "refuse":
            if request.transport is not None:
                request.transport.abort()
            # Nothing can be written any more; raising ends the handler without a response.
            raise asyncio.CancelledError
        return None

    async def _read_params(self, request: web.Request) -> JsonDict:
        params: JsonDict = dict(request.query)
        if request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise bad_request("can't parse JSON encoded request") from None  # approximate
                if isinstance(body, dict):
                    params.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        params[key] = UploadedFile(value.filename, value.file.read(), value.content_type)
                    else:
                        params[key] = value
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str) and params[key]:
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass  # left as a str; the method answers "can't parse"
        return params

    @staticmethod
    def _error_response(error: ApiError) -> web.Response:
        body: JsonDict = {"ok": False, "error_code": error.error_code, "description": error.description}
        headers = {}
        if error.retry_after is not None:
            body["parameters"] = {"retry_after": error.retry_after}
            headers["Retry-After"] = str(error.retry_after)
        return web.json_response(body, status=error.error_code, headers=headers)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await self._read_params(request)
        except web.HTTPRequestEntityTooLarge:
            self.calls.append((method, {}))
            return self._error_response(ApiError(413, "Request Entity Too Large"))
        except ApiError as error:
            self.calls.append((method, {}))
            return self._error_response(error)
        self.calls.append((method, params))
        if self._down is not None or self._stopping:
            down = await self._apply_down_mode(request)
            if down is not None:
                return down
        if request.match_info["token"] != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        try:
            result = await self._dispatch(method, params)
        except ApiError as error:
            if error.error_code == 429:
                self.too_many_requests += 1
            return self._error_response(error)
        return web.json_response({"ok": True, "result": result})

    async def _dispatch(self, method: str, params: JsonDict) -> Any:
        key = method.lower()  # Telegram method names are case-insensitive
        text = f"{params.get('text') or ''}{params.get('caption') or ''}"
        for sticky_method, marker, sticky in self._sticky_faults:
            if sticky_method == key and marker in text:
                raise ApiError(sticky.error_code, sticky.description, None)
        faults = self._faults.get(key)
        if faults:
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            raise ApiError(fault.error_code, fault.description, fault.retry_after)
        handler = self._methods.get(key)
        if handler is None:
            raise ApiError(404, "Not Found")
        result = handler(params)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if self._down is not None or self._stopping:
            down = await self._apply_down_mode(request)
            if down is not None:
                return down
        stored = self._files_by_path.get(request.match_info["path"])
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=stored.content, content_type="application/octet-stream")

    # ------------------------------------------------------------------------------- internals

    def _ensure_user(self, user_id: int) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(user_id, f"User{user_id}", None, False)
        return user

    def _chat_or_fail(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise KeyError(f"unknown chat {chat_id}: call add_group/add_user first")
        return chat

    def _bot_dict(self) -> JsonDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Storeolis Test Bot",
            "username": self.bot_username,
        }

    def _user_or_bot_dict(self, user_id: int) -> JsonDict:
        return self._bot_dict() if user_id == self.bot_id else self._ensure_user(user_id).as_dict()

    def _queue_update(self, kind: str, payload: JsonDict) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, kind: copy.deepcopy(payload)})
        self._wake_pollers()
        return update_id

    def _member_dict(self, chat: _Chat, user_id: int, status: str) -> JsonDict:
        member: JsonDict = {"status": status, "user": self._user_or_bot_dict(user_id)}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
                can_manage_video_chats=True, can_restrict_members=True, can_promote_members=False,
                can_change_info=True, can_invite_users=True, can_post_stories=False, can_edit_stories=False,
                can_delete_stories=False, can_send_welcome_messages=False, can_pin_messages=True,
            )  # fmt: skip
        elif status == "kicked":
            member["until_date"] = 0
        elif status == "restricted":
            member.update({name: False for name in _RESTRICTED_FLAGS})
            member.update(is_member=True, until_date=0)
        return member

    def _member_update(self, chat: _Chat, by_user_id: int, user_id: int, old: str, new: str) -> JsonDict:
        return {
            "chat": chat.as_dict(),
            "from": self._user_or_bot_dict(by_user_id),
            "date": _now(),
            "old_chat_member": self._member_dict(chat, user_id, old),
            "new_chat_member": self._member_dict(chat, user_id, new),
        }

    def _store_file(self, folder: str, filename: str, content: bytes, mime_type: str) -> StoredFile:
        number = next(self._file_counter)
        suffix = filename.rsplit(".", 1)[-1] if "." in filename else "bin"
        stored = StoredFile(
            file_id=f"BQACAgIAAxkBAAI{number:06d}{folder[:3]}",
            file_unique_id=f"AgAD{number:06d}",
            file_path=f"{folder}/file_{number}.{suffix}",
            content=content,
            file_name=filename,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    @staticmethod
    def _document_dict(stored: StoredFile) -> JsonDict:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": stored.file_name,
            "mime_type": stored.mime_type,
            "file_size": len(stored.content),
        }

    @staticmethod
    def _photo_sizes(stored: StoredFile) -> list[JsonDict]:
        # One size is enough: handlers take photo[-1]. Dimensions are made up (no image decoding).
        size = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": 1280,
            "height": 960,
        }
        size["file_size"] = len(stored.content)
        return [size]

    def _add_message(
        self, chat: _Chat, sender: JsonDict, fields: JsonDict, reply_to: JsonDict | None
    ) -> JsonDict:
        chat.last_message_id += 1
        message: JsonDict = {
            "message_id": chat.last_message_id,
            "from": sender,
            "chat": chat.as_dict(),
            "date": _now(),
        }
        if reply_to is not None:
            snapshot = copy.deepcopy(reply_to)
            snapshot.pop("reply_to_message", None)  # Telegram nests one level only
            message["reply_to_message"] = snapshot
        message.update({k: v for k, v in fields.items() if v is not None})
        chat.messages[message["message_id"]] = message
        return message

    def _user_message(
        self, chat_id: int, user_id: int, fields: JsonDict, reply_to_message_id: int | None
    ) -> JsonDict:
        user = self._ensure_user(user_id)
        if chat_id == user_id and chat_id not in self._chats:
            self.add_user(user_id, user.first_name, user.username, started_bot=True)
        chat = self._chat_or_fail(chat_id)
        if chat.type == "private":
            user.started_bot = True  # a user can only write to a bot after pressing Start
        reply_to = None
        if reply_to_message_id is not None:
            reply_to = chat.messages.get(reply_to_message_id)
            if reply_to is None:
                raise KeyError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
        message = self._add_message(chat, user.as_dict(), fields, reply_to)
        self._queue_update("message", message)
        return copy.deepcopy(message)

    # ------------------------------------------------------------------------- request checking

    def _target_chat(self, params: JsonDict) -> _Chat:
        """The chat a message goes to, with Telegram's 400/403 answers."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        try:
            chat_id = int(str(raw))
        except ValueError:
            raise bad_request("chat not found") from None
        chat = self._chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        if chat.type == "private":
            assert chat.user is not None
            if chat.user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if not chat.user.started_bot:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        else:
            status = chat.members.get(self.bot_id, "left")
            if status == "kicked":
                raise ApiError(403, f"Forbidden: bot was kicked from the {chat.type} chat")
            if status == "left":
                raise ApiError(403, f"Forbidden: bot is not a member of the {chat.type} chat")
        return chat

    def _existing_chat(self, params: JsonDict) -> _Chat:
        try:
            chat_id = _as_int(params.get("chat_id"), "chat_id")
        except ApiError:
            raise bad_request("chat not found") from None
        chat = self._chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _formatted(self, params: JsonDict, text_key: str, entities_key: str) -> tuple[str, list[JsonDict]]:
        """Plain text and entities after parse_mode, trimmed like Telegram trims them."""
        raw = params.get(text_key)
        text = "" if raw is None else str(raw)
        parse_mode = str(params.get("parse_mode") or "")
        entities: list[JsonDict] = []
        if parse_mode.lower() == "html":
            try:
                text, entities = parse_html(text, strict_entities=self.strict_html_entities)
            except HtmlParseError as error:
                raise bad_request(f"can't parse entities: {error}") from None
        elif parse_mode.lower() in ("", "markdown", "markdownv2"):
            given = _json_value(params, entities_key, list)
            entities = list(given or [])
        else:
            raise bad_request("unsupported parse_mode")
        return strip_formatted(text, entities)

    def _message_text(self, params: JsonDict) -> tuple[str, list[JsonDict]]:
        text, entities = self._formatted(params, "text", "entities")
        if not text:
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        return text, entities

    def _caption(self, params: JsonDict) -> tuple[str, list[JsonDict]]:
        caption, entities = self._formatted(params, "caption", "caption_entities")
        if utf16_len(caption) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        return caption, entities

    def _reply_markup(self, params: JsonDict) -> tuple[JsonDict | None, JsonDict | None]:
        """(markup as sent, inline keyboard to store on the message or None)."""
        markup = _json_value(params, "reply_markup", dict)
        if markup is None:
            return None, None
        if "inline_keyboard" not in markup:
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise bad_request("can't parse reply keyboard markup JSON object")
            return markup, None  # reply keyboards are not part of the Message object
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list):
            raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
        total = 0
        for row in rows:
            if not isinstance(row, list):
                raise bad_request(
                    'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
                )
            if len(row) > MAX_INLINE_BUTTONS_PER_ROW:
                raise bad_request("BUTTONS_TOO_MUCH")  # approximate
            for button in row:
                self._check_button(button)
            total += len(row)
        if total > MAX_INLINE_BUTTONS:
            raise bad_request("BUTTONS_TOO_MUCH")  # approximate
        return markup, (markup if total else None)

    @staticmethod
    def _check_button(button: Any) -> None:
        if not isinstance(button, dict):
            raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        if not isinstance(button.get("text"), str):
            raise bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
        if not button["text"].strip():
            raise bad_request("BUTTON_TEXT_INVALID")  # approximate
        actions = [name for name in BUTTON_ACTION_FIELDS if name in button]
        if not actions:
            raise bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
            )
        if len(actions) > 1:
            raise bad_request(
                "can't parse inline keyboard button: exactly one of the optional fields must be used"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not data or len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = button["url"]
            if not isinstance(url, str) or not re.match(r"(https?|tg)://\S+$", url):
                raise bad_request("BUTTON_URL_INVALID")

    def _reply_target(self, chat: _Chat, params: JsonDict) -> JsonDict | None:
        reply = _json_value(params, "reply_parameters", dict) or {}
        allow_missing = _as_bool(
            reply.get("allow_sending_without_reply", params.get("allow_sending_without_reply"))
        )
        raw_id = reply.get("message_id", params.get("reply_to_message_id"))
        if raw_id is None or raw_id == "":
            return None
        target_chat = chat
        if reply.get("chat_id") not in (None, ""):
            target_chat = self._chats.get(_as_int(reply["chat_id"], "chat_id"), chat)
        target = target_chat.messages.get(_as_int(raw_id, "message_id"))
        if target is None and not allow_missing:
            raise bad_request("message to be replied not found")
        return target

    def _check_rate(self, chat: _Chat) -> None:
        rate = self._rate
        if rate is None:
            return
        now = time.monotonic()
        second, minute = 1.0 * rate.time_scale, 60.0 * rate.time_scale
        hits = self._chat_hits.setdefault(chat.id, deque())
        while hits and hits[0] <= now - max(second, minute):
            hits.popleft()
        while self._global_hits and self._global_hits[0] <= now - second:
            self._global_hits.popleft()
        waits = [
            _window_wait(hits, rate.per_chat_per_second, second, now),
            _window_wait(self._global_hits, rate.global_per_second, second, now),
        ]
        if chat.is_group:
            waits.append(_window_wait(hits, rate.per_chat_per_minute, minute, now))
        wait = max(waits)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    def _count_hits(self, chat: _Chat, count: int = 1) -> None:
        if self._rate is None:
            return
        now = time.monotonic()
        for _ in range(count):
            self._chat_hits.setdefault(chat.id, deque()).append(now)
            self._global_hits.append(now)

    def _record(self, method: str, chat: _Chat, message: JsonDict, params: JsonDict, **extra: Any) -> None:
        record: JsonDict = {
            "method": method,
            "chat_id": chat.id,
            "message_id": message["message_id"],
            "parse_mode": params.get("parse_mode"),
            "reply_markup": _json_value(params, "reply_markup", dict),
            "reply_to_message_id": (message.get("reply_to_message") or {}).get("message_id"),
            "time": time.monotonic(),
        }
        record.update(extra)
        self.sent.append(record)

    def _upload(self, params: JsonDict, key: str, folder: str, default_name: str) -> StoredFile:
        """Resolve a file field: multipart upload, attach://name, a known file_id or an URL."""
        value = params.get(key)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value[len("attach://") :])
        if isinstance(value, UploadedFile):
            if not value.content:
                raise bad_request("file must be non-empty")
            if len(value.content) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            name = value.filename or default_name
            mime = mimetypes.guess_type(name)[0] or value.content_type or "application/octet-stream"
            return self._store_file(folder, name, value.content, mime)
        if isinstance(value, str) and value in self._files:
            return self._files[value]
        if isinstance(value, str) and re.match(r"https?://", value):
            name = value.rstrip("/").rsplit("/", 1)[-1] or default_name
            return self._store_file(
                folder, name, b"", mimetypes.guess_type(name)[0] or "application/octet-stream"
            )
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _bot_message(self, chat: _Chat, params: JsonDict, fields: JsonDict) -> JsonDict:
        _, inline = self._reply_markup(params)
        reply_to = self._reply_target(chat, params)
        if inline is not None:
            fields["reply_markup"] = inline
        return self._add_message(chat, self._bot_dict(), fields, reply_to)

    def _editable_message(self, params: JsonDict) -> tuple[_Chat, JsonDict]:
        if params.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the fake")
        chat = self._existing_chat(params)
        message = chat.messages.get(_as_int(params.get("message_id"), "message_id"))
        if message is None:
            raise bad_request("message to edit not found")
        if message["from"]["id"] != self.bot_id:
            raise bad_request("message can't be edited")
        return chat, message

    # --------------------------------------------------------------------------- API methods

    def _m_getMe(self, params: JsonDict) -> JsonDict:
        return {
            **self._bot_dict(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_getUpdates(self, params: JsonDict) -> list[JsonDict]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                "delete the webhook first",
            )
        # A newer request ends an older long poll, as on the real server.
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()
        offset = _as_int(params["offset"], "offset") if params.get("offset") not in (None, "") else None
        limit = min(100, max(1, _as_int(params.get("limit") or 100, "limit")))
        timeout = max(0, _as_int(params.get("timeout") or 0, "timeout"))
        allowed = _json_value(params, "allowed_updates", list)
        if allowed:
            self._allowed_updates = frozenset(allowed)
        elif allowed == []:
            self._allowed_updates = DEFAULT_ALLOWED_UPDATES
        if offset is not None:
            if offset < 0:
                self._updates = self._updates[offset:]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request")
            # Updates of types the bot did not ask for are dropped, as Telegram drops them.
            self._updates = [u for u in self._updates if _update_kind(u) in self._allowed_updates]
            if self._updates or self._stopping:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            changed = self._updates_changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    def _m_deleteWebhook(self, params: JsonDict) -> bool:
        self.webhook_url = ""
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    def _m_setWebhook(self, params: JsonDict) -> bool:
        url = str(params.get("url") or "")
        if url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        self._wake_pollers()
        if _as_bool(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    def _m_getWebhookInfo(self, params: JsonDict) -> JsonDict:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _commands_key(self, params: JsonDict) -> tuple[str, str]:
        scope = _json_value(params, "scope", dict) or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _m_setMyCommands(self, params: JsonDict) -> bool:
        commands = _json_value(params, "commands", list)
        if commands is None:
            raise bad_request('parameter "commands" is required')  # approximate
        if len(commands) > 100:
            raise bad_request("too many commands")  # approximate
        for command in commands:
            if not isinstance(command, dict) or not re.fullmatch(
                r"[a-z0-9_]{1,32}", str(command.get("command"))
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description") or "")) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")  # approximate
        self.commands[self._commands_key(params)] = commands
        return True

    def _m_getMyCommands(self, params: JsonDict) -> list[JsonDict]:
        return self.commands.get(self._commands_key(params), [])

    def _m_deleteMyCommands(self, params: JsonDict) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _m_sendMessage(self, params: JsonDict) -> JsonDict:
        chat = self._target_chat(params)
        text, entities = self._message_text(params)
        self._check_rate(chat)
        message = self._bot_message(chat, params, {"text": text, "entities": entities or None})
        self._count_hits(chat)
        self._record("sendMessage", chat, message, params, text=params.get("text"), plain_text=text)
        return message

    def _m_editMessageText(self, params: JsonDict) -> JsonDict:
        chat, message = self._editable_message(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        text, entities = self._message_text(params)
        _, inline = self._reply_markup(params)
        same_text = message["text"] == text and message.get("entities", []) == entities
        if same_text and message.get("reply_markup") == inline:
            raise bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        self._check_rate(chat)
        message["text"] = text
        _set_optional(message, "entities", entities or None)
        _set_optional(message, "reply_markup", inline)
        message["edit_date"] = _now()
        self._count_hits(chat)
        self._record("editMessageText", chat, message, params, text=params.get("text"), plain_text=text)
        return copy.deepcopy(message)

    def _m_editMessageCaption(self, params: JsonDict) -> JsonDict:
        chat, message = self._editable_message(params)
        if "text" in message:
            raise bad_request("there is no caption in the message to edit")
        caption, entities = self._caption(params)
        _, inline = self._reply_markup(params)
        same = message.get("caption", "") == caption and message.get("caption_entities", []) == entities
        if same and message.get("reply_markup") == inline:
            raise bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        self._check_rate(chat)
        _set_optional(message, "caption", caption or None)
        _set_optional(message, "caption_entities", entities or None)
        _set_optional(message, "reply_markup", inline)
        message["edit_date"] = _now()
        self._count_hits(chat)
        self._record("editMessageCaption", chat, message, params, caption=params.get("caption"))
        return copy.deepcopy(message)

    def _m_editMessageReplyMarkup(self, params: JsonDict) -> JsonDict:
        chat, message = self._editable_message(params)
        _, inline = self._reply_markup(params)
        if message.get("reply_markup") == inline:
            raise bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        self._check_rate(chat)
        _set_optional(message, "reply_markup", inline)
        message["edit_date"] = _now()
        self._count_hits(chat)
        self._record("editMessageReplyMarkup", chat, message, params)
        return copy.deepcopy(message)

    def _m_deleteMessage(self, params: JsonDict) -> bool:
        chat = self._existing_chat(params)
        message_id = _as_int(params.get("message_id"), "message_id")
        if chat.messages.pop(message_id, None) is None:
            raise bad_request("message to delete not found")
        return True

    def _m_answerCallbackQuery(self, params: JsonDict) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callbacks or query_id in self._callback_answers:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and len(str(text)) > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")  # approximate
        self._callback_answers[query_id] = {
            "text": text,
            "show_alert": _as_bool(params.get("show_alert")),
            "url": params.get("url"),
            "cache_time": params.get("cache_time"),
        }
        return True

    def _m_getChatMember(self, params: JsonDict) -> JsonDict:
        chat = self._existing_chat(params)
        user_id = _as_int(params.get("user_id"), "user_id")
        if user_id != self.bot_id and user_id not in self._users:
            raise bad_request("user not found")
        if chat.type == "private":
            status = "member" if user_id in (chat.id, self.bot_id) else "left"
        else:
            status = chat.members.get(user_id, "left")
        return self._member_dict(chat, user_id, status)

    def _m_getChat(self, params: JsonDict) -> JsonDict:
        chat = self._existing_chat(params)
        info: JsonDict = {
            **chat.as_dict(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        pinned = chat.messages.get(chat.pinned_message_id or 0)
        if pinned is not None:
            info["pinned_message"] = copy.deepcopy(pinned)
        return info

    def _m_leaveChat(self, params: JsonDict) -> bool:
        chat = self._existing_chat(params)
        if not chat.is_group:
            raise bad_request("chat member status can't be changed in private chats")  # approximate
        old = chat.members.get(self.bot_id, "left")
        if old in ("left", "kicked"):
            raise ApiError(403, f"Forbidden: bot is not a member of the {chat.type} chat")
        chat.members[self.bot_id] = "left"
        self._queue_update("my_chat_member", self._member_update(chat, self.bot_id, self.bot_id, old, "left"))
        return True

    def _m_sendDocument(self, params: JsonDict) -> JsonDict:
        chat = self._target_chat(params)
        caption, entities = self._caption(params)
        self._check_rate(chat)
        stored = self._upload(params, "document", "documents", "document")
        fields = {"document": self._document_dict(stored), "caption": caption or None}
        fields["caption_entities"] = entities or None
        message = self._bot_message(chat, params, fields)
        self._count_hits(chat)
        self._record(
            "sendDocument", chat, message, params,
            caption=params.get("caption"), document=(stored.file_name, stored.content),
        )  # fmt: skip
        return message

    def _m_sendPhoto(self, params: JsonDict) -> JsonDict:
        chat = self._target_chat(params)
        caption, entities = self._caption(params)
        self._check_rate(chat)
        stored = self._upload(params, "photo", "photos", "photo.jpg")
        fields = {"photo": self._photo_sizes(stored), "caption": caption or None}
        fields["caption_entities"] = entities or None
        message = self._bot_message(chat, params, fields)
        self._count_hits(chat)
        self._record(
            "sendPhoto", chat, message, params,
            caption=params.get("caption"), photo=(stored.file_name, stored.content),
        )  # fmt: skip
        return message

    def _m_sendMediaGroup(self, params: JsonDict) -> list[JsonDict]:
        chat = self._target_chat(params)
        media = _json_value(params, "media", list)
        if not media or len(media) < 2 or len(media) > 10:
            raise bad_request("wrong number of media in the album; must be 2-10")  # approximate
        kinds = {item.get("type") for item in media if isinstance(item, dict)}
        if "document" in kinds and kinds != {"document"}:
            raise bad_request("documents can't be mixed with other media types")  # approximate
        captions = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document", "video", "audio"):
                raise bad_request("can't parse InputMedia JSON object")
            captions.append(
                self._caption({**params, **item, "caption_entities": item.get("caption_entities")})
            )
        self._check_rate(chat)
        reply_to = self._reply_target(chat, params)
        group_id = str(next(self._media_group_ids))
        messages = []
        for item, (caption, entities) in zip(media, captions, strict=True):
            kind = item["type"]
            stored = self._upload({**params, "media": item.get("media")}, "media", f"{kind}s", kind)
            content = self._photo_sizes(stored) if kind == "photo" else self._document_dict(stored)
            fields = {"media_group_id": group_id, kind: content, "caption": caption or None}
            fields["caption_entities"] = entities or None
            message = self._add_message(chat, self._bot_dict(), fields, reply_to)
            messages.append(message)
            self._record(
                "sendMediaGroup", chat, message, item, caption=item.get("caption"),
                media_group_id=group_id, media_type=kind, **{kind: (stored.file_name, stored.content)},
            )  # fmt: skip
        self._count_hits(chat, len(messages))
        return messages

    def _m_getFile(self, params: JsonDict) -> JsonDict:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.content) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.content),
            "file_path": stored.file_path,
        }

    def _m_sendChatAction(self, params: JsonDict) -> bool:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    def _m_pinChatMessage(self, params: JsonDict) -> bool:
        chat = self._target_chat(params)
        message_id = _as_int(params.get("message_id"), "message_id")
        if message_id not in chat.messages:
            raise bad_request("message to pin not found")
        chat.pinned_message_id = message_id
        return True

    def _m_setMessageReaction(self, params: JsonDict) -> bool:
        chat = self._existing_chat(params)
        message_id = _as_int(params.get("message_id"), "message_id")
        if message_id not in chat.messages:
            raise bad_request("MESSAGE_ID_INVALID")
        reaction = _json_value(params, "reaction", list) or []
        for item in reaction:
            if not isinstance(item, dict) or item.get("type") not in ("emoji", "custom_emoji", "paid"):
                raise bad_request("REACTION_INVALID")
        self.reactions[(chat.id, message_id)] = reaction
        return True


_RESTRICTED_FLAGS = (
    "can_send_messages", "can_send_audios", "can_send_documents", "can_send_photos", "can_send_videos",
    "can_send_video_notes", "can_send_voice_notes", "can_send_polls", "can_send_other_messages",
    "can_add_web_page_previews", "can_react_to_messages", "can_edit_tag", "can_change_info",
    "can_invite_users", "can_pin_messages", "can_manage_topics",
)  # fmt: skip


def _window_wait(hits: deque[float], limit: int | None, window: float, now: float) -> float:
    """Seconds until one more hit fits into `limit` per `window` (0 when it fits now)."""
    if limit is None:
        return 0.0
    recent = [t for t in hits if t > now - window]
    if len(recent) < limit:
        return 0.0
    return recent[-limit] + window - now


def _update_kind(update: JsonDict) -> str:
    return next(key for key in update if key != "update_id")


def _set_optional(target: JsonDict, key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value
