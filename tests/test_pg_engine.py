"""The PostgreSQL engine (models/store/pg_engine.py): a pool connection goes back without a statement."""

from __future__ import annotations

import secrets

import asyncpg
import pytest
from tortoise.connection import get_connection

from mail.stored import postgres_params


async def _last_statements(url: str) -> list[str]:
    """What every other connection to this database ran last, as the server saw it."""
    params = postgres_params(url)
    assert params is not None
    watcher = await asyncpg.connect(**params)
    try:
        rows = await watcher.fetch(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        await watcher.close()
    return [r["query"] for r in rows]


async def test_a_statement_outside_a_transaction_is_the_last_its_connection_runs(db: str) -> None:
    # asyncpg's pool would run its reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) on
    # taking the connection back: one more round trip per statement, for state the bridge never sets.
    if not db.startswith("postgres"):
        pytest.skip("PostgreSQL's connection pool")
    marker = f"SELECT 'released {secrets.token_hex(4)}'"
    await get_connection("default").execute_query(marker)
    assert marker in await _last_statements(db)

