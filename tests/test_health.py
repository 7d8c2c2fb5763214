"""GET /health of the running process (HEALTH_PORT): 200 with every component's state while all is
well, 503 naming the failing part during an outage, 200 again after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bot.outages import OutageReporter
from tests.helpers.process import BridgeProcess
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.net import free_port
from tests.rig.smtp import SmtpCapture
from tests.test_crash import crash_env, prepare, until


async def get_health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"http://127.0.0.1:{port}/health") as response:
                return response.status, await response.json()
    except (aiohttp.ClientError, TimeoutError):
        return None


async def wait_health(
    port: int,
    status: int,
    seconds: float,
    process: BridgeProcess,
    settled: Callable[[dict[str, Any]], bool] = lambda document: True,
) -> dict[str, Any]:
    """The first answer with `status` whose document is `settled`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last = None
    while loop.time() < deadline:
        last = await get_health(port)
        if last is not None and last[0] == status and settled(last[1]):
            return last[1]
        await asyncio.sleep(0.5)
    raise AssertionError(f"/health never answered {status} as awaited; last answer {last}\n{process.output()[-3000:]}")


def imap_recovered(document: dict[str, Any]) -> bool:
    imap = document["outages"].get("imap")
    return imap is None or imap["failing"] is False


async def test_health_reports_components_and_turns_503_during_an_outage(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    port = free_port()
    env = crash_env(
        database_url, mailbox, smtp_server, telegram,
        HEALTH_PORT=str(port), OUTAGE_NOTICE_SECONDS="2", IMAP_TIMEOUT_SECONDS="5", IMAP_IDLE_SECONDS="5",
    )
    await prepare(tmp_path, env, clients=1)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        await until(lambda: "IMAP connected" in process.output(), 60, "IMAP connected", process)
        healthy = await wait_health(port, 200, 60, process)
        assert healthy["ok"] is True
        assert {"mail-watcher", "email-sender", "telegram-sender", "outage-watch"} <= set(healthy["components"])
        assert all(c["running"] for c in healthy["components"].values())
        assert healthy["mail_watcher"]["connected"] is True
        assert healthy["mail_watcher"]["last_sync_at"]
        assert healthy["status"]["email_outbox"]["pending"] == 0
        assert "oldest_waiting" in healthy["status"]

        mailbox._stop_process()  # keeps users and mail (the rig's stop() would delete them)
        try:
            sick = await wait_health(port, 503, 60, process)
        finally:
            mailbox._spawn()
        assert sick["ok"] is False
        assert sick["outages"]["imap"]["failing"] is True
        assert sick["outages"]["imap"]["detail"]
        assert sick["mail_watcher"]["last_error"]

        # 200 comes back as soon as nothing has failed for OUTAGE_NOTICE_SECONDS; a reconnect to the
        # restarted server can still hiccup (a failure younger than that is not an outage), so the
        # recovery awaited is of IMAP itself.
        again = await wait_health(port, 200, 90, process, imap_recovered)
        assert again["ok"] is True
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]


async def test_the_health_endpoint_is_off_unless_a_port_is_set(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    env = crash_env(database_url, mailbox, smtp_server, telegram)
    await prepare(tmp_path, env, clients=1)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        await until(lambda: "bridge running" in process.output(), 60, "the bridge running", process)
        assert "health endpoint" not in process.output()
    finally:
        assert await process.stop() == 0


async def test_the_reporter_announces_a_lasting_failure_once_and_its_recovery_once() -> None:
    now = [0.0]
    posted: list[tuple[str, dict[str, Any], str]] = []

    async def post(event: str, facts: dict[str, Any], key: str) -> None:
        posted.append((event, facts, key))

    reporter = OutageReporter(notify_after=10, post=post, clock=lambda: now[0])
    reporter.observe("imap", True, "connection refused")
    await reporter.flush()
    assert posted == []  # a hiccup is nobody's business
    for t in (5.0, 10.0, 30.0, 300.0):
        now[0] = t
        reporter.observe("imap", True, "connection refused")
        await reporter.flush()
    assert [p[0] for p in posted] == ["outage"]
    assert posted[0][1]["component"] == "imap" and posted[0][1]["detail"] == "connection refused"
    assert reporter.failing(lasting_only=True) == ["imap"]

    reporter.observe("telegram", True, "500", reportable=False)
    now[0] = 400.0
    reporter.observe("telegram", True, "500", reportable=False)
    reporter.observe("imap", False)
    await reporter.flush()
    await reporter.flush()
    assert [p[0] for p in posted] == ["outage", "recovered"]  # Telegram's own outage is logged only
    assert posted[1][2].startswith("recovered:imap:")


async def test_a_notice_the_database_refuses_is_posted_on_a_later_tick() -> None:
    now = [0.0]
    attempts: list[str] = []

    async def post(event: str, facts: dict[str, Any], key: str) -> None:
        attempts.append(event)
        if len(attempts) == 1:
            raise RuntimeError("database is locked")

    reporter = OutageReporter(notify_after=1, post=post, clock=lambda: now[0])
    reporter.observe("smtp", True, "451")
    now[0] = 2.0
    await reporter.flush()
    await reporter.flush()
    await reporter.flush()
    assert attempts == ["outage", "outage"]
