"""Claiming one outbox row for sending, safely across several processes.

Everywhere: a guarded update (`filter(id=..., status=PENDING, ...).update(status=SENDING, ...)`)
changes the row only if it still matches, so of two racing workers exactly one wins.

On PostgreSQL the claim first locks the row with `SELECT ... FOR UPDATE SKIP LOCKED` in the same
transaction: a worker that meets a row another worker is claiming right now skips it at once instead
of queueing behind that worker's row lock only to find the row gone. SQLite has no row locks (one
writer at a time), so the guarded update alone is the claim there.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tortoise.models import Model
from tortoise.transactions import in_transaction


def supports_skip_locked(model: type[Model]) -> bool:
    return model._meta.db.capabilities.dialect == "postgres"


async def claim_row(
    model: type[Model],
    row_id: int,
    *,
    where: dict[str, Any],
    changes: dict[str, Any],
    undo: dict[str, Any] | None = None,
) -> bool:
    """Apply `changes` to row `row_id` if it still matches `where`; True when this caller won it.

    `undo`: the changes that give a won row back, used when a shutdown cancels us mid-claim."""
    if not supports_skip_locked(model):
        return bool(await model.filter(id=row_id, **where).update(**changes))
    # Shielded: a cancellation inside the transaction can leave the pooled connection mid-query, and
    # the failing rollback would replace the CancelledError with an ordinary error (the shutdown
    # would be lost). The claim runs to its end instead; a row won by a cancelled caller goes back.
    claim = asyncio.ensure_future(_locked_claim(model, row_id, where, changes))
    try:
        return await asyncio.shield(claim)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            if await claim and undo is not None:
                await model.filter(id=row_id, **{k: v for k, v in changes.items() if k == "status"}).update(**undo)
        raise


async def _locked_claim(model: type[Model], row_id: int, where: dict[str, Any], changes: dict[str, Any]) -> bool:
    async with in_transaction(model._meta.default_connection) as conn:
        locked = (
            await model.filter(id=row_id, **where)
            .select_for_update(skip_locked=True)
            .only("id")
            .using_db(conn)
            .first()
        )
        if locked is None:
            return False  # claimed, being claimed, or no longer due
        # Still guarded: the lock makes it exclusive, the filter keeps it correct on its own.
        return bool(await model.filter(id=row_id, **where).using_db(conn).update(**changes))
