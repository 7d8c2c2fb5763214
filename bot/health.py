"""`GET /health`: a small JSON endpoint for monitoring (HEALTH_PORT; off when unset); `GET /metrics`
beside it in the Prometheus format (bot/metrics.py).

It shows what `python -m bot status` shows (read from the database: last mailbox sync, outbox depths,
the oldest waiting request) plus the live states only the running process knows: each supervised
task (running, restarts, last error), the mail watcher (connected, IDLE or polling, last sync) and
the outages the watchdog sees. HTTP 200 when every component is running and nothing has been failing
for OUTAGE_NOTICE_SECONDS, 503 otherwise (so a plain HTTP check can page someone).

Bound to 127.0.0.1 by default (HEALTH_HOST): it needs no authentication because it shows no secret
and no client data, but there is no reason to offer it to the world.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from bot.metrics import BridgeMetrics
from bot.outages import OutageReporter
from bot.status import collect_status

log = logging.getLogger(__name__)


async def health_report(bridge: Any, reporter: OutageReporter | None = None) -> tuple[bool, dict[str, Any]]:
    """(healthy, the JSON document) of a running `bot.app.Bridge`."""
    components = {
        name: {"running": s.running, "restarts": s.restarts, "last_error": s.last_error}
        for name, s in sorted(bridge.supervisor.states.items())
    }
    watcher = bridge.watcher.state
    document: dict[str, Any] = {
        "components": components,
        "mail_watcher": {
            "connected": watcher.connected,
            "mode": watcher.mode,
            "last_sync_at": watcher.last_sync_at,
            "last_error": watcher.last_error,
            "failures": watcher.failures,
        },
        "outages": reporter.snapshot() if reporter is not None else {},
    }
    healthy = all(c["running"] for c in components.values())
    try:
        async with asyncio.timeout(10):
            document["status"] = await collect_status()
    except Exception as exc:  # noqa: BLE001 - the database being down is a health answer, not a crash
        document["status"] = {"error": f"database: {exc.__class__.__name__}: {exc}"[:300]}
        healthy = False
    if reporter is not None and reporter.failing(lasting_only=True):
        healthy = False
    document["ok"] = healthy
    return healthy, document


def make_health_app(
    bridge: Any, reporter: OutageReporter | None = None, metrics: BridgeMetrics | None = None
) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        healthy, document = await health_report(bridge, reporter)
        return web.Response(
            text=json.dumps(document, ensure_ascii=False, default=str),
            content_type="application/json",
            status=200 if healthy else 503,
        )

    async def scrape(request: web.Request) -> web.Response:
        assert metrics is not None
        body, content_type = await metrics.render()
        # The exposition's content type carries parameters (version, charset): set as a header.
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/health", health)
    if metrics is not None:
        app.router.add_get("/metrics", scrape)
    return app


async def serve_health(
    bridge: Any, reporter: OutageReporter | None, host: str, port: int, metrics: BridgeMetrics | None = None
) -> None:
    """Serve /health (and /metrics with `metrics`) until cancelled (a supervised task)."""
    runner = web.AppRunner(make_health_app(bridge, reporter, metrics), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("health endpoint on http://%s:%s/health", host, port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
