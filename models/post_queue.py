"""Queueing a staff-chat post: one idempotent outbox row per key, written in the caller's transaction.

A second call with the same key finds the row and adds nothing, so a decision or an alert that is
retried after a crash never posts twice. The row stores the intent itself (models/intents.py); the bot
layer renders it when it is delivered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.intents import Postable
from models.tables import TelegramOutbox


def post_row(post: Postable, chat_id: int, *, not_before: datetime, kind: str | None = None) -> dict[str, Any]:
    """The outbox row's fields for `post` to `chat_id` (for a plain insert of many rows at once)."""
    return {"kind": kind or post.kind, "chat_id": chat_id, "payload": post.to_payload(),
            "ticket_id": post.ticket_id, "not_before": not_before}


async def queue_post(
    post: Postable, key: str, *, chat_id: int, not_before: datetime, kind: str | None = None
) -> TelegramOutbox:
    """The outbox row for `post` under idempotency `key` (created unless it exists); `kind` overrides
    the post's own kind in the row (the SLA's "alert" and "digest")."""
    row, _ = await TelegramOutbox.get_or_create(
        idempotency_key=key, defaults=post_row(post, chat_id, not_before=not_before, kind=kind)
    )
    return row
