"""Recovery at the pace of the outage, and no head-of-line blocking, through the real process.

* SMTP down while emails are queued: the sender's retries are counted per OUTAGE (one gate for the
  server), capped at OUTBOX_MAX_BACKOFF_SECONDS, and the first probe that succeeds after the server
  returns sends every queued email, each exactly once.
* One post Telegram keeps refusing (a 500 for that message only): it backs off alone while the cards
  of later requests are posted; when Telegram takes it at last it is posted once.

Times are scaled down (a cap of 2 s, an outage of ~6 s) so the tests are short; the same code runs
with the default minute in production (docs/reliability.md, "Recovery at the pace of the outage", has the 60 s measurement).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from tests.helpers.process import BridgeProcess
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_crash import (
    Staff,
    all_decided,
    cards_in_chat,
    crash_env,
    emailed_tickets,
    prepare,
    request_mail,
    until,
)

CAP = 2.0  # OUTBOX_MAX_BACKOFF_SECONDS for these tests
OUTAGE = 6.0  # seconds the SMTP server is away
EMAILS = 10  # queued during the outage: ten wake-ups, ten rows


@pytest.fixture
async def bridge(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> AsyncIterator[BridgeProcess]:
    env = crash_env(database_url, mailbox, smtp_server, telegram, OUTBOX_MAX_BACKOFF_SECONDS=str(CAP))
    await prepare(tmp_path, env, clients=4)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        yield process
    finally:
        code = await process.stop()
        assert code == 0, process.output()[-3000:]


async def append(mailbox: DovecotServer, raw: bytes) -> None:
    await asyncio.to_thread(mailbox.append, raw, internal_date=datetime.now(UTC))


def mail_with_subject(n: int, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Клиент {n} <office1@firm1.ru>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=f"hol{n}", domain="firm1.ru")
    msg.set_content(f"Здравствуйте! Обращение {n}: не открывается отчёт за месяц. Спасибо!")
    return bytes(msg)


async def test_smtp_outage_is_counted_once_and_the_queue_goes_as_soon_as_the_server_is_back(
    bridge: BridgeProcess, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    for n in range(1, EMAILS + 1):
        await append(mailbox, request_mail(n, "office1@firm1.ru", random.Random(n))[0])
    await until(lambda: len(cards_in_chat(telegram)) == EMAILS, 90, "all cards", bridge, telegram)

    # The server dies: its port still accepts, and closes every connection unanswered (counted).
    smtp_server.set_mode("reset")
    down_at = time.monotonic()
    staff = Staff(telegram, reply_every=10**6)  # accept every card: one email queued per press
    while not all_decided(telegram, EMAILS):
        staff.step()
        await asyncio.sleep(0.3)
        assert time.monotonic() - down_at < OUTAGE, "the accepts took the whole outage"
    await asyncio.sleep(OUTAGE - (time.monotonic() - down_at))
    tries = smtp_server.refused_so_far
    assert not smtp_server.messages
    smtp_server.set_mode(None)

    # Ten queued emails do not make ten tries: one gate for the server, at least CAP/2 between tries
    # (equal jitter), plus the first try. (Before: one try per wake-up, each climbing the exponent.)
    assert 1 <= tries <= OUTAGE / (CAP / 2) + 2, f"{tries} connection attempts in a {OUTAGE:.0f} s outage"
    # The next probe comes within CAP and sends the whole queue at once. (Before: the exponent had
    # climbed with every queued email; the next try was minutes away.) The bound is generous: CAP,
    # plus room for a loaded two-core machine.
    await smtp_server.wait_for_count(EMAILS, timeout=CAP + 10)
    await asyncio.sleep(3)  # a second delivery of anything would have happened by now
    assert len(smtp_server.messages) == EMAILS
    assert emailed_tickets(smtp_server) == set(range(1, EMAILS + 1))
    log = bridge.output()
    assert "reachable again" in log
    assert bridge.alive()


async def test_a_post_telegram_keeps_refusing_backs_off_alone_while_later_cards_go(
    bridge: BridgeProcess, mailbox: DovecotServer, telegram: FakeTelegram
) -> None:
    poison = "Отравленная тема 7Q"
    telegram.fail_matching("sendMessage", poison, 500, "Internal Server Error")
    await until(lambda: "Run polling" in bridge.output(), 60, "polling started", bridge)
    await append(mailbox, mail_with_subject(1, f"{poison}: отчёт"))
    refused = lambda: [  # noqa: E731 - read at each check
        p for method, p in telegram.calls if method == "sendMessage" and poison in str(p.get("text") or "")
    ]
    await until(lambda: len(refused()) >= 1, 60, "the first refused post", bridge, telegram)

    for n in (2, 3, 4):
        await append(mailbox, request_mail(n, "office1@firm1.ru", random.Random(n))[0])
    # Before: the refused card held its whole chat, every later card waited behind it for good.
    await until(lambda: len(cards_in_chat(telegram)) == 3, 60, "the cards posted after the refused one",
                bridge, telegram)
    await until(lambda: len(refused()) >= 3, 30, "the refused post retried on its own", bridge, telegram)
    assert sorted(cards_in_chat(telegram)) == [2, 3, 4]
    assert "this row alone retries in" in bridge.output()

    telegram.clear_matching()
    await until(lambda: len(cards_in_chat(telegram)) == 4, 30, "the refused card once Telegram takes it",
                bridge, telegram)
    await asyncio.sleep(2)
    posted = [s for s in telegram.sent if s["method"] == "sendMessage" and poison in (s.get("text") or "")]
    assert len(posted) == 1
    assert bridge.alive()
