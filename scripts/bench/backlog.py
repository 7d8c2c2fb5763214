"""2. Backlog: thousands of requests already in the mailbox when the bridge starts.

Times the real process (PARSE_WORKERS=2) from its start until every message is stored AND turned
into a ticket with its policy verdict (polling the database), samples the RSS of its process tree
every 100 ms, and compares with the floor: the same mailbox fetched in batches of 100 over one
aioimaplib connection and parsed with the standard library on one core (and the raw fetch alone).
"""

from __future__ import annotations

import asyncio
import email
import random
import time
from datetime import UTC, datetime, timedelta
from email import policy as email_policy

import aioimaplib

from mail.intake import split_by_bytes
from models.store import db
from models.tables import RawMail, RawMailStatus, Ticket
from scripts.bench.common import (
    Options,
    Result,
    RssSampler,
    bridge,
    fake_telegram,
    request_mail,
    smtp_capture,
    wait_until,
)

BIG_ATTACHMENT = 200 * 1024
HUGE_MESSAGE = 25_000_000


def make_mailbox(count: int, rng: random.Random) -> list[tuple[bytes, datetime]]:
    start = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
    raws: list[tuple[bytes, datetime]] = []
    for i in range(count):
        when = start + timedelta(seconds=37 * i)
        words = rng.choice((20, 60, 120, 300, 800))
        raw = request_mail(
            rng,
            f"Вопрос {i}: " + rng.choice(("не работает выгрузка", "ошибка в отчёте", "счёт", "доступ к кабинету")),
            sender=f"user{rng.randrange(400)}@client{rng.randrange(150)}.ru",
            words=words,
            html=rng.random() < 0.4,
            attachment=BIG_ATTACHMENT if i % 10 == 5 else 0,
            date=when,
        )
        raws.append((raw, when))
    # One message just under MAX_MESSAGE_BYTES (25 MiB) -- it is still parsed and becomes a ticket.
    huge_attachment = int(HUGE_MESSAGE * 0.74)  # base64 grows it by a third
    raws.append(
        (request_mail(rng, "Логи за месяц", attachment=huge_attachment, date=start + timedelta(seconds=37 * count)),
         start + timedelta(seconds=37 * count))
    )
    return raws


async def fetch_all(host: str, port: int, user: str, password: str) -> tuple[list[bytes], float]:
    """The raw fetch alone: UID FETCH in batches of 100 (and at most 20 MB) over one connection."""
    client = aioimaplib.IMAP4(host=host, port=port, timeout=120)
    await client.wait_hello_from_server()
    await client.login(user, password)
    await client.select("INBOX")
    started = time.perf_counter()
    response = await client.uid_search("ALL")
    uids = [int(x) for x in response.lines[0].split()]
    sizes: dict[int, int] = {}
    for i in range(0, len(uids), 100):
        chunk = uids[i : i + 100]
        resp = await client.uid("fetch", f"{chunk[0]}:{chunk[-1]}", "(UID RFC822.SIZE)")
        for line in resp.lines:
            if isinstance(line, bytes) and b"RFC822.SIZE" in line:
                parts = line.replace(b"(", b" ").replace(b")", b" ").split()
                uid = int(parts[parts.index(b"UID") + 1])
                sizes[uid] = int(parts[parts.index(b"RFC822.SIZE") + 1])
    raws: list[bytes] = []
    for i in range(0, len(uids), 100):
        for group in split_by_bytes(uids[i : i + 100], sizes, 20 * 1024 * 1024):
            resp = await client.uid("fetch", ",".join(map(str, group)), "(UID BODY.PEEK[])")
            raws += [bytes(x) for x in resp.lines if isinstance(x, bytearray)]
    elapsed = time.perf_counter() - started
    await client.logout()
    return raws, elapsed


def parse_all(raws: list[bytes]) -> float:
    """Standard-library parsing on one core, reading every part's content (the floor)."""
    started = time.perf_counter()
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=email_policy.default)
        for part in msg.walk():
            if not part.is_multipart():
                part.get_content()
    return time.perf_counter() - started


async def run(opts: Options) -> Result:
    count = 300 if opts.quick else 5000
    rng = random.Random(2)
    mailbox = opts.fresh_mailbox()
    raws = make_mailbox(count, rng)
    total = len(raws)
    total_bytes = sum(len(r) for r, _ in raws)
    await asyncio.to_thread(mailbox.bulk_import, raws)
    del raws

    fetched, fetch_s = await fetch_all(mailbox.host, mailbox.port, mailbox.user, mailbox.password)
    if len(fetched) != total:
        raise RuntimeError(f"the floor fetched {len(fetched)} of {total} messages")
    parse_s = await asyncio.to_thread(parse_all, fetched)
    del fetched
    floor_s = fetch_s + parse_s

    database_url = opts.fresh_database("backlog")
    async with fake_telegram() as telegram:
        with smtp_capture() as smtp:
            async with bridge(
                opts, "backlog", database_url=database_url, mailbox=mailbox, smtp=smtp, telegram=telegram,
                PARSE_WORKERS="2",
            ) as process:
                started = time.monotonic()
                assert process.proc is not None
                sampler = RssSampler(process.proc.pid)
                sampler.start()
                await db.init_db(database_url)
                try:
                    async def first() -> bool:
                        return await RawMail.exists()

                    async def stored() -> bool:
                        return await RawMail.all().count() >= total

                    async def processed() -> bool:
                        # Asked only once every mail is stored (rows are never deleted): one query a poll.
                        return not await RawMail.filter(status=RawMailStatus.STORED).exists()

                    first_at = await wait_until(first, 600, 0.05, "the first mail stored")
                    # Polled every 50 ms (one cheap query): the end is seen within ~1 % of the run.
                    stored_at = await wait_until(stored, 1800, 0.05, "all mail stored")
                    done_at = await wait_until(processed, 1800, 0.05, "all mail processed")
                    tickets = await Ticket.all().count()
                    with_verdict = await Ticket.exclude(verdict={}).count()
                    quarantined = await RawMail.filter(status=RawMailStatus.QUARANTINED).count()
                finally:
                    await db.close_db()
                    await sampler.stop()
                if not process.alive():
                    raise RuntimeError("the bridge died:\n" + process.output()[-3000:])
    bot_s = done_at - started
    return {
        "messages": total,
        "mailbox_mb": round(total_bytes / 1e6, 1),
        "bot_first_stored_s": round(first_at - started, 1),  # start-up: imports, migrations check, login
        "bot_all_stored_s": round(stored_at - started, 1),
        "bot_all_tickets_s": round(bot_s, 1),
        "bot_msg_per_s": round(total / bot_s, 1),
        "bot_msg_per_s_after_startup": round(total / (done_at - first_at), 1),
        "tickets": tickets,
        "tickets_with_verdict": with_verdict,
        "quarantined": quarantined,
        "floor_fetch_s": round(fetch_s, 1),
        "floor_parse_s": round(parse_s, 1),
        "floor_fetch_parse_s": round(floor_s, 1),
        "floor_msg_per_s": round(total / floor_s, 1),
        "bot_vs_floor": round(floor_s / bot_s, 2),  # > 1: the bridge is faster than the floor
        "bot_vs_fetch_alone": round(fetch_s / bot_s, 2),
        "peak_rss_main_mb": round(sampler.peak_main_kb / 1024, 1),
        "vmhwm_main_mb": round(sampler.hwm_main_kb / 1024, 1),
        "peak_rss_tree_mb": round(sampler.peak_tree_kb / 1024, 1),
        "aim": "bot_vs_floor >= 1; main RSS < 200 MB",
        "aim_met": floor_s / bot_s >= 1 and sampler.hwm_main_kb < 200 * 1024,
    }
