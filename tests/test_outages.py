"""Outages of each neighbour while the real process runs: it stays up, says what is wrong in its log,
says it ONCE in the staff chat when it lasts (OUTAGE_NOTICE_SECONDS), and catches up afterwards with
nothing lost and nothing doubled."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_crash import ACCEPT, buttons, cards_in_chat, crash_env, prepare, request_mail, until

IMAP_OUTAGE = "🚨 Сбой: получение почты (IMAP)"
IMAP_RECOVERED = "✅ получение почты (IMAP) снова работает"
SMTP_OUTAGE = "🚨 Сбой: отправка писем клиентам (SMTP)"
SMTP_RECOVERED = "✅ отправка писем клиентам (SMTP) снова работает"


def outage_env(database_url: str, mailbox: DovecotServer, smtp: SmtpCapture, telegram: FakeTelegram,
               **extra: str) -> dict[str, str]:
    return crash_env(
        database_url, mailbox, smtp, telegram,
        OUTAGE_NOTICE_SECONDS="2",
        IMAP_TIMEOUT_SECONDS="5",
        IMAP_IDLE_SECONDS="5",
        **extra,
    )


@pytest.fixture
async def bridge(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> AsyncIterator[BridgeProcess]:
    env = outage_env(database_url, mailbox, smtp_server, telegram)
    await prepare(tmp_path, env, clients=4)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        yield process
    finally:
        code = await process.stop()
        assert code == 0, process.output()[-3000:]


def notices(telegram: FakeTelegram, prefix: str) -> list[str]:
    return [m["text"] for m in telegram.messages(STAFF_CHAT_ID) if (m.get("text") or "").startswith(prefix)]


def card_count(telegram: FakeTelegram) -> int:
    return len(cards_in_chat(telegram))


async def append(mailbox: DovecotServer, n: int) -> None:
    import random

    raw, _ = request_mail(n, "office1@firm1.ru", random.Random(n))
    await asyncio.to_thread(mailbox.append, raw, internal_date=datetime.now(UTC))


async def test_imap_down_and_up_is_reported_once_and_mail_after_it_becomes_a_card(
    bridge: BridgeProcess, mailbox: DovecotServer, telegram: FakeTelegram
) -> None:
    await append(mailbox, 1)
    await until(lambda: card_count(telegram) == 1, 60, "the first card", bridge, telegram)

    # The rig's stop() deletes the server's files; stopping the process alone keeps users and mail.
    mailbox._stop_process()
    try:
        await until(lambda: notices(telegram, IMAP_OUTAGE), 60, "the IMAP outage notice", bridge, telegram)
        await asyncio.sleep(4)  # an outage that goes on is not announced again
        assert bridge.alive(), bridge.output()[-3000:]
    finally:
        mailbox._spawn()
    await append(mailbox, 2)
    await until(lambda: card_count(telegram) == 2, 90, "the card of mail sent after the restart", bridge, telegram)
    await until(lambda: notices(telegram, IMAP_RECOVERED), 30, "the IMAP recovered notice", bridge, telegram)
    await asyncio.sleep(2)

    assert len(notices(telegram, IMAP_OUTAGE)) == 1
    assert len(notices(telegram, IMAP_RECOVERED)) == 1
    log = bridge.output()
    assert "outage: imap is failing" in log and "recovered: imap works again" in log
    assert bridge.alive()


async def test_smtp_refusing_then_down_then_up_delivers_the_email_exactly_once(
    bridge: BridgeProcess, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    await append(mailbox, 1)
    await until(lambda: card_count(telegram) == 1, 60, "the card", bridge, telegram)
    smtp_server.set_mode("tempfail")
    card = cards_in_chat(telegram)[1]
    accept = next(d for d in buttons(card) if ACCEPT.match(d))
    telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, accept)

    await until(lambda: "temporary failure" in bridge.output(), 30, "a logged temporary failure", bridge)
    await until(lambda: notices(telegram, SMTP_OUTAGE), 30, "the SMTP outage notice", bridge, telegram)
    smtp_server.set_mode("down")
    await until(lambda: "cannot connect to SMTP" in bridge.output(), 60, "a logged connection failure", bridge)
    assert not smtp_server.messages
    smtp_server.set_mode(None)

    await smtp_server.wait_for_count(1, timeout=90)
    await until(lambda: notices(telegram, SMTP_RECOVERED), 30, "the SMTP recovered notice", bridge, telegram)
    await asyncio.sleep(3)  # a second delivery would have happened by now
    assert len(smtp_server.messages) == 1
    assert "[#1]" in str(smtp_server.messages[0].message["Subject"])
    assert len(notices(telegram, SMTP_OUTAGE)) == 1
    assert len(notices(telegram, SMTP_RECOVERED)) == 1
    assert bridge.alive()


async def test_telegram_5xx_and_flood_control_then_recovery_posts_every_card_once(
    bridge: BridgeProcess, mailbox: DovecotServer, telegram: FakeTelegram
) -> None:
    await until(lambda: "Run polling" in bridge.output(), 60, "polling started", bridge)
    telegram.set_down("500")
    for n in (1, 2, 3):
        await append(mailbox, n)
    await until(lambda: "retry in" in bridge.output(), 60, "a logged Telegram failure", bridge)
    await asyncio.sleep(4)
    assert card_count(telegram) == 0
    assert bridge.alive()

    telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 2", retry_after=2, times=2)
    telegram.set_down(None)
    await until(lambda: card_count(telegram) == 3, 90, "three cards after the recovery", bridge, telegram)
    await asyncio.sleep(3)
    posts = [
        s for s in telegram.sent
        if s["method"] == "sendMessage" and s.get("reply_markup") and "Обращение #" in (s.get("plain_text") or "")
    ]
    assert len(posts) == 3, [p.get("plain_text", "")[:40] for p in posts]
    log = bridge.output()
    assert "flood control" in log
    assert "outage: telegram" in log  # told in the log only: it cannot be told in Telegram
    assert not notices(telegram, "🚨")
    assert bridge.alive()


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="SQLite's database-wide lock")
async def test_a_locked_database_for_three_seconds_is_waited_out(
    bridge: BridgeProcess, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    await append(mailbox, 1)
    await until(lambda: card_count(telegram) == 1, 60, "the first card", bridge, telegram)
    path = database_url.removeprefix("sqlite://")
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            threading.Event().wait(3.0)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = asyncio.create_task(asyncio.to_thread(hold_lock))
    await asyncio.to_thread(locked.wait, 30)
    await append(mailbox, 2)
    card = cards_in_chat(telegram)[1]
    accept = next(d for d in buttons(card) if ACCEPT.match(d))
    telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, accept)
    await holder

    await until(lambda: card_count(telegram) == 2, 60, "the card of mail that arrived during the lock", bridge,
                telegram)
    await smtp_server.wait_for_count(1, timeout=60)
    await asyncio.sleep(2)
    assert len(smtp_server.messages) == 1
    assert bridge.alive()
