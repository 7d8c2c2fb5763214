"""`GET /metrics` on HEALTH_PORT: the desk in the Prometheus text format (prometheus-client).

The bridge owns one `CollectorRegistry` (never the library's global one: a second Bridge in the same
process, as tests build them, must not collide or count twice). Two kinds of values:

- counters bumped where the events happen, through the domain's port (models/metrics_port.py): requests
  registered, decisions by action, findings by code. In memory, per process, reset at restart, as
  Prometheus counters are meant to be (`rate()` handles the reset).
- gauges read at scrape time (`DatabaseGauges`): outbox depth and oldest pending age per channel and
  the quarantined mail, one cheap aggregate query each, so they are the database's truth whichever
  process did the work; and the seconds since the mail watcher's last sync (the process's own state,
  the same value /health shows).

prometheus-client collectors are synchronous, the database is not: the handler awaits `refresh()` and
then renders the registry, so a scrape never blocks the event loop on a query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.clock import as_utc, utcnow
from models.store.sql import datetime_from_db, for_dialect
from models.tables import EmailOutbox, OutboxStatus, RawMail, RawMailStatus, Ticket, TicketStatus

log = logging.getLogger(__name__)

# Waiting to leave: pending rows and the ones an attempt is on (a crash can leave them "sending").
_WAITING = (str(OutboxStatus.PENDING), str(OutboxStatus.SENDING))
_OUTBOXES = {"telegram": "telegram_outbox", "email": "email_outbox"}
_CREATED_AT = EmailOutbox._meta.fields_map["created_at"]


class DomainCounters:
    """The domain's events (models.metrics_port.DomainEvents) as Prometheus counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("storeolis_requests_registered", "New requests registered as tickets.",
                                registry=registry)
        self.decisions = Counter("storeolis_decisions", "Staff decisions committed, by outcome.",
                                 ["outcome"], registry=registry)
        self.findings_total = Counter("storeolis_findings", "Policy findings on registered requests, by code.",
                                      ["code"], registry=registry)

        self.sla_alerts = Counter("storeolis_sla_alerts", "SLA alerts queued, by threshold (a repeated breach counts as breach).",
                                  ["threshold"], registry=registry)
        self.smtp_failures = Counter("storeolis_smtp_failures", "Failed SMTP attempts, by class and what followed.",
                                     ["kind", "outcome"], registry=registry)
        self.imap_reconnects = Counter("storeolis_imap_reconnects", "New IMAP sessions after a lost one.",
                                       registry=registry)
        self.card_latency = Histogram(
            "storeolis_card_latency_seconds", "From a request's arrival in the mailbox to its card in the staff chat.",
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 86400), registry=registry)
        self.floods = Counter("storeolis_telegram_flood_waits", "Telegram 429 answers (flood control).",
                              registry=registry)
        self.flood_seconds = Counter("storeolis_telegram_flood_wait_seconds",
                                     "Seconds Telegram's 429 answers told a chat to wait.", registry=registry)

    def card_posted(self, seconds: float) -> None:
        self.card_latency.observe(max(seconds, 0.0))

    def telegram_flood(self, retry_after: float) -> None:
        self.floods.inc()
        self.flood_seconds.inc(max(retry_after, 0.0))

    def sla_alert(self, threshold: str) -> None:
        self.sla_alerts.labels(threshold=threshold.split(":", 1)[0]).inc()

    def smtp_failure(self, kind: str, outcome: str) -> None:
        self.smtp_failures.labels(kind=kind, outcome=outcome).inc()

    def imap_reconnect(self) -> None:
        self.imap_reconnects.inc()

    def requests_registered(self, count: int) -> None:
        if count:
            self.requests.inc(count)

    def findings(self, codes: Iterable[str]) -> None:
        for code in codes:
            self.findings_total.labels(code=code).inc()

    def decided(self, action: str) -> None:
        self.decisions.labels(outcome=action).inc()


class DatabaseGauges(Collector):
    """Gauges from the database and the watcher, computed by `refresh()` at scrape time."""

    def __init__(self, last_sync: Callable[[], datetime | None]) -> None:
        self.last_sync = last_sync
        self.outbox: dict[str, tuple[int, float | None]] = {}
        self.quarantined: int | None = None
        self.breached: int | None = None
        self.sync_age: float | None = None

    async def refresh(self) -> None:
        now = utcnow()
        db = RawMail._meta.db
        outbox: dict[str, tuple[int, float | None]] = {}
        for channel, table in _OUTBOXES.items():
            _, rows = await db.execute_query(
                for_dialect(f"SELECT COUNT(*), MIN(created_at) FROM {table} WHERE status IN (?, ?)", db),  # noqa: S608 - fixed names
                list(_WAITING),
            )
            count, oldest = int(rows[0][0]), rows[0][1]
            age = (now - as_utc(datetime_from_db(oldest, _CREATED_AT))).total_seconds() if oldest else None
            outbox[channel] = (count, max(age, 0.0) if age is not None else None)
        _, rows = await db.execute_query(
            for_dialect("SELECT COUNT(*) FROM raw_mail WHERE status = ?", db), [str(RawMailStatus.QUARANTINED)]
        )
        # Indexed (status, sla_due_at): a count over the waiting requests only.
        self.breached = await Ticket.filter(status=TicketStatus.NEW, sla_due_at__lt=now).count()
        self.outbox, self.quarantined = outbox, int(rows[0][0])
        synced = self.last_sync()
        self.sync_age = max((now - as_utc(synced)).total_seconds(), 0.0) if synced else None

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("storeolis_outbox_depth", "Outbox rows waiting to leave (pending or sending).",
                                  labels=["channel"])
        age = GaugeMetricFamily("storeolis_outbox_oldest_pending_seconds",
                                "Age of the oldest outbox row waiting to leave (0 when none waits).",
                                labels=["channel"])
        for channel, (count, oldest) in sorted(self.outbox.items()):
            depth.add_metric([channel], count)
            age.add_metric([channel], oldest or 0.0)
        yield depth
        yield age
        if self.quarantined is not None:
            yield GaugeMetricFamily("storeolis_quarantined_mail", "Mails quarantined (kept, not turned into tickets).",
                                    value=self.quarantined)
        if self.breached is not None:
            yield GaugeMetricFamily("storeolis_sla_breached_open",
                                    "Requests still waiting for a first decision past their deadline (2.3).",
                                    value=self.breached)
        if self.sync_age is not None:  # no sample before the first sync: absent() alerts on it
            yield GaugeMetricFamily("storeolis_mailbox_sync_age_seconds",
                                    "Seconds since the mail watcher last synced the mailbox.", value=self.sync_age)


class BridgeMetrics:
    """The bridge's registry: the domain counters and the scrape-time gauges."""

    def __init__(self, last_sync: Callable[[], datetime | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.counters = DomainCounters(self.registry)
        self.gauges = DatabaseGauges(last_sync)
        self.registry.register(self.gauges)

    async def render(self) -> tuple[bytes, str]:
        """(body, content type) of one scrape. A database that does not answer leaves its gauges out
        (stale values would lie); the counters are still served."""
        try:
            async with asyncio.timeout(10):
                await self.gauges.refresh()
        except Exception as exc:  # noqa: BLE001 - a scrape answers even while the database is down
            log.warning("metrics: database gauges unavailable: %s: %s", exc.__class__.__name__, exc)
            self.gauges.outbox, self.gauges.quarantined, self.gauges.breached = {}, None, None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def bridge_metrics(bridge: Any) -> BridgeMetrics:
    """Metrics of a running `bot.app.Bridge` (its watcher's last sync)."""
    return BridgeMetrics(lambda: bridge.watcher.state.last_sync_at)
