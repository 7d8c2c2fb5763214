"""The SQLite engine (models/store/sqlite_engine.py): a transaction takes the write lock when it begins.

Two bridge processes share one SQLite file in webhook mode. Another process stands here as a plain
sqlite3 connection on the same file, run in a thread as that process would run beside us."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from tortoise.connection import get_connection
from tortoise.exceptions import OperationalError
from tortoise.transactions import in_transaction

from models.store.sqlite_engine import BridgeSqliteClient


def _file(db: str) -> str:
    if not db.startswith("sqlite"):
        pytest.skip("SQLite's locking; PostgreSQL transactions do not upgrade a snapshot")
    return db.removeprefix("sqlite://").split("?", 1)[0]


def _other_process_inserts(path: str, writer: str) -> None:
    other = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        other.execute("INSERT INTO engine_probe (writer) VALUES (?)", (writer,))
    finally:
        other.close()


async def _writers() -> list[str]:
    rows = await get_connection("default").execute_query_dict("SELECT writer FROM engine_probe ORDER BY rowid")
    return [r["writer"] for r in rows]


async def test_the_bridge_connects_to_sqlite_through_its_engine(db: str) -> None:
    _file(db)
    assert isinstance(get_connection("default"), BridgeSqliteClient)


async def test_a_transaction_that_read_first_still_writes_after_another_process_wanted_to(db: str) -> None:
    # With tortoise's deferred BEGIN the other process commits during the pause, and the INSERT below
    # fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT: the busy timeout is not consulted).
    path = _file(db)
    await get_connection("default").execute_script("CREATE TABLE engine_probe (writer TEXT NOT NULL)")
    async with in_transaction() as tx:
        await tx.execute_query("SELECT count(*) FROM engine_probe")  # the snapshot a deferred BEGIN reads from
        other = asyncio.create_task(asyncio.to_thread(_other_process_inserts, path, "other"))
        await asyncio.sleep(0.3)
        assert not other.done()  # it waits for our write lock
        await tx.execute_query("INSERT INTO engine_probe (writer) VALUES ('bridge')")
    await asyncio.wait_for(other, 30)
    assert await _writers() == ["bridge", "other"]


async def test_a_begin_that_waits_too_long_fails_and_leaves_the_connection_usable(db: str) -> None:
    path = _file(db)
    conn = get_connection("default")
    await conn.execute_script("CREATE TABLE engine_probe (writer TEXT NOT NULL)")
    await conn.execute_script("PRAGMA busy_timeout=200")
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock past our busy timeout
        with pytest.raises(OperationalError, match="locked"):
            async with in_transaction() as tx:
                await tx.execute_query("INSERT INTO engine_probe (writer) VALUES ('never')")
        blocker.execute("INSERT INTO engine_probe (writer) VALUES ('other')")
        blocker.execute("COMMIT")
    finally:
        blocker.close()
    # The failed BEGIN gave back the connection's lock: the next statement and transaction run.
    async with asyncio.timeout(10):
        async with in_transaction() as tx:
            await tx.execute_query("INSERT INTO engine_probe (writer) VALUES ('bridge')")
        assert await _writers() == ["other", "bridge"]
