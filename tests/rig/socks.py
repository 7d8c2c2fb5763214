"""A small SOCKS5 proxy on 127.0.0.1 for tests: RFC 1928 CONNECT, with RFC 1929 username/password auth.

Only what a SOCKS client of the Bot API needs: the CONNECT command, the "no authentication" and
"username/password" methods, and IPv4 / domain-name targets (IPv6 targets are refused with reply 0x08).
Like `tests.rig.proxy.HttpProxy`, ``hosts`` maps names only the proxy knows to real addresses
(``{"bot-api.test": ("127.0.0.1", N)}``), so a client that could reach the target without the proxy would
fail: everything it got, it got through the proxy. The proxy records what it relayed: ``connects`` (each
CONNECT target as ``host:port``, the name as the client sent it), ``refused_auth`` (handshakes refused for
missing or wrong credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

from tests.rig.proxy import LoopbackServer, _close, _pipe

VERSION = 0x05
NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04
# Replies (RFC 1928 section 6).
SUCCEEDED, GENERAL_FAILURE, HOST_UNREACHABLE, CONNECTION_REFUSED = 0x00, 0x01, 0x04, 0x05
COMMAND_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED = 0x07, 0x08


class SocksError(Exception):
    pass


class Socks5Proxy(LoopbackServer):
    scheme = "socks5"

    def __init__(self, hosts: dict[str, tuple[str, int]] | None = None, auth: tuple[str, str] | None = None) -> None:
        super().__init__(hosts, auth)
        self.connects: list[str] = []  # host:port of each relayed CONNECT

    @property
    def relayed(self) -> int:
        return len(self.connects)

    # ------------------------------------------------------------------------------------ serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not await self._negotiate(reader, writer):
                return
            target = await self._request(reader, writer)
            if target is not None:
                await self._relay(target, reader, writer)
        except (ConnectionError, SocksError, asyncio.IncompleteReadError):
            return
        finally:
            await _close(writer)

    async def _negotiate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """The method selection (RFC 1928 section 3) and, when asked for, RFC 1929's sub-negotiation."""
        version, count = await reader.readexactly(2)
        if version != VERSION:
            raise SocksError(f"not SOCKS5: version {version}")
        methods = await reader.readexactly(count)
        wanted = USER_PASS if self.auth is not None else NO_AUTH
        if wanted not in methods:
            if self.auth is not None:
                self.refused_auth += 1
            writer.write(bytes((VERSION, NO_ACCEPTABLE)))
            await writer.drain()
            return False
        writer.write(bytes((VERSION, wanted)))
        await writer.drain()
        if wanted == NO_AUTH:
            return True
        # RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD; the answer VER=1, STATUS (0: success).
        sub_version, user_len = await reader.readexactly(2)
        if sub_version != 0x01:
            raise SocksError(f"unknown auth sub-negotiation version {sub_version}")
        user = await reader.readexactly(user_len)
        (password_len,) = await reader.readexactly(1)
        password = await reader.readexactly(password_len)
        assert self.auth is not None
        ok = (user.decode("utf-8", "replace"), password.decode("utf-8", "replace")) == self.auth
        writer.write(bytes((0x01, 0x00 if ok else 0x01)))
        await writer.drain()
        if not ok:
            self.refused_auth += 1
        return ok

    async def _request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, int, str] | None:
        """The request (RFC 1928 section 4): the real (host, port) to connect to and the target as sent."""
        version, command, _reserved, address_type = await reader.readexactly(4)
        if version != VERSION:
            raise SocksError(f"not SOCKS5: version {version}")
        if address_type == ATYP_IPV4:
            name = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif address_type == ATYP_DOMAIN:
            (length,) = await reader.readexactly(1)
            name = (await reader.readexactly(length)).decode("idna")
        else:
            await self._reply(writer, ADDRESS_TYPE_NOT_SUPPORTED)
            return None
        port = int.from_bytes(await reader.readexactly(2), "big")
        if command != CMD_CONNECT:
            await self._reply(writer, COMMAND_NOT_SUPPORTED)
            return None
        host, real_port = self.hosts.get(name, (name, port))
        return host, real_port, f"{name}:{port}"

    async def _relay(
        self, target: tuple[str, int, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port, sent = target
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            await self._reply(writer, CONNECTION_REFUSED)
            return
        except OSError:  # a name nobody resolves, an unreachable network
            await self._reply(writer, HOST_UNREACHABLE)
            return
        self.connects.append(sent)
        bound_host, bound_port = up_writer.get_extra_info("sockname")[:2]
        await self._reply(writer, SUCCEEDED, bound_host, bound_port)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await _close(up_writer)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int, host: str = "0.0.0.0", port: int = 0) -> None:
        address = ipaddress.ip_address(host)
        atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
        writer.write(bytes((VERSION, code, 0x00, atyp)) + address.packed + port.to_bytes(2, "big"))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
