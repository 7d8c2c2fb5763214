"""Database lifecycle: tortoise configuration, migrations and the schema check.

Migrations live in `models/migrations/` (tortoise-orm's own migration system). `python -m bot migrate`
applies them; `run` refuses to start while any is pending.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.migrations.executor import MigrationExecutor

APP_LABEL = "models"
DEFAULT_DATABASE_URL = "sqlite://./data/bridge.sqlite3"
# SQLite page size of a new database file. The raw mail is stored as blobs: with 16 KB pages a mail spans
# a quarter of the overflow pages, and writing a backlog costs about half the CPU of the 4 KB default
# (docs/benchmarks.md). It can only be chosen before the first table exists, so existing files keep theirs.
SQLITE_PAGE_SIZE = 16384


def normalise_url(url: str) -> str:
    """tortoise wants `postgres://`; operators often write `postgresql://`."""
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


def ensure_sqlite_dir(url: str) -> None:
    # SQLite creates the file, not its folder: make `./data` so the default works on a fresh clone.
    if url.startswith("sqlite://") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite://").split("?", 1)[0])
        if path.parent and str(path.parent) not in ("", "."):
            path.parent.mkdir(parents=True, exist_ok=True)
        _create_sqlite_file(path)


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names when it does not exist yet (only `migrate` may create it), else None."""
    url = normalise_url(url)
    if not url.startswith("sqlite://") or ":memory:" in url:
        return None
    path = Path(url.removeprefix("sqlite://").split("?", 1)[0])
    return None if path.is_file() and path.stat().st_size > 0 else path


def _create_sqlite_file(path: Path) -> None:
    """A new, empty SQLite file gets our page size and WAL mode before tortoise opens it."""
    if path.exists() and path.stat().st_size > 0:
        return
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")  # writes the header: the page size is fixed from here
    finally:
        conn.close()


def connection_config(url: str) -> str | dict[str, Any]:
    """tortoise's connection for `url`: PostgreSQL through models/store/pg_engine.py (asyncpg without the
    reset query on each release to the pool), SQLite through models/store/sqlite_engine.py (transactions
    that take the write lock when they begin), anything else as tortoise reads the URL."""
    url = normalise_url(url)
    from tortoise.backends.base.config_generator import expand_db_url

    if url.startswith("postgres://"):
        from models.store.pg_engine import ENGINE
    elif url.startswith("sqlite://"):
        from models.store.sqlite_engine import ENGINE
    else:
        return url
    return {**expand_db_url(url), "engine": ENGINE}


def tortoise_config(url: str) -> dict[str, Any]:
    return {
        "connections": {"default": connection_config(url)},
        "apps": {
            APP_LABEL: {
                "models": ["models.tables"],
                "migrations": "models.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For the `tortoise` command line only (`tortoise -c models.store.db.TORTOISE_ORM makemigrations`).
TORTOISE_ORM = tortoise_config(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))


async def init_db(url: str) -> None:
    ensure_sqlite_dir(normalise_url(url))
    await Tortoise.init(config=tortoise_config(url))


async def close_db() -> None:
    await Tortoise.close_connections()


async def pending_migrations() -> list[str]:
    """Names of the migrations not yet applied to the connected database."""
    config = tortoise_config("sqlite://:memory:")["apps"]
    executor = MigrationExecutor(get_connection("default"), config)
    plan = await executor.plan()
    return [f"{step.migration.app_label}.{step.migration.name}" for step in plan if not step.backward]


async def apply_migrations(url: str) -> list[str]:
    """Bring the database schema up to date; returns the names applied. Leaves tortoise initialised
    for normal queries (the migration API initialises it without query builders)."""
    ensure_sqlite_dir(normalise_url(url))
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")

    await tortoise_migrate(config=tortoise_config(url), progress=progress)
    await close_db()
    await init_db(url)
    return applied
