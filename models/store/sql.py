"""Hand-written SQL on tortoise's connections, for the hot paths where the query builder costs more than
the database (docs/benchmarks.md): statements are written once with `?` placeholders and rewritten for
the connection's dialect."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields import DatetimeField


def placeholder_style(db: BaseDBAsyncClient) -> str:
    dialect = db.capabilities.dialect
    if dialect == "sqlite":
        return "?"
    if dialect == "postgres":
        # asyncpg numbers its parameters; psycopg (not a dependency, but tortoise supports it) uses %s.
        return "%s" if "psycopg" in type(db).__module__ else "$"
    raise NotImplementedError(f"the hand-written queries are for SQLite and PostgreSQL, not {dialect}")


@lru_cache(maxsize=1024)
def _rewrite(sql: str, style: str) -> str:
    """`sql` is written with `?` placeholders (and no literal "?"): rewritten once per shape."""
    if style == "?":
        return sql
    head, *rest = sql.split("?")
    marks = ("%s" for _ in rest) if style == "%s" else (f"${i}" for i in range(1, len(rest) + 1))
    return head + "".join(m + part for m, part in zip(marks, rest, strict=True))


def for_dialect(sql: str, db: BaseDBAsyncClient) -> str:
    """`sql` with the placeholders `db` expects."""
    return _rewrite(sql, placeholder_style(db))


def marks(n: int) -> str:
    """n comma-separated placeholders, for IN (...)."""
    return ",".join("?" * n)


def datetime_from_db(value: Any, field: DatetimeField) -> datetime:
    """A stored datetime as the ORM returns it for `field` (SQLite gives the text it stored, PostgreSQL a
    datetime): `fromisoformat` reads tortoise's SQLite text several times faster than its own parser."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            pass  # left to tortoise's own parser
    return field.to_python_value(value)


async def reserve_ids(db: BaseDBAsyncClient, table: str, count: int) -> list[int]:
    """`count` fresh primary keys of `table` (an AUTOINCREMENT / serial `id`), ascending, for rows the
    caller inserts later with their keys, e.g. in one statement. On SQLite the caller must already hold
    the write lock (have written in this transaction): then nobody else can take these numbers before
    the rows are inserted, and inserting them moves the table's sequence past them. On PostgreSQL they
    are taken from the sequence (a rollback leaves a gap, as any insert would)."""
    if count <= 0:
        return []
    if db.capabilities.dialect == "postgres":
        _, rows = await db.execute_query(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, {int(count)})"
        )
        return sorted(int(r[0]) for r in rows)
    # AUTOINCREMENT: the next id is above both the largest id ever used (sqlite_sequence) and the largest
    # id in the table.
    _, rows = await db.execute_query(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?), 0), "
        f'COALESCE((SELECT MAX(id) FROM "{table}"), 0))',
        [table],
    )
    last = int(rows[0][0])
    return list(range(last + 1, last + 1 + count))
