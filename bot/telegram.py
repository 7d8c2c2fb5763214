"""Building the aiogram Bot: every call goes to TELEGRAM_API_URL (Telegram, or a fake one in tests),
directly or through TELEGRAM_PROXY."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp_socks
import certifi
from aiogram import Bot
from aiogram import __version__ as aiogram_version
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiohttp import ClientConnectionError, ClientSession, TCPConnector
from aiohttp.hdrs import USER_AGENT
from aiohttp.http import SERVER_SOFTWARE

from bot.settings import Settings, redact_url

log = logging.getLogger(__name__)


class HttpProxySession(AiohttpSession):
    """aiogram's session with every request sent through an HTTP(S) proxy by aiohttp itself.

    aiogram's own `proxy=` goes through the aiohttp-socks package for every scheme; aiohttp speaks
    HTTP proxies natively (an absolute-URI request for an http:// Bot API, CONNECT for https://,
    Proxy-Authorization from the URL's user:password), so an HTTP proxy needs no extra package.
    Only `create_session` and `close`, the methods aiogram's requests go through, are replaced.
    """

    def __init__(self, proxy: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._proxy_url = proxy
        self._proxied: ClientSession | None = None

    async def create_session(self) -> ClientSession:
        if self._proxied is None or self._proxied.closed:
            # The connector as aiogram builds it: certifi's CAs, 100 connections, DNS cached an hour.
            connector = TCPConnector(
                ssl=ssl.create_default_context(cafile=certifi.where()), limit=100, ttl_dns_cache=3600
            )
            self._proxied = ClientSession(
                connector=connector,
                headers={USER_AGENT: f"{SERVER_SOFTWARE} aiogram/{aiogram_version}"},
                proxy=self._proxy_url,
            )
        return self._proxied

    async def close(self) -> None:
        await super().close()
        if self._proxied is not None and not self._proxied.closed:
            await self._proxied.close()


# What aiohttp-socks raises when the SOCKS proxy is down, slow, or refuses (wrong password, target
# unreachable). They are plain Exceptions, not aiohttp.ClientError, so aiogram would let them through as
# they are and our outage handling would take a proxy outage for a bug in the bridge.
_SOCKS_ERRORS = (aiohttp_socks.ProxyError, aiohttp_socks.ProxyConnectionError, aiohttp_socks.ProxyTimeoutError)


class SocksProxySession(AiohttpSession):
    """aiogram's session through a SOCKS5 proxy (aiogram's own `proxy=`, i.e. aiohttp-socks), whose errors
    become what a direct connection's would: TelegramNetworkError for API calls, aiohttp's connection
    error for file downloads."""

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        try:
            return await super().make_request(bot, method, timeout)
        except _SOCKS_ERRORS as error:
            raise TelegramNetworkError(method=method, message=f"{type(error).__name__}: {error}") from error

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in super().stream_content(*args, **kwargs):
                yield chunk
        except _SOCKS_ERRORS as error:
            raise ClientConnectionError(f"{type(error).__name__}: {error}") from error


def make_session(settings: Settings, *, timeout: float = 60.0) -> AiohttpSession:
    api = TelegramAPIServer.from_base(settings.TELEGRAM_API_URL)
    proxy = settings.telegram_proxy
    if proxy is None:
        return AiohttpSession(api=api, timeout=timeout)
    log.info("telegram: Bot API calls go through the proxy %s", redact_url(proxy))
    if proxy.startswith("socks5://"):
        # aiogram's own proxy support (aiohttp-socks, a dependency): it asks the proxy to resolve the
        # Bot API's name (rdns), so a network that cannot resolve api.telegram.org still works.
        return SocksProxySession(api=api, timeout=timeout, proxy=proxy)
    return HttpProxySession(proxy, api=api, timeout=timeout)


def make_bot(settings: Settings, *, timeout: float = 60.0) -> Bot:
    return Bot(settings.TELEGRAM_BOT_TOKEN.get_secret_value(), session=make_session(settings, timeout=timeout))
