"""`python -m bot explain N|FILE.eml [--json]`: the policy findings of a stored ticket, or a dry run of a
raw email against the current database and rules (nothing is stored), for operators tuning word lists."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.factory import make_parser, make_policy
from bot.settings import CoreSettings
from models.clock import as_utc, utcnow
from models.inbound import MalformedMessage
from models.policy import PolicyRequest, Verdict
from models.store.raw_store import load_content
from models.tables import Message, MessageDirection, Ticket


async def explain(settings: CoreSettings, target: str, *, as_json: bool) -> int:
    policy = make_policy(settings)
    parser = make_parser(settings)
    if target.lstrip("#").isdigit():
        ticket = await Ticket.get_or_none(id=int(target.lstrip("#")))
        if ticket is None:
            print(f"error: no ticket #{target.lstrip('#')}", file=sys.stderr)
            return 1
        first = await Message.filter(ticket_id=ticket.id, direction=MessageDirection.INBOUND).order_by("id").first()
        raw = await load_content(first.raw_mail_id) if first and first.raw_mail_id else None
        if raw is None:
            verdict = Verdict.from_json(ticket.verdict)
        else:
            message = parser(raw)
            verdict = await policy.evaluate(PolicyRequest(ticket.id, as_utc(ticket.arrived_at), message))
        header = {"ticket": ticket.id, "status": ticket.status.value, "sender": ticket.sender_address}
    else:
        path = Path(target)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        try:
            message = parser(data)
        except MalformedMessage as exc:
            print(f"error: {path}: the email would be quarantined: {exc}", file=sys.stderr)
            return 1
        verdict = await policy.evaluate(PolicyRequest(None, utcnow(), message))
        header = {"file": str(path), "sender": message.from_address, "kind": message.kind.value}
    report = {**header, **verdict.to_json()}
    if as_json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    else:
        _print_human(report, verdict, settings.LANGUAGE)
    return 0


def _print_human(report: dict[str, Any], verdict: Verdict, language: str) -> None:
    """The report in the UI language (labels only: codes, clauses and evidence stay as the JSON has them)."""
    from bot.i18n import t

    for key in ("ticket", "file", "status", "sender", "kind"):
        if key in report:
            print(f"{t('explain.' + key, language)}: {report[key]}")
    client = verdict.client
    found = t("explain.client_line", language, name=client.name, inn=client.inn or "-", by=client.matched_by) \
        if client else "-"
    print(f"{t('explain.client', language)}: {found}")
    print(f"{t('explain.suggestion', language)}: {verdict.suggestion}"
          + (f" ({verdict.refuse_reason})" if verdict.refuse_reason else ""))
    if not verdict.findings:
        print(f"{t('explain.findings', language)}: {t('explain.none', language)}")
    clause = t("explain.clause", language)
    for finding in verdict.findings:
        title = finding.title_ru if language == "ru" else finding.title_en
        evidence = json.dumps(finding.evidence, ensure_ascii=False, default=str)
        print(f"- {finding.code} [{finding.severity}] {clause} {finding.clause}: {title} {evidence}")
