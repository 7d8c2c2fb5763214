"""Several real bridge processes on one database: nothing lost, nothing doubled, takeover after kill -9.

Every process runs in webhook mode on its own port (only one process may long-poll Telegram), the
test plays Telegram's part for updates: it presses buttons in the fake server and POSTs the resulting
Update JSON, with the secret header, to one of the live processes as the reverse proxy would.

On PostgreSQL (CI's second pass: TEST_DATABASE_URL=postgres) three processes share the work; on
SQLite a reduced version runs two, since SQLite allows one writer at a time but leases work there too.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from models.tables import EmailOutbox, Lease, OutboxStatus, TelegramOutbox, Ticket
from tests.helpers.process import STAFF_CHAT_ID, STAFF_USER_ID, BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.net import free_port
from tests.rig.smtp import SmtpCapture
from tests.test_process import button_data, request_mail

WEBHOOK_URL = "https://bridge.storeolis.test/telegram"
SECRET = "test-webhook-secret-" + secrets.token_hex(8)
LEASE_SECONDS = 3


def bare_id(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>")


class Bridges:
    """The processes, their webhook ports, and a little of the reverse proxy's job."""

    def __init__(self, processes: list[BridgeProcess], ports: list[int]) -> None:
        self.processes = processes
        self.ports = ports
        self._next = itertools.count()
        self.posted: set[int] = set()

    def by_instance(self, holder: str) -> BridgeProcess:
        name = holder.split("#", 1)[0]
        return self.processes[int(name.removeprefix("bridge-"))]

    async def deliver_updates(self, telegram: FakeTelegram, session: aiohttp.ClientSession) -> None:
        """POST every update not yet delivered to a live process (round robin; a dead one is skipped)."""
        for update in telegram.pending_updates:
            if update["update_id"] in self.posted:
                continue
            for _ in range(len(self.processes)):
                index = next(self._next) % len(self.processes)
                if not self.processes[index].alive():
                    continue
                try:
                    async with session.post(
                        f"http://127.0.0.1:{self.ports[index]}/telegram",
                        json=update,
                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as response:
                        if response.status == 200:
                            self.posted.add(update["update_id"])
                            break
                except (aiohttp.ClientError, TimeoutError):
                    continue  # not listening yet, or just killed: Telegram would retry elsewhere too


def cards(telegram: FakeTelegram, subject: str) -> list[dict]:
    """Card posts (messages with buttons) of one request, as Telegram recorded them."""
    return [
        s
        for s in telegram.sent
        if s["method"] == "sendMessage"
        and s.get("chat_id") == STAFF_CHAT_ID
        and subject in (s.get("text") or "")
        and s.get("reply_markup")
    ]


def reposted_rows(outputs: list[str]) -> set[int]:
    """Telegram rows a survivor re-sent after a death (the accepted one-write window of doubt)."""
    ids: set[int] = set()
    for output in outputs:
        for match in re.finditer(r"previous process stopped \(ids ([\d, ]+)\)", output):
            ids |= {int(x) for x in match.group(1).split(",") if x.strip()}
    return ids


async def current_holder(name: str) -> str | None:
    row = await Lease.filter(name=name, expires_at__gte=datetime.now(UTC)).first()
    return row.holder if row is not None else None


async def run_scale_out(
    tmp_path: Path,
    db: str,
    mailbox: DovecotServer,
    smtp_server: SmtpCapture,
    telegram: FakeTelegram,
    *,
    processes: int,
    requests: int,
) -> None:
    ports = [free_port() for _ in range(processes)]
    base = bridge_env(
        database_url=db,
        mailbox=mailbox,
        smtp=smtp_server,
        telegram=telegram,
        LEASE_SECONDS=str(LEASE_SECONDS),
        TELEGRAM_LEASE_SECONDS="10",
        EMAIL_LEASE_SECONDS="10",
        SLA_TICK_SECONDS="1",
        MONTHLY_LIMIT="1000",
        TELEGRAM_MODE="webhook",
        WEBHOOK_URL=WEBHOOK_URL,
        WEBHOOK_SECRET=SECRET,
        ACKNOWLEDGE_REQUESTS="false",  # one email per decision is counted; acknowledgements: test_acknowledgement.py
    )
    clients = tmp_path / "clients.csv"
    clients.write_text(
        "name,inn,contract,emails\nООО Ромашка,7707083893,Д-2024/117,@romashka.ru\n", encoding="utf-8"
    )
    imported = await asyncio.to_thread(run_cli, ["clients", "import", str(clients)], base, tmp_path)
    assert imported.returncode == 0, imported.stderr

    bridges = Bridges(
        [
            BridgeProcess(
                dict(base, INSTANCE_NAME=f"bridge-{i}", WEBHOOK_LISTEN_PORT=str(ports[i])),
                tmp_path,
                tmp_path / f"bridge-{i}.log",
            )
            for i in range(processes)
        ],
        ports,
    )
    subjects = [f"Запрос {n} {secrets.token_hex(3)}" for n in range(requests)]
    pressed: set[str] = set()
    killed: BridgeProcess | None = None
    for process in bridges.processes:
        process.start()
    try:
        first_holder = await telegram.wait_for(lambda: current_holder("mail-watcher"), timeout=60)
        await telegram.wait_for(lambda: telegram.webhook_url == WEBHOOK_URL, timeout=30)

        async def append_all() -> None:
            for n, subject in enumerate(subjects):
                body = f"Здравствуйте! Не работает выгрузка заказов, случай {n}: {subject}. ООО Ромашка."
                mail = request_mail(subject, body, sender=f"user{n}@romashka.ru")
                await asyncio.to_thread(mailbox.append, mail, internal_date=datetime.now(UTC))
                await asyncio.sleep(0.2)

        appender = asyncio.create_task(append_all())
        async with aiohttp.ClientSession() as session:

            async def staff_round() -> None:
                """The staff presses Accept on every new card; updates go to the live processes."""
                for subject in subjects:
                    if subject in pressed:
                        continue
                    posted = cards(telegram, subject)
                    if posted:
                        card = telegram.message(STAFF_CHAT_ID, posted[0]["message_id"])
                        data = button_data(card, "Принять")
                        telegram.press_button(STAFF_CHAT_ID, card["message_id"], STAFF_USER_ID, data)
                        pressed.add(subject)
                await bridges.deliver_updates(telegram, session)

            async def tickets_at_least(n: int) -> bool:
                await staff_round()
                return await Ticket.all().count() >= n

            # Kill -9 the watcher's process while mail keeps arriving.
            await telegram.wait_for(lambda: tickets_at_least(requests // 3), timeout=90)
            killed = bridges.by_instance(first_holder)
            killed.kill()

            async def taken_over() -> str | None:
                await staff_round()
                holder = await current_holder("mail-watcher")
                return holder if holder and bridges.by_instance(holder) is not killed else None

            new_holder = await telegram.wait_for(taken_over, timeout=LEASE_SECONDS * 10)
            await appender

            async def everything_done() -> bool:
                await staff_round()
                if len(pressed) < requests:
                    return False
                return (
                    await EmailOutbox.filter(status=OutboxStatus.SENT).count() >= requests
                    and not await TelegramOutbox.filter(
                        status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
                    )
                    .exclude(kind="digest")
                    .exists()
                )

            await telegram.wait_for(everything_done, timeout=180)
            await asyncio.sleep(1.0)  # anything doubled would show up now
    finally:
        codes = [await p.stop() for p in bridges.processes if p is not killed]

    outputs = [p.output() for p in bridges.processes]
    survivors = [p for p in bridges.processes if p is not killed]
    assert all(code == 0 for code in codes), [p.output()[-3000:] for p in survivors]
    assert not any("Traceback" in p.output() for p in survivors), [p.output()[-3000:] for p in survivors]
    assert any(f"lease mail-watcher acquired by {new_holder}" in out for out in outputs)

    # Every email is exactly one ticket.
    tickets = await Ticket.all()
    assert len(tickets) == requests
    assert sorted(t.subject for t in tickets) == sorted(subjects)

    # Every card posted once (a second post only for a row a survivor re-sent after the kill, the
    # documented window between Telegram's answer and our commit of it).
    again = reposted_rows(outputs)
    for ticket in tickets:
        posts = cards(telegram, ticket.subject)
        assert posts, f"no card for ticket #{ticket.id}"
        if len(posts) > 1:
            card_row = await TelegramOutbox.get(idempotency_key=f"card:{ticket.id}")
            assert card_row.id in again, f"card of ticket #{ticket.id} posted {len(posts)} times"

    # Every accepted ticket's email sent once (a second copy only if flagged ambiguous_resend).
    assert {t.status for t in tickets} == {"accepted"}
    sent = Counter(bare_id(m.message["Message-ID"]) for m in smtp_server.messages)
    rows = await EmailOutbox.all()
    assert {r.ticket_id for r in rows if r.status == OutboxStatus.SENT} == {t.id for t in tickets}
    for row in rows:
        assert sent[bare_id(row.message_id)] >= 1, f"email outbox #{row.id} never reached the server"
        assert sent[bare_id(row.message_id)] == 1 or row.ambiguous_resend, (
            f"email outbox #{row.id} sent twice"
        )
    assert telegram.webhook_url == WEBHOOK_URL
    assert not any(method == "getUpdates" for method, _ in telegram.calls)


async def test_three_processes_on_postgresql_share_the_work_and_survive_a_kill(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    if db.startswith("sqlite"):
        pytest.skip(
            "PostgreSQL only (CI's second pass, TEST_DATABASE_URL=postgres); SQLite runs the reduced test"
        )
    await run_scale_out(tmp_path, db, mailbox, smtp_server, telegram, processes=3, requests=24)


async def test_two_processes_on_sqlite_hand_the_mailbox_over_after_a_kill(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    if not db.startswith("sqlite"):
        pytest.skip("the reduced SQLite version; PostgreSQL runs the full test")
    await run_scale_out(tmp_path, db, mailbox, smtp_server, telegram, processes=2, requests=8)


async def test_webhook_refuses_updates_without_the_secret(
    tmp_path: Path, db: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram
) -> None:
    port = free_port()
    env = bridge_env(
        database_url=db,
        mailbox=mailbox,
        smtp=smtp_server,
        telegram=telegram,
        TELEGRAM_MODE="webhook",
        WEBHOOK_URL=WEBHOOK_URL,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_LISTEN_PORT=str(port),
    )
    process = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    process.start()
    try:
        await telegram.wait_for(lambda: telegram.webhook_url == WEBHOOK_URL, timeout=60)
        update = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": STAFF_CHAT_ID, "type": "supergroup", "title": "x"},
                "from": {"id": STAFF_USER_ID, "is_bot": False, "first_name": "Анна"},
                "text": "/help",
            },
        }
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret-0000000"}):
                url = f"http://127.0.0.1:{port}/telegram"
                async with session.post(url, json=update, headers=headers) as response:
                    assert response.status == 401
            async with session.post(
                f"http://127.0.0.1:{port}/telegram",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            ) as response:
                assert response.status == 200
    finally:
        code = await process.stop()
    assert code == 0, process.output()[-3000:]
    assert SECRET not in process.output()
    set_calls = [params for method, params in telegram.calls if method == "setWebhook"]
    assert set_calls and set_calls[-1].get("secret_token") == SECRET


async def test_webhook_mode_without_a_url_is_one_clear_settings_error(tmp_path: Path, db: str) -> None:
    env = bridge_env(
        database_url=db,
        IMAP_HOST="127.0.0.1",
        IMAP_USER="u",
        IMAP_PASSWORD="p",
        IMAP_SECURITY="none",
        SMTP_HOST="127.0.0.1",
        SMTP_SECURITY="none",
        TELEGRAM_MODE="webhook",
    )
    result = await asyncio.to_thread(run_cli, ["run"], env, tmp_path, 60)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "WEBHOOK_URL" in errors[0], result.stderr
