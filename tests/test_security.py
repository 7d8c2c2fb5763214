"""Hostile and careless input: secrets never reach the log, monstrous MIME stays within memory and
time bounds, a spoofed client cannot get a password change accepted without an explicit warning,
strangers' chats and non-members' presses change nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.callbacks import Op, TicketAction
from models.tables import Decision, Ticket, TicketStatus
from tests.helpers.desk import STAFF_CHAT, Desk, make_email
from tests.helpers.process import REPO, STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, staff_telegram
from tests.policy.factories import make_client
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture
from tests.test_crash import ACCEPT, buttons, cards_in_chat, crash_env, prepare, request_mail, until

TOKEN = "424242:TGsecretPART-AAE-k3y-0f-the-b0t"
SMTP_USER = "support@storeolis.ru"
SMTP_PASSWORD = "smtp-S3cret-Passw0rd-value"
WRONG_IMAP = "imap-Wr0ng-S3cret-value"
WRONG_SMTP = "smtp-Wr0ng-S3cret-value"
WRONG_TOKEN = "424242:TGwrongSECRET-zzz-9876"


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with staff_telegram(token=TOKEN) as fake:
        yield fake


# ------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_secrets_never_appear_in_the_log_in_normal_work_or_in_failures(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
    log_format: str,
) -> None:
    smtp_server.require_auth(SMTP_USER, SMTP_PASSWORD)
    env = crash_env(
        database_url, mailbox, smtp_server, telegram,
        LOG_LEVEL="DEBUG", SMTP_USER=SMTP_USER, SMTP_PASSWORD=SMTP_PASSWORD,
        IMAP_TIMEOUT_SECONDS="5", LOG_FORMAT=log_format,
    )
    await prepare(tmp_path, env, clients=2)
    log_path = tmp_path / "bridge.log"

    # 1. Normal work, at DEBUG: mail in, card, Accept, the email out (logged in to SMTP).
    normal = BridgeProcess(env, tmp_path, log_path)
    normal.start()
    try:
        import random

        raw, _ = request_mail(1, "office1@firm1.ru", random.Random(1))
        await asyncio.to_thread(mailbox.append, raw)
        await until(lambda: 1 in cards_in_chat(telegram), 60, "the card", normal, telegram)
        card = cards_in_chat(telegram)[1]
        telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID,
                              next(d for d in buttons(card) if ACCEPT.match(d)))
        await smtp_server.wait_for_count(1, timeout=60)
        await until(lambda: not any(ACCEPT.match(d) for d in buttons(cards_in_chat(telegram)[1])), 30,
                    "the card edited", normal, telegram)
    finally:
        assert await normal.stop() == 0

    # 2. Wrong IMAP and SMTP passwords: a staff reply must fail to go out, intake must fail to log in.
    failing = BridgeProcess(dict(env, IMAP_PASSWORD=WRONG_IMAP, SMTP_PASSWORD=WRONG_SMTP), tmp_path, log_path)
    failing.start()
    try:
        telegram.send_user_message(STAFF_CHAT_ID, STAFF_USER_ID, "Исправили.", reply_to_message_id=card["message_id"])
        await until(lambda: "cannot connect to SMTP" in failing.output(), 60, "an SMTP login failure", failing)
        await until(lambda: "mail intake:" in failing.output(), 60, "an IMAP login failure", failing)
    finally:
        assert await failing.stop() == 0
    assert len(smtp_server.messages) == 1  # the reply could not go out with a wrong password

    # 3. A revoked token: Telegram answers 401 to everything.
    revoked = BridgeProcess(dict(env, TELEGRAM_BOT_TOKEN=WRONG_TOKEN), tmp_path, log_path)
    revoked.start()
    try:
        await until(lambda: "Unauthorized" in revoked.output(), 60, "Telegram's 401 logged", revoked)
        await asyncio.sleep(2)
    finally:
        await revoked.stop()

    log = log_path.read_text(errors="replace")
    secrets = [TOKEN, TOKEN.split(":", 1)[1], SMTP_PASSWORD, mailbox.password, WRONG_IMAP, WRONG_SMTP,
               WRONG_TOKEN, WRONG_TOKEN.split(":", 1)[1]]
    for secret in secrets:
        assert secret not in log, f"a secret ({secret[:4]}…) is in the log"
    assert "***" in log or "Unauthorized" in log
    if log_format == "json":
        entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one object
        assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
        # Lines about the ticket carry its number, lines about the mail its UID, as fields.
        assert any(e.get("ticket") == 1 and "registered" in e["message"] for e in entries)
        assert any(e.get("ticket") == 1 and "accepted" in e["message"] for e in entries)
        assert any(e.get("ticket") == 1 and " sent " in e["message"] for e in entries)
        assert any(isinstance(e.get("uid"), int) for e in entries)


# ------------------------------------------------------------------------------ hostile MIME

PARSE_SCRIPT = textwrap.dedent(
    """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GB: a leak or a blow-up fails here
    from email.message import EmailMessage
    from mail.parse import parse_message

    case = sys.argv[1]
    head = b"From: Ivan <ivan@romashka.ru>\\r\\nTo: support@storeolis.ru\\r\\nMessage-ID: <x@romashka.ru>\\r\\n"
    if case == "deep":
        depth = 2000
        parts = [head + b"Subject: deep\\r\\nMIME-Version: 1.0\\r\\n"]
        for i in range(depth):
            parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\\r\\n\\r\\n--b%d\\r\\n' % (i, i))
        parts.append(b"Content-Type: text/plain\\r\\n\\r\\nhello\\r\\n")
        for i in reversed(range(depth)):
            parts.append(b"--b%d--\\r\\n" % i)
        raw = b"".join(parts)
    elif case == "long_headers":
        raw = (head + b"Subject: " + b"A" * 5_000_000 + b"\\r\\n"
               + b"".join(b"X-Junk-%d: %s\\r\\n" % (i, b"y" * 100) for i in range(50_000))
               + b"\\r\\nbody\\r\\n")
    elif case == "many_attachments":
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ivan@romashka.ru", "support@storeolis.ru", "files"
        msg.set_content("see attached")
        for i in range(3000):
            msg.add_attachment(b"x" * 200, maintype="application", subtype="octet-stream", filename=f"f{i}.bin")
        raw = bytes(msg)
    elif case == "huge_body":
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ivan@romashka.ru", "support@storeolis.ru", "big"
        msg.set_content("a line of text " * 2_000_000)
        msg.add_attachment(b"\\0" * 40_000_000, maintype="application", subtype="zip", filename="big.zip")
        raw = bytes(msg)
    else:
        raise SystemExit("unknown case")
    started = time.monotonic()
    try:
        parsed = parse_message(raw)
        outcome = f"parsed kind={parsed.kind} attachments={len(parsed.attachments)} text={len(parsed.text)}"
    except Exception as exc:  # MalformedMessage is an acceptable, bounded answer
        outcome = f"refused {type(exc).__name__}"
    print(f"{case}: {len(raw)} bytes -> {outcome} in {time.monotonic() - started:.1f} s")
    """
)


@pytest.mark.parametrize("case", ["deep", "long_headers", "many_attachments", "huge_body"])
async def test_monstrous_mime_is_parsed_within_memory_and_time_bounds(case: str) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", PARSE_SCRIPT, case],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"{case}: "), result.stdout
    assert "refused MemoryError" not in result.stdout and "RecursionError" not in result.stdout
    if case in ("many_attachments", "huge_body", "long_headers"):
        assert "parsed" in result.stdout, result.stdout  # large but legitimate mail must still become a ticket


# ---------------------------------------------------------------------------- spoofed sender

SPOOFED_AUTH = (
    b"Authentication-Results: mx.storeolis.ru; spf=fail smtp.mailfrom=romashka.ru;"
    b" dkim=none; dmarc=fail (p=reject) header.from=romashka.ru\r\n"
)


async def test_a_spoofed_client_asking_for_a_password_change_needs_an_explicit_confirmation(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        raw = SPOOFED_AUTH + make_email(
            subject="Смена пароля",
            body="Здравствуйте! Прошу сменить пароль от личного кабинета и прислать новый пароль на этот адрес.",
        )
        ticket = await desk.deliver(raw)
        assert ticket is not None
        card = await desk.card(ticket.id)
        assert "Отправитель не подтверждён" in card["text"]

        query = desk.press(card["message_id"], desk.ALICE, TicketAction(op=Op.ACCEPT, ticket_id=ticket.id))
        answer = await desk.answer(query)
        assert answer.get("show_alert") and "Отправитель не подтверждён" in answer["text"]

        async def confirm_keyboard() -> list[dict[str, str]] | None:
            found = [b for b in desk.buttons(card["message_id"]) if b["callback_data"].startswith("tk:ac:")]
            return found or None

        confirm = await desk.fake.wait_for(confirm_keyboard, 10)
        assert "Отправитель не подтверждён" in confirm[0]["text"] or "Отправитель" in answer["text"]
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.NEW
        assert not await desk.emails(ticket.id)  # no decision email (the acknowledgement aside)

        # Only the explicit confirmation accepts, and the audit records what was overridden.
        query = desk.press(card["message_id"], desk.ALICE, confirm[0]["callback_data"])
        await desk.answer(query)
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED
        decision = await Decision.get(ticket_id=ticket.id, action="accepted")
        assert "unverified_sender" in decision.details["despite"]
        assert "password_change" in decision.details["despite"]


# ---------------------------------------------------------------------------- access control

STRANGERS = -1009999999999


async def test_messages_in_a_stranger_group_do_nothing(db: str) -> None:
    async with Desk.open() as desk:
        desk.fake.add_group(STRANGERS, "Strangers", members=[desk.ALICE, desk.MALLORY])
        ticket = await desk.deliver(make_email())
        assert ticket is not None
        await desk.card(ticket.id)
        desk.fake.send_user_message(STRANGERS, desk.MALLORY, "/queue")
        desk.fake.send_user_message(STRANGERS, desk.ALICE, f"/ticket {ticket.id}")
        desk.fake.send_user_message(STRANGERS, desk.MALLORY, "Верните деньги!")
        # The same command in the staff chat is answered: updates are being handled, in order.
        sent = desk.say(desk.ALICE, "/queue")
        await desk.bot_reply_after(sent["message_id"])
        await desk.settled()
        from_bot = [m for m in desk.fake.messages(STRANGERS) if m["from"]["id"] == desk.fake.bot_id]
        assert from_bot == []
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.NEW
        assert await Decision.filter(ticket_id=ticket.id).count() == 0


async def test_a_press_from_a_non_member_changes_nothing(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email())
        assert ticket is not None
        card = await desk.card(ticket.id)
        query = desk.press(card["message_id"], desk.MALLORY, TicketAction(op=Op.ACCEPT, ticket_id=ticket.id))
        answer = await desk.answer(query)
        assert answer.get("show_alert")
        await desk.settled()
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.NEW
        assert not await desk.emails(ticket.id)  # no decision email (the acknowledgement aside)
        assert await Decision.filter(ticket_id=ticket.id).count() == 0
        assert [b["callback_data"] for b in desk.buttons(card["message_id"])][0] == f"tk:a:{ticket.id}"
        assert desk.fake.message(STAFF_CHAT, card["message_id"])["text"] == card["text"]
