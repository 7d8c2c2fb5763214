"""Run MailWatcher.run() in its own process, for the kill -9 test (tests/test_intake.py).

Settings come from the environment so the password never shows in `ps`:
WATCHER_HOST, WATCHER_PORT, WATCHER_USER, WATCHER_PASSWORD, WATCHER_DATABASE_URL,
optional WATCHER_BATCH_SIZE. The database must already be migrated (the `db` fixture does it).
Prints "watcher started" once connected to the database; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from mail.imap import ImapConfig
from mail.intake import MailWatcher
from models.store import db as database


async def main() -> None:
    env = os.environ
    config = ImapConfig(
        host=env["WATCHER_HOST"],
        port=int(env["WATCHER_PORT"]),
        user=env["WATCHER_USER"],
        password=env["WATCHER_PASSWORD"],
        security="none",
        batch_size=int(env.get("WATCHER_BATCH_SIZE", "100")),
        timeout=20.0,
    )
    await database.init_db(env["WATCHER_DATABASE_URL"])
    watcher = MailWatcher(config, retry_base=0.1, retry_cap=1.0)
    task = asyncio.create_task(watcher.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    print("watcher started", flush=True)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await database.close_db()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main())
