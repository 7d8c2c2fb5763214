"""Run the real bridge as a separate process (`python -m bot ...`) against the test servers.

The process gets its settings from the environment only (its working directory is a temp dir, so
the developer's .env is never read), talks to Dovecot, aiosmtpd and the fake Telegram server on
127.0.0.1, and can be killed with SIGKILL like in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture

REPO = Path(__file__).resolve().parents[2]
STAFF_CHAT_ID = -1009876543210  # not the .env.example placeholder, which is refused
STAFF_USER_ID = 5001


@contextlib.asynccontextmanager
async def staff_telegram(token: str | None = None) -> AsyncIterator[FakeTelegram]:
    """A fake Telegram server with the staff group and one staff member in it."""
    fake = FakeTelegram(token=token) if token else FakeTelegram()
    await fake.start()
    fake.add_user(STAFF_USER_ID, "Анна", username="anna_support")
    fake.add_group(STAFF_CHAT_ID, "Storeolis support", members=[STAFF_USER_ID])
    try:
        yield fake
    finally:
        await fake.stop()


def bridge_env(
    *,
    database_url: str,
    mailbox: DovecotServer | None = None,
    smtp: SmtpCapture | None = None,
    telegram: FakeTelegram | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAP_", "SMTP_", "TELEGRAM_", "STAFF_"))}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": database_url,
            "STAFF_CHAT_ID": str(STAFF_CHAT_ID),
            "LOG_LEVEL": "INFO",
            "PARSE_WORKERS": "0",
            "REFUSAL_GRACE_SECONDS": "0",
            # Telegram's pacing (1 a second per chat, 20 a minute per group) shrunk twentyfold: the fake does
            # not enforce flood control in these tests unless one asks it to (and then passes its own scale),
            # so at real rates a test would only wait, one second per card, edit or answer.
            "TELEGRAM_RATE_SCALE": "0.05",
        }
    )
    if telegram is not None:
        env.update({"TELEGRAM_BOT_TOKEN": telegram.token, "TELEGRAM_API_URL": telegram.url})
    else:
        env.update({"TELEGRAM_BOT_TOKEN": "1:unused", "TELEGRAM_API_URL": "http://127.0.0.1:9"})
    if mailbox is not None:
        env.update(
            {
                "IMAP_HOST": mailbox.host,
                "IMAP_PORT": str(mailbox.port),
                "IMAP_USER": mailbox.user,
                "IMAP_PASSWORD": mailbox.password,
                "IMAP_SECURITY": "none",
                "IMAP_POLL_SECONDS": "1",
                "IMAP_TIMEOUT_SECONDS": "15",
            }
        )
    if smtp is not None:
        env.update({"SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port), "SMTP_SECURITY": "none"})
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Blocking: call it through asyncio.to_thread from async tests (the fake servers share the loop)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def reap(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """Blocking: wait for a child that was told to stop (or killed) and close our ends of its pipes,
    which would otherwise be closed by the garbage collector with a ResourceWarning."""
    try:
        return proc.wait(timeout)
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@dataclass
class BridgeProcess:
    env: dict[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, exactly like a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    async def stop(self, grace: float = 30) -> int | None:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
