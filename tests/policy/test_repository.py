"""TortoisePolicyRepository's hand-written SQL, on SQLite and (TEST_DATABASE_URL) PostgreSQL: what each
query returns, in which order, with which Python types, and on which connection."""

import asyncio
from datetime import timedelta

from tortoise.transactions import in_transaction

from models.policy import PolicyConfig, PolicyEngine, PolicyRequest
from models.policy.repository import TortoisePolicyRepository, _connection
from models.policy.rules.duplicates import DuplicateRule, content_hash
from models.policy.rules.monthly_limit import MonthlyLimitRule
from models.store.sql import _rewrite, placeholder_style
from models.tables import Message, MessageDirection, Ticket, TicketStatus

from .factories import attachment, codes, finding, make_client, make_message, store_ticket, utc, verdict_of

AT = utc(2026, 11, 20, 9, 0)
SINCE = AT - timedelta(days=30)


def test_placeholders_are_rewritten_per_dialect():
    sql = "SELECT 1 FROM t WHERE a = ? AND b IN (?,?) LIMIT ?"
    assert _rewrite(sql, "?") == sql
    assert _rewrite(sql, "$") == "SELECT 1 FROM t WHERE a = $1 AND b IN ($2,$3) LIMIT $4"
    assert _rewrite(sql, "%s") == "SELECT 1 FROM t WHERE a = %s AND b IN (%s,%s) LIMIT %s"


async def test_queries_use_the_placeholders_of_the_database_in_use(db):
    expected = "$" if db.startswith("postgres") else "?"
    assert placeholder_style(_connection()) == expected


async def test_identify_returns_typed_rows_in_a_stable_order(db):
    first = await make_client("Первый", addresses=("ivan@romashka.ru", "@romashka.ru"), inn="7707083893",
                              contract="Д-1")
    second = await make_client("Второй", addresses=("@romashka.ru",), inn="7707083893", contract="Д-2",
                               active=False)
    found = await TortoisePolicyRepository().identify(
        ["ivan@romashka.ru", "@romashka.ru", "@other.ru"], ["7707083893"], ["Д-2", "Д-3"])
    assert [(r.client.id, r.value, r.is_domain) for r in found.addresses] == [
        (first.id, "ivan@romashka.ru", False), (first.id, "@romashka.ru", True), (second.id, "@romashka.ru", True)]
    assert all(type(r.is_domain) is bool and type(r.client.active) is bool for r in found.addresses)
    assert [(c.id, c.name, c.inn, c.contract, c.active) for c in found.by_inn] == [
        (first.id, "Первый", "7707083893", "Д-1", True), (second.id, "Второй", "7707083893", "Д-2", False)]
    assert [c.id for c in found.by_contract] == [second.id]
    assert found.by_contract[0].active is False

    # Any part may be empty; nothing asked, nothing queried.
    only_docs = await TortoisePolicyRepository().identify([], [], ["Д-1"])
    assert only_docs.addresses == [] and only_docs.by_inn == [] and [c.id for c in only_docs.by_contract] == [first.id]
    nothing = await TortoisePolicyRepository().identify([], [], [])
    assert (nothing.addresses, nothing.by_inn, nothing.by_contract) == ([], [], [])


async def test_earlier_copies_reads_inbound_messages_and_hashes_in_order(db):
    repo = TortoisePolicyRepository()
    msg = make_message(message_id="same@romashka.ru")
    older = await store_ticket(msg, AT - timedelta(days=3))
    newer = await store_ticket(msg, AT - timedelta(days=1), duplicate_of=older)
    # Our own reply carrying the same Message-ID (it cannot, but the query must not care) is not a copy.
    await Message.create(ticket=older, direction=MessageDirection.OUTBOUND, message_id="reply@storeolis.ru")

    copies = await repo.earlier_copies(["same@romashka.ru", "reply@storeolis.ru"], content_hash(msg),
                                       arrived_at=AT, ticket_id=None, since=SINCE)
    assert [(s.ticket_id, s.message_id, s.from_address, s.ticket_duplicate_of) for s in copies.seen] == [
        (older.id, "same@romashka.ru", "ivan@romashka.ru", None),
        (newer.id, "same@romashka.ru", "ivan@romashka.ru", older.id)]
    assert [t.id for t in copies.same_hash] == [older.id, newer.id]  # oldest arrival first
    first = copies.same_hash[0]
    assert first.arrived_at == AT - timedelta(days=3) and first.arrived_at.utcoffset() == timedelta(0)
    assert (first.status, first.duplicate_of, first.content_hash) == ("new", None, content_hash(msg))
    assert copies.same_hash[1].duplicate_of == older.id

    # Re-evaluating the newer ticket: its own message and everything after it are left out.
    mine = await repo.earlier_copies(["same@romashka.ru"], content_hash(msg), arrived_at=newer.arrived_at,
                                     ticket_id=newer.id, since=SINCE)
    assert [s.ticket_id for s in mine.seen] == [older.id]
    assert [t.id for t in mine.same_hash] == [older.id]
    none = await repo.earlier_copies([], "", arrived_at=AT, ticket_id=None, since=SINCE)
    assert none.seen == [] and none.same_hash == []


async def test_same_arrival_time_is_ordered_by_ticket_id(db):
    repo = TortoisePolicyRepository()
    msg = make_message()
    a = await store_ticket(msg, AT)
    b = await store_ticket(msg, AT)
    c = await store_ticket(msg, AT)
    copies = await repo.earlier_copies([], content_hash(msg), arrived_at=AT, ticket_id=b.id, since=SINCE)
    assert [t.id for t in copies.same_hash] == [a.id]
    recent = await repo.recent_tickets(client_id=None, sender_address=msg.from_address, arrived_at=AT,
                                       ticket_id=c.id, since=SINCE)
    assert [t.id for t in recent] == [b.id, a.id]


async def test_recent_tickets_carry_the_first_inbound_message_not_notes_or_replies(db):
    client = await make_client()
    ticket = await Ticket.create(client=client, arrived_at=AT - timedelta(days=2), month_key="2026-11",
                                 sender_address="ivan@romashka.ru", content_hash="h")
    # Written in this order on purpose: a note and our reply have lower ids than the request text.
    await Message.create(ticket=ticket, direction=MessageDirection.NOTE, new_text="внутренняя заметка")
    await Message.create(ticket=ticket, direction=MessageDirection.OUTBOUND, new_text="наш ответ")
    files = [{"filename": "b.pdf", "sha256": "bb", "size": 1}, {"filename": "a.pdf", "sha256": "aa", "size": 1},
             {"filename": "x.bin", "size": 1}, "garbage"]
    await Message.create(ticket=ticket, direction=MessageDirection.INBOUND, new_text="первый запрос",
                         attachments=files)
    await Message.create(ticket=ticket, direction=MessageDirection.INBOUND, new_text="дополнение")
    silent = await Ticket.create(client=client, arrived_at=AT - timedelta(days=1), month_key="2026-11",
                                 sender_address="ivan@romashka.ru", content_hash="s")  # no inbound message

    recent = await TortoisePolicyRepository().recent_tickets(
        client_id=client.id, sender_address=None, arrived_at=AT, ticket_id=None, since=SINCE)
    assert [t.id for t in recent] == [silent.id, ticket.id]  # newest first
    assert (recent[0].new_text, recent[0].attachment_hashes) == ("", ())
    assert recent[1].new_text == "первый запрос"
    assert recent[1].attachment_hashes == ("aa", "bb")
    assert recent[1].arrived_at == AT - timedelta(days=2)


async def test_recent_tickets_respect_the_window_open_statuses_and_limit(db):
    client = await make_client()
    msg = make_message()
    old_closed = await store_ticket(msg, AT - timedelta(days=60), client=client, status=TicketStatus.CLOSED)
    old_open = await store_ticket(msg, AT - timedelta(days=60), client=client, status=TicketStatus.ACCEPTED)
    fresh = [await store_ticket(msg, AT - timedelta(hours=h), client=client, status=TicketStatus.CLOSED)
             for h in (5, 4, 3)]
    later = await store_ticket(msg, AT + timedelta(hours=1), client=client)
    repo = TortoisePolicyRepository()
    recent = await repo.recent_tickets(client_id=client.id, sender_address=None, arrived_at=AT, ticket_id=None,
                                       since=SINCE)
    ids = [t.id for t in recent]
    assert ids == [fresh[2].id, fresh[1].id, fresh[0].id, old_open.id]
    assert old_closed.id not in ids and later.id not in ids
    assert [t.id for t in await repo.recent_tickets(client_id=client.id, sender_address=None, arrived_at=AT,
                                                   ticket_id=None, since=SINCE, limit=2)] == ids[:2]
    assert await repo.recent_tickets(client_id=None, sender_address=None, arrived_at=AT, ticket_id=None,
                                     since=SINCE) == []


async def test_month_count_and_stored_flag_types(db):
    client = await make_client()
    msg = make_message()
    counted = await store_ticket(msg, utc(2026, 11, 2, 9, 0), client=client)
    uncounted = await store_ticket(msg, utc(2026, 11, 3, 9, 0), client=client, counts=False)
    await store_ticket(msg, utc(2026, 11, 4, 9, 0), client=client, status=TicketStatus.REFUSED)
    repo = TortoisePolicyRepository()
    assert await repo.count_earlier_in_month(client.id, "2026-11", AT, None, True) == 2
    assert await repo.count_earlier_in_month(client.id, "2026-11", AT, None, False) == 1
    assert await repo.count_earlier_in_month(client.id, "2026-10", AT, None, True) == 0
    assert await repo.count_earlier_in_month(client.id, "2026-11", counted.arrived_at, counted.id, True) == 0
    assert await repo.counts_toward_limit(counted.id) is True
    assert await repo.counts_toward_limit(uncounted.id) is False
    assert await repo.counts_toward_limit(10_000) is None


async def test_evaluate_inside_a_transaction_sees_its_uncommitted_writes(db):
    """The ingest may evaluate a batch of requests inside one transaction: the policy must read on that
    transaction's connection (on SQLite another connection would wait for the transaction's lock; on
    PostgreSQL it would not see the uncommitted rows)."""
    client = await make_client()
    request = make_message(message_id="fourth@romashka.ru")

    class Rollback(Exception):
        pass

    try:
        async with in_transaction():
            for day in (2, 9, 16):
                await store_ticket(make_message(message_id=f"n{day}@romashka.ru", new_text=f"Вопрос {day}"),
                                   utc(2026, 11, day, 9, 0), client=client)
            copy = await store_ticket(request, utc(2026, 11, 17, 9, 0), client=client)
            v = await asyncio.wait_for(verdict_of(request, MonthlyLimitRule, DuplicateRule, at=AT), timeout=10)
            assert finding(v, "monthly_limit").evidence["count"] == 5
            assert v.duplicate_of == copy.id
            raise Rollback
    except Rollback:
        pass

    v = await verdict_of(request, MonthlyLimitRule, DuplicateRule, at=AT)
    assert v.month_count == 1 and "monthly_limit" not in codes(v) and "duplicate" not in codes(v)
    assert await Ticket.all().count() == 0


async def test_evaluate_with_a_stored_ticket_inside_a_transaction(db):
    client = await make_client()
    async with in_transaction():
        stored = await store_ticket(make_message(attachments=[attachment()]), AT, client=client)
        engine = PolicyEngine(PolicyConfig(), TortoisePolicyRepository())
        request = PolicyRequest(stored.id, AT, make_message(attachments=[attachment()]))
        v = await asyncio.wait_for(engine.evaluate(request), timeout=10)
        assert v.client is not None and v.client.client_id == client.id
        assert v.month_count == 1 and "duplicate" not in codes(v)
