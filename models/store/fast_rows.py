"""INSERTs of plain rows for the ingest hot path: tortoise's own SQL and column conversions, without
building a model instance per row.

`Model.create` costs about 0.2 ms of CPU per row in validation and attribute bookkeeping (profiled in
docs/benchmarks.md), more than SQLite needs to store the row; under a backlog that is three rows per
request on the event loop. `RowInserter` takes the statement tortoise prepared for the model
(models/store/compat_tortoise.py `insert_statement`: tortoise's executor cache) and converts each value with the field's own
`to_db_value`, so what is stored is byte for byte what `create` would store (tests/test_fast_rows.py).
Signals do not fire: callers pass text that is already free of NUL characters (models/analysed.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields import DatetimeField
from tortoise.models import Model

from models.store.compat_tortoise import insert_statement


class RowInserter:
    """Rows of one model as dicts of field values (foreign keys by their `<name>_id` field)."""

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self._fields = model._meta.fields_map

    def _statement(self, conn: BaseDBAsyncClient, *, with_keys: bool = False) -> tuple[list[str], str]:
        # with_keys: the primary key given by the caller (reserved with models.store.sql.reserve_ids)
        return insert_statement(conn, self.model, with_keys=with_keys)

    def _values(self, columns: Sequence[str], row: Mapping[str, Any], now: datetime) -> list[Any]:
        unknown = set(row) - set(columns)
        if unknown:
            raise TypeError(f"{self.model.__name__} has no insertable fields {sorted(unknown)}")
        values = []
        for name in columns:
            field = self._fields[name]
            if name in row:
                value = row[name]
            elif isinstance(field, DatetimeField) and (field.auto_now or field.auto_now_add):
                value = now
            elif field.default is not None:
                value = field.default() if callable(field.default) else field.default
            else:
                value = None
            values.append(field.to_db_value(value, None))
        return values

    async def insert(self, conn: BaseDBAsyncClient, row: Mapping[str, Any]) -> int:
        """One row; returns its generated primary key."""
        columns, query = self._statement(conn)
        result = await conn.execute_insert(query, self._values(columns, row, datetime.now(UTC)))
        # SQLite answers with the row id, PostgreSQL with the row of its RETURNING clause.
        return int(result if isinstance(result, int) else result[0])

    async def insert_many(
        self, conn: BaseDBAsyncClient, rows: Sequence[Mapping[str, Any]], *, with_keys: bool = False
    ) -> None:
        """Several rows in one statement execution (no keys returned; with `with_keys`, each row brings
        its own primary key)."""
        if not rows:
            return
        columns, query = self._statement(conn, with_keys=with_keys)
        now = datetime.now(UTC)
        await conn.execute_many(query, [self._values(columns, row, now) for row in rows])
