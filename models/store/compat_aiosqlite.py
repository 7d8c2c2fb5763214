"""Compat: what we take from aiosqlite's internals (pinned: aiosqlite==0.22.1), in one place.

Replaces: nothing is monkey-patched; aiosqlite gives no public way to run a function on its connection's
thread with the `sqlite3.Connection` itself, which SQLite's incremental blob I/O (`blobopen`) needs.
`run_with_sqlite` queues `fn(sqlite3.Connection)` with the private `Connection._execute` and reads the
private `_conn` there. Used by models/store/raw_store.py: a big mail is written into a `zeroblob` in 1 MB
chunks, so SQLite does not copy it twice more (+2x the mail's size in RSS; docs/benchmarks.md, raw mail
store). When an attribute is missing it returns None and the caller inserts normally (memory, not mail).
Checked by tests/test_compat.py (the installed version and the source of each attribute relied on) and
tests/test_raw_store.py, tests/test_sqlite_file.py (behaviour).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

LIBRARY = "aiosqlite"
PINNED = "0.22.1"
# The first 16 hex digits of the SHA-256 of `inspect.getsource` of what we rely on (tests/test_compat.py).
FINGERPRINTS = {
    "aiosqlite.core.Connection._execute": "11f83d6bbbe803e3",
    "aiosqlite.core.Connection._conn": "2b88b77116bfb96a",
}

T = TypeVar("T")


async def run_with_sqlite(aio: Any, fn: Callable[[sqlite3.Connection], T]) -> T | None:
    """`fn(the sqlite3.Connection)` on aiosqlite connection `aio`'s own thread (the only thread that may
    use it); None without running it when aiosqlite's internals are not what this module expects."""
    execute = getattr(aio, "_execute", None)
    if aio is None or not callable(execute):
        return None

    def call() -> T | None:
        try:
            db = aio._conn
        except (AttributeError, ValueError):  # ValueError: aiosqlite's "no active connection"
            return None
        if not isinstance(db, sqlite3.Connection):
            return None
        return fn(db)

    result: T | None = await execute(call)
    return result
