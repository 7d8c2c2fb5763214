"""Compat: what we take from tortoise-orm's internals (pinned: tortoise-orm==1.1.9), in one place.

Replaces: nothing is monkey-patched; three private reaches that tortoise gives no public way to.
- `insert_statement`: the INSERT tortoise prepares and caches per model and database
  (`BaseExecutor.regular_columns` / `insert_query` and their `_all` twins), for models/store/fast_rows.py's
  `RowInserter`, which inserts plain rows without building a model instance. Buys about 0.2 ms of CPU per
  row on the event loop (`Model.create`'s validation and bookkeeping; docs/benchmarks.md, ingest groups),
  three rows per request under a backlog. Signals do not fire on that path (none is registered).
- `transaction_driver`: a SQLite transaction client's aiosqlite connection (`_connection`), for
  models/store/raw_store.py's in-place blob write (with models/store/compat_aiosqlite.py). Buys: a big mail is not
  copied twice more by SQLite (+2x the mail's size in RSS; docs/benchmarks.md, raw mail store).
- the SQLite transaction's begin, its context's entry and the client's `_in_transaction`, which
  models/store/sqlite_engine.py overrides in subclasses to begin IMMEDIATE (nothing is patched in place).
  Buys: a transaction of one bridge process no longer fails at once with "database is locked" when
  another process on the same file committed since it began reading (tests/test_sqlite_engine.py).
Checked by tests/test_compat.py: the installed version and the source of each attribute relied on; the
behaviour by tests/test_fast_rows.py, tests/test_raw_store.py, tests/test_ingest_groups.py.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

LIBRARY = "tortoise-orm"
PINNED = "1.1.9"
# The first 16 hex digits of the SHA-256 of `inspect.getsource` of what we rely on (tests/test_compat.py).
FINGERPRINTS = {
    "tortoise.backends.base.executor.BaseExecutor.__init__": "d47455973393195b",
    "tortoise.backends.sqlite.client.SqliteTransactionWrapper.__init__": "3b4727c9f966ecb8",
    # models/store/sqlite_engine.py replaces these three in its subclasses (BEGIN IMMEDIATE): when tortoise
    # changes them, re-check that the subclasses still do what tortoise's do apart from that.
    "tortoise.backends.sqlite.client.SqliteClient._in_transaction": "f40b90ec19d27e53",
    "tortoise.backends.sqlite.client.SqliteTransactionWrapper.begin": "f2754f0a93e703cd",
    "tortoise.backends.sqlite.client.SqliteTransactionContext.__aenter__": "0fb0ed89e66c8595",
}


def insert_statement(conn: BaseDBAsyncClient, model: type[Model], *, with_keys: bool = False) -> tuple[list[str], str]:
    """(columns, INSERT statement) tortoise itself uses for `model` on `conn`; with `with_keys`, the one
    that takes the primary key too. Built once per model and database (tortoise's executor cache)."""
    executor = conn.executor_class(model=model, db=conn)
    if with_keys:
        return executor.regular_columns_all, executor.insert_query_all
    return executor.regular_columns, executor.insert_query


def transaction_driver(conn: BaseDBAsyncClient) -> Any | None:
    """The driver connection under a tortoise client (an aiosqlite Connection on SQLite), or None."""
    return getattr(conn, "_connection", None)
