"""The fake Telegram server, checked through a real aiogram Bot (the way the bot under test uses it)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    Message,
    ReactionTypeEmoji,
    ReplyParameters,
)

from tests.rig.fake_telegram import FakeTelegram, HtmlParseError, parse_html

GROUP = -1001234567890
ALICE, BOB, STRANGER = 1001, 1002, 1003


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    server.add_group(GROUP, "Storeolis staff", [ALICE, BOB])
    server.add_user(ALICE, "Alice", "alice", started_bot=True)
    server.add_user(STRANGER, "Stan", started_bot=False)
    try:
        yield server
    finally:
        await server.stop()


def make_bot(fake: FakeTelegram) -> Bot:
    return Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = make_bot(fake)
    try:
        yield client
    finally:
        await client.session.close()


def keyboard(*datas: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=f"b{i}", callback_data=d)] for i, d in enumerate(datas)]
    )


# ------------------------------------------------------------------------------------------ basics


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == fake.bot_id == 123456
    assert me.is_bot and me.username == "storeolis_test_bot"
    assert fake.calls[-1][0] == "getMe"


async def test_send_html_message_is_parsed_and_recorded(fake: FakeTelegram, bot: Bot) -> None:
    html = '<b>Ticket #7</b> &amp; <a href="https://storeolis.example/t/7">open</a> &#x1F600; &lt;x&gt;'
    message = await bot.send_message(GROUP, html, parse_mode="HTML", reply_markup=keyboard("take:7"))
    assert message.text == "Ticket #7 & open \U0001f600 <x>"
    assert message.message_id == 1
    assert message.chat.id == GROUP and message.chat.type == "supergroup"
    assert message.from_user is not None and message.from_user.id == fake.bot_id
    assert [(e.type, e.offset, e.length) for e in message.entities or []] == [
        ("bold", 0, 9),
        ("text_link", 12, 4),
    ]
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "take:7"

    record = fake.sent[-1]
    assert record["method"] == "sendMessage"
    assert record["chat_id"] == GROUP and record["message_id"] == 1
    assert record["text"] == html and record["plain_text"] == message.text
    assert record["parse_mode"] == "HTML"
    assert record["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "take:7"
    assert fake.message(GROUP, 1)["text"] == message.text

    second = await bot.send_message(GROUP, "next")
    assert second.message_id == 2


@pytest.mark.parametrize(
    ("html", "description"),
    [
        ("hello <x>world</x>", 'Unsupported start tag "x" at byte offset 6'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("Привет <p>", 'Unsupported start tag "p" at byte offset 13'),
        ("x &nbsp; y", 'Unsupported HTML entity "&nbsp;" at byte offset 2'),
        ('<span class="red">x</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_bad_html_is_refused(fake: FakeTelegram, bot: Bot, html: str, description: str) -> None:
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(GROUP, html, parse_mode="HTML")
    assert caught.value.message == f"Bad Request: can't parse entities: {description}"
    assert fake.sent == []
    assert fake.calls[-1][0] == "sendMessage"  # failed calls are recorded too


def test_html_parser_details() -> None:
    text, entities = parse_html(
        '<pre><code class="language-python">x = 1</code></pre><blockquote expandable>q</blockquote>'
        '<tg-spoiler>s</tg-spoiler><span class="tg-spoiler">t</span><tg-emoji emoji-id="5368324170671202286">'
        "\U0001f44d</tg-emoji><u>u</u><ins>i</ins><s>s</s><del>d</del><em>e</em><strong>b</strong>"
    )
    assert text == "x = 1qst\U0001f44duisdeb"
    kinds = [(e["type"], e.get("language") or e.get("custom_emoji_id")) for e in entities]
    assert kinds == [
        ("pre", "python"),
        ("expandable_blockquote", None),
        ("spoiler", None),
        ("spoiler", None),
        ("custom_emoji", "5368324170671202286"),
        ("underline", None),
        ("underline", None),
        ("strikethrough", None),
        ("strikethrough", None),
        ("italic", None),
        ("bold", None),
    ]
    # Offsets are in UTF-16 code units: the emoji before <u> counts twice.
    assert entities[5]["offset"] == 10
    assert parse_html("&#60;&#x3E;&quot;")[0] == '<>"'
    with pytest.raises(HtmlParseError, match=r'Unescaped "&" at byte offset 2'):
        parse_html("Q & A")
    assert parse_html("Q & A &nbsp;", strict_entities=False)[0] == "Q & A &nbsp;"


async def test_text_limits_are_measured_after_parsing_in_utf16(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(GROUP, "a" * 4097)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(GROUP, "\U0001f600" * 2049)  # 2049 characters, 4098 UTF-16 units
    # Tags do not count: 4096 visible characters in 4103 characters of HTML pass.
    message = await bot.send_message(GROUP, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    assert len(message.text or "") == 4096
    with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
        await bot.send_message(GROUP, "<b> </b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="Bad Request: message caption is too long"):
        await bot.send_document(GROUP, BufferedInputFile(b"x", "x.txt"), caption="c" * 1025)


async def test_callback_data_over_64_bytes_is_refused(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(GROUP, "ok", reply_markup=keyboard("x" * 64))
    with pytest.raises(TelegramBadRequest, match="Bad Request: BUTTON_DATA_INVALID"):
        await bot.send_message(GROUP, "too much", reply_markup=keyboard("x" * 65))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(GROUP, "bytes, not characters", reply_markup=keyboard("я" * 33))
    text_only = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="no action")]])
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(GROUP, "bad", reply_markup=text_only)


async def test_edit_message_text_and_not_modified(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(
        GROUP, "<b>New</b> ticket", parse_mode="HTML", reply_markup=keyboard("a")
    )
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.edit_message_text(
            "<b>New</b> ticket",
            chat_id=GROUP,
            message_id=message.message_id,
            parse_mode="HTML",
            reply_markup=keyboard("a"),
        )
    assert caught.value.message.startswith(
        "Bad Request: message is not modified: specified new message content"
    )

    edited = await bot.edit_message_text(
        "<b>Taken</b> by Alice", chat_id=GROUP, message_id=message.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and edited.text == "Taken by Alice"
    state = fake.message(GROUP, message.message_id)
    assert state["text"] == "Taken by Alice" and "reply_markup" not in state  # no markup removes it
    assert fake.sent[-1]["method"] == "editMessageText"

    await bot.edit_message_reply_markup(
        chat_id=GROUP, message_id=message.message_id, reply_markup=keyboard("b")
    )
    assert (
        fake.message(GROUP, message.message_id)["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        == "b"
    )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=GROUP, message_id=message.message_id, reply_markup=keyboard("b")
        )
    with pytest.raises(TelegramBadRequest, match="Bad Request: message to edit not found"):
        await bot.edit_message_text("x", chat_id=GROUP, message_id=999)


async def test_delete_message(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(GROUP, "bye")
    assert await bot.delete_message(GROUP, message.message_id) is True
    assert fake.messages(GROUP) == []
    with pytest.raises(TelegramBadRequest, match="Bad Request: message to delete not found"):
        await bot.delete_message(GROUP, message.message_id)


async def test_reply_to_missing_message(fake: FakeTelegram, bot: Bot) -> None:
    original = fake.send_user_message(GROUP, ALICE, "question")
    reply = await bot.send_message(
        GROUP, "answer", reply_parameters=ReplyParameters(message_id=original["message_id"])
    )
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "question"
    assert fake.sent[-1]["reply_to_message_id"] == original["message_id"]
    with pytest.raises(TelegramBadRequest, match="Bad Request: message to be replied not found"):
        await bot.send_message(GROUP, "answer", reply_parameters=ReplyParameters(message_id=555))
    lenient = ReplyParameters(message_id=555, allow_sending_without_reply=True)
    sent = await bot.send_message(GROUP, "answer anyway", reply_parameters=lenient)
    assert sent.reply_to_message is None


# --------------------------------------------------------------------------- chats and permissions


async def test_unknown_chat_and_forbidden_dm(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(-100999, "hello")
    with pytest.raises(TelegramForbiddenError) as caught:
        await bot.send_message(STRANGER, "hello")
    assert caught.value.message == "Forbidden: bot can't initiate conversation with a user"

    fake.send_user_message(STRANGER, STRANGER, "/start")  # pressing Start opens the chat
    dm = await bot.send_message(STRANGER, "hello")
    assert dm.chat.type == "private" and dm.chat.first_name == "Stan"

    fake.set_blocked(STRANGER)
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(STRANGER, "still there?")


async def test_get_chat_member_statuses(fake: FakeTelegram, bot: Bot) -> None:
    assert isinstance(await bot.get_chat_member(GROUP, ALICE), ChatMemberMember)
    assert isinstance(await bot.get_chat_member(GROUP, fake.bot_id), ChatMemberAdministrator)
    assert isinstance(await bot.get_chat_member(GROUP, STRANGER), ChatMemberLeft)
    fake.set_member_status(GROUP, ALICE, "creator")
    assert isinstance(await bot.get_chat_member(GROUP, ALICE), ChatMemberOwner)
    fake.set_member_status(GROUP, BOB, "kicked")
    assert isinstance(await bot.get_chat_member(GROUP, BOB), ChatMemberBanned)
    fake.set_member_status(GROUP, BOB, "left")
    assert isinstance(await bot.get_chat_member(GROUP, BOB), ChatMemberLeft)
    fake.set_member_status(GROUP, BOB, "administrator")
    assert isinstance(await bot.get_chat_member(GROUP, BOB), ChatMemberAdministrator)

    fake.set_member_status(GROUP, fake.bot_id, "kicked")
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.send_message(GROUP, "hello?")


async def test_other_chat_methods(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(GROUP, "pin me")
    assert await bot.pin_chat_message(GROUP, message.message_id) is True
    chat = await bot.get_chat(GROUP)
    assert chat.title == "Storeolis staff" and chat.pinned_message is not None
    assert await bot.send_chat_action(GROUP, "typing") is True
    assert await bot.set_message_reaction(GROUP, message.message_id, [ReactionTypeEmoji(emoji="👍")]) is True
    assert fake.reactions[(GROUP, message.message_id)] == [{"type": "emoji", "emoji": "👍"}]

    commands = [BotCommand(command="queue", description="Open tickets")]
    assert await bot.set_my_commands(commands) is True
    assert [(c.command, c.description) for c in await bot.get_my_commands()] == [("queue", "Open tickets")]
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == []

    assert await bot.leave_chat(GROUP) is True
    with pytest.raises(TelegramForbiddenError, match="bot is not a member of the supergroup chat"):
        await bot.send_message(GROUP, "gone")
    assert [m for m, _ in fake.calls if m == "sendChatAction"] and all(
        s["method"] != "sendChatAction" for s in fake.sent
    )


# ------------------------------------------------------------------------------- faults and limits


async def test_fail_next_429_becomes_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(GROUP, "hello")
    assert caught.value.retry_after == 7
    assert fake.too_many_requests == 1
    assert (await bot.send_message(GROUP, "hello")).text == "hello"  # only the next call failed


async def test_fail_next_raw_answer_has_retry_after_header(fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3, times=2)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(
                f"{fake.url}/bot{fake.token}/sendMessage", data={"chat_id": GROUP, "text": "x"}
            ) as r:
                assert r.status == 429 and r.headers["Retry-After"] == "3"
                assert await r.json() == {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 3",
                    "parameters": {"retry_after": 3},
                }
        async with http.post(
            f"{fake.url}/bot{fake.token}/sendMessage", data={"chat_id": GROUP, "text": "x"}
        ) as r:
            assert r.status == 200


async def test_group_rate_limit_per_minute(fake: FakeTelegram, bot: Bot) -> None:
    fake.set_rate_limit(per_chat_per_minute=20, per_chat_per_second=None, global_per_second=None)
    for number in range(20):
        await bot.send_message(GROUP, f"message {number}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(GROUP, "message 21")
    assert 1 <= caught.value.retry_after <= 60
    assert fake.too_many_requests == 1
    assert len(fake.sent) == 20
    # The per-minute limit is a group limit; private chats are not affected by it.
    for number in range(21):
        await bot.send_message(ALICE, f"dm {number}")


async def test_per_chat_per_second_limit_recovers(fake: FakeTelegram, bot: Bot) -> None:
    # A 0.05 s window: the fake asks for a 1 s wait (whole seconds, rounded up), after which the
    # window has certainly passed.
    fake.set_rate_limit(
        per_chat_per_minute=None, per_chat_per_second=1, global_per_second=None, time_scale=100
    )
    await bot.send_message(GROUP, "first")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(GROUP, "second")
    assert caught.value.retry_after > 1  # a 100 s window still has most of its time left
    await bot.send_message(ALICE, "other chats have their own window")

    fake.set_rate_limit(
        per_chat_per_minute=None, per_chat_per_second=1, global_per_second=None, time_scale=0.05
    )
    await bot.send_message(GROUP, "first")
    try:
        await bot.send_message(GROUP, "second")
    except TelegramRetryAfter as error:
        assert error.retry_after == 1
        await asyncio.sleep(error.retry_after)
        await bot.send_message(GROUP, "second")
    assert fake.sent[-1]["text"] == "second"


async def test_server_down_modes(fake: FakeTelegram, bot: Bot) -> None:
    fake.set_down("500")
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.get_me()
    fake.set_down("refuse")
    with pytest.raises(TelegramNetworkError):
        await bot.get_me()
    fake.set_down("timeout")
    with pytest.raises(TelegramNetworkError, match="Request timeout error"):
        await bot.get_me(request_timeout=1)
    fake.set_down(None)
    assert (await bot.get_me()).id == fake.bot_id
    assert [m for m, _ in fake.calls].count("getMe") == 4


async def test_raw_encodings_and_unknown_method(fake: FakeTelegram) -> None:
    base = f"{fake.url}/bot{fake.token}"
    markup = {"inline_keyboard": [[{"text": "Take", "callback_data": "take:1"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/sendMessage", json={"chat_id": GROUP, "text": "json", "reply_markup": markup}
        ) as r:
            body = await r.json()
            assert body["ok"] is True and body["result"]["reply_markup"] == markup
        async with http.post(f"{base}/sendmessage", data={"chat_id": str(GROUP), "text": "form"}) as r:
            assert (await r.json())["result"]["text"] == "form"  # method names are case-insensitive
        async with http.post(f"{base}/frobnicate", data={"x": "1"}) as r:
            assert r.status == 404
            assert await r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.post(f"{fake.url}/bot1:WRONG/getMe") as r:
            assert r.status == 401
    assert fake.calls[0] == ("sendMessage", {"chat_id": GROUP, "text": "json", "reply_markup": markup})


async def test_unknown_method_through_aiogram_raises_not_found(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("getMe", 404, "Not Found")
    with pytest.raises(TelegramNotFound):
        await bot.get_me()


# ---------------------------------------------------------------------------------------- updates


async def test_get_updates_delivers_message_and_callback_and_confirms(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(GROUP, "New ticket", reply_markup=keyboard("take:1"))
    fake.send_user_message(GROUP, ALICE, "/queue")
    query_id = fake.press_button(GROUP, sent.message_id, BOB, "take:1")

    updates = await bot.get_updates(timeout=0)
    assert len(updates) == 2
    message, callback = updates[0].message, updates[1].callback_query
    assert message is not None and message.text == "/queue"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.from_user is not None and message.from_user.username == "alice"
    assert callback is not None and callback.id == query_id and callback.data == "take:1"
    assert callback.message is not None and callback.message.message_id == sent.message_id
    assert updates[1].update_id == updates[0].update_id + 1

    assert len(await bot.get_updates(timeout=0)) == 2  # not confirmed yet
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == []
    assert fake.pending_updates == []

    with pytest.raises(AssertionError, match="no button with callback_data"):
        fake.press_button(GROUP, sent.message_id, BOB, "stale")


async def test_long_poll_wakes_up_on_injected_update(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda: any(m == "getUpdates" for m, _ in fake.calls))
    fake.send_user_message(GROUP, BOB, "anyone?")
    updates = await poll
    assert [u.message.text for u in updates if u.message] == ["anyone?"]


async def test_concurrent_get_updates_conflict(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda: any(m == "getUpdates" for m, _ in fake.calls))
    other = make_bot(fake)
    try:
        assert await other.get_updates(timeout=0) == []
    finally:
        await other.session.close()
    with pytest.raises(TelegramConflictError) as caught:
        await first
    assert caught.value.message == "Conflict: terminated by other getUpdates request"


async def test_webhook_blocks_polling(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_webhook("https://example.com/hook") is True
    assert (await bot.get_webhook_info()).url == "https://example.com/hook"
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    fake.send_user_message(GROUP, ALICE, "dropped")
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert await bot.get_updates(timeout=0) == []


async def test_allowed_updates_and_my_chat_member(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_bot_to_group(-100777, by_user_id=STRANGER)
    fake.send_user_message(GROUP, ALICE, "hi")
    updates = await bot.get_updates(timeout=0, allowed_updates=["my_chat_member"])
    assert len(updates) == 1
    change = updates[0].my_chat_member
    assert change is not None and change.chat.id == -100777 and change.from_user.id == STRANGER
    assert change.old_chat_member.status == "left" and change.new_chat_member.status == "member"


# ------------------------------------------------------------------------------------------ files


async def test_send_document_multipart_is_recorded_with_bytes(fake: FakeTelegram, bot: Bot) -> None:
    payload = bytes(range(256)) * 100
    message = await bot.send_document(
        GROUP, BufferedInputFile(payload, "report.pdf"), caption="<i>Report</i>", parse_mode="HTML"
    )
    assert message.document is not None
    assert message.document.file_name == "report.pdf" and message.document.file_size == len(payload)
    assert message.document.mime_type == "application/pdf"
    assert message.caption == "Report"
    record = fake.sent[-1]
    assert record["method"] == "sendDocument" and record["document"] == ("report.pdf", payload)
    assert record["caption"] == "<i>Report</i>"

    # The returned file_id can be sent again and downloaded.
    again = await bot.send_document(ALICE, message.document.file_id)
    assert again.document is not None and again.document.file_unique_id == message.document.file_unique_id
    downloaded = await bot.download(message.document.file_id)
    assert downloaded is not None and downloaded.read() == payload


async def test_send_photo_and_media_group(fake: FakeTelegram, bot: Bot) -> None:
    photo = await bot.send_photo(GROUP, BufferedInputFile(b"\xff\xd8jpeg", "shot.jpg"), caption="screen")
    assert photo.photo and photo.photo[-1].file_size == 6
    assert fake.sent[-1]["photo"] == ("shot.jpg", b"\xff\xd8jpeg")

    album = await bot.send_media_group(
        GROUP,
        [
            InputMediaDocument(media=BufferedInputFile(b"one", "1.txt"), caption="first"),
            InputMediaDocument(media=BufferedInputFile(b"two", "2.txt")),
        ],
    )
    assert [m.document.file_name for m in album if m.document] == ["1.txt", "2.txt"]
    assert album[0].media_group_id == album[1].media_group_id is not None
    records = fake.sent[-2:]
    assert [r["document"] for r in records] == [("1.txt", b"one"), ("2.txt", b"two")]
    assert records[0]["caption"] == "first"


async def test_download_user_document_and_photo(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_user_document(GROUP, ALICE, "invoice.pdf", b"%PDF-1.7 fake", caption="see attached")
    fake.send_user_photo(GROUP, BOB, b"\x89PNG fake", caption="screenshot")
    updates = await bot.get_updates(timeout=0)
    document = updates[0].message.document if updates[0].message else None
    assert document is not None and document.file_name == "invoice.pdf"
    assert updates[0].message is not None and updates[0].message.caption == "see attached"

    file = await bot.get_file(document.file_id)
    assert file.file_path and file.file_size == len(b"%PDF-1.7 fake")
    buffer = io.BytesIO()
    await bot.download(document, destination=buffer)
    assert buffer.getvalue() == b"%PDF-1.7 fake"

    photo_message = updates[1].message
    assert photo_message is not None and photo_message.photo
    downloaded = await bot.download(photo_message.photo[-1])
    assert downloaded is not None and downloaded.read() == b"\x89PNG fake"

    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


async def test_document_over_50_mb_is_refused(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_document(GROUP, BufferedInputFile(b"\0" * (50 * 1024 * 1024 + 1), "big.bin"))
    assert fake.sent == []


# ------------------------------------------------------------------------------ a real Dispatcher


def build_router(fake: FakeTelegram) -> Router:
    router = Router()

    @router.message(Command("queue"))
    async def queue(message: Message) -> None:
        await message.answer(
            "<b>1 open ticket</b>",
            parse_mode="HTML",
            reply_markup=keyboard("take:42"),
        )

    @router.callback_query(F.data.startswith("take:"))
    async def take(query: CallbackQuery) -> None:
        await query.answer("Ticket 42 is yours", show_alert=True)
        assert query.message is not None
        await query.message.edit_text(f"Ticket 42 taken by {query.from_user.first_name}")

    return router


async def test_dispatcher_polls_the_fake(fake: FakeTelegram, bot: Bot) -> None:
    dispatcher = Dispatcher()
    dispatcher.include_router(build_router(fake))
    polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        fake.send_user_message(GROUP, ALICE, "/queue")
        reply = await fake.wait_for(
            lambda: next(
                (s for s in fake.sent if s["method"] == "sendMessage" and s["chat_id"] == GROUP), None
            )
        )
        assert reply["plain_text"] == "1 open ticket"

        query_id = fake.press_button(GROUP, reply["message_id"], BOB, "take:42")
        answer = await fake.wait_for(lambda: fake.callback_answers().get(query_id))
        assert answer == {"text": "Ticket 42 is yours", "show_alert": True, "url": None, "cache_time": None}
        await fake.wait_for(
            lambda: fake.message(GROUP, reply["message_id"])["text"] == "Ticket 42 taken by User1002"
        )
    finally:
        await dispatcher.stop_polling()
        await polling


async def test_wait_for_reports_what_it_waited_for(fake: FakeTelegram) -> None:
    with pytest.raises(AssertionError, match="wait_for timed out") as caught:
        await fake.wait_for(lambda: fake.sent[-1], timeout=0.1)
    assert "IndexError" in str(caught.value)
