"""The mailbox watcher against a real Dovecot and a real database (SQLite, or PostgreSQL with
TEST_DATABASE_URL=postgres): mail/imap.py and mail/intake.py."""

from __future__ import annotations

import asyncio
import email
import hashlib
import logging
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mail.imap import (
    ImapConfig,
    ImapConfigError,
    ImapError,
    ImapSession,
    check_imap,
    encode_mailbox,
    parse_fetch_lines,
    uid_set,
)
from mail.intake import MailWatcher, split_by_bytes
from models.store.raw_store import load_content, load_contents
from models.tables import MailCursor, RawMail, RawMailStatus
from tests.helpers.process import reap
from tests.rig.dovecot import DovecotServer
from tests.rig.net import free_port

ROOT = Path(__file__).resolve().parent.parent
FLAG = "$StoreolisHandled"


def make_config(mailbox: DovecotServer, **overrides: Any) -> ImapConfig:
    values: dict[str, Any] = {
        "host": mailbox.host,
        "port": mailbox.port,
        "user": mailbox.user,
        "password": mailbox.password,
        "security": "none",
        "timeout": 15.0,
    }
    values.update(overrides)
    return ImapConfig(**values)


def make_mail(n: int, *, body: str = "", date_header: str = "Mon, 01 Jan 2001 00:00:00 +0000") -> bytes:
    text = body or f"Hello, this is request number {n}.\r\n"
    return (
        f"From: client{n}@example.ru\r\nTo: support@storeolis.ru\r\nSubject: Request {n}\r\n"
        f"Date: {date_header}\r\nMessage-ID: <req{n}.{os.getpid()}@example.ru>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
    ).encode()


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 20.0) -> None:
    """Wait for an outcome (not a timing assertion): fail with `what` if it never happens."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def rows_count() -> int:
    return await RawMail.all().count()


async def cursor_of(watcher: MailWatcher) -> MailCursor:
    return await MailCursor.get(mailbox=watcher.mailbox)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await asyncio.wait_for(task, 10)
    except asyncio.CancelledError:
        pass


# -- pure helpers ---------------------------------------------------------------------------------


def test_uid_set_compacts_ranges() -> None:
    assert uid_set([7, 1, 2, 3, 9, 10, 3]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


def test_mailbox_names_are_modified_utf7_and_quoted() -> None:
    # The example of RFC 3501 section 5.1.3.
    assert encode_mailbox("~peter/mail/台北/日本語") == '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'
    assert encode_mailbox('A&B "x"') == '"A&-B \\"x\\""'


def test_fetch_lines_are_grouped_per_message_with_their_literal() -> None:
    lines = [
        b'1 FETCH (UID 1 FLAGS (\\Seen) INTERNALDATE "25-Nov-2026 16:25:52 +0000" RFC822.SIZE 3 BODY[] {3}',
        bytearray(b"abc"),
        b")",
        b"2 FETCH (FLAGS (\\Seen))",  # unsolicited update: no body
        b"3 FETCH (BODY[] {2}",
        bytearray(b"xy"),
        b" UID 3)",
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    records = parse_fetch_lines(lines)
    assert [body for _, body in records] == [b"abc", None, b"xy"]
    assert b"UID 3" in records[2][0]


def test_batches_are_capped_by_bytes_but_a_big_message_still_gets_its_own() -> None:
    sizes = {1: 10, 2: 10, 3: 50, 4: 5, 5: 5}
    assert list(split_by_bytes([1, 2, 3, 4, 5], sizes, 25)) == [[1, 2], [3], [4, 5]]


def test_config_from_settings_unwraps_the_password_and_hides_it_from_repr() -> None:
    from bot.settings import load_settings

    settings = load_settings(
        None,
        TELEGRAM_BOT_TOKEN="1:x",
        STAFF_CHAT_ID=-1,
        IMAP_HOST="imap.example.ru",
        IMAP_USER="support@storeolis.ru",
        IMAP_PASSWORD="s3cret-pass",
        SMTP_HOST="smtp.example.ru",
        IMAP_HANDLED_FOLDER="Done",
    )
    config = ImapConfig.from_settings(settings)
    assert config.password == "s3cret-pass"
    assert config.handled_folder == "Done" and config.port == 993 and config.security == "ssl"
    assert "s3cret-pass" not in repr(config)


# -- against Dovecot ------------------------------------------------------------------------------


async def test_first_start_ingests_mail_already_in_the_mailbox(db: str, mailbox: DovecotServer) -> None:
    raws = [make_mail(i) for i in range(5)]
    uids = await asyncio.to_thread(mailbox.append_many, raws)
    woken: list[int] = []
    watcher = MailWatcher(make_config(mailbox), on_stored=lambda: woken.append(1))
    try:
        assert await watcher.sync_once() == 5
        assert await watcher.sync_once() == 0  # nothing new: nothing stored twice
    finally:
        await watcher.close()

    rows = await RawMail.all().order_by("uid")
    assert [r.uid for r in rows] == uids
    assert [(await load_content(r.id)) for r in rows] == raws
    assert all(r.sha256 == sha(raw) and r.size == len(raw) for r, raw in zip(rows, raws, strict=True))
    assert {r.status for r in rows} == {RawMailStatus.STORED}
    assert {r.mailbox for r in rows} == {f"{mailbox.user}/INBOX"}
    cursor = await cursor_of(watcher)
    assert cursor.last_uid == max(uids) and cursor.uidvalidity == mailbox.uidvalidity()
    assert cursor.last_sync_at is not None
    flags = await asyncio.to_thread(mailbox.fetch_flags)
    assert all(FLAG in flags[u] and "\\Seen" not in flags[u] for u in uids)  # BODY.PEEK: not marked read
    assert woken == [1]
    assert watcher.state.last_sync_at is not None and watcher.state.last_error is None


async def test_the_servers_internaldate_is_stored_not_the_date_header(
    db: str, mailbox: DovecotServer
) -> None:
    arrived = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    raw = make_mail(1, date_header="Fri, 13 Dec 2030 23:59:59 +0300")  # the sender's clock lies
    await asyncio.to_thread(mailbox.append, raw, internal_date=arrived)
    watcher = MailWatcher(make_config(mailbox))
    try:
        await watcher.sync_once()
    finally:
        await watcher.close()
    row = await RawMail.get(sha256=sha(raw))
    assert row.internal_date == arrived


async def test_idle_delivers_new_mail_while_running(db: str, mailbox: DovecotServer) -> None:
    woken = asyncio.Event()
    # A long IDLE renewal and no polling: only a server push can bring the mail in quickly.
    watcher = MailWatcher(make_config(mailbox, idle_seconds=600), on_stored=woken.set)
    task = asyncio.create_task(watcher.run())
    try:

        async def idling() -> bool:
            session = watcher._session
            return (
                watcher.state.connected
                and session is not None
                and session._client is not None
                and (session._client.has_pending_idle())
            )

        await eventually(idling, "the watcher to enter IDLE")
        raw = make_mail(1)
        await asyncio.to_thread(mailbox.append, raw)
        await asyncio.wait_for(woken.wait(), 20)
        assert await RawMail.filter(sha256=sha(raw)).count() == 1
        assert watcher.state.mode == "idle"
    finally:
        await stop(task)
    assert not watcher.state.connected


async def test_polling_is_used_when_idle_is_off(db: str, mailbox: DovecotServer) -> None:
    watcher = MailWatcher(make_config(mailbox, use_idle=False, poll_seconds=0.2))
    task = asyncio.create_task(watcher.run())
    try:
        await eventually(lambda: _true(watcher.state.last_sync_at is not None), "the first sync")
        raw = make_mail(2)
        await asyncio.to_thread(mailbox.append, raw)
        await eventually(lambda: _exists(sha(raw)), "the polled mail to be stored")
        assert watcher.state.mode == "poll"
        assert watcher._session is not None and not watcher._session._client.has_pending_idle()
    finally:
        await stop(task)


async def _true(value: bool) -> bool:
    return value


async def _exists(digest: str) -> bool:
    return await RawMail.filter(sha256=digest).exists()


async def test_a_backlog_of_3000_is_ingested_once_each_in_uid_order_and_flagged(
    db: str, mailbox: DovecotServer
) -> None:
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    raws = [(make_mail(i), start + timedelta(seconds=i)) for i in range(3000)]
    await asyncio.to_thread(mailbox.bulk_import, raws)
    server_uids = await asyncio.to_thread(mailbox.list_uids)
    assert len(server_uids) == 3000
    batches: list[int] = []
    watcher = MailWatcher(make_config(mailbox), on_stored=lambda: batches.append(1))
    try:
        assert await watcher.sync_once() == 3000
    finally:
        await watcher.close()
    stored = await RawMail.all().order_by("id").values_list("uid", "sha256", "internal_date")
    assert [u for u, _, _ in stored] == server_uids  # stored in ascending UID order, each once
    assert {s for _, s, _ in stored} == {sha(raw) for raw, _ in raws}
    assert [d for _, _, d in stored] == [when for _, when in raws]
    assert len(batches) == 30  # IMAP_BATCH_SIZE=100
    assert (await cursor_of(watcher)).last_uid == max(server_uids)
    flags = await asyncio.to_thread(mailbox.fetch_flags)
    assert all(FLAG in flags[u] for u in server_uids)


async def test_a_batch_is_capped_by_total_size_and_big_mail_is_still_stored(
    db: str, mailbox: DovecotServer
) -> None:
    body = "x" * 70 + "\r\n"
    raws = [make_mail(i, body=body * 120) for i in range(5)]  # about 9 KB each
    huge = make_mail(99, body=body * 600)  # about 43 KB: over the message limit and the batch cap
    await asyncio.to_thread(mailbox.append_many, [*raws, huge])
    batches: list[int] = []
    watcher = MailWatcher(
        make_config(mailbox, batch_max_bytes=20_000, max_message_bytes=30_000),
        on_stored=lambda: batches.append(1),
    )
    try:
        assert await watcher.sync_once() == 6
    finally:
        await watcher.close()
    # 5 x 9 KB under a 20 KB cap: 2 + 2 + 1, then the big one alone.
    assert len(batches) == 4
    assert await RawMail.filter(sha256=sha(huge), size=len(huge)).exists()


async def test_a_uidvalidity_change_rereads_the_folder_without_duplicates(
    db: str, mailbox: DovecotServer
) -> None:
    raws = [make_mail(i) for i in range(4)]
    await asyncio.to_thread(mailbox.append_many, raws)
    watcher = MailWatcher(make_config(mailbox))
    try:
        assert await watcher.sync_once() == 4
        old = (await cursor_of(watcher)).uidvalidity
        await asyncio.to_thread(mailbox.reset_uidvalidity)
        late = make_mail(50)
        await asyncio.to_thread(mailbox.append, late)
        # The same watcher: its connection died with the restart, and the UIDs now mean nothing.
        assert await watcher.sync_once() == 1
    finally:
        await watcher.close()
    assert await rows_count() == 5
    assert {r.sha256 for r in await RawMail.all()} == {sha(r) for r in [*raws, late]}
    cursor = await cursor_of(watcher)
    assert cursor.uidvalidity == mailbox.uidvalidity() != old
    assert cursor.last_uid == max(await asyncio.to_thread(mailbox.list_uids))


async def test_the_watcher_reconnects_after_a_dovecot_restart(db: str, mailbox: DovecotServer) -> None:
    watcher = MailWatcher(make_config(mailbox, idle_seconds=600), retry_base=0.05, retry_cap=0.5)
    task = asyncio.create_task(watcher.run())
    try:
        first = make_mail(1)
        await asyncio.to_thread(mailbox.append, first)
        await eventually(lambda: _exists(sha(first)), "the first mail")
        await asyncio.to_thread(mailbox.restart)
        second = make_mail(2)
        await asyncio.to_thread(mailbox.append, second)
        await eventually(lambda: _exists(sha(second)), "mail appended after the restart")
        await eventually(lambda: _true(watcher.state.connected), "the watcher to be connected again")
        assert await rows_count() == 2
    finally:
        await stop(task)


async def test_handled_folder_mode_moves_stored_mail(db: str, mailbox: DovecotServer) -> None:
    raws = [make_mail(i) for i in range(3)]
    await asyncio.to_thread(mailbox.append_many, raws)
    watcher = MailWatcher(make_config(mailbox, handled_folder="Processed/Support"))
    try:
        assert await watcher.sync_once() == 3
        assert await watcher.sync_once() == 0
    finally:
        await watcher.close()
    assert await asyncio.to_thread(mailbox.folder_exists, "Processed/Support")  # created when missing
    assert await asyncio.to_thread(mailbox.list_uids) == []
    assert await asyncio.to_thread(mailbox.count, "Processed/Support") == 3
    assert await rows_count() == 3


async def test_a_crash_between_commit_and_flag_is_repaired_on_the_next_start(
    db: str, mailbox: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [make_mail(i) for i in range(3)]
    uids = await asyncio.to_thread(mailbox.append_many, raws)

    async def connection_dies(self: ImapSession, uids: list[int]) -> None:
        raise ImapError("IMAP UID STORE: connection lost (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(ImapSession, "mark_handled", connection_dies)
        first = MailWatcher(make_config(mailbox))
        with pytest.raises(ImapError):
            await first.sync_once()
        await first.close()
    assert await rows_count() == 3  # committed before the flag was attempted
    assert not any(FLAG in f for f in (await asyncio.to_thread(mailbox.fetch_flags)).values())

    second = MailWatcher(make_config(mailbox))
    try:
        assert await second.sync_once() == 0
    finally:
        await second.close()
    flags = await asyncio.to_thread(mailbox.fetch_flags)
    assert all(FLAG in flags[u] for u in uids)
    assert await rows_count() == 3


async def test_a_wrong_password_is_reported_once_retried_and_recovers(
    db: str, mailbox: DovecotServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Wr0ng-Pa55word-zzq"
    await asyncio.to_thread(mailbox.append, make_mail(1))
    watcher = MailWatcher(make_config(mailbox, password=secret), retry_base=0.05, retry_cap=0.2)
    task = asyncio.create_task(watcher.run())
    try:
        await eventually(lambda: _true(watcher.state.failures >= 3), "three failed attempts")
        assert watcher.state.last_error is not None
        assert "login" in watcher.state.last_error and "AUTHENTICATIONFAILED" in watcher.state.last_error
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "login" in r.getMessage()]
        assert len(warnings) == 1  # once per state change, not once per retry
        # The operator fixes the password on the server side: the watcher recovers by itself.
        mailbox.add_user(mailbox.user, secret)
        await eventually(lambda: _true(watcher.state.failures == 0 and watcher.state.connected), "recovery")
        assert await rows_count() == 1
    finally:
        await stop(task)
    assert secret not in caplog.text
    assert mailbox.password not in caplog.text


async def test_check_imap_describes_the_mailbox_or_the_problem(db: str, mailbox: DovecotServer) -> None:
    await asyncio.to_thread(mailbox.append, make_mail(1))
    text = await check_imap(make_config(mailbox))
    assert text.startswith("IMAP OK") and "1 messages" in text and "IDLE" in text
    with pytest.raises(ImapError) as failed:
        await check_imap(make_config(mailbox, password="nope-nope-123"))
    assert "AUTHENTICATIONFAILED" in str(failed.value) and "nope-nope-123" not in str(failed.value)
    with pytest.raises(ImapError, match="connect"):
        await check_imap(make_config(mailbox, port=1))
    with pytest.raises(ImapConfigError, match="STARTTLS"):  # the test server offers no TLS at all
        await check_imap(make_config(mailbox, security="starttls"))


# -- kill -9 --------------------------------------------------------------------------------------


def _start_watcher(mailbox: DovecotServer, database_url: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        WATCHER_HOST=mailbox.host,
        WATCHER_PORT=str(mailbox.port),
        WATCHER_USER=mailbox.user,
        WATCHER_PASSWORD=mailbox.password,
        WATCHER_DATABASE_URL=database_url,
        WATCHER_BATCH_SIZE="25",  # small batches: more commit/flag windows for the kills to hit
    )
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.run_watcher"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def _wait_started(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    assert line.strip() == b"watcher started", line


async def test_kill_9_at_random_moments_loses_and_doubles_nothing(db: str, mailbox: DovecotServer) -> None:
    seed = random.randrange(1 << 30)
    print(f"kill -9 test seed: {seed}")
    rnd = random.Random(seed)
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    raws = [make_mail(i) for i in range(1500)]
    await asyncio.to_thread(
        mailbox.bulk_import, [(raw, start + timedelta(seconds=i)) for i, raw in enumerate(raws)]
    )
    server_uids = await asyncio.to_thread(mailbox.list_uids)

    # Kill while ingestion is under way: each run is killed once the table has passed a random
    # row count (then after a random few milliseconds), so the kills land between fetch, commit
    # and flag at random. The parent only runs short reads, so it never holds SQLite's write lock.
    for low, high in ((1, 400), (450, 900), (950, 1400)):
        target = rnd.randint(low, high)
        proc = _start_watcher(mailbox, db)
        try:
            await _wait_started(proc)
            deadline = time.monotonic() + 60
            for _ in iter(int, 1):  # until the target row count (or the deadline) is reached
                if await rows_count() >= target or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(rnd.uniform(0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(reap, proc, 30)
        print(f"killed after row {target}: {await rows_count()} rows stored")

    proc = _start_watcher(mailbox, db)
    try:
        await _wait_started(proc)

        async def done() -> bool:
            cursor = await MailCursor.get_or_none(mailbox=f"{mailbox.user}/INBOX")
            if cursor is None or cursor.last_uid != max(server_uids):
                return False
            flags = await asyncio.to_thread(mailbox.fetch_flags)
            return all(FLAG in flags[u] for u in server_uids)

        await eventually(done, "the restarted watcher to catch up", limit=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(reap, proc, 30) == 0

    stored = await RawMail.all().values_list("sha256", "id", "uid")
    contents = await load_contents(i for _, i, _ in stored)
    rows = [(s, contents[i], u) for s, i, u in stored]
    assert len(rows) == len(raws)
    assert sorted(s for s, _, _ in rows) == sorted(sha(raw) for raw in raws)
    ids = [email.message_from_bytes(bytes(content))["Message-ID"] for _, content, _ in rows]
    assert sorted(ids) == sorted(email.message_from_bytes(raw)["Message-ID"] for raw in raws)
    assert sorted(u for _, _, u in rows) == server_uids
    assert (await MailCursor.get(mailbox=f"{mailbox.user}/INBOX")).last_uid == max(server_uids)


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def tls_dovecot(tmp_path: Path) -> Iterator[tuple[DovecotServer, int, ssl.SSLContext]]:
    """A separate Dovecot with a self-signed certificate: STARTTLS on .port, implicit TLS on the
    returned port. (The shared server has TLS off, and its config is not ours to change.)"""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = DovecotServer()
    server.start()
    try:
        tls_port = free_port()
        conf = server.config_path.read_text()
        conf = conf.replace("ssl = no", f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}")
        conf = conf.replace(
            "inet_listener imaps {\n    port = 0",
            f"inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}",
        )
        server.config_path.write_text(conf)
        server.restart()
        yield server, tls_port, ssl.create_default_context(cafile=str(cert))
    finally:
        server.stop()


async def test_starttls_and_ssl_both_work_and_verify_the_certificate(
    db: str, tls_dovecot: tuple[DovecotServer, int, ssl.SSLContext]
) -> None:
    server, tls_port, trust = tls_dovecot
    raw = make_mail(1)
    await asyncio.to_thread(server.append, raw)
    for security, port in (("starttls", server.port), ("ssl", tls_port)):
        config = make_config(server, security=security, port=port, ssl_context=trust)
        session = ImapSession(config)
        try:
            await session.connect()
            assert session._client is not None
            assert session._client.protocol.transport.get_extra_info("ssl_object") is not None  # really TLS
            await session.login()
            await session.select()
            assert [m.raw for m in await session.fetch_batch(await session.uid_search_after(0))] == [raw]
        finally:
            await session.logout()
    watcher = MailWatcher(make_config(server, security="starttls", ssl_context=trust))
    try:
        assert await watcher.sync_once() == 1
    finally:
        await watcher.close()
    # Without trusting the self-signed certificate, the connection is refused (no silent downgrade).
    for security, port in (("starttls", server.port), ("ssl", tls_port)):
        with pytest.raises(ImapError, match="CERTIFICATE_VERIFY_FAILED"):
            await check_imap(make_config(server, security=security, port=port))
