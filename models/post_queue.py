"""Queueing a staff-chat post: one idempotent outbox row per key, written in the caller's transaction.

A second call with the same key finds the row and adds nothing, so a decision or an alert that is
retried after a crash never posts twice.
"""

from __future__ import annotations

from datetime import datetime

from models.ports import BoardPost
from models.tables import TelegramOutbox


async def queue_post(post: BoardPost, key: str, *, not_before: datetime, kind: str | None = None) -> TelegramOutbox:
    """The outbox row for `post` under idempotency `key` (created unless it exists); `kind` overrides
    the post's own kind in the row (the SLA's "alert" and "digest")."""
    row, _ = await TelegramOutbox.get_or_create(
        idempotency_key=key,
        defaults={
            "kind": kind or post.kind,
            "chat_id": post.chat_id,
            "payload": post.payload,
            "not_before": not_before,
            **post.extra,
        },
    )
    return row
