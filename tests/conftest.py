"""Shared fixtures: real servers come from tests/rig (Dovecot, aiosmtpd, PostgreSQL, fake Telegram)."""

pytest_plugins = ["tests.rig.plugin"]

from collections.abc import AsyncIterator  # noqa: E402

import pytest  # noqa: E402

from models import db as database  # noqa: E402


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    """A migrated, empty database (SQLite by default, PostgreSQL with TEST_DATABASE_URL); yields its URL."""
    await database.apply_migrations(database_url)
    try:
        yield database_url
    finally:
        await database.close_db()
