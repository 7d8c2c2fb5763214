"""Our overrides of aioimaplib's protocol give the library's answers, only cheaper."""

from __future__ import annotations

import asyncio
import logging
import random

from aioimaplib.aioimaplib import FetchCommand

from mail.compat_aioimaplib import FetchCommandFast as _FetchCommand
from mail.compat_aioimaplib import Protocol as _Protocol


def _responses(rng: random.Random) -> list[bytes | bytearray]:
    lines: list[bytes | bytearray] = []
    for n in range(rng.randint(1, 8)):
        if rng.random() < 0.8:
            lines.append(f"{n + 1} FETCH (UID {n + 10} FLAGS (\\Seen) BODY[] {{{n * 7}}}".encode())
            lines.append(bytearray(b"x(" * rng.randint(0, 5)))  # a literal's parentheses do not count
            lines.append(rng.choice([b")", b" INTERNALDATE \"05-Dec-2026 10:00:00 +0000\")", b"", b"(("]))
        else:
            lines.append(rng.choice([b"* 3 EXISTS", b"(", b")", b"OK done"]))
    return lines


async def test_the_incremental_fetch_check_answers_as_the_library_does() -> None:
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    for _ in range(300):
        ours = _FetchCommand("A1", "1:5", "(UID BODY.PEEK[])", prefix="UID", loop=loop)
        theirs = FetchCommand("A1", "1:5", "(UID BODY.PEEK[])", prefix="UID", loop=loop)
        for line in _responses(rng):
            ours.append_to_resp(line)
            theirs.append_to_resp(line)
            assert ours.wait_data() == theirs.wait_data()
            assert ours.wait_data() == theirs.wait_data()  # asking twice changes nothing
        ours.close(b"OK", "OK")
        theirs.close(b"OK", "OK")


def test_received_data_is_formatted_for_the_log_only_when_debugging(caplog) -> None:
    loop = asyncio.new_event_loop()
    try:
        protocol = _Protocol(loop)
        with caplog.at_level(logging.INFO, logger="aioimaplib.aioimaplib"):
            protocol.data_received(b"* OK IMAP4rev1 ready\r\n")
        assert not [r for r in caplog.records if "Received" in r.getMessage()]
        with caplog.at_level(logging.DEBUG, logger="aioimaplib.aioimaplib"):
            protocol.data_received(b"* OK still here\r\n")
    finally:
        loop.close()
    assert [r for r in caplog.records if "Received : b'* OK still here" in r.getMessage()]
