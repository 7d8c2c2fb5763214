"""An in-process SMTP server (aiosmtpd) that records mail byte-exact and can misbehave on demand.

aiosmtpd runs in its own thread and event loop, so tests talk to it over real sockets exactly
like the bridge talks to a real relay. The built-in Mailbox handler rewrites line endings; we
keep ``envelope.original_content`` instead (see TESTING-NOTES).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.rig.net import free_port

Mode = Literal["tempfail", "tempfail_data", "permfail", "down", "reset", "drop_after_data"] | None
_MODES = (None, "tempfail", "tempfail_data", "permfail", "down", "reset", "drop_after_data")

TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
PERMFAIL = "550 5.1.1 Recipient address rejected: user unknown"


@dataclass
class CapturedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # exactly the bytes the client sent after DATA (dot-unstuffed, CRLF kept)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    auth_user: str | None = None

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class _Handler:
    """aiosmtpd handler hooks; reads the capture's current mode on every command."""

    def __init__(self, capture: SmtpCapture) -> None:
        self.capture = capture

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        mode = self.capture.mode
        if mode == "tempfail":
            return TEMPFAIL
        if mode == "permfail":
            return PERMFAIL
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mode = self.capture.mode
        if mode == "tempfail_data":
            return TEMPFAIL
        raw = envelope.original_content
        if raw is None:  # only None when no DATA was received; keeps the type checker honest
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        mail = CapturedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(raw),
            auth_user=login.decode() if isinstance(login, bytes) else login,
        )
        self.capture._record(mail)
        if mode == "drop_after_data":
            # The message is stored but the client never hears 250: the ambiguous window where
            # a retry may deliver a duplicate. abort() closes the socket without a reply.
            if server.transport is not None:
                server.transport.abort()
            return "421 4.4.2 connection dropped (never reaches the client)"
        return "250 2.0.0 OK queued"


class _Controller(Controller):
    """Controller that builds each session's SMTP with the capture's *current* auth settings."""

    def __init__(self, capture: SmtpCapture, port: int) -> None:
        super().__init__(_Handler(capture), hostname=capture.host, port=port, ready_timeout=10)
        self.capture = capture

    def factory(self) -> SMTP:
        kwargs: dict[str, Any] = dict(self.SMTP_kwargs)
        creds = self.capture._credentials
        if creds is not None:
            kwargs.update(
                auth_required=True,
                auth_require_tls=False,  # tests use plain TCP; real relays demand TLS first
                authenticator=self._authenticate,
            )
        else:
            # Still offer AUTH (without requiring it) so a client configured with credentials works.
            kwargs.update(auth_require_tls=False, authenticator=self._authenticate)
        return SMTP(self.handler, **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        creds = self.capture._credentials
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if creds is None:
            return AuthResult(success=True, auth_data=auth_data)
        ok = (auth_data.login.decode(), auth_data.password.decode()) == creds
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _ResetListener:
    """The port of a dead mail service behind a balancer: every connection is accepted and closed at
    once without a greeting. Counts them, so a test can see how often a client tried."""

    def __init__(self, host: str, port: int) -> None:
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="smtp-reset", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class SmtpCapture:
    host: str = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[CapturedMail] = []
        self.mode: Mode = None
        self._credentials: tuple[str, str] | None = None
        self._controller: _Controller | None = None
        self._reset: _ResetListener | None = None
        self.reset_connections = 0  # connections refused in "reset" mode, over the capture's life
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._controller is not None:
            return
        controller = _Controller(self, self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        self._stop_reset()

    def _stop_reset(self) -> None:
        reset, self._reset = self._reset, None
        if reset is not None:
            reset.close()
            self.reset_connections += reset.connections

    @property
    def listening(self) -> bool:
        return self._controller is not None

    # -- behaviour --------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        """None accepts mail; "tempfail" 451s RCPT; "tempfail_data" 451s DATA; "permfail" 550s
        RCPT; "down" stops listening (connection refused); "reset" stops the SMTP server and accepts
        then closes every connection without a word (counted in `reset_connections`);
        "drop_after_data" records the mail then closes the connection before the 250. Leaving "down"
        or "reset" listens on the same port again.
        """
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        if mode in ("down", "reset"):
            self.stop()
            if mode == "reset":
                self._reset = _ResetListener(self.host, self.port)
        elif self._controller is None:
            self._stop_reset()
            self.start()

    @property
    def refused_so_far(self) -> int:
        """Connections closed unanswered in "reset" mode, the current spell included."""
        return self.reset_connections + (self._reset.connections if self._reset is not None else 0)

    def require_auth(self, user: str, password: str) -> None:
        """Demand AUTH PLAIN/LOGIN with these credentials (applies to new connections)."""
        self._credentials = (user, password)

    # -- captured mail ----------------------------------------------------------------------

    def _record(self, mail: CapturedMail) -> None:
        with self._lock:
            self.messages.append(mail)
            waiters = list(self._waiters)
        # Mail arrives on aiosmtpd's thread; wake waiters on their own loops.
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    async def wait_for_count(self, n: int, timeout: float = 10.0) -> list[CapturedMail]:  # noqa: ASYNC109
        """Wait until at least ``n`` mails are captured; returns a snapshot of them.

        ``timeout`` is part of the rig's API (a plain number reads better in tests); it raises
        TimeoutError like ``asyncio.timeout``.
        """
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with self._lock:
                        if len(self.messages) >= n:
                            return list(self.messages)
                        waiter[1].clear()
                    await waiter[1].wait()
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def __enter__(self) -> SmtpCapture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
