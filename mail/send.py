"""Deliver `EmailOutbox` rows over SMTP, exactly one email per row.

The protocol, and why each step is where it is:

1. Claim: a guarded update `PENDING (due) -> SENDING, attempts + 1` is committed BEFORE we talk to SMTP.
   When it changes no row, another worker (or a cancellation) was faster: we skip the row. While a
   row is SENDING its `not_before` holds the claim time: that is the lease `recover()` reads.
2. Send the stored bytes unchanged (`content` was composed when the row was written, so a retry is the
   very same message with the same Message-ID) on one kept SMTP connection.
3. Record the answer in ONE write: `SENT` (the only window where a crash can cause a resend),
   `PENDING` with a backoff (4xx, network trouble), or `FAILED` (5xx, invalid recipient).

A disconnect or timeout after the DATA command went out is ambiguous (the server may have queued the
message without our hearing its 250): the row is retried with `ambiguous_resend=True` and a warning.
A process that dies mid-send leaves its row SENDING; `recover()` puts such rows back (flagged
ambiguous) once their lease has expired, so a live peer's in-flight row is never stolen.

Failures of the server as a whole (connection refused, TLS, EHLO, AUTH, a 421 "closing", the sender
address refused) are not the row's fault: they stop the pass and close the sender's outage gate
(models/backoff.py), counted once per outage, not per row; the row in hand goes back due at once with
its attempt given back, rows not yet claimed stay PENDING untouched. While the gate is closed no pass
connects, not even after `wake()`; at the gate's time one connection (connect + EHLO, the probe) is
tried, and when it succeeds every due row goes on it at once. The gate's delay and a row's own backoff
(a refused recipient, a 4xx to DATA, a dropped connection) are both capped at `max_backoff`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import aioimaplib
import aiosmtplib
from aiosmtplib.typing import Default
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from mail.drafts import DraftComposer, DraftError
from mail.imap import drop_client
from models.aio import raise_if_cancelling
from models.backoff import Outage, capped_delay
from models.clock import utcnow
from models.metrics_port import events
from models.store.claims import claim_row
from models.tables import EmailOutbox, OutboxStatus

log = logging.getLogger(__name__)

Outcome = Literal["sent", "failed", "retrying"]



def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    user: str = ""
    password: str = field(default="", repr=False)  # never in a repr or a log line
    security: str = "ssl"  # "ssl" (implicit TLS, 465) | "starttls" (587) | "none" (loopback only)
    timeout: float = 30.0  # per SMTP command
    sender_address: str = "support@storeolis.ru"  # envelope MAIL FROM
    sent_folder: str = ""  # when set, APPEND a copy of every sent email to this IMAP folder

    def __post_init__(self) -> None:
        if self.security not in ("ssl", "starttls", "none"):
            raise ValueError(f"SMTP security must be ssl, starttls or none, not {self.security!r}")

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpConfig:
        return cls(
            host=settings.SMTP_HOST,
            port=int(settings.SMTP_PORT),
            user=settings.SMTP_USER or "",
            password=_secret(settings.SMTP_PASSWORD),
            security=settings.SMTP_SECURITY,
            timeout=float(settings.SMTP_TIMEOUT_SECONDS),
            sender_address=settings.SUPPORT_ADDRESS,
            sent_folder=getattr(settings, "SMTP_SENT_FOLDER", "") or "",
        )


@dataclass
class DeliveryEvent:
    outbox_id: int
    ticket_id: int | None
    event: str
    outcome: Outcome
    error: str | None
    ambiguous: bool


class SmtpCheckError(Exception):
    """`check_smtp` could not connect, greet or log in; the message says why (never the password)."""


def _secret(value: Any) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter is not None else value)


def _scrub(text: str, *secrets: str) -> str:
    # Servers and libraries sometimes echo what they were sent; a password must never reach a log
    # line, last_error or a staff card.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "all recipients refused: " + "; ".join(
            f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {exc.message}"
    text = str(exc) or "no details"
    return f"{type(exc).__name__}: {text}"


class _TrackingSMTP(aiosmtplib.SMTP):
    """aiosmtplib.SMTP that remembers whether DATA was started in the current transaction: a
    disconnect after that point is ambiguous (the server may have accepted the message)."""

    data_started: bool = False

    # The signature mirrors aiosmtplib's own (sendmail passes timeout=...).
    async def data(self, message: str | bytes, /, *, timeout: Any = Default.token) -> Any:  # noqa: ASYNC109
        self.data_started = True
        return await super().data(message, timeout=timeout)


def _new_smtp(config: SmtpConfig) -> _TrackingSMTP:
    return _TrackingSMTP(
        hostname=config.host,
        port=config.port,
        username=config.user or None,
        password=config.password if config.user else None,
        use_tls=config.security == "ssl",
        start_tls=config.security == "starttls",
        timeout=config.timeout,
    )


class _ConnectFailed(Exception):
    """Could not open, secure, greet or authenticate a connection: the sender's problem, not a row's."""


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    error: str | None = None
    ambiguous: bool = False
    server: bool = False  # the server as a whole failed (an outage), not this row


def _server_wide(exc: Exception) -> bool:
    """A reply that would be the same for every row: the server is closing (421) or refuses our
    envelope sender (MAIL FROM), i.e. the service or our account, not this message."""
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return True
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421


class _SentFolderCopier:
    """Best effort: APPEND each sent message to the Sent folder over IMAP (aioimaplib directly, one
    kept connection). A failure is logged and never causes a resend: the email is already out."""

    def __init__(self, imap_config: Any, folder: str, timeout: float) -> None:
        self._cfg = imap_config
        self._folder = folder
        self._timeout = timeout
        self._client: aioimaplib.IMAP4 | None = None

    def _password(self) -> str:
        return _secret(getattr(self._cfg, "password", ""))

    async def _connect(self) -> aioimaplib.IMAP4:
        security = getattr(self._cfg, "security", "ssl")
        host, port = self._cfg.host, int(self._cfg.port)
        if security == "ssl":
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(host=host, port=port, timeout=self._timeout)
        elif security == "none":
            client = aioimaplib.IMAP4(host=host, port=port, timeout=self._timeout)
        else:
            # aioimaplib 2.0.3 has no STARTTLS; sending the password in clear is not an option.
            raise RuntimeError(f"IMAP security {security!r} is not supported for the Sent copy")
        try:
            await client.wait_hello_from_server()
            response = await client.login(self._cfg.user, self._password())
            if response.result != "OK":
                with contextlib.suppress(Exception):
                    await client.logout()
                raise RuntimeError(f"IMAP login refused for {self._cfg.user}")
        except BaseException:
            drop_client(client)  # a greeting or login that timed out must not leave the socket open
            raise
        return client

    async def _append(self, client: aioimaplib.IMAP4, content: bytes) -> None:
        response = await client.append(content, mailbox=self._folder, flags=r"(\Seen)")
        if response.result != "OK" and any(b"TRYCREATE" in bytes(line) for line in response.lines):
            await client.create(self._folder)  # RFC 3501 6.3.11: the folder does not exist yet
            response = await client.append(content, mailbox=self._folder, flags=r"(\Seen)")
        if response.result != "OK":
            raise RuntimeError(f"APPEND to {self._folder!r} answered {response.result}")

    async def copy(self, content: bytes, outbox_id: int) -> bool:
        for attempt in (1, 2):
            reused = self._client is not None
            try:
                async with asyncio.timeout(self._timeout * 3):
                    if self._client is None:
                        self._client = await self._connect()
                    await self._append(self._client, content)
                return True
            except Exception as exc:  # best effort by design: log, never raise
                await self.close()
                if reused and attempt == 1:
                    continue  # the kept connection went stale: one fresh try
                log.warning(
                    "could not copy email outbox #%s to IMAP folder %r: %s",
                    outbox_id, self._folder, _scrub(_describe(exc), self._password()),
                )
                return False
        return False

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout):
                        await client.logout()
            finally:
                drop_client(client)  # a LOGOUT that timed out, or its answer, leaves the socket to us


class EmailSender:
    def __init__(
        self,
        config: SmtpConfig,
        *,
        on_event: Callable[[DeliveryEvent], Awaitable[None]] | None = None,
        after_event: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
        max_backoff: float = 60.0,
        base_backoff: float = 2.0,
        imap_config: Any = None,
        lease_seconds: float = 300.0,
        max_attempts: int = 50,
        poll_interval: float = 5.0,
        idle_close_seconds: float = 60.0,
        batch_size: int = 100,
        drafts: DraftComposer | None = None,
    ) -> None:
        """`drafts`: composes the rows queued as drafts (mail/drafts.py) once they are claimed.
        `lease_seconds`: a SENDING row whose claim is older than this belongs to a dead process
        (see `recover`); one send is cut off well before it (`lease_seconds / 2`). `max_attempts`:
        a row still failing temporarily after this many attempts becomes FAILED (with the defaults
        that is hours of retries). `idle_close_seconds`: QUIT a kept connection idle this long.
        `base_backoff`/`max_backoff`: first step and cap of both the outage gate and a row's own
        backoff (OUTBOX_MAX_BACKOFF_SECONDS)."""
        self._config = config
        # `on_event` runs inside the transaction that records the outcome (what it writes, e.g. a staff
        # notice, commits with it or not at all); `after_event` once that transaction committed.
        self._on_event = on_event
        self._after_event = after_event
        self._clock = clock
        self._worker_id = worker_id or _default_worker_id()
        self._max_backoff = max_backoff
        self._base_backoff = base_backoff
        self._lease = lease_seconds
        self._send_deadline = max(1.0, lease_seconds / 2)
        self._max_attempts = max_attempts
        self._poll_interval = poll_interval
        self._idle_close = idle_close_seconds
        self._batch_size = batch_size
        self._drafts = drafts
        self._random = random.Random()
        self._wakeup = asyncio.Event()
        self._smtp: _TrackingSMTP | None = None
        self._smtp_used = False  # the kept connection has carried a transaction already
        self._last_used = 0.0  # loop time of the last transaction
        self._outage = Outage(base=base_backoff, cap=max_backoff, clock=clock, rng=self._random)
        self.outage_detail = ""  # what the last server-wide failure said (for the outage reporter)
        self.connections_opened = 0  # for logs and tests
        self._copier = (
            _SentFolderCopier(imap_config, config.sent_folder, config.timeout)
            if config.sent_folder and imap_config is not None
            else None
        )
        if config.sent_folder and imap_config is None:
            log.warning("SMTP sent folder %r is set but no IMAP settings were given: no copies", config.sent_folder)

    # -- public API -------------------------------------------------------------------------

    @property
    def _connect_failures(self) -> int:
        """Server-wide failures of the current outage (0: none); read by bot/outages.py."""
        return self._outage.failures

    def wake(self) -> None:
        """New rows were written: start a pass now instead of at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver until cancelled: recover dead claims, then loop over passes."""
        loop = asyncio.get_running_loop()
        log.info("email sender %s started (SMTP %s:%s, %s)", self._worker_id, self._config.host,
                 self._config.port, self._config.security)
        try:
            await self.recover()
            last_recover = loop.time()
            while True:
                raise_if_cancelling()
                self._wakeup.clear()  # cleared before the pass: a wake() during it triggers another
                try:
                    await self.deliver_due()
                    if loop.time() - last_recover >= min(self._lease / 2, 60.0):
                        # A peer that died leaves rows SENDING; pick them up once its lease ends.
                        await self.recover()
                        last_recover = loop.time()
                    delay = await self._seconds_until_next()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A database hiccup must not end the loop: log it and try again later.
                    log.exception("email sender pass failed; retrying in %.0f s", self._poll_interval)
                    delay = self._poll_interval
                raise_if_cancelling()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wakeup.wait()
                if self._smtp is not None and loop.time() - self._last_used >= self._idle_close:
                    await self._close_smtp()
        finally:
            await self.aclose()

    async def deliver_due(self) -> int:
        """One pass: deliver every row due now (oldest first); returns how many became SENT."""
        sent = 0
        last_id = 0
        if self._outage.wait() > 0:
            return 0  # an outage: no row and no connection before the gate's probe time, wake() or not
        now = self._clock()
        while True:
            ids = await (
                EmailOutbox.filter(status=OutboxStatus.PENDING, not_before__lte=now, id__gt=last_id)
                .order_by("id")
                .limit(self._batch_size)
                .values_list("id", flat=True)
            )
            if not ids:
                return sent
            for row_id in ids:
                last_id = row_id
                try:
                    # Connect before claiming: while the server is unreachable no row is touched.
                    await self._connection()
                except _ConnectFailed as exc:
                    self._note_server_failure(str(exc))
                    return sent
                row = await self._claim(row_id)
                if row is None:
                    continue  # another worker claimed it, or it was cancelled meanwhile
                result = await self._deliver(row)
                if result.outcome == "sent":
                    sent += 1
                if self._outage.active:
                    return sent  # the server as a whole failed on this row: wait for the probe

    async def recover(self, lease_seconds: float | None = None) -> int:
        """Put back SENDING rows whose claim is older than the lease (default: the constructor's
        `lease_seconds`); returns how many.

        Rule: while SENDING, `not_before` is the claim time, and one send never outlives half the
        lease, so a row SENDING for longer than the lease belongs to a process that died mid-send.
        Whether the server accepted it is unknown: the row goes back to PENDING flagged
        `ambiguous_resend` and is sent again (a rare duplicate beats a lost answer). With a single
        process, `recover(lease_seconds=0)` at start-up is safe and recovers at once.
        """
        lease = self._lease if lease_seconds is None else lease_seconds
        now = self._clock()
        cutoff = now - timedelta(seconds=lease)
        rows = await EmailOutbox.filter(status=OutboxStatus.SENDING, not_before__lte=cutoff).values(
            "id", "message_id", "not_before", "attempts"
        )
        recovered = 0
        for row in rows:
            changed = await EmailOutbox.filter(
                id=row["id"], status=OutboxStatus.SENDING, not_before__lte=cutoff
            ).update(
                status=OutboxStatus.PENDING,
                ambiguous_resend=True,
                not_before=now,
                last_error="interrupted mid-send (process died); resending, the recipient may get it twice",
            )
            if changed:
                recovered += 1
                log.warning(
                    "email outbox #%s <%s> was left SENDING since %s (attempt %s) by a dead process: "
                    "resending, the server may already have accepted it (ambiguous resend)",
                    row["id"], row["message_id"], row["not_before"], row["attempts"],
                )
        return recovered

    async def aclose(self) -> None:
        await self._close_smtp()
        if self._copier is not None:
            await self._copier.close()

    # -- one row ----------------------------------------------------------------------------

    async def _claim(self, row_id: int) -> EmailOutbox | None:
        claimed_at = self._clock()
        # Guarded update everywhere; on PostgreSQL also FOR UPDATE SKIP LOCKED (see models/store/claims.py).
        changed = await claim_row(
            EmailOutbox,
            row_id,
            where={"status": OutboxStatus.PENDING, "not_before__lte": claimed_at},
            changes={"status": OutboxStatus.SENDING, "attempts": F("attempts") + 1, "not_before": claimed_at},
            undo={"status": OutboxStatus.PENDING, "attempts": F("attempts") - 1},
        )
        if not changed:
            return None
        return await EmailOutbox.get(id=row_id)

    async def _deliver(self, row: EmailOutbox) -> _Result:
        recipients = [str(r) for r in (row.recipients or [])]
        content = bytes(row.content)
        smtp_box: list[_TrackingSMTP] = []
        record: asyncio.Future[_Result] | None = None
        try:
            try:
                if not recipients:
                    raise ValueError("the row has no recipients")
                if not content:
                    content = await self._composed(row)
                async with asyncio.timeout(self._send_deadline):
                    refused = await self._transmit(recipients, content, smtp_box)
            except asyncio.CancelledError:
                raise
            except DraftError as exc:
                log.error("email outbox #%s <%s> (ticket #%s): %s", row.id, row.message_id, row.ticket_id, exc,
                          extra={"ticket": row.ticket_id})
                result = _Result("failed", str(exc))  # not the server's doing: no SMTP failure counted
            except Exception as exc:
                result = self._classify(exc, smtp_box)
            else:
                note = None
                if refused:
                    note = "some recipients refused: " + "; ".join(
                        f"{addr}: {resp.code} {resp.message}" for addr, resp in refused.items()
                    )
                    log.warning("email outbox #%s <%s>: %s", row.id, row.message_id, note)
                result = _Result("sent", note)
            # Shielded: once the server has answered, a shutdown must not tear the one write apart
            # (the task runs to completion even if we are cancelled while awaiting it).
            record = asyncio.ensure_future(self._record(row, result))
            result = await asyncio.shield(record)
        except asyncio.CancelledError:
            if record is None:
                smtp = smtp_box[-1] if smtp_box else None
                ambiguous = bool(smtp is not None and smtp.data_started)
                self._drop_smtp()
                # Shut down mid-send: give the row back now rather than after a lease.
                await asyncio.shield(
                    self._record(row, _Result("retrying", "interrupted by shutdown", ambiguous), backoff=False,
                                 emit=False)
                )
            raise
        if result.outcome == "sent" and self._copier is not None:
            await self._copier.copy(content, row.id)
        return result

    async def _composed(self, row: EmailOutbox) -> bytes:
        if self._drafts is None:
            raise DraftError("no_composer", "the row is a draft and this sender composes none")
        return await self._drafts.content(row)

    async def _transmit(
        self, recipients: list[str], content: bytes, smtp_box: list[_TrackingSMTP]
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            smtp = await self._connection()
            reused = self._smtp_used
            smtp_box.append(smtp)
            smtp.data_started = False
            try:
                refused, _reply = await smtp.sendmail(self._config.sender_address, recipients, content)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if smtp.data_started or not reused or attempt == 2:
                    raise
                # The kept connection was closed by the server while idle (nothing of this message
                # reached it): reconnect once, right away, without spending a retry on the row.
                log.info("kept SMTP connection was closed by the server; reconnecting")
                self._drop_smtp()
                continue
            finally:
                self._smtp_used = True
                self._last_used = asyncio.get_running_loop().time()
            return refused
        raise AssertionError("unreachable")

    def _classify(self, exc: Exception, smtp_box: list[_TrackingSMTP]) -> _Result:
        kind, result = self._result_of(exc, smtp_box)
        events().smtp_failure(kind, result.outcome)
        return result

    def _result_of(self, exc: Exception, smtp_box: list[_TrackingSMTP]) -> tuple[str, _Result]:
        """(the failure's class for monitoring, what the outbox does about it)."""
        message = _scrub(_describe(exc), self._config.password)
        smtp = smtp_box[-1] if smtp_box else None
        if isinstance(exc, _ConnectFailed) or _server_wide(exc):
            if not isinstance(exc, _ConnectFailed):
                self._drop_smtp()  # 421 closes the connection; after a refused sender start afresh
            self._note_server_failure(message)
            # Not ambiguous: either nothing of the message was sent, or the server answered (421).
            return ("connect" if isinstance(exc, _ConnectFailed) else "server"), _Result("retrying", message, server=True)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            permanent = all(r.code >= 500 for r in exc.recipients)
            return "recipient", _Result("failed" if permanent else "retrying", message)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            # The server answered: the connection is usable (aiosmtplib sent RSET), no ambiguity.
            return "rejected", _Result("failed" if 500 <= exc.code < 600 else "retrying", message)
        if isinstance(exc, ValueError | aiosmtplib.SMTPNotSupported):
            return "invalid", _Result("failed", message)  # an address aiosmtplib refuses to send, SMTPUTF8...
        # Network error, timeout, disconnect: the connection state is unknown, drop it.
        self._drop_smtp()
        ambiguous = bool(smtp is not None and smtp.data_started)
        return "network", _Result("retrying", message, ambiguous)

    async def _record(
        self, row: EmailOutbox, result: _Result, *, backoff: bool = True, emit: bool = True
    ) -> _Result:
        """The one write that records the server's answer, and (`emit`) what the `on_event` listener
        writes about it (the staff's notice, the card's edit), in one transaction: a notice is never
        lost nor posted about an outcome that was not recorded. Returns the outcome actually recorded."""
        async with in_transaction():
            result = await self._record_outcome(row, result, backoff)
            if emit:
                await self._emit(row, result)
        if emit and self._on_event is not None and self._after_event is not None:
            self._after_event()
        return result

    async def _record_outcome(self, row: EmailOutbox, result: _Result, backoff: bool) -> _Result:
        """The guarded update (status=SENDING) of the row; a retry past max_attempts becomes a failure."""
        now = self._clock()
        query = EmailOutbox.filter(id=row.id, status=OutboxStatus.SENDING)
        if result.outcome == "sent":
            changed = await query.update(status=OutboxStatus.SENT, sent_at=now, last_error=result.error)
            if changed:
                log.info("email outbox #%s <%s> sent (%s, ticket #%s, attempt %s)", row.id, row.message_id,
                         row.event, row.ticket_id, row.attempts, extra={"ticket": row.ticket_id})
        elif result.outcome == "failed" or (row.attempts >= self._max_attempts and not result.server):
            # (An outage never fails a row: it is waited out, however long.)
            if result.outcome != "failed":
                result = _Result("failed", f"gave up after {row.attempts} attempts: {result.error}",
                                 result.ambiguous)
            changed = await query.update(status=OutboxStatus.FAILED, last_error=result.error)
            log.error("email outbox #%s <%s> (ticket #%s) to %s FAILED: %s", row.id, row.message_id,
                      row.ticket_id, row.recipients, result.error, extra={"ticket": row.ticket_id})
        else:
            # A server-wide failure is the outage gate's to wait out: the row is due again at once
            # (the gate holds the sender) and gets its attempt back, so an outage burns no attempts.
            delay = self._backoff(row.attempts) if backoff and not result.server else 0.0
            fields: dict[str, Any] = {
                "status": OutboxStatus.PENDING,
                "not_before": now + timedelta(seconds=delay),
                "last_error": result.error,
            }
            if result.server:
                fields["attempts"] = F("attempts") - 1
            if result.ambiguous:
                fields["ambiguous_resend"] = True
                log.warning(
                    "email outbox #%s <%s>: connection lost after DATA without a final reply; the server "
                    "may have accepted it, resending (ambiguous resend): %s",
                    row.id, row.message_id, result.error,
                )
            elif result.server:
                log.warning("email outbox #%s <%s>: the SMTP server failed as a whole; the row waits for "
                            "the outage to end: %s", row.id, row.message_id, result.error)
            else:
                log.warning("email outbox #%s <%s>: temporary failure, retry in %.1f s: %s",
                            row.id, row.message_id, delay, result.error)
            changed = await query.update(**fields)
        if not changed:
            # Only possible if recover() took the row over, i.e. a send outlived the lease.
            log.warning("email outbox #%s <%s> was no longer SENDING when its %s outcome was recorded",
                        row.id, row.message_id, result.outcome)
        return result

    async def _emit(self, row: EmailOutbox, result: _Result) -> None:
        if self._on_event is None:
            return
        event = DeliveryEvent(
            outbox_id=row.id,
            ticket_id=getattr(row, "ticket_id", None),
            event=row.event,
            outcome=result.outcome,
            error=result.error,
            ambiguous=result.ambiguous or bool(row.ambiguous_resend),
        )
        try:
            async with in_transaction():  # a savepoint: a failing listener undoes only its own writes
                await self._on_event(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The delivery is recorded; a failing listener must not undo or repeat it.
            log.exception("on_event listener failed for email outbox #%s", row.id)

    def _backoff(self, attempts: int) -> float:
        """One row's own backoff (a failure of this row only): by its attempts, capped, jittered."""
        return capped_delay(attempts, base=self._base_backoff, cap=self._max_backoff, rng=self._random)

    # -- the kept connection ----------------------------------------------------------------

    async def _connection(self) -> _TrackingSMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop_smtp()
        smtp = _new_smtp(self._config)
        try:
            # aiosmtplib applies `timeout` per step; the outer bound covers the whole handshake.
            async with asyncio.timeout(self._config.timeout * 4):
                await smtp.connect()
        except asyncio.CancelledError:
            smtp.close()
            raise
        except Exception as exc:
            smtp.close()
            raise _ConnectFailed(
                f"cannot connect to SMTP {self._config.host}:{self._config.port}: "
                + _scrub(_describe(exc), self._config.password)
            ) from exc
        self._smtp, self._smtp_used = smtp, False
        self._last_used = asyncio.get_running_loop().time()
        self.connections_opened += 1
        failures = self._outage.failures
        lasted = self._outage.succeeded()
        if lasted is not None:
            # The probe succeeded: every due row goes now, on this connection.
            log.info("SMTP %s:%s reachable again after %.1f s (%s failed tries); delivering the queue",
                     self._config.host, self._config.port, lasted, failures)
        return smtp

    def _note_server_failure(self, detail: str) -> None:
        """One failure of the server as a whole: counted once per probe, never once per row."""
        delay = self._outage.failed()
        self.outage_detail = detail
        log.error("%s (failure %s of this outage, next try in %.1f s)", detail, self._outage.failures, delay)

    def _drop_smtp(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def _close_smtp(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._config.timeout):
                    await smtp.quit()
        if smtp is not None:
            smtp.close()

    async def _seconds_until_next(self) -> float:
        """How long the loop may sleep: until the next not_before, the connection retry, or a poll."""
        now = self._clock()
        delay = self._poll_interval
        upcoming = (
            await EmailOutbox.filter(status=OutboxStatus.PENDING)
            .order_by("not_before")
            .limit(1)
            .values_list("not_before", flat=True)
        )
        if upcoming:
            delay = min(delay, max(0.0, (upcoming[0] - now).total_seconds()))
        if self._outage.active:
            delay = max(delay, self._outage.wait())
        return max(0.0, min(delay, self._max_backoff))


async def check_smtp(config: SmtpConfig) -> str:
    """Connect (TLS or STARTTLS as configured), EHLO, log in when a user is set, QUIT.

    Returns one line for `python -m bot check`; raises SmtpCheckError with the reason.
    """
    smtp = _new_smtp(config)
    target = f"{config.host}:{config.port} ({config.security})"
    try:
        async with asyncio.timeout(config.timeout * 4):
            await smtp.connect()  # logs in too when a user is set
            if smtp.last_ehlo_response is None:
                await smtp.ehlo()
            ehlo = smtp.last_ehlo_response
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.quit()
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise SmtpCheckError(
            f"SMTP {target}: login refused for {config.user!r}: "
            + _scrub(f"{exc.code} {exc.message}", config.password)
        ) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise SmtpCheckError(f"SMTP {target}: {_scrub(_describe(exc), config.password)}") from None
    finally:
        smtp.close()
    greeting = (ehlo.message.splitlines()[0] if ehlo is not None and ehlo.message else "").strip()
    login = f"logged in as {config.user}" if config.user else "no login configured"
    return f"SMTP OK: {target}, EHLO {greeting!r}, {login}"
