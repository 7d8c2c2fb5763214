"""SLA alerts (clause 2.3): who hears about a request before its 5-business-day deadline passes.

Cheap and prompt: each waiting ticket carries `next_alert_at`, the moment its next alert is due, so the
scheduler's query is an indexed range scan (`status = new AND next_alert_at <= now`), not a walk over
every ticket. A request that is already past a threshold when it arrives has `next_alert_at` in the past
and is alerted on the next tick (seconds, not the next daily run). Each threshold fires once per ticket,
across restarts: the `SlaAlert` (ticket, threshold) pair is unique and written in the same transaction
as the alert's outbox row. A decided request is no longer `new`, so it never matches.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from models.calendar import BusinessCalendar
from models.clock import as_utc
from models.intents import CardChanged, StaffNotice
from models.metrics_port import events
from models.post_queue import queue_post
from models.sla_rules import Threshold, format_time_left, threshold_fire_time
from models.tables import Client, KeyValue, SlaAlert, StaffMember, TelegramOutbox, Ticket, TicketStatus

log = logging.getLogger(__name__)

BREACH = "breach"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SlaConfig:
    thresholds: tuple[Threshold, ...]
    breach_repeat: timedelta = timedelta(hours=4)
    staff_chat_id: int = 0
    oncall_chat_id: int | None = None
    language: str = "ru"
    digest_time: str = "09:30"  # local time of the morning digest, on working days; "off": none
    rotation_path: Path | None = None


class SlaPlanner:
    """Pure arithmetic: when is the next alert of a ticket due, given what already fired."""

    def __init__(self, calendar: BusinessCalendar, config: SlaConfig) -> None:
        self.calendar = calendar
        self.config = config

    def fire_times(self, arrived_at: datetime, deadline: datetime) -> dict[str, datetime]:
        return {
            t.code: threshold_fire_time(self.calendar, arrived_at, deadline, t)
            for t in self.config.thresholds
        }

    def next_alert_at(
        self, arrived_at: datetime, deadline: datetime, fired: dict[str, datetime]
    ) -> datetime | None:
        # Stored in UTC: SQLite compares datetimes as text, so one offset everywhere keeps order right.
        pending = [when for code, when in self.fire_times(arrived_at, deadline).items() if code not in fired]
        if pending:
            return min(pending).astimezone(UTC)
        breaches = [when for code, when in fired.items() if code.startswith(BREACH)]
        if breaches and any(t.code == BREACH for t in self.config.thresholds):
            return (max(breaches) + self.config.breach_repeat).astimezone(UTC)  # remind until someone acts
        return None


@dataclass(frozen=True)
class AlertTarget:
    chat_id: int
    mention: str  # "@user" or "" — used when the alert goes to a group instead of a direct message
    staff_id: int | None


class SlaService:
    def __init__(
        self,
        config: SlaConfig,
        *,
        calendar: BusinessCalendar,
        clock: Callable[[], datetime],
        on_post_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.calendar = calendar
        self.planner = SlaPlanner(calendar, config)
        self.clock = clock
        self.on_post_queued = on_post_queued

    # ---------------------------------------------------------------------------------------------
    async def schedule_new(self, limit: int = 500) -> int:
        """Give waiting tickets without a plan their first `next_alert_at` (new arrivals)."""
        # Never-planned tickets have no alert yet; a ticket whose alerts are all spent keeps its rows.
        rows = (
            await Ticket.filter(status=TicketStatus.NEW, next_alert_at=None, sla_due_at__not_isnull=True)
            .filter(sla_alerts__id__isnull=True)
            .limit(limit)
        )
        planned = 0
        for ticket in rows:
            when = self.planner.next_alert_at(as_utc(ticket.arrived_at), as_utc(ticket.sla_due_at), {})
            if when is not None:
                await Ticket.filter(id=ticket.id, next_alert_at=None).update(next_alert_at=when)
                planned += 1
            await self._warn_beyond_calendar(as_utc(ticket.sla_due_at))
        return planned

    async def run_due(self, limit: int = 200) -> int:
        """Fire every alert whose time has come; returns how many alerts were queued."""
        now = self.clock()
        await self.schedule_new()
        due = (
            await Ticket.filter(status=TicketStatus.NEW, next_alert_at__lte=now)
            .order_by("next_alert_at")
            .limit(limit)
        )
        fired_count = 0
        target = await self.resolve_target(now)
        for ticket in due:
            fired_count += await self._fire(ticket, now, target)
        if fired_count:
            self.on_post_queued()
        return fired_count

    async def _fire(self, ticket: Ticket, now: datetime, target: AlertTarget) -> int:
        arrived, deadline = as_utc(ticket.arrived_at), as_utc(ticket.sla_due_at)
        fired = await self._fired(ticket.id)
        times = self.planner.fire_times(arrived, deadline)
        codes = [
            code
            for code, when in sorted(times.items(), key=lambda kv: kv[1])
            if code not in fired and when <= now
        ]
        if not codes and BREACH in fired:
            repeat_no = 1 + sum(1 for c in fired if c.startswith(f"{BREACH}:"))
            codes = [f"{BREACH}:{repeat_no}"]
        async with in_transaction():
            # Claim the ticket's due alert: only one scheduler (or process) fires it.
            claimed = await Ticket.filter(
                id=ticket.id, status=TicketStatus.NEW, next_alert_at=ticket.next_alert_at
            ).update(next_alert_at=None)
            if not claimed or not codes:
                return 0
            for code in codes:
                await SlaAlert.create(ticket_id=ticket.id, threshold=code, fired_at=now)
                fired[code] = now
            # After downtime several thresholds can be due at once: one alert names the latest.
            code = codes[-1]
            client = await Client.get_or_none(id=ticket.client_id) if ticket.client_id else None
            facts: dict[str, Any] = {
                "ticket_id": ticket.id,
                "threshold": code,
                "breached": code.startswith(BREACH),
                "client": client.name if client else "",
                "sender": ticket.sender_address,
                "subject": ticket.subject,
                "deadline": deadline.isoformat(),
                "time_left": format_time_left(self.calendar, now, deadline, self.config.language),
                "mention": target.mention,
            }
            # An assigned ticket's alerts go to its assignee first; a breach goes to on-call as well.
            targets = [target]
            holder = await self._holder(ticket)
            if holder is not None:
                targets = [holder] + ([target] if code.startswith(BREACH) and target.staff_id != holder.staff_id
                                      else [])
            for i, each in enumerate(targets):
                # Answers the card only in the chat the card lives in (the staff chat), not in a DM.
                alert = StaffNotice("sla_alert", {**facts, "mention": each.mention}, ticket_id=ticket.id,
                                    reply_to_card=each.chat_id == self.config.staff_chat_id)
                key = f"sla:{ticket.id}:{code}" + (":oncall" if i else "")
                await queue_post(alert, key, chat_id=each.chat_id, not_before=now, kind="alert")
            next_at = self.planner.next_alert_at(arrived, deadline, fired)
            await Ticket.filter(id=ticket.id).update(next_alert_at=next_at)
            if code.startswith(BREACH):
                await queue_post(CardChanged(ticket.id), f"edit:sla:{ticket.id}:{code}",
                                 chat_id=self.config.staff_chat_id, not_before=now)
        log.info("SLA alert %s for ticket #%s to chat %s", code, ticket.id, target.chat_id)
        events().sla_alert(code)
        return 1

    async def _fired(self, ticket_id: int) -> dict[str, datetime]:
        return {a.threshold: as_utc(a.fired_at) for a in await SlaAlert.filter(ticket_id=ticket_id)}

    # ---------------------------------------------------------------------------------------------
    async def resolve_target(self, now: datetime) -> AlertTarget:
        """The on-call agent by direct message when they have started the bot; otherwise the on-call
        chat (or the staff chat) with a mention."""
        agent = await StaffMember.filter(is_oncall=True).first()
        if agent is None:
            agent = await self._from_rotation(now)
        group = self.config.oncall_chat_id or self.config.staff_chat_id
        if agent is None:
            return AlertTarget(group, "", None)
        if agent.started_bot:
            return AlertTarget(agent.telegram_id, "", agent.id)
        mention = f"@{agent.username}" if agent.username else agent.name
        return AlertTarget(group, mention, agent.id)

    async def _holder(self, ticket: Ticket) -> AlertTarget | None:
        """The assignee as an alert target: by direct message when they started the bot, else a mention."""
        if not ticket.assignee_id:
            return None
        agent = await StaffMember.get_or_none(id=ticket.assignee_id)
        if agent is None:
            return None
        if agent.started_bot:
            return AlertTarget(agent.telegram_id, "", agent.id)
        mention = f"@{agent.username}" if agent.username else agent.name
        return AlertTarget(self.config.staff_chat_id, mention, agent.id)

    async def _from_rotation(self, now: datetime) -> StaffMember | None:
        path = self.config.rotation_path
        if path is None or not path.exists():
            return None
        username = rotation_for(load_rotation(path), self.calendar.local_date(now))
        if not username:
            return None
        return await StaffMember.filter(username=username.lstrip("@")).first()

    async def _warn_beyond_calendar(self, deadline: datetime) -> None:
        """Once per year: deadlines past the decreed calendar data use bare holidays only."""
        day = self.calendar.local_date(deadline)
        if not self.calendar.beyond_verified(day):
            return
        key = f"calendar_beyond_verified:{day.year}"
        _, created = await KeyValue.get_or_create(
            key=key, defaults={"value": {"warned_at": self.clock().isoformat()}}
        )
        if created:
            log.warning(
                "SLA deadlines in %s use a calendar without the government's weekend transfers "
                "(verified through %s): check CONFIG_DIR/calendar.toml",
                day.year,
                self.calendar.verified_through,
            )
            notice = StaffNotice(
                "calendar_beyond_verified",
                {"year": day.year, "verified_through": self.calendar.verified_through},
            )
            await queue_post(notice, key, chat_id=self.config.staff_chat_id, not_before=self.clock(), kind="notice")

    # ---------------------------------------------------------------------------------------------
    async def morning_digest(self) -> bool:
        """On working days at `digest_time`, the on-call agent gets the requests at risk (once a day). Never
        when `digest_time` is "off"."""
        if self.config.digest_time == "off":
            return False
        now = self.clock()
        local = self.calendar.to_local(now)
        today = local.date()
        if not self.calendar.is_working_day(today) or local.strftime("%H:%M") < self.config.digest_time:
            return False
        key = f"digest:{today.isoformat()}"
        if await TelegramOutbox.filter(idempotency_key=key).exists():
            return False
        horizon = self.calendar.add_business_days(now, 1)
        at_risk = (
            await Ticket.filter(status=TicketStatus.NEW, sla_due_at__lte=horizon)
            .order_by("sla_due_at")
            .limit(30)
        )
        items = [
            {
                "ticket_id": t.id,
                "subject": t.subject,
                "sender": t.sender_address,
                "time_left": format_time_left(self.calendar, now, as_utc(t.sla_due_at), self.config.language),
            }
            for t in at_risk
        ]
        target = await self.resolve_target(now)
        digest = StaffNotice("sla_digest", {"items": items, "date": today.isoformat(), "mention": target.mention})
        # To the on-call target's chat, which need not be the staff chat.
        await queue_post(digest, key, chat_id=target.chat_id, not_before=now, kind="digest")
        self.on_post_queued()
        return True


def load_rotation(path: Path) -> dict[str, Any]:
    """Rotation file (TOML): `[weekly] mon = "@ivanov" ...` and/or `[dates] "2026-12-31" = "@petrov"`."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    weekly = {k.lower()[:3]: str(v) for k, v in data.get("weekly", {}).items()}
    unknown = set(weekly) - set(WEEKDAYS)
    if unknown:
        raise ValueError(f"{path}: unknown weekday(s) {sorted(unknown)}; use mon..sun")
    dates = {date.fromisoformat(str(k)): str(v) for k, v in data.get("dates", {}).items()}
    return {"weekly": weekly, "dates": dates}


def rotation_for(rotation: dict[str, Any], day: date) -> str | None:
    return rotation["dates"].get(day) or rotation["weekly"].get(WEEKDAYS[day.weekday()])

