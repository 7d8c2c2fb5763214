"""Policy tests run on the shared migrated `db` (SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import pytest

from models.policy import PolicyConfig, PolicyEngine, TortoisePolicyRepository


@pytest.fixture
def config() -> PolicyConfig:
    return PolicyConfig()


@pytest.fixture
def repo() -> TortoisePolicyRepository:
    return TortoisePolicyRepository()


@pytest.fixture
def engine(config: PolicyConfig, repo: TortoisePolicyRepository) -> PolicyEngine:
    return PolicyEngine(config, repo)
