"""Pacing of Telegram calls: one limiter shared by every sender task of the process.

Telegram's documented limits (Bot FAQ) are approximate and enforced by flood control (HTTP 429):
about 20 messages a minute in one group, about 1 a second in one chat, about 30 a second in all.
We stay under them instead of bouncing off them, so a burst of cards costs no 429 round trips.

Semantics:
* every chat: at most `chat_per_second` messages per second (Telegram asks for 1/s in any chat, and
  a group burst faster than that is throttled too: the fake server enforces it for groups as well);
* groups and channels (negative chat ids): at most `group_per_minute` in any sliding minute;
* the whole bot: at most `global_per_second` in any sliding second;
* `penalize(chat_id, retry_after)` after a 429: nothing goes to that chat, nor (for safety: flood
  control on one chat often means we are near the global limit) anywhere, until retry_after passed.

`time_scale` multiplies the window lengths, exactly like ``FakeTelegram.set_rate_limit(time_scale=)``
in the tests and the TELEGRAM_RATE_SCALE setting: 0.1 makes "per minute" 6 s and "per second" 0.1 s,
2.0 would stretch them. Use the same value on both sides. `retry_after` is NOT scaled: it is the real
number of seconds the server asked for (the fake also answers real, rounded-up seconds).

`slack` (real seconds, not scaled) is added to each window: our clock starts a window when we decide to
send, the server's when the request arrives, a few milliseconds later; without slack the next request
can arrive a hair too early and earn a 429.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic


def is_group_chat(chat_id: int) -> bool:
    """Negative ids are groups, supergroups and channels; positive ids are private chats (== user id)."""
    return chat_id < 0


class RateLimiter:
    def __init__(
        self,
        *,
        group_per_minute: int = 20,
        chat_per_second: int = 1,
        global_per_second: int = 30,
        time_scale: float = 1.0,
        slack: float = 0.05,
        clock: Callable[[], float] = monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if min(group_per_minute, chat_per_second, global_per_second) < 1:
            raise ValueError("limits must be at least 1")
        self.group_per_minute = group_per_minute
        self.chat_per_second = chat_per_second
        self.global_per_second = global_per_second
        self.time_scale = time_scale
        self._second = 1.0 * time_scale + slack
        self._minute = 60.0 * time_scale + slack
        self._clock = clock
        self._sleep = sleep
        self._chat_hits: dict[int, deque[float]] = {}
        self._global_hits: deque[float] = deque()
        self._chat_blocked_until: dict[int, float] = {}
        self._global_blocked_until = 0.0

    def delay(self, chat_id: int, is_group: bool | None = None) -> float:
        """Seconds to wait before one more message to `chat_id` fits every limit (0: now)."""
        if is_group is None:
            is_group = is_group_chat(chat_id)
        now = self._clock()
        self._prune(chat_id, now)
        hits = self._chat_hits.get(chat_id, ())
        waits = [
            self._global_blocked_until - now,
            self._chat_blocked_until.get(chat_id, 0.0) - now,
            _window_wait(self._global_hits, self.global_per_second, self._second, now),
            _window_wait(hits, self.chat_per_second, self._second, now),
        ]
        if is_group:
            waits.append(_window_wait(hits, self.group_per_minute, self._minute, now))
        return max(0.0, *waits)

    async def acquire(self, chat_id: int, is_group: bool | None = None) -> None:
        """Wait until a message to `chat_id` is allowed, then count it. Fair enough for our use:
        waiters sleep exactly until their computed time and re-check (no busy loop); the check and
        the count happen without an await in between, so concurrent tasks never over-book a window."""
        while True:
            wait = self.delay(chat_id, is_group)
            if wait <= 0:
                now = self._clock()
                self._chat_hits.setdefault(chat_id, deque()).append(now)
                self._global_hits.append(now)
                return
            await self._sleep(wait)

    async def wait_for_room(self, chat_id: int, is_group: bool | None = None) -> None:
        """Wait until a message to `chat_id` would be allowed, without counting one: the caller prepares
        the message (claims it, renders it) and `acquire`s just before sending, so the window starts
        when the request really leaves rather than a database round trip earlier."""
        while (wait := self.delay(chat_id, is_group)) > 0:
            await self._sleep(wait)

    def penalize(self, chat_id: int, retry_after: float) -> None:
        """After a 429: hold this chat and, for safety, every chat for `retry_after` real seconds."""
        until = self._clock() + max(0.0, retry_after)
        self._chat_blocked_until[chat_id] = max(self._chat_blocked_until.get(chat_id, 0.0), until)
        self._global_blocked_until = max(self._global_blocked_until, until)

    def _prune(self, chat_id: int, now: float) -> None:
        while self._global_hits and self._global_hits[0] <= now - self._second:
            self._global_hits.popleft()
        hits = self._chat_hits.get(chat_id)
        if hits is not None:
            keep = max(self._second, self._minute)
            while hits and hits[0] <= now - keep:
                hits.popleft()
            if not hits:
                del self._chat_hits[chat_id]  # many private chats must not grow the dict forever
        if self._chat_blocked_until.get(chat_id, now + 1) <= now:
            del self._chat_blocked_until[chat_id]


def _window_wait(hits: deque[float] | tuple[()], limit: int, window: float, now: float) -> float:
    """Seconds until one more hit fits `limit` per sliding `window` (<= 0 when it fits now)."""
    recent = [t for t in hits if t > now - window]
    if len(recent) < limit:
        return 0.0
    return recent[-limit] + window - now
