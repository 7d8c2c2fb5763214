"""aiogram's type schemas are built on first use (bot/runtime/compat_pydantic.py), and then work as eagerly built ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import aiogram
from aiogram.methods import EditMessageText, SendMessage
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.runtime import compat_pydantic as lazy_types

UPDATES = [
    {"update_id": 1, "message": {
        "message_id": 9, "date": 1764000000, "chat": {"id": -100, "type": "supergroup", "title": "staff"},
        "from": {"id": 7, "is_bot": False, "first_name": "Алиса"}, "text": "ответ клиенту",
        "reply_to_message": {"message_id": 4, "date": 1764000000, "chat": {"id": -100, "type": "supergroup"},
                             "text": "#12 карточка"},
        "document": {"file_id": "f", "file_unique_id": "u", "file_name": "a.pdf", "file_size": 10}}},
    {"update_id": 2, "callback_query": {
        "id": "q", "from": {"id": 7, "is_bot": False, "first_name": "Алиса"}, "chat_instance": "c",
        "data": "t:12:accept", "message": {"message_id": 4, "date": 1764000000,
                                           "chat": {"id": -100, "type": "supergroup"}}}},
    {"update_id": 3, "my_chat_member": {
        "chat": {"id": -100, "type": "supergroup"}, "from": {"id": 7, "is_bot": False, "first_name": "A"},
        "date": 1764000000, "old_chat_member": {"status": "left", "user": {"id": 5, "is_bot": True, "first_name": "B"}},
        "new_chat_member": {"status": "member", "user": {"id": 5, "is_bot": True, "first_name": "B"}}}},
]  # fmt: skip


def test_the_test_process_runs_aiogram_lazily_like_the_bridge() -> None:
    # tests/__init__.py imports `bot` before any test module imports aiogram.
    assert lazy_types.install() is True
    assert lazy_types.deferred_count() > 300, aiogram.__version__


def test_deferred_types_validate_updates_and_serialize_methods() -> None:
    updates = [Update.model_validate(u) for u in UPDATES]
    assert updates[0].message is not None and updates[0].message.reply_to_message is not None
    assert updates[0].message.reply_to_message.text == "#12 карточка"
    assert updates[0].message.document is not None and updates[0].message.document.file_name == "a.pdf"
    assert updates[1].callback_query is not None and updates[1].callback_query.data == "t:12:accept"
    assert updates[2].my_chat_member is not None and updates[2].my_chat_member.new_chat_member.status == "member"

    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Принять", callback_data="t:1:a")]])
    sent = SendMessage(chat_id=-100, text="<b>#1</b>", parse_mode="HTML", reply_markup=markup)
    dumped = sent.model_dump(exclude_none=True)
    assert dumped["reply_markup"] == {"inline_keyboard": [[{"text": "Принять", "callback_data": "t:1:a"}]]}
    assert EditMessageText(chat_id=-100, message_id=4, text="x").model_dump()["message_id"] == 4


def test_importing_bot_first_saves_the_eager_schemas_memory() -> None:
    """The reason for the module: RSS after importing aiogram, with and without `import bot` first."""
    probe = textwrap.dedent("""
        import sys
        if sys.argv[1] == "lazy":
            import bot
        import aiogram.types, aiogram.methods
        from aiogram import Bot, Dispatcher
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                print(int(line.split()[1]) // 1024)
    """)
    rss = {
        mode: int(subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True,
                                 check=True).stdout)
        for mode in ("eager", "lazy")
    }  # fmt: skip
    assert rss["lazy"] < rss["eager"] - 50, rss


def test_the_senders_answers_are_read_without_building_aiograms_message() -> None:
    """bot/telegram_outbox.py reads a posted message's number through SentMessage: Telegram's whole answer
    is accepted (extra fields kept) and aiogram's big `Message` schema is not built for it."""
    probe = textwrap.dedent("""
        import bot
        from aiogram.methods.base import Response
        from aiogram.types import Message
        from bot.telegram_outbox import _METHODS, SentMessage
        answer = {"message_id": 41, "date": 1764000000, "chat": {"id": -100, "type": "supergroup"},
                  "from": {"id": 5, "is_bot": True, "first_name": "bridge"}, "text": "#1",
                  "reply_markup": {"inline_keyboard": [[{"text": "OK", "callback_data": "t:1:a"}]]}}
        send = _METHODS["sendMessage"](chat_id=-100, text="#1")
        sent = Response[send.__returning__].model_validate({"ok": True, "result": answer}).result
        assert isinstance(sent, SentMessage) and sent.message_id == 41, sent
        edit = _METHODS["editMessageText"](chat_id=-100, message_id=41, text="#1")
        assert Response[edit.__returning__].model_validate({"ok": True, "result": True}).result is True
        edited = Response[edit.__returning__].model_validate({"ok": True, "result": answer}).result
        assert isinstance(edited, SentMessage) and edited.message_id == 41
        print(Message.__pydantic_complete__)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
