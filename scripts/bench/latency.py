"""1. Latency: requests appended at a steady rate while the bridge idles; APPEND -> card in the chat.

The fake Telegram server enforces no rate limit here and the bridge runs with a tiny
TELEGRAM_RATE_SCALE: Telegram's real group limit (20 cards a minute) would otherwise throttle a
steady 4 cards a second and we would be measuring the limiter, not the pipeline.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time

from scripts.bench.common import (
    Options,
    Result,
    RssSampler,
    bridge,
    fake_telegram,
    percentile,
    request_mail,
    smtp_capture,
)
from tests.helpers.process import STAFF_CHAT_ID

TOKEN = re.compile(r"LAT[0-9a-f]{12}")


def _card_times(sent: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in sent:
        if s.get("method") == "sendMessage" and s.get("chat_id") == STAFF_CHAT_ID:
            for token in TOKEN.findall(s.get("text") or ""):
                out.setdefault(token, s["time"])
    return out


async def run(opts: Options) -> Result:
    count, rate = (20, 4.0) if opts.quick else (200, 4.0)
    rng = random.Random(1)
    mailbox = opts.fresh_mailbox()
    database_url = opts.fresh_database("latency")
    async with fake_telegram() as telegram:
        with smtp_capture() as smtp:
            async with bridge(
                opts, "latency", database_url=database_url, mailbox=mailbox, smtp=smtp, telegram=telegram,
                TELEGRAM_RATE_SCALE="0.001",
            ) as process:
                assert process.proc is not None
                sampler = RssSampler(process.proc.pid)
                sampler.start()
                # Warm-up: one request through the whole path, so the bridge is connected and idling.
                warm = "LAT" + secrets.token_hex(6)
                await asyncio.to_thread(mailbox.append, request_mail(rng, f"Проверка {warm}"))
                deadline = time.monotonic() + 120
                while warm not in _card_times(telegram.sent):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the warm-up card never arrived")
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)

                started: dict[str, tuple[float, float]] = {}
                t0 = time.monotonic()
                for i in range(count):
                    target = t0 + i / rate
                    await asyncio.sleep(max(0.0, target - time.monotonic()))
                    token = "LAT" + secrets.token_hex(6)
                    raw = request_mail(rng, f"Не выгружаются заказы {token}", words=rng.choice((30, 80, 200)))
                    before = time.monotonic()
                    await asyncio.to_thread(mailbox.append, raw)
                    started[token] = (before, time.monotonic())
                deadline = time.monotonic() + 120
                while True:
                    cards = _card_times(telegram.sent)
                    if all(t in cards for t in started) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                await sampler.stop()
    from_start = [cards[t] - s for t, (s, _e) in started.items() if t in cards]
    from_end = [cards[t] - e for t, (_s, e) in started.items() if t in cards]
    append_ms = [(e - s) * 1000 for s, e in started.values()]
    return {
        "requests": count,
        "rate_per_s": rate,
        "cards_arrived": len(from_end),
        "p50_s": round(percentile(from_end, 50), 3),
        "p95_s": round(percentile(from_end, 95), 3),
        "p99_s": round(percentile(from_end, 99), 3),
        "max_s": round(max(from_end), 3) if from_end else None,
        "p50_from_append_start_s": round(percentile(from_start, 50), 3),
        "p99_from_append_start_s": round(percentile(from_start, 99), 3),
        "append_p50_ms": round(percentile(append_ms, 50), 1),
        "peak_rss_main_mb": round(sampler.peak_main_kb / 1024, 1),  # the idle baseline of the process
        "peak_rss_tree_mb": round(sampler.peak_tree_kb / 1024, 1),
        "aim": "p50 < 1 s, p99 < 2 s",
        "aim_met": bool(from_end) and len(from_end) == count
        and percentile(from_end, 50) < 1 and percentile(from_end, 99) < 2,
    }
