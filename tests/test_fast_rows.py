"""RowInserter stores exactly what Model.create stores (on SQLite and PostgreSQL), column by column."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from models.store.fast_rows import RowInserter
from models.tables import Message, MessageDirection, TelegramOutbox, Ticket, TicketStatus

ARRIVED = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
TICKET: dict[str, Any] = dict(
    status=TicketStatus.NEW, arrived_at=ARRIVED, arrival_uid=17, month_key="2026-11", counts_toward_limit=False,
    sla_due_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC), subject="Не работает «выгрузка» ' \" ;--",
    sender_address="ivan@romashka.ru", sender_name="Иван", content_hash="ab" * 32,
    verdict={"findings": [{"code": "faq", "evidence": {"links": ["https://storeolis.ru/help"]}}], "n": 1.5},
    language="ru",
)  # fmt: skip
SKIP = {"id", "created_at", "updated_at", "ticket_id", "duplicate_of_id"}


async def columns(table: str, row_id: int) -> dict[str, Any]:
    conn = Ticket._meta.db
    _, rows = await conn.execute_query(f"SELECT * FROM {table} WHERE id = {int(row_id)}")
    return {k: v for k, v in dict(rows[0]).items() if k not in SKIP}


async def test_a_ticket_is_stored_as_create_stores_it(db: str) -> None:
    made = await Ticket.create(**TICKET)
    async with in_transaction() as conn:
        inserted = await RowInserter(Ticket).insert(conn, TICKET)
    assert inserted > made.id
    assert await columns("ticket", inserted) == await columns("ticket", made.id)
    loaded = await Ticket.get(id=inserted)
    assert loaded.arrived_at == ARRIVED and loaded.verdict == TICKET["verdict"]
    assert loaded.created_at is not None and loaded.updated_at is not None
    assert loaded.next_alert_at is None and loaded.client_id is None


async def test_many_messages_and_posts_are_stored_as_create_stores_them(db: str) -> None:
    ticket = await Ticket.create(**TICKET)
    message: dict[str, Any] = dict(
        ticket_id=ticket.id, direction=MessageDirection.INBOUND, kind="request", message_id="x@y", references="",
        from_address="ivan@romashka.ru", subject="s", text="t", new_text="t", size=10,
        attachments=[{"filename": "a.pdf", "sha256": "00"}],
    )  # fmt: skip
    post: dict[str, Any] = dict(
        ticket_id=ticket.id, kind="card", chat_id=-100123, payload={"render": {"ticket_card": ticket.id}},
        not_before=ARRIVED,
    )  # fmt: skip
    made_message = await Message.create(**message)
    made_post = await TelegramOutbox.create(idempotency_key="card:a", **post)
    async with in_transaction() as conn:
        await RowInserter(Message).insert_many(conn, [message, {**message, "message_id": "z@y"}])
        await RowInserter(TelegramOutbox).insert_many(conn, [{"idempotency_key": "card:b", **post}])
    copies = await Message.filter(id__gt=made_message.id).order_by("id")
    assert [m.message_id for m in copies] == ["x@y", "z@y"]
    expected = await columns("message", made_message.id)
    assert await columns("message", copies[0].id) == expected
    copy = await TelegramOutbox.get(idempotency_key="card:b")
    assert {**await columns("telegram_outbox", copy.id), "idempotency_key": "card:a"} == await columns(
        "telegram_outbox", made_post.id
    )


async def test_an_unknown_field_is_refused(db: str) -> None:
    async with in_transaction() as conn:
        with pytest.raises(TypeError, match="no insertable fields"):
            await RowInserter(Ticket).insert(conn, {**TICKET, "colour": "red"})
