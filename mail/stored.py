"""Parse a stored raw mail inside a parse worker, reading its bytes there instead of in the main process.

Why: with a process pool, handing the bytes over means the main process loads every raw mail from the
database and pickles it down a pipe: three transient copies of a 25 MB message in the process that also
runs the bot, and CPU taken from the event loop that ingests. So the main process sends an id and gets
back the parsed message, which holds text and attachment metadata only; each worker reads the row over
a connection of its own, kept for the life of the worker:

- SQLite: a read-only sqlite3 connection (WAL lets readers run beside the writer);
- PostgreSQL: an asyncpg connection driven by a small event loop private to the worker (asyncpg is the
  driver tortoise already uses; no synchronous driver is a dependency). A pool of N workers holds N
  more server connections.

None from a worker means "not read here": the row is not visible to its connection yet (SQLite: the
shared connection of the main process can see a batch the watcher has not committed) or, on PostgreSQL,
the worker could not reach the server. The main process then hands the bytes over itself, so a database
hiccup in a worker never turns into a quarantined mail.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_connections: dict[str, sqlite3.Connection] = {}
_pg_readers: dict[tuple[tuple[str, Any], ...], _PostgresReader] = {}

PG_TIMEOUT_SECONDS = 60.0  # a worker never waits for the server longer than this (then: hand-over)
_PG_SELECT = "SELECT content FROM raw_mail_content WHERE id = $1"


def sqlite_path(database_url: str) -> Path | None:
    """The file of a `sqlite://` URL (None for other databases and for in-memory SQLite)."""
    if not database_url.startswith("sqlite://"):
        return None
    path = database_url.removeprefix("sqlite://").split("?", 1)[0]
    if not path or ":memory:" in path:
        return None
    return Path(path).resolve()


def postgres_params(database_url: str) -> dict[str, Any] | None:
    """asyncpg.connect arguments for a `postgres://` URL as tortoise reads it (None for other databases).

    Worked out in the main process, which has tortoise imported: the worker only gets a plain dict.
    Only what says where and who (host, port, user, password, database, ssl) is kept; pool sizes and
    the other tortoise options mean nothing to a single connection."""
    from models.store.db import normalise_url

    url = normalise_url(database_url)
    if not url.startswith(("postgres://", "asyncpg://")):
        return None
    from tortoise.backends.base.config_generator import expand_db_url

    credentials = expand_db_url(url)["credentials"]
    wanted = ("host", "port", "user", "password", "database", "ssl")
    return {key: credentials[key] for key in wanted if credentials.get(key) is not None}


def _connection(path: str) -> sqlite3.Connection:
    # One read-only connection per worker process, kept: opening one per mail would cost more than reading.
    conn = _connections.get(path)
    if conn is None:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        _connections[path] = conn
    return conn


def read_raw_mail(path: str, raw_mail_id: int) -> bytes | None:
    """The stored bytes of one raw mail, or None when this connection cannot see the row (yet)."""
    row = _connection(path).execute("SELECT content FROM raw_mail_content WHERE id = ?", (raw_mail_id,)).fetchone()
    return None if row is None else bytes(row[0])


class _PostgresReader:
    """One asyncpg connection and the event loop that drives it, in a worker process (which runs its
    tasks one at a time on one thread, with no loop of its own)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.loop = asyncio.new_event_loop()
        self.conn: Any = None

    def read(self, raw_mail_id: int) -> bytes | None:
        import asyncpg  # here, not at the top: SQLite workers never load it

        try:
            return self.loop.run_until_complete(asyncio.wait_for(self._read(raw_mail_id), PG_TIMEOUT_SECONDS))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._drop(exc)  # and a new connection for the next mail
            return None

    async def _read(self, raw_mail_id: int) -> bytes | None:
        import asyncpg

        if self.conn is None or self.conn.is_closed():
            # A fixed statement: asyncpg prepares it once per connection and reuses it.
            self.conn = await asyncpg.connect(**self.params, timeout=PG_TIMEOUT_SECONDS)
        content = await self.conn.fetchval(_PG_SELECT, raw_mail_id)
        return None if content is None else bytes(content)

    def _drop(self, exc: BaseException) -> None:
        log.warning("a parse worker could not read a raw mail from PostgreSQL (%s): handed over instead", exc)
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.terminate()  # no waiting on a broken connection


def read_raw_mail_pg(params: dict[str, Any], raw_mail_id: int) -> bytes | None:
    """The stored bytes of one raw mail read over this worker's PostgreSQL connection, or None (no such
    row, or the server could not be reached: the main process then hands the bytes over)."""
    key = tuple(sorted(params.items()))
    reader = _pg_readers.get(key)
    if reader is None:
        reader = _pg_readers[key] = _PostgresReader(params)
    return reader.read(raw_mail_id)


def parse_stored_mail(raw_mail_id: int, *, path: str, parser: Callable[[bytes], Any]) -> Any:
    """Read and parse in the worker (SQLite). None: the row is not visible here; the caller sends the bytes."""
    raw = read_raw_mail(path, raw_mail_id)
    return None if raw is None else parser(raw)


def parse_stored_mail_pg(raw_mail_id: int, *, params: dict[str, Any], parser: Callable[[bytes], Any]) -> Any:
    """Read and parse in the worker (PostgreSQL). None: not read here; the caller sends the bytes."""
    raw = read_raw_mail_pg(params, raw_mail_id)
    return None if raw is None else parser(raw)


def stored_mail_parser(database_url: str, parser: Callable[[bytes], Any]) -> Callable[[int], Any] | None:
    """A picklable `raw mail id -> parsed message` for a process pool, when the database allows it
    (a SQLite file or PostgreSQL; not in-memory SQLite, which no other process can open)."""
    path = sqlite_path(database_url)
    if path is not None:
        return functools.partial(parse_stored_mail, path=str(path), parser=parser)
    params = postgres_params(database_url)
    if params is not None:
        return functools.partial(parse_stored_mail_pg, params=params, parser=parser)
    return None
