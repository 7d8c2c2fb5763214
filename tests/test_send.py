"""mail/send.py against a real aiosmtpd capture and a real database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from mail.compose import compose_email, make_message_id
from mail.send import DeliveryEvent, EmailSender, SmtpCheckError, SmtpConfig, check_smtp
from models.tables import EmailOutbox, OutboxStatus
from tests.helpers.process import reap
from tests.rig.smtp import SmtpCapture, _Handler

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """An injected clock: tests move time forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Events:
    def __init__(self) -> None:
        self.items: list[DeliveryEvent] = []

    async def __call__(self, event: DeliveryEvent) -> None:
        self.items.append(event)

    def outcomes(self) -> list[str]:
        return [e.outcome for e in self.items]


_counter = iter(range(1, 10**9))


async def make_row(
    *,
    not_before: datetime | None = None,
    status: OutboxStatus = OutboxStatus.PENDING,
    recipients: list[str] | None = None,
) -> EmailOutbox:
    n = next(_counter)
    msg_id = make_message_id("storeolis.ru")
    to = f"client{n}@example.com"
    content = compose_email(
        from_address="support@storeolis.ru",
        from_name="Поддержка Storeolis",
        to_address=to,
        subject=f"Заявка #{n} принята",
        # A line starting with "." checks SMTP dot-stuffing round-trips; Cyrillic checks encoding.
        text=f"Здравствуйте!\n.\n.hidden line\nВаша заявка #{n} принята в работу.\n",
        html=f"<p>Заявка <b>#{n}</b> принята</p>",
        message_id=msg_id,
    )
    return await EmailOutbox.create(
        idempotency_key=f"accepted:{n}:{msg_id}",
        event="accepted",
        message_id=msg_id,
        recipients=[to] if recipients is None else recipients,
        content=content,
        status=status,
        not_before=not_before or datetime.now(UTC) - timedelta(seconds=1),
    )


def config_for(server: SmtpCapture, timeout: float = 5.0, **kw: object) -> SmtpConfig:
    return SmtpConfig(host=server.host, port=server.port, security="none", timeout=timeout, **kw)  # type: ignore[arg-type]


def captured_ids(server: SmtpCapture) -> list[str]:
    return [str(m.message["Message-ID"]).strip("<>") for m in server.messages]


class _SessionCountingHandler(_Handler):
    """Counts SMTP connections: aiosmtpd gives each connection its own Session object."""

    def __init__(self, capture: SmtpCapture) -> None:
        super().__init__(capture)
        self.sessions: list[object] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        return await super().handle_DATA(server, session, envelope)


def count_connections(server: SmtpCapture) -> _SessionCountingHandler:
    handler = _SessionCountingHandler(server)
    assert server._controller is not None
    server._controller.handler = handler  # the controller's factory builds each new session with it
    return handler


async def wait_until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    """Poll the database for an outcome (no event to wait on there), failing after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.02)


# -- delivery -------------------------------------------------------------------------------------


async def test_delivers_the_stored_bytes_unchanged(db: str, smtp_server: SmtpCapture) -> None:
    row = await make_row()
    events = Events()
    sender = EmailSender(config_for(smtp_server, sender_address="support@storeolis.ru"), on_event=events)

    assert await sender.deliver_due() == 1
    await sender.aclose()

    [mail] = smtp_server.messages
    assert mail.data == bytes(row.content)
    assert mail.mail_from == "support@storeolis.ru"
    assert mail.rcpt_tos == row.recipients
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT
    assert row.sent_at is not None and row.attempts == 1 and not row.ambiguous_resend
    assert [(e.outbox_id, e.outcome, e.event, e.ambiguous) for e in events.items] == [
        (row.id, "sent", "accepted", False)
    ]


async def test_several_rows_travel_on_one_kept_connection(db: str, smtp_server: SmtpCapture) -> None:
    handler = count_connections(smtp_server)
    rows = [await make_row() for _ in range(5)]
    sender = EmailSender(config_for(smtp_server))

    assert await sender.deliver_due() == 5
    more = [await make_row() for _ in range(3)]
    assert await sender.deliver_due() == 3  # a later pass reuses the same connection
    await sender.aclose()

    assert len(handler.sessions) == 1
    assert captured_ids(smtp_server) == [r.message_id for r in rows + more]  # oldest id first


async def test_stale_kept_connection_is_reopened_without_losing_the_row(
    db: str, smtp_server: SmtpCapture
) -> None:
    handler = count_connections(smtp_server)
    sender = EmailSender(config_for(smtp_server))
    await make_row()
    assert await sender.deliver_due() == 1
    smtp_server.set_mode("down")  # the server goes away and comes back: the kept socket is dead
    smtp_server.set_mode(None)
    handler = count_connections(smtp_server)
    row = await make_row()
    assert await sender.deliver_due() == 1
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT and row.attempts == 1 and not row.ambiguous_resend
    assert len(handler.sessions) == 1


async def test_row_waits_until_not_before(db: str, smtp_server: SmtpCapture) -> None:
    clock = Clock()
    row = await make_row(not_before=clock.now + timedelta(seconds=30))  # refusal grace period
    sender = EmailSender(config_for(smtp_server), clock=clock)

    assert await sender.deliver_due() == 0
    clock.advance(29)
    assert await sender.deliver_due() == 0
    assert smtp_server.messages == []
    await row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.attempts == 0

    clock.advance(2)
    assert await sender.deliver_due() == 1
    await sender.aclose()
    assert captured_ids(smtp_server) == [row.message_id]


async def test_cancelled_rows_are_never_sent(db: str, smtp_server: SmtpCapture) -> None:
    cancelled = await make_row(status=OutboxStatus.CANCELLED)
    pending = await make_row()
    sender = EmailSender(config_for(smtp_server))

    assert await sender.deliver_due() == 1
    await sender.aclose()
    assert captured_ids(smtp_server) == [pending.message_id]
    await cancelled.refresh_from_db()
    assert cancelled.status == OutboxStatus.CANCELLED and cancelled.attempts == 0


async def test_row_without_recipients_fails_permanently(db: str, smtp_server: SmtpCapture) -> None:
    row = await make_row(recipients=[])
    events = Events()
    sender = EmailSender(config_for(smtp_server), on_event=events)
    assert await sender.deliver_due() == 0
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.FAILED and "no recipients" in (row.last_error or "")
    assert events.outcomes() == ["failed"]


# -- failures -------------------------------------------------------------------------------------


async def test_smtp_down_for_a_while_then_everything_delivered_once(
    db: str, smtp_server: SmtpCapture
) -> None:
    smtp_server.set_mode("down")
    rows = [await make_row() for _ in range(20)]
    sender = EmailSender(config_for(smtp_server), base_backoff=0.02, max_backoff=0.1, poll_interval=0.05)
    task = asyncio.create_task(sender.run())
    try:
        # Several connection attempts fail while no row is touched.
        await wait_until(lambda: _true(sender._connect_failures >= 3))
        assert await EmailOutbox.filter(status=OutboxStatus.PENDING, attempts=0).count() == 20
        smtp_server.set_mode(None)
        sender.wake()
        await smtp_server.wait_for_count(20)
        await wait_until(lambda: _all_sent(len(rows)))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    ids = captured_ids(smtp_server)
    assert sorted(ids) == sorted(r.message_id for r in rows)
    assert len(ids) == len(set(ids))


async def _true(value: bool) -> bool:
    return value


async def _all_sent(n: int) -> bool:
    return await EmailOutbox.filter(status=OutboxStatus.SENT).count() == n


@pytest.mark.parametrize("mode", ["tempfail", "tempfail_data"])
async def test_tempfail_is_retried_after_backoff(db: str, smtp_server: SmtpCapture, mode: str) -> None:
    clock = Clock()
    events = Events()
    row = await make_row(not_before=clock.now)
    sender = EmailSender(config_for(smtp_server), clock=clock, on_event=events, base_backoff=2, max_backoff=10)

    smtp_server.set_mode(mode)  # type: ignore[arg-type]
    assert await sender.deliver_due() == 0
    await row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.attempts == 1
    assert "451" in (row.last_error or "")
    assert clock.now < row.not_before <= clock.now + timedelta(seconds=10)
    assert not row.ambiguous_resend
    assert await sender.deliver_due() == 0  # not due yet: no second attempt
    assert row.attempts == (await EmailOutbox.get(id=row.id)).attempts

    smtp_server.set_mode(None)
    clock.advance(11)
    assert await sender.deliver_due() == 1
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT and row.attempts == 2
    assert captured_ids(smtp_server) == [row.message_id]
    assert events.outcomes() == ["retrying", "sent"]


async def test_permfail_marks_failed_and_tells_the_caller(db: str, smtp_server: SmtpCapture) -> None:
    events = Events()
    row = await make_row()
    ok = await make_row()
    sender = EmailSender(config_for(smtp_server), on_event=events)

    smtp_server.set_mode("permfail")
    assert await sender.deliver_due() == 0
    smtp_server.set_mode(None)
    assert await sender.deliver_due() == 0  # FAILED is final; nothing left due
    await row.refresh_from_db()
    await ok.refresh_from_db()
    assert row.status == OutboxStatus.FAILED and ok.status == OutboxStatus.FAILED
    assert "550" in (row.last_error or "")
    failed = [e for e in events.items if e.outbox_id == row.id]
    assert [(e.outcome, e.ambiguous) for e in failed] == [("failed", False)]
    assert failed[0].error is not None and "550" in failed[0].error

    # The connection survives a refusal (RSET): a good row afterwards goes through it.
    good = await make_row()
    assert await sender.deliver_due() == 1
    await sender.aclose()
    assert captured_ids(smtp_server) == [good.message_id]


async def test_disconnect_after_data_is_ambiguous_and_resent(
    db: str, smtp_server: SmtpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    events = Events()
    row = await make_row(not_before=clock.now)
    sender = EmailSender(config_for(smtp_server), clock=clock, on_event=events, max_backoff=5)

    smtp_server.set_mode("drop_after_data")
    with caplog.at_level(logging.WARNING, logger="mail.send"):
        assert await sender.deliver_due() == 0
    await row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.ambiguous_resend
    assert any(row.message_id in r.getMessage() and "ambiguous" in r.getMessage() for r in caplog.records)
    assert len(smtp_server.messages) == 1  # the server did keep it

    smtp_server.set_mode(None)
    clock.advance(6)
    assert await sender.deliver_due() == 1
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT and row.ambiguous_resend
    ids = captured_ids(smtp_server)
    assert ids == [row.message_id, row.message_id]
    assert [(e.outcome, e.ambiguous) for e in events.items] == [("retrying", True), ("sent", True)]
    print(f"\ndrop_after_data: Message-ID received {ids.count(row.message_id)} times, row flagged ambiguous_resend")


async def test_recover_puts_back_rows_whose_lease_expired(
    db: str, smtp_server: SmtpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    stale = await make_row(status=OutboxStatus.SENDING, not_before=clock.now - timedelta(minutes=10))
    young = await make_row(status=OutboxStatus.SENDING, not_before=clock.now - timedelta(minutes=1))
    sender = EmailSender(config_for(smtp_server), clock=clock, lease_seconds=300)

    with caplog.at_level(logging.WARNING, logger="mail.send"):
        assert await sender.recover() == 1
    assert any(stale.message_id in r.getMessage() and str(stale.id) in r.getMessage() for r in caplog.records)
    await stale.refresh_from_db()
    await young.refresh_from_db()
    assert stale.status == OutboxStatus.PENDING and stale.ambiguous_resend
    assert young.status == OutboxStatus.SENDING and not young.ambiguous_resend  # maybe a live peer's

    assert await sender.deliver_due() == 1
    clock.advance(5 * 60)  # the young claim's lease runs out too
    assert await sender.recover() == 1
    assert await sender.deliver_due() == 1
    await sender.aclose()
    assert sorted(captured_ids(smtp_server)) == sorted([stale.message_id, young.message_id])


async def test_shutdown_mid_pass_leaves_no_row_sending(db: str, smtp_server: SmtpCapture) -> None:
    rows = [await make_row() for _ in range(40)]
    sender = EmailSender(config_for(smtp_server), poll_interval=0.05)
    task = asyncio.create_task(sender.run())
    await smtp_server.wait_for_count(5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await EmailOutbox.filter(status=OutboxStatus.SENDING).count() == 0

    sender2 = EmailSender(config_for(smtp_server))
    await sender2.deliver_due()
    await sender2.aclose()
    assert await EmailOutbox.filter(status=OutboxStatus.SENT).count() == len(rows)
    counts = collections.Counter(captured_ids(smtp_server))
    ambiguous = {r.message_id for r in await EmailOutbox.filter(ambiguous_resend=True)}
    assert set(counts) == {r.message_id for r in rows}
    assert {m for m, c in counts.items() if c > 1} <= ambiguous


async def test_two_senders_deliver_each_row_exactly_once(db: str, smtp_server: SmtpCapture) -> None:
    rows = [await make_row() for _ in range(200)]
    first = EmailSender(config_for(smtp_server), worker_id="a")
    second = EmailSender(config_for(smtp_server), worker_id="b")

    sent = await asyncio.gather(first.deliver_due(), second.deliver_due())
    await asyncio.gather(first.aclose(), second.aclose())

    assert sum(sent) == 200
    ids = captured_ids(smtp_server)
    assert len(ids) == 200 and set(ids) == {r.message_id for r in rows}
    assert await EmailOutbox.filter(status=OutboxStatus.SENT, attempts=1).count() == 200
    print(f"\ntwo senders: {sent[0]} + {sent[1]} rows")


# -- kill -9 ----------------------------------------------------------------------------------


def _start_sender(db_url: str, server: SmtpCapture) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.run_sender", db_url, server.host, str(server.port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the child's database is open
    assert line.strip() == "ready", line
    return proc


async def test_kill_9_during_a_burst_loses_nothing(db: str, smtp_server: SmtpCapture) -> None:
    seed = int(os.environ.get("SEND_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"\nkill -9 test seed: {seed} (rerun with SEND_KILL_SEED={seed})")
    rows = [await make_row() for _ in range(300)]
    kills = 0
    for _ in range(4):
        proc = await asyncio.to_thread(_start_sender, db, smtp_server)
        await asyncio.sleep(rng.uniform(0.02, 0.6))
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(reap, proc, 10)
        kills += 1
        if await EmailOutbox.filter(status=OutboxStatus.SENT).count() == 300:
            break
    proc = await asyncio.to_thread(_start_sender, db, smtp_server)
    try:
        deadline = time.monotonic() + 120
        while await EmailOutbox.filter(status=OutboxStatus.SENT).count() < 300:
            assert time.monotonic() < deadline, "the restarted sender did not finish"
            assert proc.poll() is None, "the sender died"
            await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await asyncio.to_thread(reap, proc, 10)

    counts = collections.Counter(captured_ids(smtp_server))
    ambiguous = {r.message_id for r in await EmailOutbox.filter(ambiguous_resend=True)}
    assert set(counts) == {r.message_id for r in rows}  # every Message-ID received at least once
    doubled = {m for m, c in counts.items() if c > 1}
    assert doubled <= ambiguous  # a duplicate only where the row says it may have happened
    assert await EmailOutbox.filter(status=OutboxStatus.SENT).count() == 300
    print(f"kill -9 test: {kills} kills, {len(smtp_server.messages)} received for 300 rows, "
          f"{len(doubled)} received twice, {len(ambiguous)} rows flagged ambiguous_resend")


# -- authentication and check_smtp --------------------------------------------------------------


async def test_auth_with_the_right_password_delivers(db: str, smtp_server: SmtpCapture) -> None:
    smtp_server.require_auth("support@storeolis.ru", "correct-horse-7")
    row = await make_row()
    sender = EmailSender(config_for(smtp_server, user="support@storeolis.ru", password="correct-horse-7"))
    assert await sender.deliver_due() == 1
    await sender.aclose()
    [mail] = smtp_server.messages
    assert mail.auth_user == "support@storeolis.ru" and mail.data == bytes(row.content)


async def test_wrong_password_touches_no_row_and_never_logs_the_password(
    db: str, smtp_server: SmtpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.require_auth("support@storeolis.ru", "correct-horse-7")
    row = await make_row()
    secret = "Wr0ng-Secret-Pass"
    config = config_for(smtp_server, user="support@storeolis.ru", password=secret)
    sender = EmailSender(config)
    with caplog.at_level(logging.DEBUG):
        assert await sender.deliver_due() == 0
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.PENDING and row.attempts == 0  # a config problem, not the row's
    assert smtp_server.messages == []
    assert any("535" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text and secret not in repr(config)

    with pytest.raises(SmtpCheckError) as info:
        await check_smtp(config)
    assert "535" in str(info.value) and secret not in str(info.value)


async def test_check_smtp_ok_and_down(smtp_server: SmtpCapture) -> None:
    smtp_server.require_auth("support@storeolis.ru", "correct-horse-7")
    ok = await check_smtp(config_for(smtp_server, user="support@storeolis.ru", password="correct-horse-7"))
    assert ok.startswith("SMTP OK") and "logged in as support@storeolis.ru" in ok
    smtp_server.set_mode("down")
    with pytest.raises(SmtpCheckError) as info:
        await check_smtp(config_for(smtp_server))
    assert str(smtp_server.port) in str(info.value)


def test_config_from_settings_hides_the_password() -> None:
    from pydantic import SecretStr

    settings = SimpleNamespace(
        SMTP_HOST="smtp.yandex.ru", SMTP_PORT=465, SMTP_USER="support@storeolis.ru",
        SMTP_PASSWORD=SecretStr("app-pass-123"), SMTP_SECURITY="ssl", SMTP_TIMEOUT_SECONDS=20.0,
        SUPPORT_ADDRESS="support@storeolis.ru",
    )
    config = SmtpConfig.from_settings(settings)
    assert config.password == "app-pass-123" and config.timeout == 20.0 and config.sent_folder == ""
    assert "app-pass-123" not in repr(config)


# -- copy to the Sent folder ------------------------------------------------------------------


async def test_sent_copy_is_appended_to_the_imap_folder(db: str, smtp_server: SmtpCapture, mailbox) -> None:  # type: ignore[no-untyped-def]
    imap = SimpleNamespace(host=mailbox.host, port=mailbox.port, user=mailbox.user,
                           password=mailbox.password, security="none")
    rows = [await make_row() for _ in range(2)]
    # Dovecot's first login on a loaded machine has taken more than 5 s (a CI run): this test is about the
    # copies, not the timeout, which the silent-server test below covers.
    sender = EmailSender(config_for(smtp_server, timeout=20.0, sent_folder="Sent"), imap_config=imap)
    assert await sender.deliver_due() == 2
    await sender.aclose()
    assert mailbox.count("Sent") == 2
    assert all(r"\Seen" in flags for flags in mailbox.fetch_flags("Sent").values())
    # Maildir files keep LF line endings; otherwise the copy is the sent message itself.
    stored = sorted(p.read_bytes() for p in mailbox.maildir("Sent").glob("cur/*"))
    assert stored == sorted(bytes(r.content).replace(b"\r\n", b"\n") for r in rows)


async def test_a_sent_copy_to_a_silent_server_gives_up_and_closes_its_socket(
    db: str, smtp_server: SmtpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    """An IMAP server that accepts and never greets: the copy times out, the email stays sent, and the
    copier's socket is closed at once (a half-open client left to the garbage collector kept it open)."""
    accepted: list[asyncio.StreamReader] = []
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    imap = SimpleNamespace(host="127.0.0.1", port=port, user="u", password="p", security="none")
    row = await make_row()
    config = SmtpConfig(host=smtp_server.host, port=smtp_server.port, security="none", timeout=0.5,
                        sent_folder="Sent")
    sender = EmailSender(config, imap_config=imap)
    try:
        with caplog.at_level(logging.WARNING, logger="mail.send"):
            assert await sender.deliver_due() == 1
        assert any("could not copy" in r.getMessage() for r in caplog.records)
        await row.refresh_from_db()
        assert row.status == OutboxStatus.SENT
        # The server side reads end-of-file: our socket is closed, not waiting for the garbage collector.
        assert len(accepted) == 1
        assert await asyncio.wait_for(accepted[0].read(), 2.0) == b""
    finally:
        await sender.aclose()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_failed_sent_copy_never_resends(
    db: str, smtp_server: SmtpCapture, mailbox, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    imap = SimpleNamespace(host=mailbox.host, port=mailbox.port, user=mailbox.user,
                           password="not-the-password", security="none")
    row = await make_row()
    sender = EmailSender(config_for(smtp_server, sent_folder="Sent"), imap_config=imap)
    with caplog.at_level(logging.WARNING, logger="mail.send"):
        assert await sender.deliver_due() == 1
        assert await sender.deliver_due() == 0
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT
    assert captured_ids(smtp_server) == [row.message_id]
    assert any("Sent" in r.getMessage() for r in caplog.records)
    assert "not-the-password" not in caplog.text
