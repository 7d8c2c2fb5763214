"""`/search` end to end through the real bridge (`python -m bot run` with a parse worker, Dovecot, the fake
Bot API): a mail arrives, a search with other word forms finds it, and the button opens the ticket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_decisions_process import card_of
from tests.test_process import request_mail


def bot_answer(telegram: FakeTelegram, after: int, needle: str) -> dict | None:
    for message in telegram.messages(STAFF_CHAT_ID):
        if message["message_id"] > after and message["from"]["id"] == telegram.bot_id \
                and needle in (message.get("text") or ""):
            return message
    return None


async def test_a_mail_from_the_mailbox_is_found_by_other_word_forms_and_its_button_opens_the_ticket(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    # One parse worker: the search terms are made there, beside the policy's analysis.
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     PARSE_WORKERS="1")
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        subject = "Уведомления магазина"
        body = "Здравствуйте! Не приходят письма покупателям о заказах со склада Полярный-7 <b>срочно</b>."
        await asyncio.to_thread(mailbox.append, request_mail(subject, body), internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, subject), timeout=90)
        ticket = card["text"].split("#", 1)[1].split()[0]

        asked = telegram.send_user_message(STAFF_CHAT_ID, STAFF_USER_ID, "/search письмо покупателю Полярный-7")
        found = await telegram.wait_for(lambda: bot_answer(telegram, asked["message_id"], "Поиск"), timeout=30)
        assert f"#{ticket}" in found["text"] and "<b>срочно</b>" in found["text"]  # the client's tags as text
        units = found["text"].encode("utf-16-le")  # entity offsets count UTF-16 code units
        bold = {units[2 * e["offset"]:2 * (e["offset"] + e["length"])].decode("utf-16-le")
                for e in found.get("entities", []) if e["type"] == "bold"}
        assert {"письма", "покупателям", "Полярный-7"} <= bold
        button = found["reply_markup"]["inline_keyboard"][0][0]
        assert button["text"] == f"Открыть #{ticket}"
        query = telegram.press_button(STAFF_CHAT_ID, found["message_id"], STAFF_USER_ID, button["callback_data"])
        await telegram.wait_for(lambda: telegram.callback_answers().get(query), timeout=30)
        shown = await telegram.wait_for(lambda: bot_answer(telegram, found["message_id"], "История"), timeout=30)
        assert f"Обращение #{ticket}" in shown["text"]

        asked = telegram.send_user_message(STAFF_CHAT_ID, STAFF_USER_ID, "/найти пароль")
        await telegram.wait_for(lambda: bot_answer(telegram, asked["message_id"], "Ничего не найдено"), timeout=30)
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()
