"""Shared pieces of the benchmarks: the servers, the database, mail generation, RSS sampling, stats.

Everything runs on 127.0.0.1 with the same rig the tests use (tests/rig/*): a real Dovecot, a real
aiosmtpd and the fake Telegram Bot API server; the bridge itself runs as the real `python -m bot run`
process (tests/helpers/process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from tests.helpers.process import (
    BridgeProcess,
    bridge_env,
    run_cli,
    staff_telegram,
)
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.smtp import SmtpCapture

Result = dict[str, Any]


@dataclass
class Options:
    quick: bool = False
    database_url: str | None = None  # None: a temp SQLite file per measurement; "postgres": a cluster
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="storeolis-bench-")))
    profile_dir: Path | None = None  # when set, the bridge runs under cProfile and writes NAME.prof here
    _pg: Any = None
    _dovecot: DovecotServer | None = None

    def dovecot(self) -> DovecotServer:
        if self._dovecot is None:
            self._dovecot = DovecotServer()
            self._dovecot.start()
        return self._dovecot

    def fresh_mailbox(self) -> DovecotServer:
        return self.dovecot().with_user(f"bench{secrets.token_hex(4)}@storeolis.ru", secrets.token_urlsafe(12))

    def fresh_database(self, name: str) -> str:
        """An empty database URL for one measurement."""
        if not self.database_url:
            return f"sqlite://{self.workdir / (name + '.sqlite3')}"
        if self.database_url == "postgres":
            from tests.rig.postgres import PostgresCluster

            if self._pg is None:
                self._pg = PostgresCluster()
                self._pg.start()
            return self._pg.create_database(f"bench_{name}_{secrets.token_hex(3)}")
        from tests.rig.postgres import create_database_at

        return create_database_at(self.database_url, f"bench_{name}_{secrets.token_hex(3)}")

    def close(self) -> None:
        if self._dovecot is not None:
            self._dovecot.stop()
        if self._pg is not None:
            self._pg.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# servers and the bridge process
# ---------------------------------------------------------------------------------------------------


fake_telegram = staff_telegram  # the staff group and one staff member, as in the tests


@contextlib.contextmanager
def smtp_capture() -> Iterator[SmtpCapture]:
    capture = SmtpCapture()
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()


async def migrate(env: dict[str, str], cwd: Path) -> None:
    result = await asyncio.to_thread(run_cli, ["migrate"], env, cwd, 300)
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed: {result.stdout}{result.stderr}")


def _start_profiled(process: BridgeProcess, output: Path) -> None:
    """`python -m cProfile -o OUTPUT -m bot run`: cProfile writes its file when the process exits
    normally (SIGTERM is the bridge's graceful stop)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    process.starts += 1
    with process.log_path.open("ab") as log:
        process.proc = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "bot", "run"],
            env=process.env, cwd=process.cwd, stdout=log, stderr=subprocess.STDOUT,
        )


@contextlib.asynccontextmanager
async def bridge(
    opts: Options,
    name: str,
    *,
    database_url: str,
    mailbox: DovecotServer,
    smtp: SmtpCapture,
    telegram: FakeTelegram,
    **extra: str,
) -> AsyncIterator[BridgeProcess]:
    """The real `python -m bot run` process; stopped with SIGTERM afterwards."""
    cwd = opts.workdir / name
    cwd.mkdir(parents=True, exist_ok=True)
    env = bridge_env(
        database_url=database_url, mailbox=mailbox, smtp=smtp, telegram=telegram, LOG_LEVEL="WARNING", **extra
    )
    await migrate(env, cwd)
    process = BridgeProcess(env, cwd, cwd / "bridge.log")
    if opts.profile_dir is None:
        process.start()
    else:
        _start_profiled(process, opts.profile_dir / f"{name}.prof")
    try:
        yield process
    finally:
        await process.stop(grace=30)


# ---------------------------------------------------------------------------------------------------
# mail
# ---------------------------------------------------------------------------------------------------

WORDS = (
    "личный кабинет не открывается ошибка при входе после обновления страницы счет не приходит на почту "
    "интеграция с маркетплейсом перестала выгружать заказы остатки склада цены карточки товаров "
    "прошу проверить настройки синхронизации уведомления задержка отчета клиент менеджер договор "
    "the export to the marketplace stopped working since yesterday orders are not uploaded please check"
).split()

SENDERS = ("ivanov@romashka.ru", "petrov@mail.ru", "sidorova@lesnik.ru", "info@vektor-plus.ru", "buh@alfa-trade.ru")


def body_text(rng: random.Random, words: int) -> str:
    lines = []
    for _ in range(max(1, words // 12)):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + ".")
    return "Здравствуйте!\n\n" + "\n".join(lines) + "\n\nС уважением,\nИван Иванов\n+7 900 000-00-00\n"


def request_mail(
    rng: random.Random,
    subject: str,
    *,
    sender: str | None = None,
    words: int = 80,
    attachment: int = 0,
    html: bool = False,
    date: Any = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Клиент <{sender or rng.choice(SENDERS)}>"
    msg["To"] = "support@storeolis.ru"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="client.example")
    msg["Date"] = format_datetime(date) if date is not None else "Wed, 25 Nov 2026 10:00:00 +0300"
    text = body_text(rng, words)
    msg.set_content(text)
    if html:
        msg.add_alternative("<html><body><p>" + text.replace("\n", "<br>") + "</p></body></html>", subtype="html")
    if attachment:
        msg.add_attachment(os.urandom(attachment), maintype="application", subtype="octet-stream", filename="log.bin")
    return bytes(msg)


# ---------------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += _children(p)
    return tree


class RssSampler:
    """Samples VmRSS of a process and its descendants every `interval` seconds (peak values kept)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_main_kb = 0
        self.peak_tree_kb = 0
        self.hwm_main_kb = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        main = _status_kb(self.pid, "VmRSS")
        if main == 0:
            return
        self.hwm_main_kb = max(self.hwm_main_kb, _status_kb(self.pid, "VmHWM"))
        self.peak_main_kb = max(self.peak_main_kb, main)
        total = sum(_status_kb(p, "VmRSS") for p in process_tree(self.pid))
        self.peak_tree_kb = max(self.peak_tree_kb, total)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_until(predicate: Any, timeout: float, interval: float = 0.2, what: str = "") -> float:  # noqa: ASYNC109
    """Poll an async predicate; returns the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        await asyncio.sleep(interval)
