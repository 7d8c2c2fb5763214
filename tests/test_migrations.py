"""Schema migrations on a database that already holds data (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import pytest
from tortoise.connection import get_connection
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.migrations.api import migrate

from models.store import db as database
from models.store.raw_store import load_content
from models.tables import EmailOutbox, Message, RawMail, SavedReply, Ticket, TicketStatus


async def _insert(sql: str, values: list[object]) -> None:
    conn = get_connection("default")
    if conn.capabilities.dialect != "sqlite":  # asyncpg numbers its placeholders
        for n in range(1, len(values) + 1):
            sql = sql.replace("?", f"${n}", 1)
    await conn.execute_query(sql, values)


async def test_0002_moves_the_raw_mail_bytes_into_their_own_table_and_keeps_everything_else(
    database_url: str,
) -> None:
    await migrate(config=database.tortoise_config(database_url), target="models.0001_initial")
    try:
        raws = [b"From: a@example.com\r\n\r\nfirst", bytes(range(256)) * 5000, b"\x00"]
        for i, raw in enumerate(raws, start=1):
            await _insert(
                "INSERT INTO raw_mail (mailbox, uidvalidity, uid, internal_date, sha256, size, content, status,"
                " error, created_at) VALUES ('INBOX', 7, ?, '2026-11-24 09:00:00+00:00', ?, ?, ?, 'processed',"
                " NULL, '2026-11-24 09:00:00+00:00')",
                [i, f"sha{i}", len(raw), raw],
            )
        await _insert(
            "INSERT INTO ticket (status, arrived_at, arrival_uid, month_key, counts_toward_limit, subject,"
            " sender_address, sender_name, content_hash, verdict, language, created_at, updated_at)"
            " VALUES ('new', '2026-11-24 09:00:00+00:00', 1, '2026-11', TRUE, 's', 'a@example.com', '', 'h',"
            " '{}', 'ru', '2026-11-24 09:00:00+00:00', '2026-11-24 09:00:00+00:00')",
            [],
        )
        await _insert(
            "INSERT INTO message (direction, kind, \"references\", from_address, from_name, \"to\", cc, subject,"
            " text, new_text, size, attachments, created_at, raw_mail_id, ticket_id) VALUES ('in', 'request',"
            " '', '', '', '', '', '', '', '', 0, '[]', '2026-11-24 09:00:00+00:00', 2, 1)",
            [],
        )
        await database.close_db()
        assert (await database.apply_migrations(database_url))[0] == "models.0002_raw_mail_content"  # and later ones
        assert await database.pending_migrations() == []

        rows = await RawMail.all().order_by("uid")
        assert [(r.uid, r.size, r.status.value) for r in rows] == [(1, len(raws[0]), "processed"),
                                                                   (2, len(raws[1]), "processed"),
                                                                   (3, 1, "processed")]  # fmt: skip
        assert [await load_content(r.id) for r in rows] == raws
        # Dropping the column did not touch the rows pointing at raw_mail, nor its constraints.
        assert (await Message.get(ticket_id=1)).raw_mail_id == rows[1].id
        with pytest.raises(OperationalError):
            await get_connection("default").execute_query("SELECT content FROM raw_mail")
        before = await RawMail.all().count()
        try:
            await RawMail.create(mailbox="INBOX", uidvalidity=7, uid=1, internal_date=rows[0].internal_date,
                                 sha256="again", size=0)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the unique (mailbox, uidvalidity, uid) must still hold
            assert "unique" in str(exc).lower()
        assert await RawMail.all().count() == before
    finally:
        await database.close_db()


async def test_0004_adds_saved_replies_and_merged_into_and_keeps_the_tickets(database_url: str) -> None:
    await migrate(config=database.tortoise_config(database_url), target="models.0003_search")
    try:
        await _insert(
            "INSERT INTO ticket (status, arrived_at, arrival_uid, month_key, counts_toward_limit, subject,"
            " sender_address, sender_name, content_hash, verdict, language, created_at, updated_at)"
            " VALUES ('accepted', '2026-11-24 09:00:00+00:00', 1, '2026-11', TRUE, 'Старое', 'a@example.com', '',"
            " 'h', '{}', 'ru', '2026-11-24 09:00:00+00:00', '2026-11-24 09:00:00+00:00')",
            [],
        )
        await database.close_db()
        assert "models.0004_desk_tools" in await database.apply_migrations(database_url)
        ticket = await Ticket.get(id=1)
        assert (ticket.subject, ticket.status, ticket.merged_into_id) == ("Старое", TicketStatus.ACCEPTED, None)
        await Ticket.filter(id=1).update(status=TicketStatus.MERGED, merged_into_id=1)
        assert (await Ticket.get(id=1)).status == TicketStatus.MERGED
        await SavedReply.create(name="hello", text="Здравствуйте, {client}")
        with pytest.raises(IntegrityError):
            await SavedReply.create(name="hello", text="again")
    finally:
        await database.close_db()


async def test_0005_adds_email_drafts_and_keeps_the_composed_emails(database_url: str) -> None:
    await migrate(config=database.tortoise_config(database_url), target="models.0004_desk_tools")
    try:
        await _insert(
            "INSERT INTO email_outbox (idempotency_key, event, message_id, recipients, content, status, attempts,"
            " not_before, ambiguous_resend, delivery_failed, created_at)"
            " VALUES ('accepted:1', 'accepted', 'old@storeolis.ru', '[\"a@example.com\"]', ?, 'pending', 0,"
            " '2026-11-24 09:00:00+00:00', FALSE, FALSE, '2026-11-24 09:00:00+00:00')",
            [b"Subject: composed before\r\n\r\nbody\r\n"],
        )
        await database.close_db()
        assert "models.0005_email_drafts" in await database.apply_migrations(database_url)
        old = await EmailOutbox.get(idempotency_key="accepted:1")
        assert (bytes(old.content), old.draft) == (b"Subject: composed before\r\n\r\nbody\r\n", None)
        draft = {"event": "acknowledged", "thread": {"ticket_id": 1}, "context": {"deadline": "25.11.2026 18:00"}}
        row = await EmailOutbox.create(idempotency_key="ack:1", event="acknowledged", message_id="new@storeolis.ru",
                                       recipients=["a@example.com"], content=b"", draft=draft,
                                       not_before=old.not_before)
        assert (await EmailOutbox.get(id=row.id)).draft == draft
    finally:
        await database.close_db()
