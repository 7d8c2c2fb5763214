"""GET /metrics of the running process (HEALTH_PORT), in the Prometheus text format: the values move
with the desk's work (a mail registered, a finding, an acceptance, its email leaving the outbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.net import free_port
from tests.rig.smtp import SmtpCapture
from tests.test_decisions_process import answered, card_of, prepared
from tests.test_process import button_data, request_mail

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples | None:
    """Every sample of one scrape, by (name, labels); None while the endpoint does not answer 200."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                if response.status != 200:
                    return None
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)  # raises on anything not in the format
        for s in family.samples
    }


async def scrape_until(port: int, wanted: Callable[[Samples], bool], what: str, process: BridgeProcess) -> Samples:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    last = None
    while loop.time() < deadline:
        last = await scrape(port)
        if last is not None and wanted(last):
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"/metrics never showed {what}; last scrape {last}\n{process.output()[-3000:]}")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def findings(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "storeolis_findings_total")


async def test_metrics_move_with_a_mail_registered_and_accepted(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    port = free_port()
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     HEALTH_PORT=str(port), ACKNOWLEDGE_REQUESTS="false")  # the acceptance's email is counted
    await prepared(tmp_path, env, telegram)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        # On a working day after SLA_DIGEST_TIME (local time), the bridge posts the morning digest as it
        # starts: wait until that post, the only one possible before a mail, has left the outbox.
        before = await scrape_until(
            port, lambda s: ("storeolis_mailbox_sync_age_seconds", ()) in s
            and value(s, "storeolis_outbox_depth", channel="telegram") == 0,
            "a mailbox sync and an empty Telegram outbox", process)
        assert value(before, "storeolis_requests_registered_total") == 0
        assert value(before, "storeolis_outbox_depth", channel="email") == 0
        assert value(before, "storeolis_quarantined_mail") == 0
        assert value(before, "storeolis_decisions_total", outcome="accepted") == 0

        subject = "Не работает выгрузка заказов"
        await asyncio.to_thread(mailbox.append, request_mail(subject, "Ошибка 500 при выгрузке. ООО Ромашка."),
                                internal_date=datetime.now(UTC))
        card = await telegram.wait_for(lambda: card_of(telegram, subject), timeout=60)
        registered = await scrape_until(
            port, lambda s: value(s, "storeolis_requests_registered_total") == 1, "one request registered", process)
        assert value(registered, "storeolis_decisions_total", outcome="accepted") == 0

        accept = telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, button_data(card, "Принять"))
        assert (await answered(telegram, accept))["text"].startswith("Принято")
        await smtp_server.wait_for_count(1, timeout=60)
        accepted = await scrape_until(
            port,
            lambda s: value(s, "storeolis_decisions_total", outcome="accepted") == 1
            and value(s, "storeolis_outbox_depth", channel="email") == 0,
            "the acceptance counted and its email gone from the outbox", process)
        assert value(accepted, "storeolis_requests_registered_total") == 1
        assert value(accepted, "storeolis_outbox_oldest_pending_seconds", channel="email") == 0

        # Its card reached the chat: one arrival-to-card latency observed.
        assert value(accepted, "storeolis_card_latency_seconds_count") == 1
        assert value(accepted, "storeolis_telegram_flood_waits_total") == 0

        # A stranger's mail: registered with findings (nobody identifies the sender); Telegram answers its
        # card with flood control once.
        telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        stranger = "Помогите с доступом"
        await asyncio.to_thread(
            mailbox.append, request_mail(stranger, "Не могу войти.", sender="someone@unknown-domain.test"),
            internal_date=datetime.now(UTC))
        await telegram.wait_for(lambda: card_of(telegram, stranger), timeout=60)
        after = await scrape_until(
            port, lambda s: value(s, "storeolis_requests_registered_total") == 2, "two requests registered", process)
        assert findings(after) > findings(accepted)
        flooded = await scrape_until(
            port, lambda s: value(s, "storeolis_card_latency_seconds_count") == 2, "the second card's latency", process)
        assert value(flooded, "storeolis_telegram_flood_waits_total") == 1
        assert value(flooded, "storeolis_telegram_flood_wait_seconds_total") == 1
        assert value(after, "storeolis_decisions_total", outcome="accepted") == 1
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()


async def test_sla_alerts_breaches_smtp_failures_and_imap_reconnects_are_counted(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    port = free_port()
    env = bridge_env(database_url=database_url, mailbox=mailbox, smtp=smtp_server, telegram=telegram,
                     HEALTH_PORT=str(port), SLA_TICK_SECONDS="1", OUTBOX_MAX_BACKOFF_SECONDS="1")
    await prepared(tmp_path, env, telegram)
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        before = await scrape_until(
            port, lambda s: ("storeolis_mailbox_sync_age_seconds", ()) in s, "a mailbox sync", process)
        assert value(before, "storeolis_sla_breached_open") == 0
        assert value(before, "storeolis_imap_reconnects_total") == 0

        # A request that has waited 14 days: past its deadline, an alert fires and the gauge counts it.
        old = datetime.now(UTC) - timedelta(days=14)
        subject = "Старый запрос про кассу"
        await asyncio.to_thread(mailbox.append, request_mail(subject, "Касса не печатает чеки. ООО Ромашка."),
                                internal_date=old)
        card = await telegram.wait_for(lambda: card_of(telegram, subject), timeout=60)
        breached = await scrape_until(
            port, lambda s: value(s, "storeolis_sla_alerts_total", threshold="breach") >= 1
            and value(s, "storeolis_sla_breached_open") == 1, "a breach alert and one breached request", process)
        assert value(breached, "storeolis_smtp_failures_total", kind="rejected", outcome="retrying") == 0

        # The SMTP server refuses for a while: the acceptance email is retried, each refusal counted.
        smtp_server.set_mode("tempfail")
        accept = telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, button_data(card, "Принять"))
        await answered(telegram, accept)
        await scrape_until(
            port, lambda s: value(s, "storeolis_smtp_failures_total", kind="recipient", outcome="retrying") >= 1,
            "a refused SMTP attempt", process)
        smtp_server.set_mode(None)
        await smtp_server.wait_for_count(1, timeout=60)
        decided = await scrape_until(port, lambda s: value(s, "storeolis_sla_breached_open") == 0,
                                     "no breached request left once it is decided", process)
        assert value(decided, "storeolis_imap_reconnects_total") == 0

        # The IMAP server restarts: the watcher's new session is a reconnect.
        await asyncio.to_thread(mailbox.restart)
        await scrape_until(port, lambda s: value(s, "storeolis_imap_reconnects_total") >= 1, "an IMAP reconnect",
                           process)
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert "Traceback" not in process.output()
