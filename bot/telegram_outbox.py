"""The one Telegram output path: delivers `TelegramOutbox` rows, paced and retried, exactly once.

The domain writes a row in the same transaction as the decision that caused it; this sender turns
rows into Bot API calls. The Bot API cannot list a chat's messages, so after a crash we cannot ask
Telegram whether a post went out: the only window in which a post can be doubled is between
Telegram's answer and our commit of its message id, and that commit is ONE transaction (the row
marked SENT with its message id, plus the ticket/message row that records it).

Row payload: an intent of the domain (models/intents.py: `{"intent": "card_changed", "ticket_id": 5}`),
rendered by the `render` callable after the row is claimed, just before the call, so what staff see is
the ticket as it is then; or a message the bot layer rendered already. `bot/views/delivery.shape` turns
either into this form (the intent under "render"), without a query::

    {"method": "sendMessage" | "editMessageText" | "editMessageReplyMarkup" | "sendDocument"
               | "sendPhoto" | "deleteMessage",
     "params": {aiogram kwargs except chat_id/message_id/reply_parameters/document/photo:
                text, parse_mode, reply_markup (Bot API JSON dict), caption, disable_notification,
                link_preview_options {"is_disabled": true}, ...},
     "render":   <intent payload>,              (params rendered just before sending by the `render`
                                                  callable; {"ticket_card": id} in rows of old versions)
     "reply_to": {"ticket_card": <ticket id>} | {"telegram_message_id": <int>},      (optional)
     "target":   {"ticket_card": <ticket id>} | {"telegram_message_id": <int>},      (edits, deletes)
     "record":   {"ticket_card": <ticket id>} | {"message_row": <Message id>},       (optional)
     "file":     {"raw_mail_eml": <RawMail id>, "filename": "..."}
               | {"raw_mail_attachment": [<RawMail id>, <part index>]}
               | {"text": "...", "filename": "message.txt"}}                        (documents, photos)

Order: rows of one chat are taken in id order; a row that cannot go yet (not due, waiting for its
card, backing off after a failure of its own) holds back every later row that touches the same ticket
or message, so an older edit is never applied after a newer one, and ONLY those: the other rows go on
(no head-of-line blocking). Flood control (429) holds the whole chat for exactly `retry_after`. A
digest row ("kind": "digest") goes before everything else of its chat.

Failures (models/backoff.py): a 5xx, a network error or a timeout may be Telegram's or the row's. The
sender asks Telegram at once with a cheap `getMe`: when that answers, the failure was the row's and
the row backs off alone (by its own attempts, capped at `backoff_max`); when it does not, it is an
outage, counted once for the whole sender: the row goes back due at once (attempt given back), no row
is tried until the gate's next `getMe` probe, and the probe that succeeds resumes every chat at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import (
    DeleteMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    GetMe,
    SendDocument,
    SendMessage,
    SendPhoto,
)
from aiogram.methods.base import TelegramMethod
from aiogram.types import (
    BufferedInputFile,
    ForceReply,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
)
from aiogram.types.base import TelegramObject
from tortoise.exceptions import BaseORMException, DoesNotExist, IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.i18n import plural, t
from bot.ratelimit import RateLimiter, is_group_chat
from bot.text import html_to_text, truncate_utf16
from bot.views.delivery import shape
from bot.views.messages import INTERACTIVE
from mail.parse import extract_attachment
from models.aio import raise_if_cancelling
from models.backoff import Outage, capped_delay
from models.clock import as_utc, utcnow
from models.metrics_port import events
from models.store.claims import claim_row
from models.tables import Message, OutboxStatus, RawMailContent, TelegramOutbox, Ticket

log = logging.getLogger(__name__)

PASS_SECONDS = 10.0  # the longest a chat's pass runs before it looks again (rows of other processes)
MAX_TEXT = 4096  # characters after entity parsing, counted in UTF-16 code units
MAX_CAPTION = 1024



class SentMessage(TelegramObject):
    """What the sender needs of a message Telegram answers with: its number. The rest of the answer is
    kept as extra fields, unvalidated. aiogram's full `Message` nests most of the Bot API: building its
    schema cost ~0.6 s of the event loop's CPU on the first post, in the middle of a backlog
    (docs/benchmarks.md, item 15)."""

    message_id: int


# The methods we post with, answering with SentMessage instead of Message; the requests are unchanged.
class _SendMessage(SendMessage):
    __returning__ = SentMessage


class _EditMessageText(EditMessageText):
    __returning__ = SentMessage | bool


class _EditMessageReplyMarkup(EditMessageReplyMarkup):
    __returning__ = SentMessage | bool


class _SendDocument(SendDocument):
    __returning__ = SentMessage


class _SendPhoto(SendPhoto):
    __returning__ = SentMessage


_METHODS: dict[str, type[TelegramMethod[Any]]] = {
    "sendMessage": _SendMessage,
    "editMessageText": _EditMessageText,
    "editMessageReplyMarkup": _EditMessageReplyMarkup,
    "sendDocument": _SendDocument,
    "sendPhoto": _SendPhoto,
    "deleteMessage": DeleteMessage,
}
_TARGETED = frozenset({"editMessageText", "editMessageReplyMarkup", "deleteMessage"})
_FILE_FIELD = {"sendDocument": "document", "sendPhoto": "photo"}
_OPEN = (OutboxStatus.PENDING, OutboxStatus.SENDING)
_GAVE_UP = (OutboxStatus.FAILED, OutboxStatus.CANCELLED)
_WAITING_FOR_CARD = "waiting for the ticket card to be posted"
_FLOOD = "429 "  # last_error of a row waiting out flood control: its whole chat waits
_OUTAGE = "outage: "  # last_error of a row given back because Telegram as a whole failed
_SERVER_WIDE = (
    TelegramServerError,
    TelegramNetworkError,
    TelegramUnauthorizedError,
    TelegramConflictError,
    ClientDecodeError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)



def default_digest_text(language: str) -> Callable[[int], str]:
    """The digest posted before a burst of new cards, in the UI language (plural rules: bot/i18n.py)."""

    def digest(count: int) -> str:
        return t("msg.burst_digest", language, count=count, noun=plural("noun.new_request", count, language))

    return digest


class _Outcome(enum.Enum):
    DONE = "done"  # finished (sent, dropped or failed for good)
    SKIPPED = "skipped"  # another worker claimed it
    WAIT = "wait"  # cannot go yet (its card is not posted); later rows of the same ticket wait too
    RETRY = "retry"  # outage or flood control: stop this chat for this pass
    BACKOFF = "backoff"  # this row failed alone and backs off; the chat's other rows go on


class TelegramSender:
    def __init__(
        self,
        bot: Bot,
        *,
        limiter: RateLimiter,
        clock: Callable[[], datetime] = utcnow,
        on_failed: Callable[[TelegramOutbox, str], Awaitable[None]] | None = None,
        digest_threshold: int = 10,
        digest_text: Callable[[int], str] | None = None,
        staff_chat_id: int | None = None,
        language: str = "ru",
        poll_interval: float = 2.0,
        request_timeout: float = 60.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        card_wait: float = 1.0,
        batch_size: int = 500,
        shutdown_grace: float = 10.0,
        lease_seconds: float | None = None,
        render: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        """`lease_seconds`: while a row is SENDING its `not_before` holds the claim time; a claim
        older than this belongs to a dead process and `recover()` (at start and every so often) puts
        it back. None means this is the only sender process: every SENDING row found at start is a
        leftover of the previous run (the single-process default); with several processes pass a
        lease well above one send (several `request_timeout`s). `backoff_base`/`backoff_max`: first
        step and cap of the outage gate and of one row's own backoff (OUTBOX_MAX_BACKOFF_SECONDS)."""
        self.bot = bot
        self.limiter = limiter
        self.clock = clock
        self.on_failed = on_failed
        self.digest_threshold = digest_threshold
        self.digest_text = digest_text or default_digest_text(language)
        self.staff_chat_id = staff_chat_id
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.card_wait = card_wait
        self.batch_size = batch_size
        self.shutdown_grace = shutdown_grace
        self.lease_seconds = lease_seconds
        self.render = render  # fills the params of rows whose shape has "render" (the domain's intents)
        self._outage = Outage(base=backoff_base, cap=backoff_max, clock=clock)
        self._probe_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._wakes = 0  # counts wake() calls: a long pass ends early to pick up new rows (see _process_chat)
        self._workers: dict[int, asyncio.Task[int]] = {}
        self._stopping = False

    # ------------------------------------------------------------------------------------ loop

    @property
    def outage_failures(self) -> int:
        """Failed tries of the current Telegram outage (0: none); read by bot/outages.py."""
        return self._outage.failures

    def wake(self) -> None:
        """Call after committing new rows: the loop looks at once instead of at the next poll."""
        self._wakeup.set()
        self._wakes += 1

    async def run(self) -> None:
        """Deliver rows until cancelled: one worker task per chat with due rows, so a group paced at
        20 a minute never holds back a private alert."""
        await self.recover()
        self._stopping = False
        loop = asyncio.get_running_loop()
        last_recover = loop.time()
        try:
            while True:
                raise_if_cancelling()
                self._wakeup.clear()
                try:
                    if self.lease_seconds is not None and loop.time() - last_recover >= min(
                        self.lease_seconds / 2, 60.0
                    ):
                        # A peer that died leaves rows SENDING: pick them up once their lease ends.
                        await self.recover()
                        last_recover = loop.time()
                    await self._ensure_digest()
                    for chat_id in await self._due_chats():
                        worker = self._workers.get(chat_id)
                        if worker is None or worker.done():
                            worker = asyncio.create_task(self._process_chat(chat_id, yielding=True))
                            worker.add_done_callback(self._worker_done)
                            self._workers[chat_id] = worker
                    timeout = await self._sleep_time()
                except Exception:
                    log.exception("telegram outbox: database error in the scheduling loop; retrying")
                    timeout = self.poll_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup.wait()
        finally:
            await self._stop_workers()

    async def recover(self, lease_seconds: float | None = None) -> int:
        """Rows left SENDING by a dead process go back to PENDING. We cannot know whether Telegram got
        them (the one-write window): they may be posted twice, which is the accepted cost.

        Only rows claimed longer ago than the lease (`lease_seconds`, else the constructor's) are
        taken: a live peer's row in flight is never stolen. Without any lease, every SENDING row."""
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        query = TelegramOutbox.filter(status=OutboxStatus.SENDING)
        if lease is not None:
            query = query.filter(not_before__lte=self.clock() - timedelta(seconds=lease))
        stuck = await query.values_list("id", flat=True)
        if not stuck:
            return 0
        query = TelegramOutbox.filter(id__in=list(stuck), status=OutboxStatus.SENDING)
        if lease is not None:
            query = query.filter(not_before__lte=self.clock() - timedelta(seconds=lease))
        count = await query.update(status=OutboxStatus.PENDING, not_before=self.clock())
        log.warning(
            "telegram outbox: %d row(s) were being sent when the previous process stopped (ids %s); "
            "sending them again, a duplicate post is possible",
            count,
            ", ".join(map(str, stuck[:20])),
        )
        return count

    async def drain(self) -> int:
        """One pass over the due rows (every chat concurrently); returns how many rows finished."""
        await self._ensure_digest()
        chats = await self._due_chats()
        done = await asyncio.gather(*(self._process_chat(chat_id) for chat_id in chats))
        return sum(done)

    def _worker_done(self, task: asyncio.Task[int]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("telegram outbox: chat worker crashed", exc_info=task.exception())
        elif task.result() > 0:
            self.wake()  # it made progress: there may be more

    async def _stop_workers(self) -> None:
        # Let a request in flight finish and commit its message id: cancelling it between
        # Telegram's answer and our commit is exactly the window that doubles a post.
        self._stopping = True
        workers = [w for w in self._workers.values() if not w.done()]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.shutdown_grace)
            for worker in pending:
                worker.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._workers.clear()

    async def _due_chats(self) -> list[int]:
        rows = (
            await TelegramOutbox.filter(status=OutboxStatus.PENDING, not_before__lte=self.clock())
            .distinct()
            .values_list("chat_id", flat=True)
        )
        return list(rows)

    async def _sleep_time(self) -> float:
        # Only rows due in the future set an earlier wake-up: a due row that could not go (held
        # behind a waiting row, claimed by another process) would otherwise make the loop spin.
        now = self.clock()
        if self._outage.wait() > 0:
            return max(0.01, min(self._outage.wait(), self.backoff_max))  # until the next probe
        first = (
            await TelegramOutbox.filter(status=OutboxStatus.PENDING, not_before__gt=now)
            .order_by("not_before")
            .first()
            .values_list("not_before", flat=True)
        )
        if first is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.01, (as_utc(first) - now).total_seconds()))

    # ---------------------------------------------------------------------------------- outage

    async def _gate_open(self) -> bool:
        """False while an outage waits for its next probe; at the probe time, one `getMe` decides
        for every chat (the lock: one probe, not one per chat worker)."""
        if not self._outage.active:
            return True
        if self._outage.wait() > 0:
            return False
        async with self._probe_lock:
            if not self._outage.active:
                return True  # another worker's probe succeeded meanwhile
            if self._outage.wait() > 0:
                return False  # another worker's probe failed meanwhile
            return await self._probe()

    async def _probe(self) -> bool:
        """Ask Telegram something cheap; True when it answers (the outage, if any, is over)."""
        try:
            async with asyncio.timeout(min(self.request_timeout, 10.0)):
                await self.bot(GetMe())
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of the probe means: still down
            delay = self._outage.failed()
            log.warning("telegram outbox: Telegram does not answer (%s: %s); failure %d of this outage, "
                        "retry in %.1fs with a getMe probe", type(error).__name__, error,
                        self._outage.failures, delay)
            return False
        lasted = self._outage.succeeded()
        if lasted is not None:
            log.info("telegram outbox: Telegram answers again after %.1fs; resuming every chat", lasted)
        return True

    # ---------------------------------------------------------------------------------- digest

    async def _ensure_digest(self) -> None:
        """Before a burst of cards, one short message tells the staff what is coming. Keyed by the
        first card of the burst, and skipped while the oldest pending card is still covered by the
        last digest, so a restart in the middle of a burst does not announce it again."""
        if self.staff_chat_id is None or self.digest_threshold <= 0:
            return
        cards = (
            await TelegramOutbox.filter(chat_id=self.staff_chat_id, kind="card", status=OutboxStatus.PENDING)
            .order_by("id")
            .values_list("id", flat=True)
        )
        if len(cards) <= self.digest_threshold:
            return
        latest = (
            await TelegramOutbox.filter(chat_id=self.staff_chat_id, kind="digest").order_by("-id").first()
        )
        if latest is not None:
            covers = latest.payload.get("covers") or [0, 0]
            if covers[1] >= cards[0]:
                return
        try:
            await TelegramOutbox.create(
                idempotency_key=f"digest:{cards[0]}",
                kind="digest",
                chat_id=self.staff_chat_id,
                payload={
                    "method": "sendMessage",
                    "params": {"text": self.digest_text(len(cards))},
                    "covers": [cards[0], cards[-1]],
                },
                not_before=self.clock(),
            )
        except IntegrityError:
            pass  # another process wrote it first
        else:
            log.info("telegram outbox: %d cards queued for the staff chat; digest posted first", len(cards))

    # ------------------------------------------------------------------------------ one chat

    async def _process_chat(self, chat_id: int, *, yielding: bool = False) -> int:
        """One pass over a chat's open rows. The answers to staff actions (INTERACTIVE kinds: a keyboard
        swap, a prompt, a command's answer) go first, as they went straight to Telegram before they went
        through the outbox: a burst of cards at 20 a minute must not hold them back. `yielding` (the run
        loop): a pass that has lasted a while ends after a row when new rows were queued (a wake here, a
        peer's rows after PASS_SECONDS), so they are looked at without waiting for the whole batch."""
        if not await self._gate_open():
            return 0
        rows = (
            await TelegramOutbox.filter(chat_id=chat_id, status__in=_OPEN)
            .order_by("id")
            .limit(self.batch_size)
        )
        if len(rows) >= self.batch_size:  # answers beyond the batch still go first
            seen = {r.id for r in rows}
            rows += [r for r in await TelegramOutbox.filter(chat_id=chat_id, status__in=_OPEN, kind__in=INTERACTIVE)
                     .order_by("id").limit(50) if r.id not in seen]
        rows.sort(key=lambda r: (r.kind != "digest", r.kind not in INTERACTIVE, r.id))
        held: set[tuple[Any, ...]] = set()
        finished = 0
        loop = asyncio.get_running_loop()
        started, wakes = loop.time(), self._wakes
        for row in rows:
            if self._stopping or self._outage.active:
                break
            lasted = loop.time() - started
            if yielding and lasted >= 1.0 and (self._wakes != wakes or lasted >= PASS_SECONDS):
                break
            keys = _order_keys(row)
            blocking = keys & held
            card_of = _card_ticket(row)
            if card_of is not None:
                # A card never waits behind rows of its own ticket: they may be waiting for it
                # (an edit written before its card would otherwise hold it back forever).
                blocking.discard(("ticket", card_of))
            if blocking:
                continue
            if row.status == OutboxStatus.PENDING and as_utc(row.not_before) > self.clock():
                if (row.last_error or "").startswith(_FLOOD):
                    # Flood control is the chat's, not the row's: the whole chat waits it out, or
                    # cards of other tickets would overtake it and the burst would lose its order.
                    break
                # Scheduled for later, waiting for its card, or backing off after a failure of its
                # own: only its ticket waits, every other row goes on (no head-of-line blocking).
                held |= keys
                continue
            if row.status != OutboxStatus.PENDING:
                held |= keys  # being sent by another worker
                continue
            try:
                outcome = await self._deliver(row)
            except Exception:
                # A database error or a bug: leave the row for the next pass, stop this chat.
                log.exception("telegram outbox: row %s (%s) could not be processed", row.id, row.kind)
                await self._release(
                    row, self._backoff(row.attempts + 1), "internal error", refund=False, also_pending=True
                )
                break
            if outcome is _Outcome.DONE:
                finished += 1
            elif outcome in (_Outcome.WAIT, _Outcome.BACKOFF):
                held |= keys
            elif outcome is _Outcome.RETRY:
                break
            elif outcome is _Outcome.SKIPPED:
                held |= keys  # another process claimed it just now: later rows of its ticket wait
        return finished

    async def _deliver(self, row: TelegramOutbox) -> _Outcome:
        payload = shape(row.payload)
        method_name = payload.get("method")
        if method_name not in _METHODS:
            return await self._fail_unclaimed(row, f"unknown method {method_name!r}")
        params: dict[str, Any] = dict(payload.get("params") or {})
        chat_id = row.chat_id
        note: str | None = None

        # References to the ticket card: wait for it, or fall back when it will never exist.
        target_id: int | None = None
        try:
            target = await self._resolve(payload.get("target"), row) if method_name in _TARGETED else None
            reply = await self._resolve(payload["reply_to"], row) if payload.get("reply_to") else None
        except (ValueError, KeyError, TypeError) as error:
            return await self._fail_unclaimed(row, f"bad reference: {error!r}")
        if method_name in _TARGETED:
            ref = target
            if ref is _Outcome.WAIT:
                return await self._wait(row)
            if ref is None:
                return await self._finish_unclaimed(row, "dropped: the message to change was never posted")
            chat_id, target_id = ref
        reply_to_id: int | None = None
        if payload.get("reply_to"):
            ref = reply
            if ref is _Outcome.WAIT:
                return await self._wait(row)
            if ref is None:
                note = "sent without reply: the card was never posted"
            else:
                reply_to_id = ref[1]

        # Not counted yet: only once the message is rendered and built (below), at the moment it is sent.
        # A window counted from here could let a request that was slow to prepare arrive at Telegram
        # inside the previous window (measured: one 429 in 200 cards while a backlog was being ingested).
        await self.limiter.wait_for_room(chat_id, is_group_chat(chat_id))
        # While SENDING, `not_before` is the claim time: the lease recover() reads. Guarded update,
        # plus FOR UPDATE SKIP LOCKED on PostgreSQL (models/store/claims.py).
        claimed = await claim_row(
            TelegramOutbox,
            row.id,
            where={"status": OutboxStatus.PENDING},
            changes={"status": OutboxStatus.SENDING, "attempts": F("attempts") + 1, "not_before": self.clock()},
            undo={"status": OutboxStatus.PENDING, "attempts": F("attempts") - 1},
        )
        if not claimed:
            return _Outcome.SKIPPED
        row.attempts += 1

        if payload.get("render") is not None:
            # Rendered now, after the claim: what staff see is the ticket as it is at posting time.
            try:
                if self.render is None:
                    raise ValueError("this row must be rendered, and the sender has no renderer")
                params = {**await self.render(payload["render"]), **params}
            except (BaseORMException, OSError) as error:
                if isinstance(error, DoesNotExist):
                    return await self._fail(row, f"bad payload: nothing to render: {error}")
                # The database hiccuped (locked, connection lost): a later attempt renders it.
                await self._release(row, self._backoff(row.attempts), f"render: {error!r}", refund=True)
                return _Outcome.RETRY
            except Exception as error:  # noqa: BLE001 - a row we cannot render is our bug, reported
                log.error("telegram outbox: row %s cannot be rendered: %r", row.id, error)
                return await self._fail(row, f"bad payload: {error}")
        try:
            if method_name in _FILE_FIELD:
                params[_FILE_FIELD[method_name]] = await self._load_file(payload.get("file"))
            if target_id is not None:
                params["message_id"] = target_id
            if reply_to_id is not None:
                params["reply_parameters"] = ReplyParameters(
                    message_id=reply_to_id, allow_sending_without_reply=True
                )
            method = _build(method_name, chat_id, params)
        except Exception as error:  # noqa: BLE001 - a malformed row is our bug, reported, not retried
            log.error("telegram outbox: row %s has a bad payload: %s", row.id, error)
            return await self._fail(row, f"bad payload: {error}")

        await self.limiter.acquire(chat_id, is_group_chat(chat_id))
        result, error_note = await self._call_with_fallbacks(row, method, chat_id)
        if isinstance(result, _Outcome):
            return result
        message_id = result.message_id if isinstance(result, SentMessage) else target_id
        await self._commit_sent(row, message_id, error_note or note)
        return _Outcome.DONE

    async def _call_with_fallbacks(
        self, row: TelegramOutbox, method: TelegramMethod[Any], chat_id: int
    ) -> tuple[Any, str | None]:
        """Call Telegram; on a fixable 400 retry once with plain or shortened text. Returns
        (result, note) on success or (an _Outcome, None) when the row was settled otherwise."""
        tried: set[str] = set()
        note: str | None = None
        while True:
            try:
                async with asyncio.timeout(self.request_timeout):
                    return await self.bot(method), note
            except TelegramRetryAfter as error:
                self.limiter.penalize(chat_id, error.retry_after)
                events().telegram_flood(float(error.retry_after))
                log.warning("telegram outbox: flood control, row %s waits %ss", row.id, error.retry_after)
                await self._release(
                    row, float(error.retry_after), f"{_FLOOD}retry after {error.retry_after}", refund=True
                )
                return _Outcome.RETRY, None
            except TelegramBadRequest as error:
                text = error.message
                lowered = text.lower()
                if "message is not modified" in lowered:
                    return None, "not modified"
                if "message to edit not found" in lowered or "message to delete not found" in lowered:
                    await self._commit_sent(row, None, f"done without effect: {text}")
                    return _Outcome.DONE, None
                if "can't parse entities" in lowered and "plain" not in tried:
                    tried.add("plain")
                    log.error(
                        "telegram outbox: row %s: Telegram refused our HTML (%s); sending it as plain text",
                        row.id,
                        text,
                    )
                    method = _as_plain(method)
                    note = f"sent as plain text: {text}"
                elif ("message is too long" in lowered or "caption is too long" in lowered) and (
                    "short" not in tried
                ):
                    tried.add("short")
                    log.error("telegram outbox: row %s is too long for Telegram; truncating", row.id)
                    method = _as_plain(method, truncate=True)
                    note = f"truncated: {text}"
                else:
                    return await self._fail(row, text), None
                await self.limiter.acquire(chat_id, is_group_chat(chat_id))
            except TelegramForbiddenError as error:
                return await self._fail(row, error.message), None
            except TelegramMigrateToChat as error:
                return await self._fail(row, f"the group became supergroup {error.migrate_to_chat_id}"), None
            except TelegramEntityTooLarge as error:  # before TelegramNetworkError: it subclasses it
                return await self._fail(row, f"file too large: {error.message}"), None
            except _SERVER_WIDE as error:
                # A bad token (401/409), a 5xx, the network: Telegram's trouble or this row's?
                return await self._after_failure(row, f"{type(error).__name__}: {error}"[:500]), None
            except TelegramAPIError as error:  # 404 and any other answer we do not know
                return await self._fail(row, f"{type(error).__name__}: {error.message}"), None

    # --------------------------------------------------------------------------- references

    async def _resolve(self, ref: Any, row: TelegramOutbox) -> tuple[int, int] | _Outcome | None:
        """(chat id, message id) of a reference; WAIT while its card is still to be posted; None
        when the card will never exist (its row failed or was cancelled, or there is none)."""
        if not isinstance(ref, dict):
            raise ValueError(f"bad reference {ref!r}")
        if "telegram_message_id" in ref:
            return row.chat_id, int(ref["telegram_message_id"])
        ticket_id = int(ref["ticket_card"])
        ticket = await Ticket.filter(id=ticket_id).only("id", "card_chat_id", "card_message_id").first()
        if ticket is None:
            return None
        if ticket.card_message_id is not None:
            return (ticket.card_chat_id or row.chat_id), ticket.card_message_id
        card_rows = await TelegramOutbox.filter(ticket_id=ticket_id).exclude(id=row.id)
        card_rows = [r for r in card_rows if _card_ticket(r) == ticket_id]
        if any(r.status not in _GAVE_UP for r in card_rows):
            return _Outcome.WAIT
        return None

    async def _load_file(self, spec: Any) -> BufferedInputFile:
        if not isinstance(spec, dict):
            raise ValueError(f"bad file {spec!r}")
        if "text" in spec:
            return BufferedInputFile(str(spec["text"]).encode("utf-8"), spec.get("filename") or "message.txt")
        if "raw_mail_eml" in spec:
            raw = await RawMailContent.get(id=int(spec["raw_mail_eml"]))
            return BufferedInputFile(bytes(raw.content), spec.get("filename") or f"mail-{raw.id}.eml")
        if "raw_mail_attachment" in spec:
            raw_id, part_index = spec["raw_mail_attachment"]
            raw = await RawMailContent.get(id=int(raw_id))
            # Parsing a big mail is CPU work: keep it off the event loop.
            filename, _, content = await asyncio.to_thread(
                extract_attachment, bytes(raw.content), int(part_index)
            )
            return BufferedInputFile(content, spec.get("filename") or filename)
        raise ValueError(f"unknown file kind {sorted(spec)}")

    # ------------------------------------------------------------------------------- writes

    async def _commit_sent(self, row: TelegramOutbox, message_id: int | None, note: str | None) -> None:
        """THE one write after Telegram answered: the row and what records its message id, together.
        Retried a few times (a locked SQLite, a PostgreSQL failover): giving up here means a restart
        may post this again."""
        record = shape(row.payload).get("record") or {}
        for attempt in range(5):
            try:
                async with in_transaction() as conn:
                    await (
                        TelegramOutbox.filter(id=row.id, status=OutboxStatus.SENDING)
                        .using_db(conn)
                        .update(
                            status=OutboxStatus.SENT,
                            result_message_id=message_id,
                            sent_at=self.clock(),
                            last_error=note,
                        )
                    )
                    arrived = None
                    if message_id is not None and "ticket_card" in record:
                        await (
                            Ticket.filter(id=int(record["ticket_card"]))
                            .using_db(conn)
                            .update(card_message_id=message_id, card_chat_id=row.chat_id)
                        )
                        found = await (Ticket.filter(id=int(record["ticket_card"])).using_db(conn)
                                       .values_list("arrived_at", flat=True))
                        arrived = found[0] if found else None
                    elif message_id is not None and "message_row" in record:
                        await (
                            Message.filter(id=int(record["message_row"]))
                            .using_db(conn)
                            .update(telegram_message_id=message_id)
                        )
                if arrived is not None:  # a new card (an edit records no ticket_card): arrival to card
                    events().card_posted((self.clock() - as_utc(arrived)).total_seconds())
                return
            except Exception:
                if attempt == 4:
                    log.exception(
                        "telegram outbox: row %s was delivered (message %s) but could not be "
                        "recorded; a restart may post it again",
                        row.id,
                        message_id,
                    )
                    raise
                await asyncio.sleep(capped_delay(attempt + 1, base=0.2, cap=1.6))

    async def _release(
        self, row: TelegramOutbox, delay: float, reason: str, *, refund: bool, also_pending: bool = False
    ) -> None:
        """Back to PENDING, due after `delay` seconds. refund: a 429 is not a failed attempt."""
        changes: dict[str, Any] = {
            "status": OutboxStatus.PENDING,
            "not_before": self.clock() + timedelta(seconds=delay),
            "last_error": reason[:2000],
        }
        if refund:
            changes["attempts"] = F("attempts") - 1
        statuses = _OPEN if also_pending else (OutboxStatus.SENDING,)
        await TelegramOutbox.filter(id=row.id, status__in=statuses).update(**changes)

    async def _after_failure(self, row: TelegramOutbox, reason: str) -> _Outcome:
        """A failure that may be Telegram's as a whole: the `getMe` probe tells. Telegram answers:
        the row backs off alone and the chat goes on. It does not: an outage, counted once for the
        sender; the row is due again at once (its attempt given back) and waits behind the gate."""
        if self._outage.active or not await self._probe():
            log.warning("telegram outbox: row %s failed while Telegram is down (%s); it goes first when "
                        "Telegram answers again", row.id, reason)
            await self._release(row, 0.0, _OUTAGE + reason, refund=True)
            return _Outcome.RETRY
        delay = self._backoff(row.attempts)
        log.warning(
            "telegram outbox: row %s, attempt %d failed (%s) while Telegram answers otherwise; "
            "this row alone retries in %.1fs",
            row.id, row.attempts, reason, delay,
        )  # fmt: skip
        await self._release(row, delay, reason, refund=False)
        return _Outcome.BACKOFF

    async def _wait(self, row: TelegramOutbox) -> _Outcome:
        await TelegramOutbox.filter(id=row.id, status=OutboxStatus.PENDING).update(
            not_before=self.clock() + timedelta(seconds=self.card_wait), last_error=_WAITING_FOR_CARD
        )
        return _Outcome.WAIT

    async def _finish_unclaimed(self, row: TelegramOutbox, note: str) -> _Outcome:
        changed = await TelegramOutbox.filter(id=row.id, status=OutboxStatus.PENDING).update(
            status=OutboxStatus.SENT, sent_at=self.clock(), last_error=note
        )
        if changed:
            log.info("telegram outbox: row %s (%s) %s", row.id, row.kind, note)
        return _Outcome.DONE if changed else _Outcome.SKIPPED

    async def _fail_unclaimed(self, row: TelegramOutbox, reason: str) -> _Outcome:
        changed = await TelegramOutbox.filter(id=row.id, status=OutboxStatus.PENDING).update(
            status=OutboxStatus.SENDING
        )
        if not changed:
            return _Outcome.SKIPPED
        return await self._fail(row, reason)

    async def _fail(self, row: TelegramOutbox, reason: str) -> _Outcome:
        """Permanent failure: FAILED, logged, and the caller's on_failed (it may tell the staff) in the
        same transaction, so the warning is written exactly when the failure is."""
        async with in_transaction():
            await TelegramOutbox.filter(id=row.id, status=OutboxStatus.SENDING).update(
                status=OutboxStatus.FAILED, last_error=reason[:2000]
            )
            row.status, row.last_error = OutboxStatus.FAILED, reason
            if self.on_failed is not None:
                try:
                    async with in_transaction():  # a savepoint: a failing handler undoes only its own writes
                        await self.on_failed(row, reason)
                except Exception:
                    log.exception("telegram outbox: on_failed for row %s raised", row.id)
        log.warning(
            "telegram outbox: row %s (%s to chat %s) failed: %s", row.id, row.kind, row.chat_id, reason
        )
        if self.on_failed is not None:
            self.wake()  # what it queued is committed now
        return _Outcome.DONE

    def _backoff(self, attempts: int) -> float:
        """One row's own backoff: by its attempts, capped at `backoff_max`, jittered."""
        return capped_delay(max(attempts, 1), base=self.backoff_base, cap=self.backoff_max)


# ---------------------------------------------------------------------------------- helpers



def _refs(payload: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    for name in ("target", "reply_to", "record"):
        ref = payload.get(name)
        if isinstance(ref, dict):
            yield ref


def _order_keys(row: TelegramOutbox) -> set[tuple[Any, ...]]:
    """What a row must stay in order with: its ticket, the tickets and messages it refers to.
    Rows without any (notices) keep their order among themselves."""
    keys: set[tuple[Any, ...]] = set()
    if row.kind == "digest":
        return {("digest",)}
    if row.ticket_id is not None:
        keys.add(("ticket", row.ticket_id))
    for ref in _refs(shape(row.payload)):
        if "ticket_card" in ref:
            keys.add(("ticket", int(ref["ticket_card"])))
        if "telegram_message_id" in ref:
            keys.add(("message", int(ref["telegram_message_id"])))
    return keys or {("misc",)}


def _card_ticket(row: TelegramOutbox) -> int | None:
    record = shape(row.payload).get("record")
    if isinstance(record, dict) and record.get("ticket_card") is not None:
        return int(record["ticket_card"])
    return None


def _markup(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "inline_keyboard" in value:
        return InlineKeyboardMarkup.model_validate(value)
    if "keyboard" in value:
        return ReplyKeyboardMarkup.model_validate(value)
    if "remove_keyboard" in value:
        return ReplyKeyboardRemove.model_validate(value)
    if "force_reply" in value:
        return ForceReply.model_validate(value)
    raise ValueError(f"unknown reply_markup {sorted(value)}")


def _build(method_name: str, chat_id: int, params: dict[str, Any]) -> TelegramMethod[Any]:
    params = dict(params)
    if "reply_markup" in params:
        params["reply_markup"] = _markup(params["reply_markup"])
    if isinstance(params.get("link_preview_options"), dict):
        params["link_preview_options"] = LinkPreviewOptions.model_validate(params["link_preview_options"])
    return _METHODS[method_name](chat_id=chat_id, **params)


def _as_plain(method: TelegramMethod[Any], truncate: bool = False) -> TelegramMethod[Any]:
    """The same request without parse mode: text (or caption) turned into what the reader would see."""
    field, limit = ("caption", MAX_CAPTION) if hasattr(method, "caption") else ("text", MAX_TEXT)
    value = getattr(method, field, None)
    if not isinstance(value, str):
        return method
    parse_mode = getattr(method, "parse_mode", None)
    plain = html_to_text(value) if isinstance(parse_mode, str) and parse_mode.lower() == "html" else value
    if truncate:
        plain = truncate_utf16(plain.strip(), limit)
    entities_field = "caption_entities" if field == "caption" else "entities"
    # parse_mode=None explicitly: leaving it unset would let a bot-wide default parse mode come back.
    return method.model_copy(update={field: plain, "parse_mode": None, entities_field: None})
