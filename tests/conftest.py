"""Shared fixtures: real servers come from tests/rig (Dovecot, aiosmtpd, PostgreSQL, fake Telegram)."""

pytest_plugins = ["tests.rig.plugin"]

from collections.abc import AsyncIterator  # noqa: E402

import pytest  # noqa: E402

from models.store import db as database  # noqa: E402
from tests.helpers.process import staff_telegram  # noqa: E402
from tests.rig.fake_telegram import FakeTelegram  # noqa: E402


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    """A migrated, empty database (SQLite by default, PostgreSQL with TEST_DATABASE_URL); yields its URL.
    `database_url` makes it a copy of the session's migrated template (tests/rig/plugin.py); the migrations
    run again here and find nothing pending."""
    await database.apply_migrations(database_url)
    try:
        yield database_url
    finally:
        await database.close_db()


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API server with the staff group (tests/helpers/process.py STAFF_CHAT_ID)."""
    async with staff_telegram() as fake:
        yield fake
