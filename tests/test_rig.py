"""Proof that the real-server rig (tests/rig) works with the real client libraries.

Run with: .venv/bin/pytest -p tests.rig.plugin tests/test_rig.py -q
(or just pytest once tests/conftest.py has ``pytest_plugins = ["tests.rig.plugin"]``).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aioimaplib
import aiosmtplib
import asyncpg
import pytest

from tests.rig.dovecot import DovecotServer
from tests.rig.postgres import PostgresCluster
from tests.rig.smtp import SmtpCapture

IMAP_TIMEOUT = 20  # generous: these bound hangs, they do not assert on speed
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_UID = re.compile(rb"UID (\d+)")


def make_mail(subject: str, body: str = "Hello") -> bytes:
    return (
        f"From: Client <client@example.com>\r\nTo: support@storeolis.ru\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\n\r\n{body}\r\n"
    ).encode()


@asynccontextmanager
async def imap_client(server: DovecotServer, folder: str = "INBOX") -> AsyncIterator[aioimaplib.IMAP4]:
    client = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=IMAP_TIMEOUT)
    await asyncio.wait_for(client.wait_hello_from_server(), IMAP_TIMEOUT)
    login = await asyncio.wait_for(client.login(server.user, server.password), IMAP_TIMEOUT)
    assert login.result == "OK", login
    selected = await asyncio.wait_for(client.select(folder), IMAP_TIMEOUT)
    assert selected.result == "OK", selected
    try:
        yield client
    finally:
        try:
            await asyncio.wait_for(client.logout(), IMAP_TIMEOUT)
        finally:
            # LOGOUT returns on the tagged OK, maybe before the server's close is read; a transport
            # left open when the test's loop ends is an "unclosed transport" ResourceWarning.
            if client.protocol.transport is not None:
                client.protocol.transport.close()


async def fetch_dates(client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, datetime]:
    """UID -> INTERNALDATE, fetched in batches of 100 (aioimaplib chokes on huge responses)."""
    dates: dict[int, datetime] = {}
    for start in range(0, len(uids), 100):
        batch = uids[start : start + 100]
        resp = await asyncio.wait_for(
            client.uid("fetch", f"{batch[0]}:{batch[-1]}", "(UID INTERNALDATE)"), IMAP_TIMEOUT
        )
        assert resp.result == "OK", resp
        for line in resp.lines:
            date, uid = _INTERNALDATE.search(line), _UID.search(line)
            if date and uid:
                dates[int(uid.group(1))] = datetime.strptime(date.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    return dates


# -- Dovecot ------------------------------------------------------------------------------------


async def test_append_is_seen_by_aioimaplib_with_internaldate(mailbox: DovecotServer) -> None:
    raw = make_mail("order 42", "Где мой заказ?")
    when = datetime(2024, 3, 5, 10, 30, 15, tzinfo=UTC)
    uid = mailbox.append(raw, internal_date=when)
    assert mailbox.list_uids() == [uid]

    async with imap_client(mailbox) as client:
        resp = await asyncio.wait_for(
            client.uid("fetch", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])"), IMAP_TIMEOUT
        )
    assert resp.result == "OK", resp
    header = resp.lines[0]
    assert f"UID {uid} ".encode() in header
    got = datetime.strptime(_INTERNALDATE.search(header).group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
    assert got == when
    literal = next(line for line in resp.lines if isinstance(line, bytearray))
    assert bytes(literal) == raw
    assert "\\Seen" not in mailbox.fetch_flags()[uid]  # BODY.PEEK[] must not mark it read


async def test_append_to_other_folder_with_flags(mailbox: DovecotServer) -> None:
    assert not mailbox.folder_exists("Archive/2024")
    uid = mailbox.append(make_mail("archived"), folder="Archive/2024", flags="\\Seen \\Flagged")
    assert mailbox.folder_exists("Archive/2024")
    assert {"\\Seen", "\\Flagged"} <= mailbox.fetch_flags("Archive/2024")[uid]
    assert mailbox.count("Archive/2024") == 1
    assert mailbox.count() == 0


async def test_mailboxes_are_isolated_per_test(dovecot: DovecotServer, mailbox: DovecotServer) -> None:
    assert mailbox.user != dovecot.user
    mailbox.append(make_mail("only mine"))
    assert mailbox.count() == 1
    assert dovecot.count() == 0
    assert dovecot.port == mailbox.port


async def test_idle_gets_exists_push_after_append_from_another_connection(mailbox: DovecotServer) -> None:
    mailbox.append(make_mail("first"))
    async with imap_client(mailbox) as client:
        idle = await client.idle_start(timeout=60)
        # The rig appends over its own imaplib connection: a different IMAP session.
        await asyncio.to_thread(mailbox.append, make_mail("second"))
        pushed: list[bytes] = []
        while not any(line.endswith(b"EXISTS") for line in pushed):
            pushed.extend(await client.wait_server_push(IMAP_TIMEOUT))
        client.idle_done()
        await asyncio.wait_for(idle, IMAP_TIMEOUT)
    assert b"2 EXISTS" in pushed


async def test_bulk_import_300_with_internaldate_order(mailbox: DovecotServer) -> None:
    base = datetime(2023, 6, 1, 8, 0, tzinfo=UTC)
    mails = [(make_mail(f"bulk {i}"), base + timedelta(minutes=7 * i)) for i in range(300)]
    mailbox.bulk_import(mails)
    assert mailbox.count() == 300
    uids = mailbox.list_uids()
    assert len(uids) == 300

    async with imap_client(mailbox) as client:
        dates = await fetch_dates(client, uids)
    assert [dates[uid] for uid in uids] == [when for _, when in mails]


async def test_bulk_import_after_append_keeps_order_and_other_folder(mailbox: DovecotServer) -> None:
    first = mailbox.append(make_mail("appended"))
    mailbox.bulk_import([(make_mail(f"b{i}"), datetime(2022, 1, 1, i, tzinfo=UTC)) for i in range(3)])
    uids = mailbox.list_uids()
    assert uids[0] == first and len(uids) == 4
    mailbox.bulk_import([(make_mail("old"), datetime(2020, 1, 1, tzinfo=UTC))], folder="Old")
    assert mailbox.count("Old") == 1


async def test_reset_uidvalidity_changes_it_and_keeps_messages(mailbox: DovecotServer) -> None:
    raws = [make_mail(f"keep {i}") for i in range(3)]
    mailbox.append_many(raws, internal_date=datetime(2024, 1, 1, tzinfo=UTC))
    async with imap_client(mailbox) as client:
        before = (await client.select("INBOX")).lines
    mailbox.reset_uidvalidity()

    async with imap_client(mailbox) as client:
        after = (await client.select("INBOX")).lines
        resp = await asyncio.wait_for(client.uid("fetch", "1:*", "(BODY.PEEK[])"), IMAP_TIMEOUT)
    validity = re.compile(rb"UIDVALIDITY (\d+)")
    old = next(validity.search(line).group(1) for line in before if validity.search(line))
    new = next(validity.search(line).group(1) for line in after if validity.search(line))
    assert old != new
    bodies = sorted(bytes(line) for line in resp.lines if isinstance(line, bytearray))
    assert bodies == sorted(raws)


async def test_restart_keeps_mail_and_reconnects(mailbox: DovecotServer) -> None:
    first = mailbox.append(make_mail("before restart"))
    mailbox.restart()
    second = mailbox.append(make_mail("after restart"))  # the rig's own connection reconnects
    assert second > first
    assert mailbox.list_uids() == [first, second]
    async with imap_client(mailbox) as client:
        resp = await client.uid_search("ALL")
    assert resp.result == "OK"


def test_private_server_start_stop_cleans_up() -> None:
    server = DovecotServer(users={"a@storeolis.ru": "pw-a", "b@storeolis.ru": "pw-b"})
    server.start()
    root = server.root
    try:
        assert server.config_path.exists()
        assert server.append(make_mail("to b"), user="b@storeolis.ru") == 1
        assert server.count() == 0  # default user is the first one
        assert server.with_user("b@storeolis.ru").count() == 1
        server.delete_all(folder="INBOX")
        assert server.with_user("b@storeolis.ru").count() == 1
        server.with_user("b@storeolis.ru").delete_all()
        assert server.with_user("b@storeolis.ru").count() == 0
    finally:
        server.stop()
    assert not root.exists()
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), timeout=2):
        pass


# -- SMTP ---------------------------------------------------------------------------------------

RAW_MAIL = (
    b"From: support@storeolis.ru\r\nTo: client@example.com\r\nSubject: =?utf-8?b?0J7RgtCy0LXRgg==?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b".leading dot survives dot-stuffing\r\n\xd0\x97\xd0\xb4\xd1\x80\xd0\xb0\xd0\xb2\xd1\x81\xd1\x82\xd0\xb2\xd1\x83\xd0\xb9\xd1\x82\xd0\xb5\r\n"
    b"trailing spaces   \r\n"
)


async def send(capture: SmtpCapture, raw: bytes = RAW_MAIL, **kwargs: object) -> None:
    await aiosmtplib.send(
        raw,
        sender="support@storeolis.ru",
        recipients=["client@example.com"],
        hostname=capture.host,
        port=capture.port,
        timeout=IMAP_TIMEOUT,
        **kwargs,
    )


async def test_smtp_capture_is_byte_exact(smtp_server: SmtpCapture) -> None:
    await send(smtp_server)
    await send(smtp_server, make_mail("second"))
    mails = await smtp_server.wait_for_count(2, timeout=IMAP_TIMEOUT)
    assert mails[0].data == RAW_MAIL
    assert mails[0].mail_from == "support@storeolis.ru"
    assert mails[0].rcpt_tos == ["client@example.com"]
    assert mails[0].message["Subject"] == "Ответ"
    assert mails[0].received_at.tzinfo is not None
    assert mails[1].message["Subject"] == "second"


async def test_smtp_tempfail_on_rcpt(smtp_server: SmtpCapture) -> None:
    smtp_server.set_mode("tempfail")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await send(smtp_server)
    assert [err.code for err in info.value.recipients] == [451]
    assert smtp_server.messages == []


async def test_smtp_tempfail_on_data(smtp_server: SmtpCapture) -> None:
    smtp_server.set_mode("tempfail_data")
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        await send(smtp_server)
    assert info.value.code == 451
    assert smtp_server.messages == []


async def test_smtp_permfail(smtp_server: SmtpCapture) -> None:
    smtp_server.set_mode("permfail")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await send(smtp_server)
    assert [err.code for err in info.value.recipients] == [550]
    assert "5.1.1" in info.value.recipients[0].message


async def test_smtp_down_then_back_on_same_port(smtp_server: SmtpCapture) -> None:
    port = smtp_server.port
    smtp_server.set_mode("down")
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await send(smtp_server)
    smtp_server.set_mode(None)
    assert smtp_server.port == port
    await send(smtp_server)
    assert len(await smtp_server.wait_for_count(1, timeout=IMAP_TIMEOUT)) == 1


async def test_smtp_drop_after_data_records_but_client_sees_disconnect(smtp_server: SmtpCapture) -> None:
    smtp_server.set_mode("drop_after_data")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send(smtp_server)
    mails = await smtp_server.wait_for_count(1, timeout=IMAP_TIMEOUT)
    assert mails[0].data == RAW_MAIL
    smtp_server.set_mode(None)
    await send(smtp_server)
    assert len(await smtp_server.wait_for_count(2, timeout=IMAP_TIMEOUT)) == 2


async def test_smtp_auth(smtp_server: SmtpCapture) -> None:
    smtp_server.require_auth("bridge", "s3cret")
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:
        await send(smtp_server)
    assert info.value.code == 530
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await send(smtp_server, username="bridge", password="wrong")
    await send(smtp_server, username="bridge", password="s3cret")
    mails = await smtp_server.wait_for_count(1, timeout=IMAP_TIMEOUT)
    assert mails[0].auth_user == "bridge"


async def test_smtp_auth_login_mechanism(smtp_server: SmtpCapture) -> None:
    smtp_server.require_auth("bridge", "s3cret")
    async with aiosmtplib.SMTP(hostname=smtp_server.host, port=smtp_server.port, start_tls=False) as client:
        await client.ehlo()  # auth_login(), unlike login(), does not say EHLO by itself
        await client.auth_login("bridge", "s3cret")
        await client.sendmail("support@storeolis.ru", ["client@example.com"], RAW_MAIL)
    assert (await smtp_server.wait_for_count(1, timeout=IMAP_TIMEOUT))[0].data == RAW_MAIL


# -- PostgreSQL / database_url --------------------------------------------------------------------


async def test_postgres_cluster_create_connect_drop(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.create_database("rig_check")
    assert url == f"postgres://postgres@127.0.0.1:{postgres_cluster.port}/rig_check"
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "rig_check"
    finally:
        await conn.close()
    postgres_cluster.drop_database("rig_check")
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(url)


async def test_database_url_is_fresh(database_url: str) -> None:
    setting = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not setting:
        assert database_url.startswith("sqlite:///") and database_url.endswith("/test.sqlite3")
        return
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval("select count(*) from pg_tables where schemaname = 'public'")
    finally:
        await conn.close()
    assert tables == 0
