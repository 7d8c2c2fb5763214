"""3. Telegram throughput: a burst of cards through the rate-limited sender.

The fake server enforces Telegram's limits (20 a minute in a group, 1 a second per chat, 30 a second
overall) scaled in time by S, and the bridge runs with TELEGRAM_RATE_SCALE=S: "20 a minute" becomes
"20 every 60*S seconds". Every ticket's card must arrive exactly once.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
from datetime import UTC, datetime, timedelta

from models.store import db
from models.tables import Ticket
from scripts.bench.common import (
    Options,
    Result,
    bridge,
    fake_telegram,
    request_mail,
    smtp_capture,
    wait_until,
)
from tests.helpers.process import STAFF_CHAT_ID

TOKEN = re.compile(r"TGB[0-9a-f]{12}")
SCALE = 0.05
GROUP_PER_MINUTE = 20


async def run(opts: Options) -> Result:
    count = 60 if opts.quick else 200
    rng = random.Random(3)
    mailbox = opts.fresh_mailbox()
    # A burst arriving now: a fixed date would fall past the 5-day SLA as the calendar moves on, and the
    # breach alerts (which quote the subject, hence the token) would count as doubled cards.
    start = datetime.now(UTC) - timedelta(minutes=10)
    tokens = ["TGB" + secrets.token_hex(6) for _ in range(count)]
    raws = [
        (request_mail(rng, f"Заявка {t}", sender=f"user{i}@client{i}.ru", words=40), start + timedelta(seconds=i))
        for i, t in enumerate(tokens)
    ]
    mailbox.bulk_import(raws)
    database_url = opts.fresh_database("telegram")
    async with fake_telegram() as telegram:
        telegram.set_rate_limit(per_chat_per_minute=GROUP_PER_MINUTE, per_chat_per_second=1, global_per_second=30,
                                time_scale=SCALE)
        with smtp_capture() as smtp:
            async with bridge(
                opts, "telegram", database_url=database_url, mailbox=mailbox, smtp=smtp, telegram=telegram,
                TELEGRAM_RATE_SCALE=str(SCALE), TELEGRAM_GROUP_PER_MINUTE=str(GROUP_PER_MINUTE),
            ):
                def seen() -> dict[str, list[float]]:
                    out: dict[str, list[float]] = {}
                    for s in telegram.sent:
                        if s.get("method") == "sendMessage" and s.get("chat_id") == STAFF_CHAT_ID:
                            for tok in TOKEN.findall(s.get("text") or ""):
                                out.setdefault(tok, []).append(s["time"])
                    return out

                async def all_cards() -> bool:
                    return len(seen()) >= count

                await wait_until(all_cards, 60 + count * 60 * SCALE / GROUP_PER_MINUTE * 3, 0.1, "every card")
                # Let a late duplicate show itself, if the sender were to send one.
                await asyncio.sleep(2 * 60 * SCALE)
                cards = seen()
                await db.init_db(database_url)
                try:
                    tickets = await Ticket.all().count()
                    with_card = await Ticket.exclude(card_message_id=None).count()
                finally:
                    await db.close_db()
    times = sorted(t for ts in cards.values() for t in ts)
    window = 60 * SCALE
    limit_rate = GROUP_PER_MINUTE / window
    # The first GROUP_PER_MINUTE go out at once (an empty window); the steady state is what follows.
    steady = times[GROUP_PER_MINUTE:]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    overall = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    lost = sum(1 for t in tokens if t not in cards)
    doubled = sum(1 for ts in cards.values() if len(ts) > 1)
    share = steady_rate / limit_rate
    return {
        "cards": count,
        "time_scale": SCALE,
        "limit_per_s": round(limit_rate, 2),
        "steady_rate_per_s": round(steady_rate, 2),
        "steady_share_of_limit": round(share, 3),
        "overall_rate_per_s": round(overall, 2),
        "too_many_requests_429": telegram.too_many_requests,
        "lost": lost,
        "doubled": doubled,
        "tickets": tickets,
        "tickets_with_card": with_card,
        "aim": "share >= 0.9, no 429, none lost or doubled",
        "aim_met": share >= 0.9 and telegram.too_many_requests == 0 and lost == 0 and doubled == 0,
    }

