"""A new SQLite database file is created with 16 KB pages and WAL; an existing file keeps its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from models.store import db as database
from models.tables import Ticket

pytestmark = pytest.mark.sqlite_only


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


async def test_a_new_database_gets_the_large_page_size(tmp_path: Path) -> None:
    path = tmp_path / "data" / "new.sqlite3"
    await database.apply_migrations(f"sqlite://{path}")
    try:
        assert await Ticket.all().count() == 0
    finally:
        await database.close_db()
    assert _page_size(path) == database.SQLITE_PAGE_SIZE
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE kept (x INTEGER)")
        conn.execute("INSERT INTO kept VALUES (1)")
    await database.apply_migrations(f"sqlite://{path}")
    try:
        assert await Ticket.all().count() == 0
    finally:
        await database.close_db()
    assert _page_size(path) == 4096
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
