"""Where the domain (and the mail adapters) tell monitoring what happened: a tiny port bot/metrics.py fills.

models/ knows nothing of Prometheus: it calls `events()` after a commit, and the default sink does
nothing (the CLI, tests of the domain, a process without /metrics). The calls are on hot paths (one per
registered ticket), so an implementation must only bump in-memory counters: no I/O, no queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class DomainEvents(Protocol):
    def requests_registered(self, count: int) -> None:
        """`count` new tickets were committed."""

    def findings(self, codes: Iterable[str]) -> None:
        """The policy's findings (their codes) on a newly registered ticket."""

    def decided(self, action: str) -> None:
        """A staff decision was committed (the Decision row's action: accepted, refused, ...)."""

    def sla_alert(self, threshold: str) -> None:
        """An SLA alert was queued (the threshold's code: "50", "breach", "breach:2" ...)."""

    def smtp_failure(self, kind: str, outcome: str) -> None:
        """An SMTP attempt failed: `kind` its class (connect, server, recipient, rejected, invalid,
        network), `outcome` what the outbox does (retrying or failed)."""

    def imap_reconnect(self) -> None:
        """The mail watcher opened a new IMAP session after losing one."""

    def card_posted(self, seconds: float) -> None:
        """A new request's card reached the staff chat, `seconds` after the mail arrived in the mailbox."""

    def telegram_flood(self, retry_after: float) -> None:
        """Telegram answered 429: the chat waits `retry_after` seconds."""


class _Nothing:
    def requests_registered(self, count: int) -> None:
        pass

    def findings(self, codes: Iterable[str]) -> None:
        pass

    def decided(self, action: str) -> None:
        pass

    def sla_alert(self, threshold: str) -> None:
        pass

    def smtp_failure(self, kind: str, outcome: str) -> None:
        pass

    def imap_reconnect(self) -> None:
        pass

    def card_posted(self, seconds: float) -> None:
        pass

    def telegram_flood(self, retry_after: float) -> None:
        pass


_sink: DomainEvents = _Nothing()


def install(sink: DomainEvents | None) -> None:
    """Route the domain's events to `sink` (None: back to nothing). Called once at the bridge's start."""
    global _sink
    _sink = sink if sink is not None else _Nothing()


def events() -> DomainEvents:
    return _sink
