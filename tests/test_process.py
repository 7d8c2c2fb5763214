"""The bridge as operators run it: `python -m bot` in its own process, against real servers."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.helpers.process import REPO, STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture


def request_mail(subject: str, body: str, sender: str = "ivanov@romashka.ru") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Иван Иванов <{sender}>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="romashka.ru")
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0300"
    msg.set_content(body)
    return bytes(msg)


async def test_empty_environment_lists_missing_settings_and_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = await asyncio.to_thread(run_cli, [], env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for name in ("TELEGRAM_BOT_TOKEN", "STAFF_CHAT_ID", "IMAP_HOST", "IMAP_USER", "IMAP_PASSWORD", "SMTP_HOST"):
        assert f"error: {name} is required" in result.stderr


async def test_invalid_settings_are_named_without_their_secret_values(tmp_path: Path) -> None:
    env = bridge_env(
        database_url="mysql://nope",
        TELEGRAM_BOT_TOKEN="123:super-secret-token",
        IMAP_HOST="imap.example.com",
        IMAP_USER="u",
        IMAP_PASSWORD="hunter2-secret",
        IMAP_PORT="99999",
        IMAP_SECURITY="none",
        SMTP_HOST="smtp.example.com",
        TIMEZONE="Mars/Olympus",
    )
    result = await asyncio.to_thread(run_cli, ["run"], env, tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any("IMAP_PORT" in line for line in lines)
    assert any("TIMEZONE" in line for line in lines)
    assert any("DATABASE_URL" in line for line in lines)
    assert "hunter2-secret" not in result.stderr and "super-secret-token" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_plain_text_mail_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    env = bridge_env(
        database_url="sqlite://x",
        IMAP_HOST="imap.example.com",
        IMAP_USER="u",
        IMAP_PASSWORD="p",
        IMAP_SECURITY="none",
        SMTP_HOST="127.0.0.1",
    )
    result = await asyncio.to_thread(run_cli, ["run"], env, tmp_path)
    assert result.returncode == 2
    assert "IMAP_SECURITY=none is allowed only for 127.0.0.1/localhost" in result.stderr


async def test_help_lists_the_subcommands(tmp_path: Path) -> None:
    result = await asyncio.to_thread(run_cli, ["--help"], bridge_env(database_url="sqlite://x"), tmp_path)
    assert result.returncode == 0
    for command in ("run", "migrate", "check", "clients", "explain", "status"):
        assert command in result.stdout


def _sqlite_without_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
        conn.commit()
    finally:
        conn.close()


async def test_run_refuses_an_unmigrated_database(tmp_path: Path, telegram: FakeTelegram) -> None:
    # With parse workers: they are started first, and must not keep the refusing process alive.
    # The file is a SQLite database without our schema (a missing or empty file is refused before the
    # workers start: tests/test_newcomer.py::test_only_migrate_creates_the_database).
    _sqlite_without_schema(tmp_path / "fresh.sqlite3")
    env = bridge_env(
        PARSE_WORKERS="2",
        database_url=f"sqlite://{tmp_path}/fresh.sqlite3",
        telegram=telegram,
        IMAP_HOST="127.0.0.1",
        IMAP_USER="u",
        IMAP_PASSWORD="p",
        IMAP_SECURITY="none",
        SMTP_HOST="127.0.0.1",
        SMTP_SECURITY="none",
    )
    result = await asyncio.to_thread(run_cli, ["run"], env, tmp_path, 60)
    assert result.returncode == 1
    assert "python -m bot migrate" in result.stdout + result.stderr


async def test_check_reports_each_component_up_and_down(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram)
    migrated = await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr

    up = await asyncio.to_thread(run_cli, ["check"], env, tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    for name in ("database", "imap", "smtp", "telegram", "templates"):
        assert any(line.startswith(name) and " OK " in line for line in up.stdout.splitlines()), up.stdout

    smtp_server.set_mode("down")
    bad = dict(env, IMAP_PASSWORD="wrong-password-123")
    down = await asyncio.to_thread(run_cli, ["check"], bad, tmp_path)
    assert down.returncode == 1
    lines = {line.split()[0]: line for line in down.stdout.splitlines() if line.strip()}
    assert " FAIL " in lines["imap"] and " FAIL " in lines["smtp"]
    assert " OK " in lines["database"] and " OK " in lines["telegram"]
    assert "wrong-password-123" not in down.stdout + down.stderr
    smtp_server.set_mode(None)

    telegram.fail_next("getMe", 401, "Unauthorized")
    tg_down = await asyncio.to_thread(run_cli, ["check"], env, tmp_path)
    assert tg_down.returncode == 1
    assert any(line.startswith("telegram") and " FAIL " in line for line in tg_down.stdout.splitlines())


@pytest.mark.parametrize("workers", ["0", "2"])
async def test_a_mail_appended_to_dovecot_reaches_the_staff_chat_through_the_running_process(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
    workers: str,
) -> None:
    env = bridge_env(
        database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram, PARSE_WORKERS=workers
    )
    migrated = await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        await asyncio.to_thread(
            mailbox.append,
            request_mail("Не работает личный кабинет", "Здравствуйте! Не могу войти в личный кабинет, ошибка 500."),
            internal_date=datetime.now(UTC),
        )

        def card_posted() -> bool:
            return any(
                m.get("chat_id") == STAFF_CHAT_ID and "Не работает личный кабинет" in (m.get("text") or "")
                for m in telegram.sent
            )

        await telegram.wait_for(card_posted, timeout=60)
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()


async def test_run_starts_the_parse_workers_before_importing_the_rest(tmp_path: Path) -> None:
    """The workers load their dictionaries on the other core while aiogram and the rest are imported."""
    script = (
        "import sys, bot.cli, bot.workers\n"
        "def start(settings):\n"
        "    print('aiogram imported:', 'aiogram' in sys.modules, 'workers:', settings.PARSE_WORKERS)\n"
        "    raise SystemExit(0)\n"
        "bot.workers.start_parse_pool = start\n"
        "sys.exit(bot.cli.main(['run']))\n"
    )
    _sqlite_without_schema(tmp_path / "db.sqlite3")  # run refuses a missing database before the pool
    env = bridge_env(database_url=f"sqlite://{tmp_path}/db.sqlite3", PARSE_WORKERS="2", IMAP_HOST="127.0.0.1",
                     IMAP_USER="u", IMAP_PASSWORD="p", IMAP_SECURITY="none", SMTP_HOST="127.0.0.1",
                     SMTP_SECURITY="none")
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert "aiogram imported: False workers: 2" in result.stdout, result.stdout + result.stderr


def card_of(telegram: FakeTelegram, needle: str) -> dict | None:
    for message in telegram.messages(STAFF_CHAT_ID):
        if needle in (message.get("text") or "") and message.get("reply_markup"):
            return message
    return None


def button_data(message: dict, label_part: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for button in row:
            if label_part in button["text"]:
                return button["callback_data"]
    raise AssertionError(f"no button {label_part!r} in {message['reply_markup']}")


async def test_the_whole_desk_through_real_servers_in_one_process(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    """Mail in -> card -> Accept -> acceptance email -> client reply threads back -> staff reply email."""
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram)
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    clients = tmp_path / "clients.csv"
    clients.write_text(
        "name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,ivanov@romashka.ru;@romashka.ru\n",
        encoding="utf-8",
    )
    imported = await asyncio.to_thread(run_cli, ["clients", "import", str(clients)], env, tmp_path)
    assert imported.returncode == 0, imported.stderr
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        first = request_mail(
            "Не работает выгрузка заказов",
            "Здравствуйте! С утра не работает выгрузка заказов в личном кабинете, ошибка 500. ООО Ромашка.",
        )
        await asyncio.to_thread(mailbox.append, first, internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, "Не работает выгрузка заказов"), timeout=60)
        assert "ООО Ромашка" in card["text"]

        # The acknowledgement leaves at once (2.3); the acceptance follows in the same thread after it.
        ack = (await smtp_server.wait_for_count(1, timeout=60))[0]
        request_id = BytesParser().parsebytes(first)["Message-ID"]
        assert ack.message["Subject"] == "Обращение [#1] зарегистрировано: Не работает выгрузка заказов"
        assert ack.message["In-Reply-To"] == request_id

        telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, button_data(card, "Принять"))
        await smtp_server.wait_for_count(2, timeout=60)
        accepted = smtp_server.messages[1].message
        assert accepted["To"].addresses[0].addr_spec == "ivanov@romashka.ru"
        assert "[#1]" in accepted["Subject"]
        assert accepted["Auto-Submitted"] == "auto-replied"
        assert accepted["In-Reply-To"] == request_id
        assert set(str(accepted["References"]).split()) == {request_id, ack.message["Message-ID"]}
        our_id = accepted["Message-ID"]

        reply = EmailMessage()
        reply["From"] = "Иван Иванов <ivanov@romashka.ru>"
        reply["To"] = "support@storeolis.ru"
        reply["Subject"] = "Re: " + str(accepted["Subject"])
        reply["Message-ID"] = make_msgid(domain="romashka.ru")
        reply["In-Reply-To"] = our_id
        reply["References"] = our_id
        reply.set_content("Спасибо! Прикладываю скриншот ошибки.\n\n> старый текст")
        await asyncio.to_thread(mailbox.append, bytes(reply), internal_date=datetime.now(UTC))

        def followup() -> dict | None:
            for message in telegram.messages(STAFF_CHAT_ID):
                replied = (message.get("reply_to_message") or {}).get("message_id")
                if replied == card["message_id"] and "скриншот" in (message.get("text") or ""):
                    return message
            return None

        await telegram.wait_for(followup, timeout=60)
        telegram.send_user_message(
            STAFF_CHAT_ID, STAFF_USER_ID, "Исправили, проверьте, пожалуйста.", reply_to_message_id=card["message_id"]
        )
        await smtp_server.wait_for_count(3, timeout=60)
        staff_reply = smtp_server.messages[2].message
        assert "Исправили" in staff_reply.get_body(("plain",)).get_content()
        assert staff_reply["Auto-Submitted"] is None  # a person wrote it
        assert "[#1]" in staff_reply["Subject"]
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    output = process.output()
    assert "Traceback" not in output
    assert mailbox.password not in output and telegram.token not in output


async def test_a_request_that_waited_five_business_days_gets_a_breach_alert(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(
        database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram, SLA_TICK_SECONDS="1"
    )
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        old = datetime.now(UTC) - timedelta(days=14)  # at least 5 business days, whatever the holidays
        await asyncio.to_thread(mailbox.append, request_mail("Старый запрос", "Помогите с кассой."), internal_date=old)

        def breach_alert() -> bool:
            return any(
                "#1" in (m.get("text") or "") and ("нарушен" in (m.get("text") or ""))
                for m in telegram.messages(STAFF_CHAT_ID)
            )

        await telegram.wait_for(breach_alert, timeout=60)
    finally:
        await process.stop()


async def test_reports_about_our_email_mark_it_undelivered_and_open_no_card_and_send_no_email(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    """Issue 18: a bounce from `MAILER-DAEMON <>` (no address at all) for our acceptance email marks that email
    undelivered on its ticket; it and an ARF spam complaint about the same email are reports: no card, no email."""
    from models.store.db import close_db, init_db
    from models.tables import EmailOutbox, Message, RawMail, RawMailStatus

    # About the reports of the acceptance email: the acknowledgement (tests/test_acknowledgement.py) is off.
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     ACKNOWLEDGE_REQUESTS="false")
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    clients = tmp_path / "clients.csv"
    clients.write_text("name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,@romashka.ru\n", encoding="utf-8")
    assert (await asyncio.to_thread(run_cli, ["clients", "import", str(clients)], env, tmp_path)).returncode == 0
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    corpus = REPO / "tests" / "corpus"
    try:
        first = request_mail("Не пришёл заказ 4521", "Здравствуйте! Заказ 4521 не пришёл, проверьте, пожалуйста.")
        await asyncio.to_thread(mailbox.append, first, internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, "Не пришёл заказ 4521"), timeout=60)
        telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, button_data(card, "Принять"))
        await smtp_server.wait_for_count(1, timeout=60)
        our_id = smtp_server.messages[0].message["Message-ID"].strip("<>").encode()

        bounce = (corpus / "bounce_null_sender_ru.eml").read_bytes().replace(b"ticket-57.2@storeolis.ru", our_id)
        bounce = bounce.replace(b"From: MAILER DAEMON <>", b"From: MAILER-DAEMON <>")
        await asyncio.to_thread(mailbox.append, bounce, internal_date=datetime.now(UTC))
        report = (corpus / "feedback_report_arf.eml").read_bytes().replace(b"ticket-57.2@storeolis.ru", our_id)
        await asyncio.to_thread(mailbox.append, report, internal_date=datetime.now(UTC))

        def note_on_card(words: str) -> dict | None:
            for message in telegram.messages(STAFF_CHAT_ID):
                replied = (message.get("reply_to_message") or {}).get("message_id")
                if replied == card["message_id"] and words in (message.get("text") or ""):
                    return message
            return None

        await telegram.wait_for(lambda: note_on_card("не доставлено"), timeout=60)
        await telegram.wait_for(lambda: note_on_card("пожаловался"), timeout=60)
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()
    cards = [m for m in telegram.messages(STAFF_CHAT_ID) if m.get("reply_markup")]
    assert len(cards) == 1  # the request's card only: neither report opened one
    assert len(smtp_server.messages) == 1  # the acceptance email only: nobody answered a report
    await init_db(database_url)
    try:
        email = await EmailOutbox.get(message_id=our_id.decode())
        assert email.delivery_failed
        kinds = sorted(await Message.filter(ticket_id=email.ticket_id).values_list("kind", flat=True))
        assert "bounce" in kinds and "feedback_report" in kinds
        assert await RawMail.filter(status=RawMailStatus.QUARANTINED).count() == 0
    finally:
        await close_db()


def marked(raw: bytes, header: str) -> bytes:
    """`raw` with one more header line at the top (an auto-reply's or a mailing list's mark)."""
    return header.encode() + b"\n" + raw


async def test_a_new_request_is_acknowledged_through_the_running_process(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    """Issue 20 item 6 end to end: one acknowledgement per request, threaded, Auto-Submitted, with the
    deadline; none to an auto-reply or a mailing list; five at most per sender in an hour."""
    from zoneinfo import ZoneInfo

    from models.clock import as_utc
    from models.store.db import close_db, init_db
    from models.tables import Ticket

    # TIMEZONE named: Tortoise.init in this test process sets os.environ["TIMEZONE"]="UTC", which
    # bridge_env would otherwise hand to the bridge.
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     TIMEZONE="Europe/Moscow")
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    now = datetime.now(UTC)
    first = request_mail("Не работает выгрузка заказов", "С утра ошибка 500 при выгрузке заказов.")
    mails = [
        first,
        marked(request_mail("Автоответ: Re: Заказ", "Я в отпуске.", sender="helpdesk@client.ru"),
               "Auto-Submitted: auto-replied"),
        marked(marked(request_mail("Новости недели", "Дайджест.", sender="news@client.ru"),
                      "List-Id: <weekly.client.ru>"), "Precedence: list"),
        *(request_mail(f"Вопрос {i}: отчёт {i}", f"Отчёт номер {i} не строится, ошибка {400 + i}.",
                       sender="petrov@client.ru") for i in range(6)),
    ]
    try:
        for raw in mails:
            await asyncio.to_thread(mailbox.append, raw, internal_date=now)

        def cards() -> int:
            return sum(1 for m in telegram.messages(STAFF_CHAT_ID) if m.get("reply_markup"))

        await telegram.wait_for(lambda: cards() >= 7, timeout=120)  # the 7 requests; the other two open none
        await smtp_server.wait_for_count(6, timeout=60)
        await asyncio.sleep(2.0)  # a seventh email would have left by now
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()
    sent = [m.message for m in smtp_server.messages]
    recipients = sorted(m["To"].addresses[0].addr_spec for m in sent)
    assert recipients == ["ivanov@romashka.ru"] + ["petrov@client.ru"] * 5
    assert all("зарегистрировано" in str(m["Subject"]) and m["Auto-Submitted"] == "auto-replied" for m in sent)
    ack = next(m for m in sent if m["To"].addresses[0].addr_spec == "ivanov@romashka.ru")
    request_id = BytesParser().parsebytes(first)["Message-ID"]
    assert ack["Subject"] == "Обращение [#1] зарегистрировано: Не работает выгрузка заказов"
    assert ack["In-Reply-To"] == request_id and ack["References"] == request_id
    await init_db(database_url)
    try:
        ticket = await Ticket.get(id=1)
        assert await Ticket.all().count() == 9  # every mail is recorded; auto-replies as closed tickets
    finally:
        await close_db()
    assert ticket.sla_due_at is not None
    due = as_utc(ticket.sla_due_at).astimezone(ZoneInfo("Europe/Moscow"))
    text = ack.get_body(("plain",)).get_content()
    assert f"не позднее {due:%d.%m.%Y %H:%M} (по московскому времени)" in text, text


@pytest.mark.parametrize("acknowledge", ["true", "false"])
async def test_the_acknowledgement_in_english_and_switched_off(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
    acknowledge: str,
) -> None:
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     LANGUAGE="en", ACKNOWLEDGE_REQUESTS=acknowledge)
    assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        await asyncio.to_thread(mailbox.append, request_mail("Orders export fails", "Error 500 on export."),
                                internal_date=datetime.now(UTC))
        await telegram.wait_for(lambda: card_of(telegram, "Orders export fails"), timeout=60)
        if acknowledge == "true":
            await smtp_server.wait_for_count(1, timeout=60)
        await asyncio.sleep(2.0)  # the card is posted after the commit that queued the email: it would be out
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    subjects = [str(m.message["Subject"]) for m in smtp_server.messages]
    assert subjects == (["Request [#1] registered: Orders export fails"] if acknowledge == "true" else [])
