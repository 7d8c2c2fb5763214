"""The mailbox watcher: moves raw mail from the IMAP folder into RawMail rows (status STORED).

It only receives: turning STORED rows into tickets is another component's job, woken through the
``on_stored`` hook after each committed batch.

The durable truth is ``MailCursor(mailbox="<user>/<folder>")``: (uidvalidity, last_uid). Per batch:
fetch -> one transaction (advance the cursor with a guarded update, insert the new RawMail rows) ->
only then flag or move the batch on the server -> on_stored(). A kill -9 anywhere changes nothing:
before the commit the batch is fetched again; after it, the flag is re-applied on the next start.
Duplicates are impossible by construction: a (mailbox, uidvalidity, uid) or a sha256 already stored
is skipped, which also covers a UIDVALIDITY change (the server renumbered the same messages).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from tortoise.exceptions import BaseORMException, IntegrityError
from tortoise.transactions import in_transaction

from mail.imap import FetchedMail, ImapConfig, ImapConfigError, ImapError, ImapSession, open_session
from models.aio import raise_if_cancelling
from models.backoff import capped_delay
from models.clock import utcnow
from models.metrics_port import events
from models.store.fast_rows import RowInserter
from models.store.raw_store import store_contents
from models.tables import MailCursor, RawMail, RawMailStatus

log = logging.getLogger(__name__)
_RAW_MAILS = RowInserter(RawMail)



@dataclass
class WatcherState:
    """What health checks and `/status` show."""

    connected: bool = False
    last_sync_at: datetime | None = None
    last_error: str | None = None
    mode: Literal["idle", "poll"] = "poll"
    failures: int = 0  # consecutive failed attempts (reset by a successful sync)


class _CursorMoved(Exception):
    """Another process advanced or reset the checkpoint under us: reload it and carry on."""


def split_by_bytes(uids: Sequence[int], sizes: dict[int, int], max_bytes: int) -> Iterator[list[int]]:
    """Consecutive groups whose total RFC822.SIZE stays within max_bytes (a single bigger message
    still forms a group of one: large mail is stored too, never skipped)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if group and total + size > max_bytes:
            yield group
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield group


class MailWatcher:
    def __init__(
        self,
        config: ImapConfig,
        *,
        on_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        retry_base: float = 1.0,
        retry_cap: float = 60.0,
    ) -> None:
        self.config = config
        self.on_stored = on_stored
        self.clock = clock
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.mailbox = f"{config.user}/{config.folder}"[:200]
        self.state = WatcherState(mode="idle" if config.use_idle else "poll")
        self._session: ImapSession | None = None
        self._had_session = False  # a session after the first one is a reconnect (metrics)
        self._uidvalidity = 0
        self._last_uid = 0

    # -- public -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch the folder until cancelled. Never raises on network, server or database trouble:
        it logs (once per distinct problem), backs off with jitter and tries again."""
        attempt = 0
        try:
            while True:
                raise_if_cancelling()
                try:
                    await self.sync_once()
                    attempt = 0
                    await self._wait_for_mail()
                except ImapConfigError as exc:
                    self._report(str(exc), level=logging.ERROR)
                except ImapError as exc:
                    self._report(str(exc))
                except (OSError, BaseORMException) as exc:  # database trouble (disk full, lock timeout)
                    self._report(f"database error while storing mail: {exc.__class__.__name__}: {exc}")
                except Exception as exc:  # noqa: BLE001 - the watcher must outlive any bug in one batch
                    message = f"unexpected error: {exc.__class__.__name__}: {exc}"
                    if message != self.state.last_error:
                        log.exception("mail intake failed unexpectedly")
                    self._report(message, already_logged=True)
                else:
                    continue
                self._drop_session()
                attempt += 1
                # Jittered (models/backoff.py): peers that lost the server together do not return together.
                await asyncio.sleep(capped_delay(attempt, base=self.retry_base, cap=self.retry_cap))
        finally:
            await self._close_session()

    async def sync_once(self) -> int:
        """Connect (or reuse the connection) and store everything new; returns rows stored."""
        reused = self._session is not None and self._session.alive
        session = await self._ensure_session()
        try:
            stored = await self._sync(session)
        except ImapError as exc:
            self._drop_session()
            if not reused:
                raise
            # A kept connection may have died quietly (server restart, NAT timeout): one fresh try.
            log.info("IMAP connection went stale (%s); reconnecting", exc)
            session = await self._ensure_session()
            try:
                stored = await self._sync(session)
            except ImapError:
                self._drop_session()
                raise
        self.state.last_sync_at = self.clock()
        if self.state.last_error is not None:
            log.info("IMAP intake for %s is working again", self.mailbox)
        self.state.last_error = None
        self.state.failures = 0
        return stored

    async def close(self) -> None:
        """Log out (used by callers of sync_once; run() does it itself when cancelled)."""
        await self._close_session()

    # -- connection -------------------------------------------------------------------------

    async def _ensure_session(self) -> ImapSession:
        if self._session is not None and self._session.alive:
            return self._session
        self._drop_session()
        session, uidvalidity, _ = await open_session(self.config)
        try:
            if self.config.handled_folder:
                await session.ensure_folder(self.config.handled_folder)
            await self._load_cursor(uidvalidity)
            await self._repair_handled(session)
        except BaseException:
            session.close()
            raise
        if self._had_session:
            events().imap_reconnect()
        self._had_session = True
        self._session = session
        self.state.connected = True
        log.info(
            "IMAP connected: %s, folder %r, UIDVALIDITY %s",
            self.config.where,
            self.config.folder,
            uidvalidity,
        )
        return session

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self.state.connected = False

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        self.state.connected = False
        if session is not None:
            await session.logout()

    def _report(self, message: str, *, level: int = logging.WARNING, already_logged: bool = False) -> None:
        """Log a failure once per distinct problem, not once per retry."""
        self.state.failures += 1
        if message != self.state.last_error and not already_logged:
            log.log(level, "mail intake: %s (retrying with backoff)", message)
        elif message == self.state.last_error:
            log.debug("mail intake still failing (%d): %s", self.state.failures, message)
        self.state.last_error = message

    # -- the checkpoint ---------------------------------------------------------------------

    async def _load_cursor(self, uidvalidity: int) -> None:
        cursor = await MailCursor.get_or_none(mailbox=self.mailbox)
        if cursor is None:
            try:
                cursor = await MailCursor.create(mailbox=self.mailbox, uidvalidity=uidvalidity, last_uid=0)
            except IntegrityError:  # another process created it a moment ago
                cursor = await MailCursor.get(mailbox=self.mailbox)
        if cursor.uidvalidity != uidvalidity:
            if cursor.uidvalidity != 0:
                # The server renumbered the folder: old UIDs mean nothing now. Start over; the sha256
                # check keeps the messages we already have from being stored twice.
                log.warning(
                    "UIDVALIDITY of %s changed from %s to %s: re-reading the folder (already stored mail is skipped)",
                    self.mailbox,
                    cursor.uidvalidity,
                    uidvalidity,
                )
            await MailCursor.filter(id=cursor.id, uidvalidity=cursor.uidvalidity).update(
                uidvalidity=uidvalidity, last_uid=0
            )
            cursor = await MailCursor.get(id=cursor.id)
        self._uidvalidity = cursor.uidvalidity
        self._last_uid = cursor.last_uid

    async def _reload_cursor(self) -> None:
        cursor = await MailCursor.get(mailbox=self.mailbox)
        if cursor.uidvalidity != self._uidvalidity:
            raise ImapError(f"the checkpoint of {self.mailbox} changed UIDVALIDITY under us; reconnecting")
        self._last_uid = cursor.last_uid

    # -- syncing ----------------------------------------------------------------------------

    async def _repair_handled(self, session: ImapSession) -> None:
        """Finish marking mail that was committed but not yet flagged/moved when we last stopped."""
        if self._last_uid <= 0:
            return
        if self.config.handled_folder:
            criteria = ("UID", f"1:{self._last_uid}")
        else:
            criteria = ("UNKEYWORD", self.config.handled_flag, "UID", f"1:{self._last_uid}")
        pending = [u for u in await session.uid_search(*criteria) if u <= self._last_uid]
        for start in range(0, len(pending), self.config.batch_size):
            await session.mark_handled(pending[start : start + self.config.batch_size])
        if pending:
            log.info("marked %d already stored messages as handled on the server", len(pending))

    async def _sync(self, session: ImapSession) -> int:
        stored = 0
        await session.noop()  # lets the server notice mail that arrived while we were quiet
        while True:
            uids = await session.uid_search_after(self._last_uid)
            if not uids:
                return stored
            for start in range(0, len(uids), self.config.batch_size):
                chunk = uids[start : start + self.config.batch_size]
                sizes = await session.fetch_sizes(chunk)
                for group in split_by_bytes(chunk, sizes, self.config.batch_max_bytes):
                    if group[-1] <= self._last_uid:
                        continue  # another process got here first
                    stored += await self._ingest(session, group, sum(sizes.get(u, 0) for u in group))
                    await asyncio.sleep(0)  # a backlog must not starve the rest of the process

    async def _ingest(self, session: ImapSession, uids: list[int], expected_bytes: int) -> int:
        mails = await session.fetch_batch(uids, expected_bytes)
        missing = sorted(set(uids) - {m.uid for m in mails})
        if missing:
            # Expunged between SEARCH and FETCH by someone else: nothing left to store.
            log.warning("%s: UIDs %s vanished before they could be fetched", self.mailbox, missing[:20])
        new_last = max(uids)
        try:
            stored = await self._commit(mails, new_last)
        except _CursorMoved:
            await self._reload_cursor()
            log.info(
                "%s: another process advanced the checkpoint; continuing from UID %s",
                self.mailbox,
                self._last_uid,
            )
            return 0
        self._last_uid = new_last
        # Only now may the server-side state change: the bytes and the checkpoint are committed.
        await session.mark_handled([m.uid for m in mails])
        if stored:
            try:
                self.on_stored()
            except Exception:  # noqa: BLE001 - a hook bug must not stop intake
                log.exception("on_stored hook failed")
        return stored

    async def _commit(self, mails: list[FetchedMail], new_last: int) -> int:
        now = self.clock()
        hashes = {m.uid: hashlib.sha256(m.raw).hexdigest() for m in mails}
        async with in_transaction() as conn:
            # The guarded cursor update comes first: it claims the batch (a concurrent process sees 0
            # rows changed and backs off) and takes SQLite's write lock before any read.
            claimed = (
                await MailCursor.filter(
                    mailbox=self.mailbox, uidvalidity=self._uidvalidity, last_uid=self._last_uid
                )
                .using_db(conn)
                .update(last_uid=new_last, last_sync_at=now)
            )
            if not claimed:
                raise _CursorMoved
            if not mails:
                return 0
            have_uid = set(
                await RawMail.filter(
                    mailbox=self.mailbox, uidvalidity=self._uidvalidity, uid__in=[m.uid for m in mails]
                )
                .using_db(conn)
                .values_list("uid", flat=True)
            )
            have_sha = set(
                await RawMail.filter(sha256__in=list(set(hashes.values())))
                .using_db(conn)
                .values_list("sha256", flat=True)
            )
            rows: list[dict[str, object]] = []
            contents: dict[int, bytes] = {}  # uid -> bytes of the rows to insert
            for mail in mails:
                digest = hashes[mail.uid]
                if mail.uid in have_uid:
                    continue
                if digest in have_sha:
                    log.info(
                        "%s: UID %s skipped: the same bytes are already stored (sha256 %s)",
                        self.mailbox,
                        mail.uid,
                        digest[:16],
                    )
                    continue
                have_sha.add(digest)
                if len(mail.raw) > self.config.max_message_bytes:
                    log.warning(
                        "%s: UID %s is %d bytes, over MAX_MESSAGE_BYTES; stored anyway",
                        self.mailbox,
                        mail.uid,
                        len(mail.raw),
                    )
                contents[mail.uid] = mail.raw
                rows.append(
                    dict(
                        mailbox=self.mailbox,
                        uidvalidity=self._uidvalidity,
                        uid=mail.uid,
                        internal_date=mail.internal_date,
                        sha256=digest,
                        size=len(mail.raw),
                        status=RawMailStatus.STORED,
                    )
                )
            if rows:
                # Plain rows (models/store/fast_rows.py): this transaction holds the database while it runs, and
                # the processor waits for it, so nothing in it builds model instances.
                await _RAW_MAILS.insert_many(conn, rows)
                # The bytes go in their own table, keyed by the new ids (bulk_create does not set them
                # on every database): same transaction, so a mail is stored with its bytes or not at all.
                ids = await (
                    RawMail.filter(
                        mailbox=self.mailbox, uidvalidity=self._uidvalidity, uid__in=list(contents)
                    )
                    .using_db(conn)
                    .values_list("uid", "id")
                )
                await store_contents(conn, [(raw_id, contents[uid]) for uid, raw_id in ids])
        return len(rows)

    # -- waiting ----------------------------------------------------------------------------

    async def _wait_for_mail(self) -> None:
        session = await self._ensure_session()
        if self.config.use_idle and "IDLE" in session.capabilities:
            self.state.mode = "idle"
            # Returns on a push or after idle_seconds; either way the caller syncs, which also
            # renews IDLE before the server's 30-minute autologout.
            await session.idle_wait(self.config.idle_seconds)
        else:
            self.state.mode = "poll"
            await asyncio.sleep(self.config.poll_seconds)
