"""A small HTTP proxy on 127.0.0.1 for tests: forward (absolute-URI) requests and CONNECT tunnels.

A client configured with an `http://` proxy sends a request for an http:// target as
``POST http://host:port/path HTTP/1.1`` to the proxy, and opens a ``CONNECT host:port`` tunnel for
an https:// target. `HttpProxy` serves both, relays the bytes, and records what it relayed:
``requests`` (method and path of each forwarded request) and ``tunnels`` (each CONNECT target).

``hosts`` maps names only the proxy knows to real addresses (``{"bot-api.test": ("127.0.0.1", N)}``),
so a client that could reach the target without the proxy would fail: everything it got, it got
through the proxy. ``auth=(user, password)`` makes the proxy answer 407 to requests without them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from urllib.parse import urlsplit

_HOP_BY_HOP = (b"proxy-authorization", b"proxy-connection")


class ProxyError(Exception):
    pass


class LoopbackServer:
    """What both test proxies share: a TCP server on 127.0.0.1 whose connection tasks are tracked, so
    `stop()` ends every relay it started. Subclasses implement `_handle(reader, writer)` and say how a
    client names them (`scheme`)."""

    scheme = ""

    def __init__(self, hosts: dict[str, tuple[str, int]] | None = None, auth: tuple[str, str] | None = None) -> None:
        self.hosts = dict(hosts or {})
        self.auth = auth
        self.refused_auth = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        creds = f"{user}:{password}@" if user is not None else ""
        return f"{self.scheme}://{creds}127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        """On `port` (0: one the kernel picks); a test may start it where a client already points."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self):  # noqa: ANN204 - the subclass itself
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class HttpProxy(LoopbackServer):
    scheme = "http"

    def __init__(self, hosts: dict[str, tuple[str, int]] | None = None, auth: tuple[str, str] | None = None) -> None:
        super().__init__(hosts, auth)
        self.requests: list[tuple[str, str]] = []  # (HTTP method, path) of each forwarded request
        self.tunnels: list[str] = []  # host:port of each CONNECT

    @property
    def relayed(self) -> int:
        return len(self.requests) + len(self.tunnels)

    # ------------------------------------------------------------------------------------ serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                method, target, headers = head
                if not self._authorised(headers):
                    self.refused_auth += 1
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    await writer.drain()
                    return
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                host, port, path = self._split_absolute(target)
                if upstream is None:
                    upstream = await asyncio.open_connection(host, port)
                    # Responses go back as they come; requests on this connection all go upstream.
                    pump = asyncio.create_task(_pipe(upstream[0], writer))
                self.requests.append((method, path))
                kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
                upstream[1].write(_head_bytes(f"{method} {path} HTTP/1.1", kept))
                await _relay_body(reader, upstream[1], headers)
                await upstream[1].drain()
        except (ConnectionError, ProxyError, asyncio.IncompleteReadError):
            return
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await pump
            if upstream is not None:
                await _close(upstream[1])
            await _close(writer)

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.auth is None:
            return True
        expected = b"Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode())
        return any(k.lower() == b"proxy-authorization" and v == expected for k, v in headers)

    def _resolve(self, host: str, port: int) -> tuple[str, int]:
        return self.hosts.get(host, (host, port))

    def _split_absolute(self, target: str) -> tuple[str, int, str]:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ProxyError(f"not an absolute http URI: {target!r}")
        host, port = self._resolve(parts.hostname, parts.port or 80)
        path = parts.path or "/"
        return host, port, path + (f"?{parts.query}" if parts.query else "")

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name, _, port = target.rpartition(":")
        host, real_port = self._resolve(name, int(port))
        self.tunnels.append(target)
        up_reader, up_writer = await asyncio.open_connection(host, real_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await _close(up_writer)


# ------------------------------------------------------------------------------------ HTTP bits


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, list[tuple[bytes, bytes]]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise ProxyError("truncated request head") from exc
        return None  # the client closed a kept-alive connection
    lines = raw[:-4].split(b"\r\n")
    method, target, _version = lines[0].decode("latin-1").split(" ", 2)
    headers = []
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        headers.append((key.strip(), value.strip()))
    return method, target, headers


def _head_bytes(first_line: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    return first_line.encode("latin-1") + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


async def _relay_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: list[tuple[bytes, bytes]]
) -> None:
    if (_header(headers, b"transfer-encoding") or b"").lower() == b"chunked":
        while True:
            size_line = await reader.readuntil(b"\r\n")
            writer.write(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:  # the last chunk: trailers up to an empty line
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    writer.write(line)
                writer.write(b"\r\n")
                return
            writer.write(await reader.readexactly(size + 2))
    length = int(_header(headers, b"content-length") or b"0")
    while length > 0:
        chunk = await reader.read(min(length, 65536))
        if not chunk:
            raise ProxyError("request body cut short")
        writer.write(chunk)
        length -= len(chunk)
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
