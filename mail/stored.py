"""Parse a stored raw mail inside a parse worker, reading its bytes there instead of in the main process.

Why: with a process pool, handing the bytes over means the main process loads every raw mail from the
database and pickles it down a pipe: three transient copies of a 25 MB message in the process that also
runs the bot, and CPU taken from the event loop that ingests. On SQLite a worker can read the row
itself through its own read-only connection (WAL lets readers run beside the writer), so the main
process sends an id and gets back the parsed message, which holds text and attachment metadata only.

Other databases (PostgreSQL) keep the bytes hand-over: a synchronous driver in the workers is not worth
a dependency. The main process falls back to it for a row the worker cannot see yet, too (SQLite: the
shared connection of the main process can see a batch the watcher has not committed).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

_connections: dict[str, sqlite3.Connection] = {}


def sqlite_path(database_url: str) -> Path | None:
    """The file of a `sqlite://` URL (None for other databases and for in-memory SQLite)."""
    if not database_url.startswith("sqlite://"):
        return None
    path = database_url.removeprefix("sqlite://").split("?", 1)[0]
    if not path or ":memory:" in path:
        return None
    return Path(path).resolve()


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


def parse_stored_mail(raw_mail_id: int, *, path: str, parser: Callable[[bytes], Any]) -> Any:
    """Read and parse in the worker. None: the row is not visible here; the caller sends the bytes."""
    raw = read_raw_mail(path, raw_mail_id)
    return None if raw is None else parser(raw)


def stored_mail_parser(database_url: str, parser: Callable[[bytes], Any]) -> Callable[[int], Any] | None:
    """A picklable `raw mail id -> parsed message` for a process pool, when the database allows it."""
    path = sqlite_path(database_url)
    if path is None:
        return None
    return functools.partial(parse_stored_mail, path=str(path), parser=parser)
