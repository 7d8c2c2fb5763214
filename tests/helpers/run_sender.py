"""Run an EmailSender in its own process, for the kill -9 test in tests/test_send.py.

    python -m tests.helpers.run_sender DATABASE_URL SMTP_HOST SMTP_PORT

Prints "ready" once the database is open (the test kills it at random moments after that) and runs
until SIGTERM. At start-up it recovers every SENDING row at once (lease 0): the test runs one sender
at a time, so any SENDING row belongs to a process the test killed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from mail.send import EmailSender, SmtpConfig
from models.store.db import close_db, init_db


async def main(database_url: str, host: str, port: int) -> None:
    await init_db(database_url)
    sender = EmailSender(
        SmtpConfig(host=host, port=port, security="none", timeout=5.0),
        base_backoff=0.05,
        max_backoff=0.2,
        poll_interval=0.1,
        worker_id=f"run_sender:{port}",
    )
    try:
        await sender.recover(lease_seconds=0)
        task = asyncio.create_task(sender.run())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        print("ready", flush=True)
        try:
            await task
        except asyncio.CancelledError:
            pass
    finally:
        await close_db()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
