"""`python -m bot status`: what monitoring needs, read from the database (the source of truth)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.settings import CoreSettings
from models.clock import utcnow
from models.tables import (
    EmailOutbox,
    MailCursor,
    OutboxStatus,
    RawMail,
    RawMailStatus,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)


async def collect_status(now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    cursors = await MailCursor.all().order_by("mailbox")
    oldest = await Ticket.filter(status=TicketStatus.NEW).order_by("arrived_at", "arrival_uid").first()
    status: dict[str, Any] = {
        "mailboxes": [
            {"mailbox": c.mailbox, "uidvalidity": c.uidvalidity, "last_uid": c.last_uid, "last_sync_at": c.last_sync_at}
            for c in cursors
        ],
        "raw_mail": {s.value: await RawMail.filter(status=s).count() for s in RawMailStatus},
        "email_outbox": {s.value: await EmailOutbox.filter(status=s).count() for s in OutboxStatus},
        "telegram_outbox": {s.value: await TelegramOutbox.filter(status=s).count() for s in OutboxStatus},
        "waiting_requests": await Ticket.filter(status=TicketStatus.NEW).count(),
        "oldest_waiting": None,
        "overdue_requests": await Ticket.filter(status=TicketStatus.NEW, sla_due_at__lt=now).count(),
    }
    if oldest is not None:
        status["oldest_waiting"] = {"ticket": oldest.id, "arrived_at": oldest.arrived_at, "sla_due_at": oldest.sla_due_at}
    return status


async def print_status(settings: CoreSettings, *, as_json: bool) -> int:
    status = await collect_status()
    if as_json:
        print(json.dumps(status, ensure_ascii=False, default=str))
        return 0
    for box in status["mailboxes"] or [{"mailbox": "-", "last_uid": 0, "last_sync_at": "never"}]:
        print(f"mailbox {box['mailbox']}: last UID {box['last_uid']}, last sync {box['last_sync_at']}")
    print("raw mail: " + _counts(status["raw_mail"]))
    print("email outbox: " + _counts(status["email_outbox"]))
    print("telegram outbox: " + _counts(status["telegram_outbox"]))
    oldest = status["oldest_waiting"]
    print(
        f"waiting requests: {status['waiting_requests']} ({status['overdue_requests']} overdue)"
        + (f"; oldest #{oldest['ticket']} arrived {oldest['arrived_at']}" if oldest else "")
    )
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "empty"
