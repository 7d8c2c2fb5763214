"""Outages: notice that a part of the bridge keeps failing, say so once, and say when it recovers.

Every component already retries by itself with backoff (the watcher, the senders, the supervisor), so
a short hiccup needs nobody. What staff must hear about is a failure that LASTS: mail that cannot be
fetched or sent for minutes. `OutageReporter` keeps one small state per component:

* the first failing observation logs a warning (what is wrong);
* once it has been failing for `notify_after` seconds it logs an error and queues ONE staff-chat
  notice through the Telegram outbox, keyed ``outage:<component>:<start>`` (idempotent);
* the first healthy observation after that logs the recovery and queues ONE "recovered" notice.

Telegram itself cannot be reported in Telegram: its outages are logged only (``reportable=False``).
A database outage is posted only if the database accepts the notice while it lasts (it is an outbox
row); either way the log has it.

`watch_outages` is the watchdog task (supervised by bot/app.py) that probes the components' live
states every few seconds and feeds the reporter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from models.clock import utcnow
from models.intents import StaffNotice
from models.tables import EmailOutbox, MailCursor, OutboxStatus, TelegramOutbox

log = logging.getLogger(__name__)

# Posts a notice: (event "outage" | "recovered", facts, idempotency key).
PostNotice = Callable[[str, dict[str, Any], str], Awaitable[None]]

# A TelegramOutbox row with this last_error is waiting for its card, not failing.
_NOT_FAILURES = ("waiting for the ticket card to be posted",)


@dataclass
class OutageState:
    component: str
    failing_since: float | None = None  # monotonic time of the first failing observation
    started_at: datetime | None = None  # the same moment, wall clock (for the notice and its key)
    detail: str = ""
    reportable: bool = True
    logged_lasting: bool = False
    announced: bool = False  # the "outage" notice is queued

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "failing": self.failing,
            "since": self.started_at.isoformat() if self.started_at else None,
            "seconds": round(now - self.failing_since, 1) if self.failing_since is not None else 0,
            "detail": self.detail or None,
            "announced": self.announced,
        }


class OutageReporter:
    def __init__(
        self,
        *,
        notify_after: float,
        post: PostNotice | None = None,
        timezone: str = "UTC",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.notify_after = notify_after
        self.post = post
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self.wall_clock = wall_clock
        self.states: dict[str, OutageState] = {}
        # Recoveries of announced outages whose notice is still to be queued: (component, start, seconds).
        self._pending_recovered: list[tuple[str, datetime | None, float]] = []

    def observe(self, component: str, failing: bool, detail: str = "", *, reportable: bool = True) -> None:
        """Record what a probe saw now. Cheap and synchronous; `flush()` does the posting."""
        state = self.states.setdefault(component, OutageState(component, reportable=reportable))
        state.reportable = reportable
        now = self.clock()
        if failing:
            if state.failing_since is None:
                state.failing_since, state.started_at = now, self.wall_clock()
                log.warning("outage: %s is failing: %s", component, detail or "?")
            state.detail = detail or state.detail
            if not state.logged_lasting and now - state.failing_since >= self.notify_after:
                state.logged_lasting = True
                log.error(
                    "outage: %s has been failing for %.0f s: %s%s",
                    component,
                    now - state.failing_since,
                    state.detail or "?",
                    "" if reportable else " (not reported in Telegram: it is Telegram)",
                )
        elif state.failing_since is not None:
            lasted = now - state.failing_since
            log.warning("recovered: %s works again after %.0f s", component, lasted)
            if state.announced and self.post is not None:
                # Remembered as pending: flush() posts it (and retries if the database refuses).
                self._pending_recovered.append((component, state.started_at, lasted))
            self.states[component] = OutageState(component, reportable=reportable)

    async def flush(self) -> None:
        """Queue the notices that are due: outages that lasted, recoveries of announced outages."""
        if self.post is None:
            return
        now = self.clock()
        for state in list(self.states.values()):
            if (
                state.failing_since is None
                or state.announced
                or not state.reportable
                or now - state.failing_since < self.notify_after
            ):
                continue
            facts = {
                "component": state.component,
                "since": self._local(state.started_at),
                "minutes": max(1, round((now - state.failing_since) / 60)),
                "detail": state.detail[:500],
            }
            if await self._post("outage", facts, f"outage:{state.component}:{self._key_time(state.started_at)}"):
                state.announced = True
        queue = self._pending_recovered
        while queue:
            component, started_at, lasted = queue[0]
            facts = {"component": component, "minutes": max(1, round(lasted / 60))}
            if not await self._post("recovered", facts, f"recovered:{component}:{self._key_time(started_at)}"):
                break
            queue.pop(0)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: state.as_dict(now) for name, state in sorted(self.states.items())}

    def failing(self, *, lasting_only: bool = False) -> list[str]:
        now = self.clock()
        return [
            name
            for name, s in self.states.items()
            if s.failing_since is not None and (not lasting_only or now - s.failing_since >= self.notify_after)
        ]

    async def _post(self, event: str, facts: dict[str, Any], key: str) -> bool:
        assert self.post is not None
        try:
            await self.post(event, facts, key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be the thing that is down: try again next tick
            log.warning("outage: could not queue the %s notice for %s yet: %s", event, facts["component"], exc)
            return False
        log.info("outage: %s notice for %s queued for the staff chat", event, facts["component"])
        return True

    def _local(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%d.%m.%Y %H:%M:%S") if moment else ""

    @staticmethod
    def _key_time(moment: datetime | None) -> str:
        return moment.strftime("%Y%m%dT%H%M%S") if moment else "?"


# ---------------------------------------------------------------------------------------- probes


async def _retry_errors(outbox: type[EmailOutbox] | type[TelegramOutbox]) -> list[str]:
    """The last errors of the oldest rows (at most 20) waiting to be tried again in `outbox`."""
    return await (
        outbox.filter(status=OutboxStatus.PENDING, attempts__gt=0)
        .exclude(last_error=None)
        .order_by("id")
        .limit(20)
        .values_list("last_error", flat=True)
    )


async def probe(bridge: Any, reporter: OutageReporter, db_timeout: float = 10.0) -> None:
    """Read the live states of the components of a running `bot.app.Bridge` into the reporter."""
    watcher = bridge.watcher.state
    reporter.observe("imap", watcher.last_error is not None, watcher.last_error or "")

    for name, state in bridge.supervisor.states.items():
        # A supervised task that is not running is waiting to be restarted after a crash.
        reporter.observe(f"task:{name}", not state.running, state.last_error or "")

    try:
        async with asyncio.timeout(db_timeout):
            await MailCursor.all().limit(1).values_list("id", flat=True)
            email_errors = await _retry_errors(EmailOutbox)
            tg_rows = await _retry_errors(TelegramOutbox)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a locked or unreachable database is what we look for
        reporter.observe("database", True, f"{exc.__class__.__name__}: {exc}"[:300])
        return
    reporter.observe("database", False)

    connect_failures = int(getattr(bridge.email_sender, "_connect_failures", 0) or 0)
    if connect_failures:
        detail = getattr(bridge.email_sender, "outage_detail", "") or "cannot connect to the SMTP server"
        reporter.observe("smtp", True, f"{detail} ({connect_failures} attempts)"[:500])
    else:
        # A send cut short by our own restart is not the server's failure.
        failures = [e for e in email_errors if e and not e.startswith("interrupted")]
        reporter.observe("smtp", bool(failures), failures[0] if failures else "")

    errors = [e for e in tg_rows if e and not e.startswith(_NOT_FAILURES)]
    # Rows given back during an outage have their attempt refunded: the sender's own gate says it.
    down = int(getattr(bridge.telegram_sender, "outage_failures", 0) or 0)
    if down and not errors:
        errors = [f"Telegram does not answer ({down} probes)"]
    reporter.observe("telegram", bool(errors), errors[0] if errors else "", reportable=False)


def board_poster(desk: Any) -> PostNotice:
    """Notices go through the Telegram outbox like everything else (idempotent by key)."""

    async def post(event: str, facts: dict[str, Any], key: str) -> None:
        await desk.post(StaffNotice(event, facts), key)

    return post


async def watch_outages(bridge: Any, reporter: OutageReporter, interval: float | None = None) -> None:
    """The watchdog task: probe, then post what is due, every few seconds, until cancelled."""
    every = interval if interval is not None else max(0.5, min(10.0, reporter.notify_after / 4))
    while True:
        await probe(bridge, reporter)
        await reporter.flush()
        await asyncio.sleep(every)
