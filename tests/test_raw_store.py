"""models/store/raw_store.py: the bytes of a raw mail in their own table, big ones written in place on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tortoise.transactions import in_transaction

from models.store import raw_store
from models.store.raw_store import load_content, load_contents, store_contents
from models.tables import RawMail, RawMailContent


async def _rows(n: int, conn) -> list[RawMail]:  # noqa: ANN001
    when = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    return [await RawMail.create(using_db=conn, mailbox="INBOX", uidvalidity=1, uid=i, internal_date=when,
                                 sha256=f"s{i}", size=0) for i in range(1, n + 1)]  # fmt: skip


async def test_small_and_big_contents_come_back_byte_for_byte(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    in_place: list[bool] = []
    original = raw_store._insert_in_place

    async def spy(conn, raw_mail_id: int, content: bytes) -> bool:  # noqa: ANN001
        in_place.append(await original(conn, raw_mail_id, content))
        return in_place[-1]

    monkeypatch.setattr(raw_store, "_insert_in_place", spy)
    big = bytes(range(256)) * (3 * 4096 + 17)  # 3 MB and a bit: four chunks, the last one short
    contents = [b"small", big, b"\x00" * 10]
    async with in_transaction() as conn:
        rows = await _rows(3, conn)
        await store_contents(conn, [(r.id, c) for r, c in zip(rows, contents, strict=True)])

    assert await load_contents(r.id for r in rows) == {r.id: c for r, c in zip(rows, contents, strict=True)}
    assert await load_content(rows[1].id) == big and await load_content(rows[2].id + 100) is None
    assert in_place == [db.startswith("sqlite://")]  # only the big one tries; only SQLite writes in place


async def test_a_rolled_back_transaction_leaves_neither_the_row_nor_its_bytes(db: str) -> None:
    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            [row] = await _rows(1, conn)
            await store_contents(conn, [(row.id, b"x" * (2 << 20))])
            raise RuntimeError("crash before commit")
    assert await RawMail.all().count() == 0 and await RawMailContent.all().count() == 0


@pytest.mark.sqlite_only
async def test_without_the_private_attributes_a_big_mail_is_inserted_normally(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.startswith("sqlite://"):
        pytest.skip("SQLite only")
    async with in_transaction() as conn:
        [row] = await _rows(1, conn)
        monkeypatch.setattr(conn, "_connection", object())  # no `_execute`: the fallback
        assert not await raw_store._insert_in_place(conn, row.id, b"y" * (2 << 20))
        monkeypatch.undo()
        await store_contents(conn, [(row.id, b"y" * (2 << 20))])
    assert await load_content(row.id) == b"y" * (2 << 20)


_LOG_STATEMENTS = """
CREATE TABLE content_writes (raw_mail_id INTEGER, statement TEXT);
CREATE FUNCTION log_content_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO content_writes VALUES (NEW.id, current_query());
    RETURN NEW;
END $$;
CREATE TRIGGER content_written BEFORE INSERT ON raw_mail_content FOR EACH ROW EXECUTE FUNCTION log_content_write();
"""


async def test_on_postgres_a_big_mail_is_streamed_with_copy_and_a_small_one_inserted(db: str) -> None:
    # Bound to an INSERT, a 25 MB mail is encoded whole into asyncpg's buffers (about 4x the mail in this
    # process); COPY sends it a chunk at a time. The server says which statement wrote each row.
    if not db.startswith("postgres"):
        pytest.skip("PostgreSQL's COPY; SQLite writes a big blob in place (above)")
    from tortoise.connection import get_connection

    await get_connection("default").execute_script(_LOG_STATEMENTS)
    big = bytes(range(256)) * (2 * 4096 + 5)  # 2 MB and a bit: three chunks
    async with in_transaction() as conn:
        small_row, big_row = await _rows(2, conn)
        await store_contents(conn, [(small_row.id, b"small"), (big_row.id, big)])
    _, rows = await get_connection("default").execute_query("SELECT raw_mail_id, statement FROM content_writes")
    how = {r[0]: r[1].split()[0].upper() for r in rows}
    assert how == {small_row.id: "INSERT", big_row.id: "COPY"}
    assert await load_contents([small_row.id, big_row.id]) == {small_row.id: b"small", big_row.id: big}
