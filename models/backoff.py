"""Retry delays of the outboxes: capped, jittered, and counted per outage rather than per row.

Two kinds of failure meet an outbox, and they must not share one counter:

* a failure of the server as a whole (cannot connect, a timeout, the server's own 4xx/5xx): every row
  would fail the same way, so it is counted ONCE per outage by an `Outage` gate; while it is closed the
  sender tries no row, only a cheap probe at the gate's time, and a probe that succeeds reopens it for
  every row at once. Ten rows queued during an outage do not climb ten exponents.
* a failure of one row (a refused recipient, a message Telegram will not take): that row backs off
  alone, by its own attempts, and the others keep going.

Both delays are capped (`cap`, about a minute in production) and use "equal jitter": a random point
in the upper half of the step, so retries stay spread out yet never come sooner than half the step.
Nothing here knows of SMTP or Telegram.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from models.clock import utcnow


def capped_delay(failures: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` consecutive failures (1 = the first): base * 2**(failures-1),
    at most `cap`, jittered into [step/2, step]."""
    step = min(cap, base * 2 ** max(0, min(failures - 1, 30)))
    return step / 2 + (rng or random).uniform(0, step / 2)


class Outage:
    """One server's outage: how many probes failed in a row, and when the next probe is due."""

    def __init__(
        self,
        *,
        base: float,
        cap: float,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self.rng = rng or random.Random()
        self.failures = 0  # consecutive server-wide failures; 0 = no outage
        self.since: datetime | None = None  # first failure of the current outage
        self.retry_at: datetime | None = None  # no attempt before this while the outage lasts

    @property
    def active(self) -> bool:
        return self.failures > 0

    def failed(self) -> float:
        """Count one failure of the server as a whole; returns the seconds until the next probe."""
        now = self.clock()
        self.failures += 1
        if self.since is None:
            self.since = now
        delay = capped_delay(self.failures, base=self.base, cap=self.cap, rng=self.rng)
        self.retry_at = now + timedelta(seconds=delay)
        return delay

    def succeeded(self) -> float | None:
        """The server answered: the outage (if any) is over. Returns how long it lasted, or None."""
        lasted = (self.clock() - self.since).total_seconds() if self.since is not None else None
        self.failures, self.since, self.retry_at = 0, None, None
        return lasted

    def wait(self) -> float:
        """Seconds until a probe may be made (0 when none is pending or it is due)."""
        if self.retry_at is None:
            return 0.0
        return max(0.0, (self.retry_at - self.clock()).total_seconds())
