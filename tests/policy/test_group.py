"""GroupLookups (models/policy/group.py): the verdicts of an ingest group read from its prefetched
lookups are exactly those of asking the database request by request, with the tickets of the group's
earlier requests committed before each one. Both runs happen on the same stored history (clients,
earlier tickets before, inside and around the group's time span, other months, refused and closed
ones) and are rolled back afterwards; ticket numbers are compared by the request that created them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from models.ingest import _known_ticket
from models.policy import PolicyConfig, PolicyEngine, PolicyRequest, TortoisePolicyRepository
from models.policy.group import GroupLookups
from models.policy.records import GroupHistory
from models.policy.rules.duplicates import content_hash
from models.policy.rules.monthly_limit import month_key
from models.store.sql import reserve_ids
from models.tables import Message, MessageDirection, Ticket, TicketStatus

from .factories import attachment, make_client, make_message, store_ticket, utc

START = utc(2026, 11, 30, 20, 50)  # the group straddles the Moscow month end (21:00 UTC)
TEXTS = (
    "Не открывается раздел заказов, ошибка 502 с утра.",
    "Не открывается раздел заказов, ошибка 502 с утра!",  # a near copy of the first
    "Прошу сменить пароль доступа к личному кабинету, сам сменить не могу.",
    "Счёт 4411 за ноябрь не пришёл на почту, пришлите, пожалуйста.",
    "Счёт 4412 за ноябрь не пришёл на почту, пришлите, пожалуйста.",  # same template, other facts
    "Выгрузка остатков на маркетплейс остановилась вчера в 18:00.",
)
SENDERS = ("ivan@romashka.ru", "buh@romashka.ru", "olga@lesnik.ru", "nobody@unknown.org", "petr@vektor.ru")


class Rollback(Exception):
    pass


def requests_for(rng: random.Random, count: int) -> list[PolicyRequest]:
    out: list[PolicyRequest] = []
    at = START
    for n in range(count):
        at += timedelta(minutes=rng.choice((0, 1, 3)))  # equal arrival times happen too
        text = rng.choice(TEXTS)
        if rng.random() < 0.15:
            text += " ИНН 7707083893."
        message_id = f"m{rng.randrange(count // 2 + 1)}@client" if rng.random() < 0.3 else f"u{n}@client"
        msg = make_message(
            message_id=message_id, from_address=rng.choice(SENDERS), new_text=text,
            subject=rng.choice(("Заказы", "Re: Заказы", "Пароль", "Счёт")),
            attachments=[attachment()] if rng.random() < 0.2 else [],
        )
        out.append(PolicyRequest(ticket_id=None, arrived_at=at, message=msg))
    return out


async def stored_history(rng: random.Random) -> None:
    """Clients and earlier tickets: long before, inside the duplicate window, open ones outside it,
    inside the group's own span, in the month before and in the group's months."""
    romashka = await make_client("Ромашка", addresses=("@romashka.ru",), inn="7707083893")
    lesnik = await make_client("Лесник", addresses=("olga@lesnik.ru",), contract="Д-17")
    await make_client("Вектор", addresses=("@vektor.ru",), inn="7707083893")  # shares the INN
    clients = {"romashka.ru": romashka, "lesnik.ru": lesnik}
    offsets = [-24 * 60 * 40, -24 * 60 * 31, -24 * 60 * 30 + 30, -24 * 60 * 29, -24 * 60 * 3, -600, -30, -5, 0, 2, 7, 15, 40]
    for n in range(60):
        sender = rng.choice(SENDERS)
        msg = make_message(message_id=f"m{rng.randrange(20)}@client" if rng.random() < 0.4 else f"old{n}@client",
                           from_address=sender, new_text=rng.choice(TEXTS), subject=rng.choice(("Заказы", "Счёт")))
        status = rng.choice((TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.REFUSED, TicketStatus.CLOSED))
        await store_ticket(msg, START + timedelta(minutes=rng.choice(offsets)),
                           client=clients.get(sender.split("@")[1]), status=status, counts=rng.random() < 0.8)


async def verdicts(engine: PolicyEngine, requests: list[PolicyRequest], *, group: bool) -> list[dict[str, Any]]:
    """Each request's verdict, storing its ticket before the next one, then everything rolled back."""
    results: list[dict[str, Any]] = []
    created: dict[int, str] = {}
    try:
        async with in_transaction() as conn:
            # As the workflow does: in a group the tickets' numbers are reserved and the tickets inserted at
            # the end, or when a question goes to the database (`flush`).
            pending: list[dict[str, Any]] = []

            async def flush() -> None:
                for row in pending:
                    await Ticket.create(**row)
                pending.clear()

            lookups = GroupLookups(TortoisePolicyRepository(), engine.config, flush) if group else None
            reserved: list[int] = []
            if lookups is not None:
                await lookups.prefetch(requests, engine.data)
                await Ticket.filter(id=-1).update(subject="")  # the write lock, as the workflow's claim
                reserved = await reserve_ids(conn, "ticket", len(requests))
            pending_messages: list[Message] = []
            for n, req in enumerate(requests):
                verdict = await engine.evaluate(req, repository=lookups)
                results.append(verdict.to_json())
                msg = req.message
                fields = dict(
                    client_id=verdict.client.client_id if verdict.client else None, status=TicketStatus.NEW,
                    arrived_at=req.arrived_at, month_key=month_key(req.arrived_at, engine.config.timezone),
                    counts_toward_limit=verdict.client is not None and verdict.duplicate_of is None,
                    subject=msg.subject, sender_address=msg.from_address, sender_name=msg.from_name,
                    content_hash=content_hash(msg), duplicate_of_id=verdict.duplicate_of,
                )
                if lookups is None:
                    ticket_id = (await Ticket.create(**fields)).id
                else:
                    ticket_id = reserved[n]
                    pending.append({"id": ticket_id, **fields})
                created[ticket_id] = f"request {n}"
                message = Message(
                    ticket_id=ticket_id, direction=MessageDirection.INBOUND, message_id=msg.message_id,
                    from_address=msg.from_address, subject=msg.subject, text=msg.text, new_text=msg.new_text,
                    attachments=[{"filename": a.filename, "sha256": a.sha256, "size": a.size} for a in msg.attachments],
                )
                if lookups is not None:  # as the workflow does: the group's messages go in at its end
                    lookups.add_created(_known_ticket(ticket_id, fields, msg))
                    pending_messages.append(message)
                else:
                    await message.save()
            await flush()
            for message in pending_messages:
                await message.save()
            raise Rollback
    except Rollback:
        pass
    return [_named(r, created) for r in results]


def _named(value: Any, created: dict[int, str], key: str = "") -> Any:
    """Ticket numbers the run created, replaced by the request that created them."""
    if isinstance(value, dict):
        return {k: _named(v, created, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_named(v, created, key) for v in value]
    if key in {"original_ticket", "matched_ticket", "seen_on_ticket", "duplicate_of"} and isinstance(value, int):
        return created.get(value, value)
    return value


@pytest.mark.parametrize("seed", range(6))
async def test_group_verdicts_equal_one_by_one_verdicts(db, seed):
    rng = random.Random(seed)
    await stored_history(rng)
    requests = requests_for(rng, 30)
    engine = PolicyEngine(PolicyConfig(), TortoisePolicyRepository())
    one_by_one = await verdicts(engine, requests, group=False)
    grouped = await verdicts(engine, requests, group=True)
    assert grouped == one_by_one
    # The scenario is not trivial: it has duplicates of all three kinds and a refusal for the limit.
    checks = {f["evidence"].get("check") for v in one_by_one for f in v["findings"] if f["code"] == "duplicate"}
    assert checks >= {"message_id", "exact"}, checks
    assert any(f["code"] == "monthly_limit" for v in one_by_one for f in v["findings"])


async def test_the_group_reads_its_lookups_in_a_few_statements(db, monkeypatch):
    rng = random.Random(1)
    await stored_history(rng)
    requests = requests_for(rng, 30)
    engine = PolicyEngine(PolicyConfig(), TortoisePolicyRepository())
    statements = 0
    import models.policy.repository as repository

    original = repository._fetch

    async def counting(sql: str, values: list[Any]) -> Any:
        nonlocal statements
        statements += 1
        return await original(sql, values)

    monkeypatch.setattr(repository, "_fetch", counting)
    await verdicts(engine, requests, group=False)
    one_by_one, statements = statements, 0
    await verdicts(engine, requests, group=True)
    assert one_by_one >= 2 * len(requests)  # identification, then one statement for the rest (request_lookups)
    assert statements <= 6, statements  # identification and at most five history statements


async def test_questions_outside_the_prefetch_go_to_the_database(db):
    """A stored ticket's re-evaluation, another client, a cut-off list: asked directly, same answers."""
    client = await make_client("Ромашка", addresses=("@romashka.ru",))
    other = await make_client("Лесник", addresses=("olga@lesnik.ru",))
    msg = make_message()
    stored = await store_ticket(msg, START - timedelta(days=1), client=client)
    base = TortoisePolicyRepository()
    lookups = GroupLookups(base, PolicyConfig())
    await lookups.prefetch([PolicyRequest(ticket_id=None, arrived_at=START, message=msg)],
                           PolicyEngine(PolicyConfig(), base).data)
    at, since = START, START - timedelta(days=30)
    assert await lookups.count_earlier_in_month(other.id, "2026-11", at, None, True) == \
        await base.count_earlier_in_month(other.id, "2026-11", at, None, True)
    assert await lookups.count_earlier_in_month(client.id, "2026-11", at, stored.id, True) == \
        await base.count_earlier_in_month(client.id, "2026-11", at, stored.id, True)
    assert await lookups.recent_tickets(client_id=other.id, sender_address=None, arrived_at=at, ticket_id=None,
                                        since=since) == []
    assert await lookups.identify(["olga@lesnik.ru"], [], []) == await base.identify(["olga@lesnik.ru"], [], [])
    history = lookups._history
    assert isinstance(history, GroupHistory)
    # A list cut at the cap is never answered from memory.
    lookups._history = GroupHistory(**{**{f: getattr(history, f) for f in history.__slots__}, "same_hash_cut": True})
    copies = await lookups.earlier_copies([msg.message_id or ""], content_hash(msg), arrived_at=at, ticket_id=None,
                                          since=since)
    assert [t.id for t in copies.same_hash] == [stored.id]


async def test_a_question_for_the_database_inserts_the_pending_tickets_first(db):
    """Tickets created by the group but not yet inserted are in the database before `base` is asked."""
    client = await make_client("Ромашка", addresses=("@romashka.ru",))
    msg = make_message()
    stored = await store_ticket(msg, START - timedelta(days=1), client=client)
    pending: list[dict[str, Any]] = []
    flushes = 0

    async def flush() -> None:
        nonlocal flushes
        flushes += 1
        for row in pending:
            await Ticket.create(**row)
        pending.clear()

    async with in_transaction() as conn:
        await Ticket.filter(id=stored.id).update(subject=stored.subject)  # take the write lock
        lookups = GroupLookups(TortoisePolicyRepository(), PolicyConfig(), flush)
        await lookups.prefetch([PolicyRequest(ticket_id=None, arrived_at=START, message=msg)],
                               PolicyEngine(PolicyConfig(), TortoisePolicyRepository()).data)
        [reserved] = await reserve_ids(conn, "ticket", 1)
        assert reserved > stored.id
        fields = dict(status=TicketStatus.NEW, arrived_at=START, duplicate_of_id=stored.id, subject=msg.subject,
                      sender_address=msg.from_address, content_hash=content_hash(msg), client_id=client.id,
                      month_key="2026-11", counts_toward_limit=False)
        pending.append({"id": reserved, **fields})
        lookups.add_created(_known_ticket(reserved, fields, msg))
        at, since = START, START - timedelta(days=30)
        # Answered from memory: nothing inserted yet.
        copies = await lookups.earlier_copies([], content_hash(msg), arrived_at=at, ticket_id=None, since=since)
        assert [t.id for t in copies.same_hash] == [stored.id, reserved] and flushes == 0
        # A cut list goes to the database, which must then hold the group's ticket.
        history = lookups._history
        assert isinstance(history, GroupHistory)
        lookups._history = GroupHistory(**{**{f: getattr(history, f) for f in history.__slots__},
                                           "same_hash_cut": True})
        copies = await lookups.earlier_copies([], content_hash(msg), arrived_at=at, ticket_id=None, since=since)
        assert [t.id for t in copies.same_hash] == [stored.id, reserved]
        assert flushes == 1 and not pending
        # The sequence moved past the reserved number: the next ticket gets a greater one.
        later = await Ticket.create(**{**fields, "duplicate_of_id": None})
        assert later.id > reserved
        three = await reserve_ids(conn, "ticket", 3)
        assert three == sorted(set(three)) and len(three) == 3 and three[0] > later.id
        assert await reserve_ids(conn, "ticket", 0) == []


def test_known_ticket_dates_compare_with_stored_ones():
    fields = dict(status=TicketStatus.NEW, arrived_at=START, duplicate_of_id=None, subject="s", sender_address="a@b",
                  content_hash="h", client_id=None, month_key="2026-11", counts_toward_limit=False)
    known = _known_ticket(7, fields, make_message())
    assert isinstance(known.prior.arrived_at, datetime) and known.prior.arrived_at.tzinfo is not None
