"""What the use cases are built from: their settings and the services they share.

`bot/app.py` (and the tests) build one `UseCaseConfig` and one `Services`, then the objects that use
them: `models.effects.Effects`, `models.ingest.Ingest`, `models.desk.Desk` (and `mail.processor`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.calendar import BusinessCalendar
from models.clock import utcnow
from models.inbound import InboundMessage
from models.policy import PolicyEngine
from models.ports import Mailer


@dataclass(frozen=True)
class UseCaseConfig:
    staff_chat_id: int
    support_address: str = "support@storeolis.ru"
    company_addresses: frozenset[str] = frozenset({"support@storeolis.ru"})
    language: str = "ru"
    timezone: str = "Europe/Moscow"
    sla_business_days: int = 5
    refusal_grace: timedelta = timedelta(seconds=30)
    monthly_limit: int = 3
    # Clause 2.3: every new request is told at once that it is registered and by when it is processed.
    acknowledge_requests: bool = True
    ack_max_per_hour: int = 5  # per sender address, rolling hour: a loop or a flood gets no more


@dataclass(frozen=True)
class Services:
    """The domain's services and ports, shared by ingest and the desk."""

    policy: PolicyEngine
    calendar: BusinessCalendar
    mailer: Mailer
    parser: Callable[[bytes], InboundMessage]
    clock: Callable[[], datetime] = utcnow
