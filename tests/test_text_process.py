"""Issue 16, finding 2, through the real process: long single-line bodies do not freeze the bot.

Three similar 5 MB single-line mails from one sender made the main thread sit for minutes in the
duplicate rule's address substitution (quadratic in the line length): no getUpdates, `/queue`
unanswered, every later mail stuck. Here the same three mails arrive, then a normal one; the bot must
answer `/queue` sent meanwhile and post the normal mail's card. Deadlines are generous: the old code
misses them by minutes, the new one needs seconds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture

SENDER = "petrov@lyutik.ru"


def mail(subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Пётр Петров <{SENDER}>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="lyutik.ru")
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0300"
    msg.set_content(body)  # one line: quoted-printable soft breaks on the wire, one line once decoded
    return bytes(msg)


def big_line(n: int) -> str:
    """About 5 MB on one line, mostly one word: what an address pattern retried from every character
    of the word turns into hours of work. Each copy differs at its end, so no exact-copy check settles it."""
    return "Заявка " + "1" * 5_000_000 + f" копия {n}"


async def test_three_5mb_single_line_mails_leave_the_bot_answering_and_the_next_mail_gets_its_card(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(
        database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram, PARSE_WORKERS="2"
    )
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        for n in range(1, 4):
            await asyncio.to_thread(mailbox.append, mail(f"Большое письмо {n}", big_line(n)),
                                    internal_date=datetime.now(UTC))
        # The first big card proves the big mails are being worked on before the command is sent.
        await telegram.wait_for(lambda: _posted(telegram, "Большое письмо 1"), timeout=120)
        await asyncio.to_thread(mailbox.append, mail("Обычная заявка", "Не открывается личный кабинет, ошибка 500."),
                                internal_date=datetime.now(UTC))
        asked = telegram.send_user_message(STAFF_CHAT_ID, STAFF_USER_ID, "/queue")

        def queue_answer() -> dict | None:
            for message in telegram.messages(STAFF_CHAT_ID):
                text = message.get("text") or ""
                if message["message_id"] > asked["message_id"] and ("Очередь:" in text or "Очередь пуста" in text):
                    return message
            return None

        await telegram.wait_for(queue_answer, timeout=60)
        await telegram.wait_for(lambda: _posted(telegram, "Обычная заявка"), timeout=120)
        for n in (2, 3):
            await telegram.wait_for(lambda n=n: _posted(telegram, f"Большое письмо {n}"), timeout=120)
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()


def _posted(telegram: FakeTelegram, needle: str) -> bool:
    return any(needle in (m.get("text") or "") and m.get("reply_markup") for m in telegram.messages(STAFF_CHAT_ID))
