"""RequestLookups (models/policy/request_lookups.py): after identification, one statement reads what
the duplicate and monthly-limit checks of a request ask, and every answer is the store's own."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from models.policy import PolicyConfig, PolicyEngine, TortoisePolicyRepository
from models.policy.rules.duplicates import content_hash
from models.policy.rules.monthly_limit import month_key
from models.tables import Client, Ticket

from .test_group import SENDERS, START, requests_for, stored_history, verdicts


class PlainStore:
    """The tortoise store without its combined read: the engine asks each question on its own."""

    def __init__(self) -> None:
        self.base = TortoisePolicyRepository()

    def __getattr__(self, name: str) -> Any:
        if name == "request_history":
            raise AttributeError(name)
        return getattr(self.base, name)


@pytest.mark.parametrize("seed", range(4))
async def test_the_combined_read_answers_as_each_question_on_its_own(db, seed) -> None:
    rng = random.Random(seed)
    await stored_history(rng)
    store = TortoisePolicyRepository()
    config = PolicyConfig()
    checked = 0
    client_ids = [None, *await Client.all().values_list("id", flat=True)]
    stored = await Ticket.all().values_list("id", flat=True)
    for req in requests_for(rng, 25):
        msg = req.message
        for client_id in client_ids:
            ticket_id = rng.choice([None, None, *stored])
            sender = None if client_id is not None else rng.choice([msg.from_address, *SENDERS, ""])
            since = req.arrived_at - timedelta(days=rng.choice((14, 30)))
            ids = [m for m in (msg.message_id, f"m{rng.randrange(20)}@client") if m]
            chash = content_hash(msg)
            month = month_key(req.arrived_at, config.timezone)
            refused = rng.random() < 0.5
            got = await store.request_history(
                message_ids=ids, content_hash=chash, arrived_at=req.arrived_at, ticket_id=ticket_id, since=since,
                client_id=client_id, sender_address=sender, month_key=month, count_refused=refused)
            assert got.copies == await store.earlier_copies(
                ids, chash, arrived_at=req.arrived_at, ticket_id=ticket_id, since=since)
            assert got.recent == await store.recent_tickets(
                client_id=client_id, sender_address=sender, arrived_at=req.arrived_at, ticket_id=ticket_id,
                since=since)
            if client_id is None:
                assert got.month_count is None
            else:
                assert got.month_count == await store.count_earlier_in_month(
                    client_id, month, req.arrived_at, ticket_id, refused)
            checked += bool(got.copies.seen or got.copies.same_hash or got.recent or got.month_count)
    assert checked  # the history is not empty for these questions


async def test_a_request_alone_asks_the_store_twice_and_gets_the_same_verdict(db, monkeypatch) -> None:
    rng = random.Random(7)
    await stored_history(rng)
    requests = requests_for(rng, 30)
    assert START <= requests[0].arrived_at
    plain = await verdicts(PolicyEngine(PolicyConfig(), PlainStore()), requests, group=False)  # type: ignore[arg-type]

    import models.policy.repository as repository

    statements = 0
    original = repository._fetch

    async def counting(sql: str, values: list[Any]) -> Any:
        nonlocal statements
        statements += 1
        return await original(sql, values)

    monkeypatch.setattr(repository, "_fetch", counting)
    combined = await verdicts(PolicyEngine(PolicyConfig(), TortoisePolicyRepository()), requests, group=False)
    assert combined == plain
    # Identification, then one statement for the rest of the chain (was: up to three more).
    assert statements <= 2 * len(requests), statements
