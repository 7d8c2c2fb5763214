"""`python -m bot backup FILE` while the real bridge ingests mail from Dovecot, then a restore.

The backup is taken between two batches of mail, with the bridge still reading: the restored copy
must be one moment of the desk (every message's ticket, every ticket's card in the outbox) and that
moment must be the source's past (the same rows, the same immutable columns, no row missing below
the copy's highest id).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers.process import BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.postgres import create_database_at, drop_database_at, pg_bin
from tests.rig.smtp import SmtpCapture
from tests.test_process import request_mail

# Columns no later step of the desk rewrites: a backed-up row must still carry these values. The one
# exception: an acknowledgement's Message gets its subject and text when the sender composes its draft
# (mail/drafts.py), after the ingest transaction that wrote the row.
_ACK = "CASE WHEN kind = 'acknowledged' THEN NULL ELSE {} END"
STABLE = {
    "ticket": "id, arrival_uid, subject, sender_address, content_hash",
    "message": f"id, ticket_id, direction, kind, message_id, {_ACK.format('subject')}, {_ACK.format('text')}",
    "email_outbox": "id, idempotency_key, ticket_id, event, message_id",
    "telegram_outbox": "id, idempotency_key, ticket_id, kind, chat_id",
}


async def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite://"):
        def read() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(f"file:{url.removeprefix('sqlite://')}?mode=ro", uri=True)
            try:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
            finally:
                conn.close()

        return await asyncio.to_thread(read)
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def count(url: str, sql: str) -> int:
    return int((await rows(url, sql))[0][0])


async def assert_one_moment(url: str) -> None:
    """Referential integrity of a desk: what one transaction writes is all there or all absent."""
    orphans = await count(url, "SELECT count(*) FROM message m LEFT JOIN ticket t ON t.id = m.ticket_id WHERE t.id IS NULL")
    assert orphans == 0
    for table in ("email_outbox", "telegram_outbox"):
        dangling = await count(
            url,
            f"SELECT count(*) FROM {table} o LEFT JOIN ticket t ON t.id = o.ticket_id "
            "WHERE o.ticket_id IS NOT NULL AND t.id IS NULL",
        )
        assert dangling == 0, table
    tickets = await count(url, "SELECT count(*) FROM ticket")
    # A ticket, its first message and its card are written in one transaction (docs/reliability.md).
    assert await count(url, "SELECT count(DISTINCT ticket_id) FROM message WHERE direction = 'in'") == tickets
    assert await count(url, "SELECT count(DISTINCT ticket_id) FROM telegram_outbox WHERE kind = 'card'") == tickets


def restore_command_env() -> dict[str, str]:
    # pg_dump must match the test cluster's server: take the binaries beside its initdb.
    return {"PATH": f"{Path(pg_bin('initdb')).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def restore(url: str, backup: Path, tmp_path: Path) -> tuple[str, str | None]:
    """Restore as docs/operations.md says; returns the restored URL and the database to drop."""
    if url.startswith("sqlite://"):
        restored = tmp_path / "restored.sqlite3"
        shutil.copyfile(backup, restored)
        return f"sqlite://{restored}", None
    server = url.rsplit("/", 1)[0]
    name = f"restored_{os.getpid()}_{threading.get_ident() % 100000}"
    new_url = create_database_at(server, name)
    subprocess.run(
        [pg_bin("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={new_url}", str(backup)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    return new_url, name


async def test_a_backup_taken_during_ingest_restores_one_consistent_moment(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram)
    if not database_url.startswith("sqlite://"):
        env.update(restore_command_env())
    migrated = await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr

    stop_appending = threading.Event()
    appended: list[int] = []

    def append_until_stopped() -> None:
        # From distinct senders, so no mail is a duplicate of another and each opens a ticket. Paced, so
        # mail is still arriving when the backup is taken however slowly the bridge starts (an unpaced
        # appender once reached its cap before the backup, and the copy was the final state).
        while not stop_appending.wait(0.02) and len(appended) < 3000:
            n = len(appended)
            raw = request_mail(f"Заявка {n}", f"Здравствуйте! Проблема номер {n} в кассе.", f"client{n}@shop{n}.ru")
            appended.append(mailbox.append(raw, internal_date=datetime.now(UTC)))

    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    appender = threading.Thread(target=append_until_stopped)
    appender.start()
    backup = tmp_path / "desk.backup"
    try:
        for _ in range(600):  # the backup must catch the bridge mid-ingest: some tickets in, more coming
            if await count(database_url, "SELECT count(*) FROM ticket") >= 3:
                break
            await asyncio.sleep(0.1)
        result = await asyncio.to_thread(run_cli, ["backup", str(backup)], env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "резервная копия записана" in result.stdout
        await asyncio.sleep(1)  # more mail after the backup: the copy must not be the final state
        stop_appending.set()
        await asyncio.to_thread(appender.join, 60)

        async def all_ingested() -> bool:
            return await count(database_url, "SELECT count(*) FROM ticket") == len(appended)

        for _ in range(1200):
            if await all_ingested():
                break
            await asyncio.sleep(0.1)
        assert await all_ingested()
    finally:
        stop_appending.set()
        code = await process.stop()
    assert code == 0, process.output()[-3000:]

    restored, drop = await asyncio.to_thread(restore, database_url, backup, tmp_path)
    try:
        backed_up = await count(restored, "SELECT count(*) FROM ticket")
        assert 3 <= backed_up < len(appended)  # a moment in the middle of the ingest
        await assert_one_moment(restored)
        await assert_one_moment(database_url)  # the checks hold on a live desk too: they are fair
        for table, columns in STABLE.items():
            copy = await rows(restored, f"SELECT {columns} FROM {table} ORDER BY id")
            top = copy[-1][0] if copy else 0
            source = await rows(database_url, f"SELECT {columns} FROM {table} WHERE id <= {top} ORDER BY id")
            if table in ("ticket", "message"):  # written by the ingest alone, in order: no gap below the top
                assert copy == source, table
            else:  # other tasks add outbox rows concurrently: the copy's rows are the source's rows
                assert set(copy) <= set(source), table
    finally:
        if drop is not None:
            await asyncio.to_thread(drop_database_at, database_url.rsplit("/", 1)[0], drop)


async def test_backup_refuses_to_overwrite_and_names_a_missing_database(tmp_path: Path, database_url: str) -> None:
    env = bridge_env(database_url=database_url, LANGUAGE="en")
    if not database_url.startswith("sqlite://"):
        env.update(restore_command_env())
        assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    else:
        env["DATABASE_URL"] = f"sqlite://{tmp_path}/absent.sqlite3"
        missing = await asyncio.to_thread(run_cli, ["backup", str(tmp_path / "b")], env, tmp_path)
        assert missing.returncode == 2
        assert "there is no database" in missing.stderr
        assert not (tmp_path / "absent.sqlite3").exists()  # a backup never creates the database
        env["DATABASE_URL"] = database_url
        assert (await asyncio.to_thread(run_cli, ["migrate"], env, tmp_path)).returncode == 0
    existing = tmp_path / "taken"
    existing.write_text("keep me")
    refused = await asyncio.to_thread(run_cli, ["backup", str(existing)], env, tmp_path)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert existing.read_text() == "keep me"


@pytest.mark.sqlite_only
async def test_without_pg_dump_the_command_to_run_is_printed_without_the_password(tmp_path: Path) -> None:
    env = bridge_env(database_url="postgresql://desk:s3cret-pw@db.example:5433/support", PATH="/nonexistent")
    result = await asyncio.to_thread(run_cli, ["backup", str(tmp_path / "x.dump")], env, tmp_path)
    assert result.returncode == 2
    assert "pg_dump" in result.stderr and "PGHOST=db.example PGPORT=5433 PGUSER=desk PGDATABASE=support" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
