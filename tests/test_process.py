"""The bridge as operators run it: `python -m bot` in its own process, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
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


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    fake.add_user(STAFF_USER_ID, "Анна", username="anna_support")
    fake.add_group(STAFF_CHAT_ID, "Storeolis support", members=[STAFF_USER_ID])
    try:
        yield fake
    finally:
        await fake.stop()


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


async def test_run_refuses_an_unmigrated_database(tmp_path: Path, telegram: FakeTelegram) -> None:
    env = bridge_env(
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


async def test_a_mail_appended_to_dovecot_reaches_the_staff_chat_through_the_running_process(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram)
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
