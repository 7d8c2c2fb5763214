"""A small, defensive IMAP session on top of aioimaplib 2.0.3 (receiving side only).

Why it is more than a thin wrapper (facts measured against Dovecot, see TESTING-NOTES):
* aioimaplib parses a response recursively, once per line: about 1,000 lines in one read raise
  RecursionError inside the library, the transport closes and the pending command then waits
  forever. Parsing is also quadratic in the response size. So every FETCH here is small (a batch of
  about 100 messages, also capped by bytes) and every command runs under a timeout *and* races a
  "connection lost" event, so a dead connection is noticed at once, not after the timeout.
* Any failure - timeout, lost connection, NO/BAD answer, library exception - becomes one
  ``ImapError`` with a secret-free message, and the session is then marked broken: the caller drops
  it and reconnects (a half-answered command leaves aioimaplib's state unusable).
* aioimaplib has no STARTTLS: it is done here (tested against Dovecot) by sending the command and
  upgrading the protocol's transport with ``loop.start_tls``.
* aioimaplib drops untagged ``EXISTS`` lines that arrive outside IDLE; a protocol subclass counts
  them so a new-mail notice that races the last SEARCH is not lost before the next IDLE.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import aioimaplib
from aioimaplib.aioimaplib import Command, quoted

from mail.compat_aioimaplib import EXISTS as _EXISTS
from mail.compat_aioimaplib import Client as _Client
from mail.compat_aioimaplib import swap_transport

log = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]

# Small commands (SEARCH, STORE, one FETCH of sizes) stay far below aioimaplib's ~1,000-line limit.
SIZE_FETCH_CHUNK = 200
# A batch fetch gets the base timeout plus this much time per byte (at least ~100 KB/s).
MIN_BYTES_PER_SECOND = 100_000


class ImapError(Exception):
    """Any IMAP failure (network, timeout, server refusal). The message never holds a secret."""


class ImapConfigError(ImapError):
    """The configuration cannot work (e.g. an unsupported security mode); retrying will not help."""


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    user: str
    password: str = field(repr=False)  # never logged, never in repr
    security: Security = "ssl"
    folder: str = "INBOX"
    batch_size: int = 100
    batch_max_bytes: int = 20 * 1024 * 1024
    timeout: float = 60.0
    use_idle: bool = True
    idle_seconds: float = 25 * 60  # RFC 2177: renew IDLE before the server's 30-minute autologout
    poll_seconds: float = 30.0
    handled_flag: str = "$StoreolisHandled"
    handled_folder: str = ""  # when set, handled mail is moved there instead of flagged
    max_message_bytes: int = 25 * 1024 * 1024
    # Not a setting: lets tests (and unusual deployments) trust a private CA. None = system defaults.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Any) -> ImapConfig:
        return cls(
            host=settings.IMAP_HOST,
            port=settings.IMAP_PORT,
            user=settings.IMAP_USER,
            password=settings.IMAP_PASSWORD.get_secret_value(),
            security=settings.IMAP_SECURITY,
            folder=settings.IMAP_FOLDER,
            batch_size=settings.IMAP_BATCH_SIZE,
            timeout=settings.IMAP_TIMEOUT_SECONDS,
            use_idle=settings.IMAP_USE_IDLE,
            idle_seconds=settings.IMAP_IDLE_SECONDS,
            poll_seconds=settings.IMAP_POLL_SECONDS,
            handled_flag=settings.IMAP_HANDLED_FLAG,
            handled_folder=settings.IMAP_HANDLED_FOLDER,
            max_message_bytes=settings.MAX_MESSAGE_BYTES,
        )

    @property
    def where(self) -> str:
        """Human description for logs and errors (no password)."""
        return f"{self.user}@{self.host}:{self.port} ({self.security})"


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    internal_date: datetime  # aware; the server's arrival time, not the Date header
    flags: frozenset[str]
    raw: bytes


# -- small protocol helpers ----------------------------------------------------------------------


def encode_mailbox(name: str) -> str:
    """Mailbox name as an IMAP quoted string in modified UTF-7 (RFC 3501 5.1.3), e.g. for "Обработано"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(utf16).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return quoted("".join(out))


def uid_set(uids: Iterable[int]) -> str:
    """Compact IMAP sequence set: [1,2,3,7,9,10] -> "1:3,7,9:10" (keeps command lines short)."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


_MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
_INTERNALDATE = re.compile(
    rb'INTERNALDATE "\s?(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"'
)
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FETCH_START = re.compile(rb"^(?:\* )?\d+ FETCH \(")
_BODY_LITERAL = re.compile(rb"BODY\[\] \{(\d+)\}$")


def parse_internaldate(text: bytes) -> datetime | None:
    match = _INTERNALDATE.search(text)
    if not match:
        return None
    day, mon, year, hh, mm, ss, sign, oh, om = match.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == b"-" else 1)
    return datetime(
        int(year), _MONTHS[mon.decode()], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset)
    )


def parse_fetch_lines(lines: Sequence[bytes | bytearray]) -> list[tuple[bytes, bytes | None]]:
    """Group aioimaplib FETCH response lines into (attribute text, body literal or None) per message.

    aioimaplib gives untagged lines as ``bytes`` without "* " (``b'4 FETCH (UID 4 ... BODY[] {169}'``),
    the literal as a ``bytearray``, then the rest of the item (``b')'`` or ``b' UID 4)'``), and the
    completion text last (it starts no FETCH, so it is just ignored).

    Each literal is emptied once copied, so a 25 MB message is held once, not twice, from here on.
    """
    records: list[tuple[bytes, bytes | None]] = []
    text: bytearray | None = None
    body: bytes | None = None
    expect_body = False
    for line in lines:
        if isinstance(line, bytearray):  # a literal
            if text is not None and expect_body:
                body = bytes(line)
                line.clear()  # frees the response's copy now rather than when the response goes
            expect_body = False
            continue
        if _FETCH_START.match(line):
            if text is not None:
                records.append((bytes(text), body))
            text, body = bytearray(line), None
        elif text is not None:
            text.extend(b" " + line)
        else:
            continue
        expect_body = bool(_BODY_LITERAL.search(line))
    if text is not None:
        records.append((bytes(text), body))
    return records


def _ssl_context(config: ImapConfig) -> ssl.SSLContext:
    return config.ssl_context or ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


def _text(response: Any) -> str:
    """The server's answer text (last line), bounded; servers never echo the password back."""
    lines = [ln for ln in getattr(response, "lines", []) if isinstance(ln, bytes)]
    text = lines[-1].decode(errors="replace") if lines else ""
    return text[:300]


# -- the session ---------------------------------------------------------------------------------


class ImapSession:
    """One connection to one mailbox folder. Not reusable after any ImapError: drop it and reconnect."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self._client: _Client | None = None
        self._lost = asyncio.Event()
        self._broken = False
        self._seen_hints = 0
        self.folder_selected = ""

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once anything went wrong or the server closed the connection."""
        client = self._client
        if client is None or self._broken or self._lost.is_set():
            return False
        transport = client.protocol.transport
        return transport is not None and not transport.is_closing() and client.protocol.state != "LOGOUT"

    @property
    def capabilities(self) -> frozenset[str]:
        if self._client is None:
            return frozenset()
        return frozenset(c.upper() for c in self._client.protocol.capabilities)

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost.set()

    def _fail(self, message: str) -> ImapError:
        self._broken = True
        return ImapError(message)

    async def _call(self, what: str, awaitable: Awaitable[Any], limit: float | None = None) -> Any:
        """Run one command with a timeout, racing the connection-lost event; ImapError on any failure."""
        if not self.alive:
            raise self._fail(f"IMAP {what}: not connected to {self.config.where}")
        limit = self.config.timeout if limit is None else limit
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._broken = True  # a half-sent command leaves aioimaplib's state unusable
            task.cancel()
            raise
        finally:
            lost.cancel()
        if task not in done:
            task.cancel()
            if self._lost.is_set():
                raise self._fail(f"IMAP {what}: connection to {self.config.where} lost")
            raise self._fail(f"IMAP {what}: no answer from {self.config.where} within {limit:g} s")
        try:
            return task.result()
        except ImapError:
            self._broken = True
            raise
        except TimeoutError:
            raise self._fail(f"IMAP {what}: no answer from {self.config.where} within {limit:g} s") from None
        except (aioimaplib.AioImapException, OSError, ssl.SSLError, RecursionError, ValueError) as exc:
            reason = exc.__class__.__name__ + (f": {exc}" if str(exc) else "")
            raise self._fail(f"IMAP {what} on {self.config.where} failed: {reason[:300]}") from None

    async def _command(self, what: str, awaitable: Awaitable[Any], limit: float | None = None) -> Any:
        """_call plus the OK check."""
        response = await self._call(what, awaitable, limit)
        if response.result != "OK":
            raise self._fail(
                f"IMAP {what} refused by {self.config.where}: {response.result} {_text(response)}"
            )
        return response

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        config = self.config
        if config.security not in ("ssl", "starttls", "none"):
            raise ImapConfigError(f"IMAP_SECURITY={config.security!r} is invalid; use ssl, starttls or none")
        ctx = _ssl_context(config) if config.security == "ssl" else None
        self._lost = asyncio.Event()
        self._broken = False
        try:
            self._client = _Client(
                config.host, config.port, timeout=config.timeout, conn_lost_cb=self._on_lost, ssl_context=ctx
            )
        except OSError as exc:
            raise self._fail(f"IMAP connect to {config.where} failed: {exc}") from None
        client = self._client
        try:
            await asyncio.wait_for(client.wait_hello_from_server(), config.timeout)
        except TimeoutError:
            raise self._fail(
                f"IMAP connect to {config.where}: no greeting within {config.timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError, aioimaplib.AioImapException) as exc:
            raise self._fail(
                f"IMAP connect to {config.where} failed: {exc.__class__.__name__}: {exc}"
            ) from None
        if config.security == "starttls":
            await self._starttls()

    async def _starttls(self) -> None:
        """STARTTLS by hand: aioimaplib does not offer it. Send the command, then wrap the transport."""
        assert self._client is not None
        protocol = self._client.protocol
        if "STARTTLS" not in self.capabilities:
            raise ImapConfigError(
                f"IMAP server {self.config.where} does not offer STARTTLS; use ssl (port 993)"
            )
        await self._command(
            "STARTTLS", protocol.execute(Command("STARTTLS", protocol.new_tag(), loop=protocol.loop))
        )
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    protocol.transport, protocol, _ssl_context(self.config), server_hostname=self.config.host
                ),
                self.config.timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            raise self._fail(
                f"IMAP STARTTLS with {self.config.where} failed: {exc.__class__.__name__}: {exc}"
            ) from None
        swap_transport(protocol, transport)
        # RFC 3501 6.2.1: forget capabilities learnt before TLS and ask again.
        await self._call("CAPABILITY", protocol.capability())

    async def login(self) -> None:
        assert self._client is not None
        # The password is sent quoted by aioimaplib and scrubbed from its debug log; it is never
        # part of our messages.
        response = await self._call(
            "LOGIN", self._client.protocol.login(self.config.user, self.config.password)
        )
        if response.result != "OK":
            raise self._fail(
                f"IMAP login as {self.config.user} on {self.config.host}:{self.config.port} failed: {_text(response)}"
            )
        # Capabilities grow after login (IDLE, MOVE, UIDPLUS); ask once more instead of guessing.
        await self._call("CAPABILITY", self._client.protocol.capability())

    async def select(self, folder: str | None = None) -> tuple[int, int]:
        """SELECT (read-write, needed for STORE/MOVE); returns (uidvalidity, exists)."""
        assert self._client is not None
        folder = folder or self.config.folder
        response = await self._command(
            f"SELECT {folder}", self._client.protocol.select(encode_mailbox(folder))
        )
        uidvalidity = exists = None
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            if m := re.search(rb"UIDVALIDITY (\d+)", line):
                uidvalidity = int(m.group(1))
            if m := re.match(rb"(?:\* )?(\d+) EXISTS", line):
                exists = int(m.group(1))
        if uidvalidity is None:
            raise self._fail(f"IMAP SELECT {folder} on {self.config.where}: the server sent no UIDVALIDITY")
        self.folder_selected = folder
        return uidvalidity, exists or 0

    async def noop(self) -> None:
        """NOOP lets the server report mail that arrived since the last command."""
        assert self._client is not None
        await self._command("NOOP", self._client.protocol.simple_command("NOOP"))

    async def ensure_folder(self, name: str) -> None:
        """Create a folder if it does not exist yet (for handled_folder)."""
        assert self._client is not None
        protocol = self._client.protocol
        response = await self._command("LIST", protocol.simple_command("LIST", '""', encode_mailbox(name)))
        if any(isinstance(ln, bytes) and ln.startswith(b"LIST ") for ln in response.lines):
            return
        response = await self._call(f"CREATE {name}", protocol.simple_command("CREATE", encode_mailbox(name)))
        if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(
            ln for ln in response.lines if isinstance(ln, bytes)
        ):
            raise self._fail(f"IMAP CREATE {name} refused by {self.config.where}: {_text(response)}")
        log.info("created IMAP folder %r for handled mail", name)

    # -- reading ------------------------------------------------------------------------------

    async def uid_search(self, *criteria: str) -> list[int]:
        assert self._client is not None
        what = "UID SEARCH " + " ".join(criteria)
        response = await self._command(
            what, self._client.protocol.search(*criteria, charset=None, by_uid=True)
        )
        # aioimaplib strips "* SEARCH" and keeps only the numbers; the last line is the completion text.
        uids: list[int] = []
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                uids.extend(int(tok) for tok in line.split() if tok.isdigit())
        return sorted(set(uids))

    async def uid_search_after(self, last_uid: int) -> list[int]:
        """UIDs greater than last_uid, ascending.

        ``UID SEARCH UID n:*`` always matches the highest message even when its UID is below n
        (RFC 3501: "*" is the largest UID in use), so the result is filtered.
        """
        assert self._client is not None
        self._seen_hints = self._client.protocol.mail_hints  # hints after this point mean "search again"
        return [u for u in await self.uid_search("UID", f"{last_uid + 1}:*") if u > last_uid]

    def new_mail_hinted(self) -> bool:
        """True when the server announced EXISTS/RECENT since the last uid_search_after."""
        return self._client is not None and self._client.protocol.mail_hints != self._seen_hints

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        assert self._client is not None
        sizes: dict[int, int] = {}
        ordered = sorted(set(uids))
        for start in range(0, len(ordered), SIZE_FETCH_CHUNK):
            chunk = ordered[start : start + SIZE_FETCH_CHUNK]
            response = await self._command(
                "UID FETCH (RFC822.SIZE)", self._client.uid("fetch", uid_set(chunk), "(UID RFC822.SIZE)")
            )
            for text, _ in parse_fetch_lines(response.lines):
                uid, size = _UID.search(text), _SIZE.search(text)
                if uid and size:
                    sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    async def fetch_batch(self, uids: Sequence[int], expected_bytes: int = 0) -> list[FetchedMail]:
        """Fetch whole messages without setting \\Seen; keep batches small (see module docstring)."""
        assert self._client is not None
        if not uids:
            return []
        limit = self.config.timeout + expected_bytes / MIN_BYTES_PER_SECOND
        response = await self._command(
            f"UID FETCH of {len(uids)} messages",
            self._client.uid("fetch", uid_set(uids), "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"),
            limit=limit,
        )
        wanted = set(uids)
        mails: dict[int, FetchedMail] = {}
        for text, body in parse_fetch_lines(response.lines):
            uid_match = _UID.search(text)
            if not uid_match or body is None:
                continue  # e.g. an unsolicited FLAGS update from another client
            uid = int(uid_match.group(1))
            if uid not in wanted:
                continue
            when = parse_internaldate(text)
            if when is None:
                raise self._fail(
                    f"IMAP UID FETCH {uid} on {self.config.where}: no INTERNALDATE in the answer"
                )
            flags_match = _FLAGS.search(text)
            flags = (
                frozenset(flags_match.group(1).decode(errors="replace").split())
                if flags_match
                else frozenset()
            )
            mails[uid] = FetchedMail(uid=uid, internal_date=when, flags=flags, raw=body)
        return [mails[u] for u in sorted(mails)]

    # -- writing ------------------------------------------------------------------------------

    async def mark_handled(self, uids: Sequence[int]) -> None:
        """Flag (or move to handled_folder) mail whose bytes are already committed to the database."""
        assert self._client is not None
        if not uids:
            return
        folder = self.config.handled_folder
        ids = uid_set(uids)
        if not folder:
            await self._command(
                "UID STORE +FLAGS",
                self._client.uid("store", ids, "+FLAGS.SILENT", f"({self.config.handled_flag})"),
            )
            return
        target = encode_mailbox(folder)
        if "MOVE" in self.capabilities:
            await self._command(f"UID MOVE to {folder}", self._client.uid("move", ids, target))
            return
        # RFC 6851 fallback: copy, mark deleted, expunge just those UIDs (UIDPLUS) - or all deleted.
        await self._command(f"UID COPY to {folder}", self._client.uid("copy", ids, target))
        await self._command(
            "UID STORE \\Deleted", self._client.uid("store", ids, "+FLAGS.SILENT", "(\\Deleted)")
        )
        if "UIDPLUS" in self.capabilities:
            await self._command("UID EXPUNGE", self._client.uid("expunge", ids))
        else:
            await self._command("EXPUNGE", self._client.protocol.expunge())

    # -- IDLE ---------------------------------------------------------------------------------

    async def idle_wait(self, seconds: float) -> bool:
        """IDLE until the server pushes EXISTS/RECENT (True) or ``seconds`` pass (False)."""
        assert self._client is not None
        client = self._client
        if "IDLE" not in self.capabilities:
            raise self._fail(f"IMAP server {self.config.where} does not support IDLE")
        if self.new_mail_hinted():  # the notice came with an earlier command: do not sleep on it
            return True
        queue = client.protocol.idle_queue
        while not queue.empty():  # stale pushes from an earlier IDLE
            queue.get_nowait()
        # aioimaplib's own auto-stop fires a bit later than ours, so ours decides.
        idle = await self._call("IDLE", client.idle_start(timeout=seconds + 60))
        try:
            pushed = await self._wait_push(queue, seconds)
        finally:
            # Also when we are being cancelled: end IDLE so LOGOUT can follow.
            if not self._lost.is_set() and self._client is client:
                client.idle_done()
                await self._command("IDLE DONE", idle)
        return pushed

    async def _wait_push(self, queue: asyncio.Queue[Any], seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            get = asyncio.ensure_future(queue.get())
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                done, _ = await asyncio.wait(
                    {get, lost}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                get.cancel()
                lost.cancel()
            if self._lost.is_set():
                raise self._fail(f"IMAP IDLE: connection to {self.config.where} lost")
            if get not in done:
                return False
            if any(isinstance(ln, bytes) and _EXISTS.match(ln) for ln in get.result()):
                return True
        return False

    # -- ending -------------------------------------------------------------------------------

    async def logout(self) -> None:
        """LOGOUT politely when the session is healthy, then close the socket in any case."""
        try:
            if self.alive and self._client is not None:
                await self._call(
                    "LOGOUT", self._client.protocol.logout(), limit=min(self.config.timeout, 5.0)
                )
        except ImapError as exc:
            log.debug("IMAP logout: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection without a word (after errors or on cancellation)."""
        self._broken = True
        client, self._client = self._client, None
        if client is not None:
            drop_client(client)


def drop_client(client: aioimaplib.IMAP4) -> None:
    """Close an aioimaplib client's socket and cancel its tasks at once, without a word to the server: after
    an error or a timeout, when LOGOUT may never be answered. aioimaplib has no such call, and a client
    left to the garbage collector keeps its socket open until then."""
    for task in list(client.tasks) + list(client.protocol.tasks):
        task.cancel()
    transport = client.protocol.transport
    if transport is not None:
        transport.close()
    if not client._client_task.done():
        client._client_task.cancel()


async def open_session(config: ImapConfig) -> tuple[ImapSession, int, int]:
    """Connect, log in and select the configured folder; returns (session, uidvalidity, exists)."""
    session = ImapSession(config)
    try:
        await session.connect()
        await session.login()
        uidvalidity, exists = await session.select(config.folder)
    except BaseException:
        session.close()
        raise
    return session, uidvalidity, exists


async def check_imap(config: ImapConfig) -> str:
    """One-line health check for `python -m bot check`; raises ImapError with the reason."""
    session, uidvalidity, exists = await open_session(config)
    try:
        idle = "IDLE" in session.capabilities
        mode = "IDLE" if idle and config.use_idle else f"polling every {config.poll_seconds:g} s"
        return (
            f"IMAP OK: {config.where}, folder {config.folder!r}: {exists} messages, "
            f"UIDVALIDITY {uidvalidity}, new mail by {mode}"
        )
    finally:
        await session.logout()
