"""2.6: more than 3 requests in a calendar month.

The month is the calendar month in the company's time zone (config.timezone) at arrival time: a mail
that arrives at 2026-11-30 22:30 UTC is a December request in Moscow. Only tickets stored with
counts_toward_limit=True count (the workflow clears it for duplicates, auto-replies and follow-ups);
refused ones count unless config.count_refused is False. The position is by arrival (arrived_at,
then ticket id), so re-evaluating an old ticket gives the same "n of 3" as on the day it arrived.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from models.policy.base import Finding, FindingCode, PolicyContext, PolicyRequest, Rule


def month_key(dt: datetime, tz: str) -> str:
    """"2026-12" for the calendar month of `dt` (aware) in time zone `tz`."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("month_key needs an aware datetime")
    return dt.astimezone(ZoneInfo(tz)).strftime("%Y-%m")


class MonthlyLimitRule(Rule):
    code = FindingCode.MONTHLY_LIMIT
    clause = "2.6"
    title_ru = "Превышен лимит обращений в месяц"
    title_en = "Monthly request limit exceeded"

    async def check(self, req: PolicyRequest, ctx: PolicyContext) -> list[Finding]:
        if ctx.client is None:
            return []  # the limit is per client; an unknown sender is handled by identification
        cfg = ctx.config
        month = month_key(req.arrived_at, cfg.timezone)
        earlier = await ctx.repository.count_earlier_in_month(
            ctx.client.client_id, month, req.arrived_at, req.ticket_id, cfg.count_refused)
        counts = True if req.ticket_id is None else await ctx.repository.counts_toward_limit(req.ticket_id)
        if counts is False:
            ctx.month_count = earlier  # this one is not a request of its own (e.g. stored as a duplicate)
            return []
        ctx.month_count = earlier + 1
        if ctx.month_count <= cfg.monthly_limit:
            return []
        return [self.finding({"count": ctx.month_count, "limit": cfg.monthly_limit, "month": month,
                              "offer": "paid, by separate agreement"})]
