"""TELEGRAM_PROXY: the real bridge reaches the Bot API only through an HTTP or a SOCKS5 proxy (issue #21,
item 7).

The fake Bot API is given a host name only the test proxies resolve (`bot-api.test`), so a card that
reaches it came through the proxy; the proxy also demands the credentials of the URL, which must never
appear in the bridge's log. A malformed proxy URL is a settings error like any other.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers.process import BridgeProcess, bridge_env, run_cli
from tests.rig.dovecot import DovecotServer
from tests.rig.fake_telegram import FakeTelegram
from tests.rig.net import free_port
from tests.rig.proxy import HttpProxy
from tests.rig.smtp import SmtpCapture
from tests.rig.socks import Socks5Proxy
from tests.test_crash import prepare, until
from tests.test_outages import append, card_count, outage_env

USER, PASSWORD = "bridge", "pr0xy-s3cret"
HIDDEN_HOST = "bot-api.test"  # .test never resolves: only the proxy knows where it is


@pytest.fixture
async def proxy(telegram: FakeTelegram) -> AsyncIterator[HttpProxy]:
    real = urlsplit(telegram.url)
    assert real.hostname and real.port
    async with HttpProxy(hosts={HIDDEN_HOST: (real.hostname, real.port)}, auth=(USER, PASSWORD)) as server:
        yield server


async def test_cards_reach_the_bot_api_through_the_proxy_and_its_password_is_never_logged(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
    proxy: HttpProxy,
) -> None:
    port = urlsplit(telegram.url).port
    env = outage_env(database_url, mailbox, smtp_server, telegram,
                     TELEGRAM_API_URL=f"http://{HIDDEN_HOST}:{port}", TELEGRAM_PROXY=proxy.url(USER, PASSWORD))
    await prepare(tmp_path, env, clients=4)
    bridge = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    bridge.start()
    try:
        await append(mailbox, 1)
        await until(lambda: card_count(telegram) == 1, 90, "the card, through the proxy", bridge, telegram)
    finally:
        code = await bridge.stop()
    log = bridge.output()
    assert code == 0, log[-3000:]

    relayed = Counter(path.rsplit("/", 1)[-1] for _, path in proxy.requests)
    seen = Counter(method for method, _ in telegram.calls)
    assert relayed["sendMessage"] >= 1 and relayed["getUpdates"] >= 1, relayed
    assert not seen - relayed, (seen, relayed)  # every call the Bot API saw, the proxy relayed
    assert proxy.refused_auth == 0
    assert PASSWORD not in log
    assert f"through the proxy http://{USER}:***@127.0.0.1:{proxy.port}" in log


@pytest.fixture
async def socks_proxy(telegram: FakeTelegram) -> AsyncIterator[Socks5Proxy]:
    real = urlsplit(telegram.url)
    assert real.hostname and real.port
    async with Socks5Proxy(hosts={HIDDEN_HOST: (real.hostname, real.port)}, auth=(USER, PASSWORD)) as server:
        yield server


async def test_cards_reach_the_bot_api_through_a_socks5_proxy_and_its_password_is_never_logged(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
    socks_proxy: Socks5Proxy,
) -> None:
    port = urlsplit(telegram.url).port
    env = outage_env(database_url, mailbox, smtp_server, telegram,
                     TELEGRAM_API_URL=f"http://{HIDDEN_HOST}:{port}",
                     TELEGRAM_PROXY=socks_proxy.url(USER, PASSWORD))
    await prepare(tmp_path, env, clients=4)
    bridge = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    bridge.start()
    try:
        await append(mailbox, 1)
        await until(lambda: card_count(telegram) == 1, 90, "the card, through the SOCKS proxy", bridge, telegram)
    finally:
        code = await bridge.stop()
    log = bridge.output()
    assert code == 0, log[-3000:]

    seen = Counter(method for method, _ in telegram.calls)
    assert seen["sendMessage"] >= 1 and seen["getUpdates"] >= 1, seen
    # Every connection asked the proxy for the host by its name: the bridge resolved nothing itself (it
    # could not: only the proxy knows bot-api.test), so all the calls above came through these tunnels.
    assert socks_proxy.connects and set(socks_proxy.connects) == {f"{HIDDEN_HOST}:{port}"}, socks_proxy.connects
    assert socks_proxy.refused_auth == 0
    assert PASSWORD not in log
    assert f"through the proxy socks5://{USER}:***@127.0.0.1:{socks_proxy.port}" in log


async def test_a_socks5_proxy_refusing_the_password_is_an_outage_the_bridge_outlives(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
    socks_proxy: Socks5Proxy,
) -> None:
    wrong = "wr0ng-s3cret"
    port = urlsplit(telegram.url).port
    env = outage_env(database_url, mailbox, smtp_server, telegram,
                     TELEGRAM_API_URL=f"http://{HIDDEN_HOST}:{port}", TELEGRAM_PROXY=socks_proxy.url(USER, wrong))
    await prepare(tmp_path, env, clients=4)
    bridge = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    bridge.start()
    try:
        await append(mailbox, 1)
        await until(lambda: "outage: telegram is failing" in bridge.output(), 60, "the Telegram outage", bridge)
        assert bridge.alive(), bridge.output()[-3000:]
        assert socks_proxy.refused_auth >= 1 and not socks_proxy.connects and not telegram.calls

        socks_proxy.auth = (USER, wrong)  # the proxy's admin grants the password: the waiting card goes out
        await until(lambda: card_count(telegram) == 1, 90, "the card once the proxy let it in", bridge, telegram)
        await until(lambda: "recovered: telegram works again" in bridge.output(), 60, "the recovery", bridge)
    finally:
        code = await bridge.stop()
    log = bridge.output()
    assert code == 0, log[-3000:]
    # A proxy refusal is a network outage like a refused connection, not a bug of the bridge: no row
    # "could not be processed", no "internal error".
    assert "outage: telegram is failing: Telegram does not answer" in log, log[-3000:]
    assert "internal error" not in log and "could not be processed" not in log, log[-3000:]
    assert wrong not in log


async def test_a_proxy_that_refuses_connections_is_an_outage_the_bridge_outlives(
    tmp_path: Path, database_url: str, mailbox: DovecotServer, smtp_server: SmtpCapture, telegram: FakeTelegram,
) -> None:
    port = free_port()  # nothing listens there: every connection is refused
    env = outage_env(database_url, mailbox, smtp_server, telegram,
                     TELEGRAM_PROXY=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    await prepare(tmp_path, env, clients=4)
    bridge = BridgeProcess(env, tmp_path, tmp_path / "bridge.log")
    bridge.start()
    proxy = HttpProxy(auth=(USER, PASSWORD))
    try:
        await append(mailbox, 1)
        await until(lambda: "outage: telegram is failing" in bridge.output(), 60, "the Telegram outage", bridge)
        await until(lambda: "outage: telegram has been failing" in bridge.output(), 30, "a lasting outage", bridge)
        assert bridge.alive(), bridge.output()[-3000:]
        assert not telegram.calls  # the Bot API is reachable directly, but nothing went around the proxy

        await proxy.start(port)  # the proxy comes back: the card waiting in the outbox goes out
        await until(lambda: card_count(telegram) == 1, 90, "the card after the proxy came back", bridge, telegram)
        await until(lambda: "recovered: telegram works again" in bridge.output(), 60, "the recovery", bridge)
    finally:
        code = await bridge.stop()
        await proxy.stop()
    log = bridge.output()
    assert code == 0, log[-3000:]
    assert proxy.requests and PASSWORD not in log


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ftp://proxy.example.ru:21", "must start with http://, https:// or socks5://"),
        ("proxy.example.ru:3128", "must start with http://, https:// or socks5://"),
        (f"http://{USER}:{PASSWORD}@proxy.example.ru", "with the host and the port"),
        (f"http://{USER}:{PASSWORD}@:3128", "with the host and the port"),
        (f"http://{USER}:{PASSWORD}@proxy.example.ru:99999", "with the host and the port"),
        ("http://proxy.example.ru:3128/path", "with nothing after the port"),
        (f"socks5://{USER}:{PASSWORD}@proxy.example.ru", "with the host and the port"),
    ],
)
async def test_a_bad_proxy_url_is_one_settings_line_without_the_password(tmp_path: Path, value: str, says: str) -> None:
    env = bridge_env(database_url="sqlite://x.sqlite3", IMAP_HOST="127.0.0.1", IMAP_USER="u", IMAP_PASSWORD="p",
                     SMTP_HOST="127.0.0.1", TELEGRAM_PROXY=value)
    result = await asyncio.to_thread(run_cli, ["check"], env, tmp_path, 60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = _errors(result.stderr)
    assert line.startswith("error: TELEGRAM_PROXY is invalid: ") and says in line, line
    assert PASSWORD not in result.stderr + result.stdout
