from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise import Tortoise

from models.policy import PolicyConfig, PolicyEngine, TortoisePolicyRepository


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    await Tortoise.init(db_url=f"sqlite://{tmp_path}/p.sqlite3", modules={"models": ["models.tables"]})
    await Tortoise.generate_schemas()
    try:
        yield
    finally:
        await Tortoise.close_connections()


@pytest.fixture
def config() -> PolicyConfig:
    return PolicyConfig()


@pytest.fixture
def repo() -> TortoisePolicyRepository:
    return TortoisePolicyRepository()


@pytest.fixture
def engine(config: PolicyConfig, repo: TortoisePolicyRepository) -> PolicyEngine:
    return PolicyEngine(config, repo)
