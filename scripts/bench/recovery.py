"""Recovery after an SMTP outage: a real aiosmtpd stopped for 60 s (10 s with --quick) while ten emails
are queued, each with a wake-up as an accept does, then started again on the same port. Measures the
time from the server's return to the last queued email captured, with EmailSender's default settings
(its own defaults: run it on an older checkout to get the "before" figure), and how many connection
attempts the sender made during the outage (counted from its log lines)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from mail.send import EmailSender, SmtpConfig
from models.store import db
from models.tables import EmailOutbox
from scripts.bench.common import Options, Result, smtp_capture
from scripts.bench.outbox import composed

EMAILS = 10


class _Count(logging.Handler):
    """Counts the sender's "cannot connect" lines: one per connection attempt that failed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failures = 0
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "cannot connect to SMTP" in message:
            self.failures += 1
            self.last = message


async def run(opts: Options) -> Result:
    outage = 10.0 if opts.quick else 60.0
    url = opts.fresh_database("recovery")
    await db.apply_migrations(url)
    counter = _Count()
    logging.getLogger("mail.send").addHandler(counter)
    try:
        with smtp_capture() as smtp:
            sender = EmailSender(SmtpConfig(host=smtp.host, port=smtp.port, security="none"))
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(0.5)
            smtp.set_mode("down")
            down_at = time.monotonic()
            for i in range(EMAILS):  # ten accepts in a row, each waking the sender
                mid, content = composed(i)
                await EmailOutbox.create(idempotency_key=f"recovery:{i}", event="accepted", message_id=mid,
                                         recipients=[f"client{i}@client.example"], content=content,
                                         not_before=datetime.now(UTC))
                sender.wake()
                await asyncio.sleep(0.04)
            await asyncio.sleep(outage - (time.monotonic() - down_at))
            tries = counter.failures
            last_line = counter.last
            smtp.set_mode(None)
            back_at = time.monotonic()
            await smtp.wait_for_count(EMAILS, timeout=900)
            recovery = time.monotonic() - back_at
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        logging.getLogger("mail.send").removeHandler(counter)
        await db.close_db()
    return {
        "outage_s": outage,
        "emails": EMAILS,
        "connect_tries_during_outage": tries,
        "last_failure_line": last_line.rsplit("(", 1)[-1].rstrip(")"),
        "recovery_s": round(recovery, 1),
        "delivered": len(smtp.messages),
    }
