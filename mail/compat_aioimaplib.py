"""Compat: aioimaplib's internals we override (pinned: aioimaplib==2.0.3), in one place.

Replaces (each a subclass override, used only by mail/imap.py's session):
- `FetchCommand.wait_data`: the library rescans and joins every line of a FETCH response each time a
  line arrives, quadratic in the lines of a batch (about 0.1 ms per line at 100 messages, docs/benchmarks.md
  "Second pass"); ours keeps a running count over the lines not yet seen.
- `IMAP4ClientProtocol._untagged_response`: counts untagged EXISTS/RECENT lines, which the library drops
  outside IDLE, so new mail that races the last SEARCH is not missed until the next IDLE.
- `IMAP4ClientProtocol.data_received` (a copy of 2.0.3's): the library formats every received chunk for
  its debug log before the logger drops it, the repr of every byte fetched in a backlog.
- `IMAP4ClientProtocol.fetch` and `IMAP4.create_client`: to use the two classes above and to connect
  in plain TCP for STARTTLS (`ssl_context=None`).
- `swap_transport`: aioimaplib has no STARTTLS; mail/imap.py sends the command and hands the protocol
  the TLS transport `loop.start_tls` returns.
Checked by tests/test_compat.py (the installed version and the source of every overridden method) and
tests/test_imap_protocol.py, tests/test_intake.py against Dovecot (behaviour).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import Command, FetchCommand, IMAP4ClientProtocol, IncompleteRead

LIBRARY = "aioimaplib"
PINNED = "2.0.3"
# The first 16 hex digits of the SHA-256 of `inspect.getsource` of what we override (tests/test_compat.py).
FINGERPRINTS = {
    "aioimaplib.aioimaplib.FetchCommand.wait_data": "17ec7328fd9b7bba",
    "aioimaplib.aioimaplib.IMAP4ClientProtocol._untagged_response": "293b7da830751ce5",
    "aioimaplib.aioimaplib.IMAP4ClientProtocol.data_received": "f4e4f02478babbeb",
    "aioimaplib.aioimaplib.IMAP4ClientProtocol.fetch": "9e9d4d32f2081859",
    "aioimaplib.aioimaplib.IMAP4.create_client": "4c6284d94662f228",
}

_LIBRARY_LOG = logging.getLogger("aioimaplib.aioimaplib")
EXISTS = re.compile(rb"^(?:\* )?\d+ (?:EXISTS|RECENT)\b")


class FetchCommandFast(FetchCommand):
    """aioimaplib's FETCH command with an incremental end-of-data check.

    The library's `wait_data` rescans every line of the response and joins the lines since the last
    "N FETCH (" each time a line arrives: quadratic in the lines of a batch (about 0.1 ms per line at
    100 messages). This keeps the same answer (are the parentheses since the last "N FETCH (" line of
    the protocol text balanced?) as a running count over the lines not yet seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen = 0  # lines of self._resp_lines already counted
        self._open = 0  # "(" minus ")" in the text lines since the last "N FETCH (" line

    def wait_data(self) -> bool:
        lines = self._resp_lines
        for line in lines[self._seen :]:
            if isinstance(line, bytes):  # literals (bytearray) are message content, not protocol
                if self.FETCH_MESSAGE_DATA_RE.match(line):
                    self._open = 0
                self._open += line.count(b"(") - line.count(b")")
        self._seen = len(lines)
        return self._open != 0


class Protocol(IMAP4ClientProtocol):
    """aioimaplib's protocol, counting untagged EXISTS/RECENT lines (new-mail hints), with two costs of a
    large fetch taken out (the same handling otherwise; tests/test_intake.py runs it against Dovecot)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mail_hints = 0

    def _untagged_response(self, line: bytes) -> Command:
        if EXISTS.match(line):
            self.mail_hints += 1
        return super()._untagged_response(line)

    def data_received(self, d: bytes) -> None:
        # The library logs `'Received : %s' % d`, formatting every chunk received before the logger
        # decides to drop it: for a backlog that is the repr of every byte fetched. Formatted only
        # when its debug log is on; otherwise as aioimaplib 2.0.3's data_received.
        if _LIBRARY_LOG.isEnabledFor(logging.DEBUG):
            _LIBRARY_LOG.debug("Received : %s", d)
        try:
            self._handle_responses(self.incomplete_line + d, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data

    async def fetch(self, message_set: str, message_parts: str, by_uid: bool = False,
                    timeout: float | None = None) -> Any:  # noqa: ASYNC109 - the library's signature
        return await self.execute(
            FetchCommandFast(self.new_tag(), message_set, message_parts,
                          prefix="UID" if by_uid else "", loop=self.loop, timeout=timeout))  # fmt: skip


class Client(aioimaplib.IMAP4):
    """IMAP4 using our protocol; ssl_context=None means plain TCP (STARTTLS upgrades it later)."""

    def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:  # type: ignore[no-untyped-def]
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


def swap_transport(protocol: IMAP4ClientProtocol, transport: asyncio.BaseTransport) -> None:
    """After STARTTLS: the protocol writes through the TLS transport from now on."""
    protocol.transport = transport
