"""PolicyEngine.evaluate on a store that answers over the network (PostgreSQL): identification's
statement goes out first and the text analyses are made while it is answered. The verdicts are the
ones of the plain order, on the real database (SQLite or PostgreSQL, as the CI pass chooses)."""

from __future__ import annotations

import random
from typing import Any

from models.policy import PolicyConfig, PolicyEngine, TortoisePolicyRepository

from .test_group import requests_for, stored_history, verdicts


class Store:
    """The tortoise store, saying whether it answers over the network as told, and logging when
    identification asks."""

    def __init__(self, over_network: bool, events: list[str]) -> None:
        self.base = TortoisePolicyRepository()
        self.answers_over_network = over_network
        self.events = events

    async def identify(self, *args: Any, **kwargs: Any) -> Any:
        self.events.append("identify")
        return await self.base.identify(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


async def test_the_analyses_are_made_while_identification_is_answered_and_the_verdicts_do_not_change(
    db, monkeypatch
) -> None:
    rng = random.Random(11)
    await stored_history(rng)
    requests = requests_for(rng, 30)
    events: list[str] = []
    plain = await verdicts(PolicyEngine(PolicyConfig(), Store(False, events)), requests, group=False)  # type: ignore[arg-type]
    assert "identify" in events

    events.clear()
    engine = PolicyEngine(PolicyConfig(), Store(True, events))  # type: ignore[arg-type]
    analyse = engine.analyse

    def logged(*args: Any, **kwargs: Any) -> dict[str, Any]:
        events.append("analyse")
        return analyse(*args, **kwargs)

    monkeypatch.setattr(engine, "analyse", logged)
    overlapped = await verdicts(engine, requests, group=False)
    assert overlapped == plain
    # Per request: the statement was sent, then the analyses made once (the rules read them, not their own).
    assert events == ["identify", "analyse"] * len(requests), events


def test_the_tortoise_store_says_postgresql_answers_over_the_network(db) -> None:
    # tortoise is initialised by the `db` fixture on the database the pass chooses.
    assert TortoisePolicyRepository().answers_over_network == db.startswith("postgres")
