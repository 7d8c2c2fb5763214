"""tortoise's SQLite engine, with transactions that take the write lock when they begin.

Why: tortoise starts every transaction with a plain (deferred) `BEGIN`. In WAL mode a deferred
transaction reads from a snapshot; when it then writes while another process has committed since
that snapshot, SQLite cannot upgrade it and fails at once with "database is locked"
(SQLITE_BUSY_SNAPSHOT): the busy timeout is never consulted, because waiting could not help. With
two bridge processes on one SQLite file (webhook mode, `INSTANCE_NAME`), a staff press landing while
the other process ingests mail failed that way: the update got a 500 and had to wait for Telegram's
redelivery. `BEGIN IMMEDIATE` takes the write lock first, so a second writer waits for it (sqlite3's
5 s busy timeout) instead of failing, and what the transaction reads is what it writes over.

Within one process nothing changes: tortoise already runs every statement of a SQLite client on one
connection behind one asyncio lock. Almost every transaction here writes; the few that only read
(none on a hot path) hold the write lock for their short duration.

tortoise loads an engine by module path and takes its `client_class`; models/store/db.py names this
module for SQLite URLs, as it names pg_engine.py for PostgreSQL. The dialect, the executor, the
pragmas from the URL and nested transactions (savepoints) stay tortoise's own. What this relies on
in tortoise is fingerprinted in compat_tortoise.py (tests/test_compat.py).
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()  # as tortoise's: end any implicit transaction first
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # the lock stayed busy past the busy timeout
            raise OperationalError(exc) from exc  # what a statement that timed out raises


class ImmediateTransactionContext(SqliteTransactionContext):
    async def __aenter__(self) -> TransactionalDBClient:
        """tortoise's, except that a failing BEGIN gives back the connection's lock and the context
        variable: a deferred BEGIN never failed, a BEGIN IMMEDIATE can time out waiting for another
        process, and keeping the lock then would stall every later query of this process."""
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            self._trxlock.release()
            raise
        return self.connection


class BridgeSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return ImmediateTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = BridgeSqliteClient
ENGINE = __name__
