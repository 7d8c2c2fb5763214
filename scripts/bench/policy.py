"""4. Policy cost per request with a realistic history in the database (in process, SQLite default).

Bulk-inserts clients (addresses, domains, INNs), tickets spread over twelve months with content
hashes and their first messages, then times `PolicyEngine.evaluate` on a mix of requests:
identified, unidentified, exact duplicates, over the monthly limit, profanity and FAQ questions.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from mail.parse import parse_message
from models.inbound import InboundMessage
from models.policy import (
    PolicyConfig,
    PolicyEngine,
    PolicyRequest,
    TortoisePolicyRepository,
    content_hash,
    month_key,
)
from models.store import db
from models.tables import Client, ClientAddress, Message, MessageDirection, Ticket, TicketStatus
from scripts.bench.common import Options, Result, body_text, median, percentile, request_mail

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STATUSES = [TicketStatus.CLOSED] * 6 + [TicketStatus.ANSWERED, TicketStatus.REFUSED, TicketStatus.ACCEPTED,
                                        TicketStatus.NEW]


def inn(rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(10))


def parsed(raw: bytes) -> InboundMessage:
    return parse_message(raw, max_bytes=25 * 1024 * 1024, own_addresses=frozenset({"support@storeolis.ru"}))


async def populate(rng: random.Random, clients: int, tickets: int) -> tuple[list[tuple[str, InboundMessage]], list[str]]:
    """Returns (texts already in the history as (sender, message)), the client addresses."""
    await Client.bulk_create(
        [Client(name=f"ООО «Клиент {i}»", inn=inn(rng), contract=f"Д-2025/{i}") for i in range(clients)],
        batch_size=2000,
    )
    ids = [c for c in await Client.all().order_by("id").values_list("id", flat=True)]
    addresses, rows = [], []
    for n, cid in enumerate(ids):
        address = f"manager{n}@client{n}.ru"
        addresses.append(address)
        rows.append(ClientAddress(client_id=cid, value=address, is_domain=False))
        if n % 2 == 0:
            rows.append(ClientAddress(client_id=cid, value=f"@client{n}.ru", is_domain=True))
    await ClientAddress.bulk_create(rows, batch_size=5000)

    # A pool of real request texts whose hashes recur in the history (so duplicate lookups find rows).
    history: list[tuple[str, InboundMessage]] = []
    for i in range(200):
        n = rng.randrange(clients)
        msg = parsed(request_mail(rng, f"Ошибка выгрузки {i}", sender=addresses[n], words=60))
        history.append((addresses[n], msg))
    start = NOW - timedelta(days=365)
    ticket_rows = []
    for i in range(tickets):
        if i < len(history):
            sender, msg = history[i]
            n = int(sender.removeprefix("manager").split("@")[0])
            arrived = NOW - timedelta(days=rng.uniform(1, 20))
            chash = content_hash(msg)
        else:
            n = rng.randrange(clients) if i % 10 else -1  # one in ten from an unknown sender
            sender = addresses[n] if n >= 0 else f"someone{i}@gmail.com"
            arrived = start + timedelta(seconds=rng.uniform(0, 365 * 86400))
            chash = f"{rng.getrandbits(256):064x}"
        if 300 <= i < 300 + 4 * 200:  # 200 clients with four requests this month: over the limit
            n = (i - 300) // 4
            sender = addresses[n]
            arrived = datetime(2026, 11, 3, 10, tzinfo=UTC) + timedelta(hours=i - 300)
        status = rng.choice(STATUSES) if arrived < NOW - timedelta(days=30) else rng.choice(
            (TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.CLOSED))
        ticket_rows.append(
            Ticket(
                client_id=ids[n] if n >= 0 else None, status=status, arrived_at=arrived, arrival_uid=i + 1,
                month_key=month_key(arrived, "Europe/Moscow"), counts_toward_limit=n >= 0,
                subject=f"Обращение {i}", sender_address=sender, sender_name="Клиент", content_hash=chash,
                verdict={}, language="ru",
            )
        )
    await Ticket.bulk_create(ticket_rows, batch_size=2000)
    ticket_ids = await Ticket.all().order_by("id").values_list("id", "sender_address")
    messages = []
    for tid, sender in ticket_ids:
        text = body_text(rng, 40)
        messages.append(
            Message(ticket_id=tid, direction=MessageDirection.INBOUND, kind="request",
                    message_id=f"<{tid}.{rng.getrandbits(48):x}@client.example>", from_address=sender,
                    subject=f"Обращение {tid}", text=text, new_text=text, size=len(text),
                    attachments=[])
        )
    await Message.bulk_create(messages, batch_size=2000)
    return history, addresses


def requests(rng: random.Random, count: int, history: list[tuple[str, InboundMessage]],
             addresses: list[str]) -> list[tuple[str, InboundMessage]]:
    kinds = ["identified"] * 40 + ["unidentified"] * 15 + ["duplicate"] * 15 + ["over_limit"] * 10 + [
        "profanity"] * 10 + ["faq"] * 10
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "duplicate":
            out.append((kind, rng.choice(history)[1]))
            continue
        sender = {
            "identified": rng.choice(addresses[1000:] or addresses),
            "unidentified": f"stranger{i}@yandex.ru",
            "over_limit": addresses[rng.randrange(200)],
        }.get(kind, rng.choice(addresses))
        subject, words = f"Вопрос {i}", 80
        raw = request_mail(rng, subject, sender=sender, words=words)
        if kind == "profanity":
            raw = request_mail(rng, "Опять всё сломалось", sender=sender, words=20).replace(
                b"Content-Transfer-Encoding: 8bit", b"Content-Transfer-Encoding: 8bit", 1)
            msg = parsed(raw)
            msg = _with_text(msg, "Вы там совсем идиоты? Третий день не работает выгрузка, дебилы.")
            out.append((kind, msg))
            continue
        msg = parsed(raw)
        if kind == "faq":
            msg = _with_text(msg, "Здравствуйте! Подскажите, как сбросить пароль от личного кабинета? Забыл пароль.")
        out.append((kind, msg))
    return out


def _with_text(msg: InboundMessage, text: str) -> InboundMessage:
    from dataclasses import replace

    return replace(msg, text=text, new_text=text)


async def run(opts: Options) -> Result:
    clients, tickets, count = (1000, 10_000, 200) if opts.quick else (10_000, 100_000, 1000)
    rng = random.Random(4)
    url = opts.fresh_database("policy")
    await db.apply_migrations(url)
    try:
        started = time.monotonic()
        history, addresses = await populate(rng, clients, tickets)
        populate_s = time.monotonic() - started
        engine = PolicyEngine(PolicyConfig(), TortoisePolicyRepository())
        reqs = requests(rng, count, history, addresses)
        for _kind, msg in reqs[:20]:  # warm-up: lemmatiser caches, prepared statements
            await engine.evaluate(PolicyRequest(ticket_id=None, arrived_at=NOW, message=msg))
        times: list[float] = []
        by_kind: dict[str, list[float]] = {}
        hits: dict[str, int] = {}
        for i, (kind, msg) in enumerate(reqs):
            arrived = NOW + timedelta(seconds=i)
            t0 = time.perf_counter()
            verdict = await engine.evaluate(PolicyRequest(ticket_id=None, arrived_at=arrived, message=msg))
            elapsed = (time.perf_counter() - t0) * 1000
            times.append(elapsed)
            by_kind.setdefault(kind, []).append(elapsed)
            for f in verdict.findings:
                hits[str(f.code)] = hits.get(str(f.code), 0) + 1
    finally:
        await db.close_db()
    result: Result = {
        "clients": clients,
        "tickets": tickets,
        "requests": count,
        "populate_s": round(populate_s, 1),
        "median_ms": round(median(times), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "max_ms": round(max(times), 2),
    }
    for kind, values in by_kind.items():
        result[f"median_ms_{kind}"] = round(median(values), 2)
    result["findings"] = ", ".join(f"{k}={v}" for k, v in sorted(hits.items()))
    result["aim"] = "median < 2 ms, p99 < 10 ms"
    result["aim_met"] = median(times) < 2 and percentile(times, 99) < 10
    return result
