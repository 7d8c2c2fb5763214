"""5. Outbox: emails per second handed to aiosmtpd by EmailSender (rows written beforehand)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from mail.send import EmailSender, SmtpConfig
from models.store import db
from models.tables import EmailOutbox, OutboxStatus
from scripts.bench.common import Options, Result, smtp_capture


def composed(i: int) -> tuple[str, bytes]:
    msg = EmailMessage()
    mid = make_msgid(domain="storeolis.ru")
    msg["From"] = "Storeolis <support@storeolis.ru>"
    msg["To"] = f"client{i}@client.example"
    msg["Subject"] = f"Re: Обращение #{i}"
    msg["Message-ID"] = mid
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Здравствуйте!\n\nВаше обращение принято в работу.\n\n-- \nStoreolis\n" * 5)
    return mid, bytes(msg)


async def run(opts: Options) -> Result:
    count = 200 if opts.quick else 2000
    url = opts.fresh_database("outbox")
    await db.apply_migrations(url)
    try:
        with smtp_capture() as smtp:
            rows = []
            for i in range(count):
                mid, content = composed(i)
                rows.append(EmailOutbox(idempotency_key=f"bench:{i}", event="accepted", message_id=mid,
                                        recipients=[f"client{i}@client.example"], content=content,
                                        not_before=datetime.now(UTC) - timedelta(seconds=1)))
            await EmailOutbox.bulk_create(rows, batch_size=1000)
            sender = EmailSender(SmtpConfig(host=smtp.host, port=smtp.port, security="none"))
            started = time.perf_counter()
            sent = 0
            while sent < count:
                n = await sender.deliver_due()
                if n == 0:
                    break
                sent += n
            elapsed = time.perf_counter() - started
            await sender.aclose()
            done = await EmailOutbox.filter(status=OutboxStatus.SENT).count()
            captured = len(smtp.messages)
    finally:
        await db.close_db()
    return {
        "emails": count,
        "sent": done,
        "captured_by_smtp": captured,
        "seconds": round(elapsed, 2),
        "emails_per_s": round(done / elapsed, 1),
        "connections": sender.connections_opened,
    }
