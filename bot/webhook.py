"""Telegram updates through a webhook: the alternative to long polling when several processes run.

Telegram lets exactly one consumer call getUpdates; with a webhook it POSTs every update to one
public https URL (the reverse proxy), which may spread them over any number of bridge processes.
Each process listens on WEBHOOK_LISTEN_HOST:WEBHOOK_LISTEN_PORT with aiogram's request handler and
checks the X-Telegram-Bot-Api-Secret-Token header (a forged update could otherwise pose as a staff
member pressing Accept).

The handler answers only after the update was handled (not in the background): if the process dies
or a handler fails, Telegram gets no 200 and delivers the update again, so nothing is lost; the
handlers are idempotent (guarded status changes), so a redelivery changes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.handlers import allowed_updates

log = logging.getLogger(__name__)


class _SharedBotHandler(SimpleRequestHandler):
    """aiogram closes the bot's HTTP session when the web app stops; ours is shared with the outbox
    sender (and closed by the composition root at the very end), so leave it open."""

    async def close(self) -> None:
        return None


def webhook_path(url: str) -> str:
    """The path the reverse proxy forwards to us: the path of WEBHOOK_URL (`/` when it has none)."""
    return urlsplit(url).path or "/"


def build_webhook_app(
    dispatcher: Dispatcher, bot: Bot, *, path: str, secret: str, **data: Any
) -> web.Application:
    app = web.Application()
    handler = _SharedBotHandler(
        dispatcher=dispatcher, bot=bot, handle_in_background=False, secret_token=secret or None, **data
    )
    handler.register(app, path=path)
    return app


async def set_webhook(bot: Bot, dispatcher: Dispatcher, *, url: str, secret: str) -> None:
    """Point Telegram at our URL. Idempotent: every process of a deployment sets the same URL and
    secret; pending updates are kept (they are delivered to the new URL)."""
    await bot.set_webhook(
        url=url,
        secret_token=secret or None,
        allowed_updates=allowed_updates(dispatcher),
        drop_pending_updates=False,
    )


async def serve_webhook(
    bot: Bot,
    dispatcher: Dispatcher,
    *,
    url: str,
    secret: str,
    host: str,
    port: int,
    **data: Any,
) -> None:
    """Listen for updates until cancelled. The server starts before setWebhook so that the first
    update Telegram sends finds us listening."""
    app = build_webhook_app(dispatcher, bot, path=webhook_path(url), secret=secret, **data)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("telegram webhook listening on %s:%s%s", host, port, webhook_path(url))
        await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data, **data)
        try:
            await set_webhook(bot, dispatcher, url=url, secret=secret)
            log.info("telegram webhook set to %s", url)
            await asyncio.Event().wait()  # until cancelled
        finally:
            await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data, **data)
    finally:
        await runner.cleanup()
