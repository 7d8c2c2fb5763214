"""Where the bytes of a raw mail live: `raw_mail_content` (RawMailContent), one row per RawMail, same id.

Writing. Binding a big blob to an INSERT makes SQLite copy it twice (the bound parameter, then the
record it builds), +2x the mail in the process on top of our own copy. SQLite's incremental blob I/O
avoids both: insert `zeroblob(n)` (a record that only says "n zero bytes") and fill it through
`sqlite3.Connection.blobopen` in chunks. That only works because the blob is the last column of
`raw_mail_content`; in the middle of a row SQLite materialises the zeroblob anyway. The write runs on
the transaction's own connection, so the bytes commit or roll back with the RawMail rows.

tortoise and aiosqlite give no public way to that sqlite3.Connection: the private reaches are in
models/store/compat_tortoise.py (the transaction's aiosqlite connection) and models/store/compat_aiosqlite.py (a
function run on its thread with the sqlite3.Connection). A normal INSERT is used when one finds the
library not as expected (an upgrade costs memory, not mail).
PostgreSQL (asyncpg): binding a big bytea makes asyncpg encode the whole message into its (doubling)
write buffer, and asyncio keep what the socket did not take in another buffer: a 25 MB mail raised the
main process's peak by about 110 MB (docs/notes/pg.md). A big one is therefore streamed with
`COPY raw_mail_content FROM STDIN` in binary format, CHUNK_BYTES at a time (asyncpg waits for the
socket between chunks), on the transaction's own connection; a small one takes the normal INSERT.

Reading: `load_content` / `load_contents`. Parse workers on SQLite read the table themselves
(mail/stored.py).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import AsyncIterator, Iterable, Sequence

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient

from models.store.compat_aiosqlite import run_with_sqlite
from models.store.compat_tortoise import transaction_driver
from models.tables import RawMailContent

CHUNK_BYTES = 1 << 20
IN_PLACE_MIN_BYTES = 1 << 20  # below this the double copy is cheap and one executemany is faster

_INSERT_ZEROBLOB = 'INSERT INTO "raw_mail_content" ("id", "content") VALUES (?, zeroblob(?))'


async def store_contents(conn: BaseDBAsyncClient, contents: Sequence[tuple[int, bytes]]) -> None:
    """Insert the bytes of these raw mails, `(raw mail id, bytes)`, in the caller's transaction `conn`."""
    small: list[RawMailContent] = []
    for raw_mail_id, content in contents:
        if len(content) >= IN_PLACE_MIN_BYTES and (
            await _insert_in_place(conn, raw_mail_id, content) or await _copy_in_chunks(conn, raw_mail_id, content)
        ):
            continue
        small.append(RawMailContent(id=raw_mail_id, content=content))
    if small:
        await RawMailContent.bulk_create(small, using_db=conn)


async def _insert_in_place(conn: BaseDBAsyncClient, raw_mail_id: int, content: bytes) -> bool:
    """SQLite, in a transaction: insert a zeroblob and write the bytes into it in chunks. False (nothing
    written) otherwise or when a private attribute we rely on is missing: the caller inserts normally."""
    if conn.capabilities.dialect != "sqlite" or not isinstance(conn, TransactionalDBClient):
        return False  # outside a transaction the insert and the writes would commit one by one
    aio = transaction_driver(conn)
    if aio is None:
        return False

    def write(db: sqlite3.Connection) -> bool:  # on aiosqlite's thread: the only place db may be used
        if not hasattr(db, "blobopen"):
            return False
        cursor = db.execute(_INSERT_ZEROBLOB, (raw_mail_id, len(content)))
        rowid = cursor.lastrowid  # the id itself (INTEGER PRIMARY KEY), but ask rather than assume
        cursor.close()
        view = memoryview(content)
        with db.blobopen("raw_mail_content", "content", rowid) as blob:
            for start in range(0, len(view), CHUNK_BYTES):
                blob.write(view[start : start + CHUNK_BYTES])
        return True

    # The transaction client's lock: nothing else uses the connection between the insert and the writes.
    async with conn.acquire_connection():
        written = await run_with_sqlite(aio, write)
    return bool(written)


# COPY's binary format: the signature, no flags, no header extension; a row of two fields (the int4 id
# and the bytea), each with its length; -1 fields ends the data.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


async def _copy_in_chunks(conn: BaseDBAsyncClient, raw_mail_id: int, content: bytes) -> bool:
    """PostgreSQL (asyncpg), in a transaction: stream the row with COPY, CHUNK_BYTES at a time. False
    (nothing written) otherwise: the caller inserts normally."""
    if conn.capabilities.dialect != "postgres" or not isinstance(conn, TransactionalDBClient):
        return False
    async with conn.acquire_connection() as driver:  # the transaction's asyncpg connection
        if not hasattr(driver, "copy_to_table"):
            return False  # another driver (psycopg)

        async def rows() -> AsyncIterator[bytes]:
            yield _COPY_HEADER + struct.pack("!hiii", 2, 4, raw_mail_id, len(content))
            view = memoryview(content)
            for start in range(0, len(view), CHUNK_BYTES):
                yield bytes(view[start : start + CHUNK_BYTES])  # one chunk copied at a time, never the mail
            yield _COPY_TRAILER

        await driver.copy_to_table("raw_mail_content", source=rows(), columns=["id", "content"], format="binary")
    return True


async def load_content(raw_mail_id: int) -> bytes | None:
    """The stored bytes of one raw mail, or None when there is no such mail."""
    rows = await RawMailContent.filter(id=raw_mail_id).values_list("content", flat=True)
    return bytes(rows[0]) if rows else None


async def load_contents(raw_mail_ids: Iterable[int]) -> dict[int, bytes]:
    """The stored bytes of these raw mails by id (a missing id is left out)."""
    rows = await RawMailContent.filter(id__in=list(raw_mail_ids)).values_list("id", "content")
    return {raw_mail_id: bytes(content) for raw_mail_id, content in rows}
