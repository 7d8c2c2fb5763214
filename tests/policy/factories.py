"""Small builders for policy tests: inbound mail values and stored clients/tickets."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from models.inbound import AttachmentInfo, InboundMessage, MessageKind
from models.policy import content_hash, month_key
from models.tables import Client, ClientAddress, Message, MessageDirection, Ticket, TicketStatus

AUTH_PASS = ("mx.storeolis.ru; dkim=pass header.d=romashka.ru header.s=mail; spf=pass "
             "smtp.mailfrom=romashka.ru; dmarc=pass header.from=romashka.ru")


def attachment(name: str = "scan.pdf", content: bytes = b"%PDF-1.4 invoice") -> AttachmentInfo:
    return AttachmentInfo(part_index=2, filename=name, content_type="application/pdf", size=len(content),
                          sha256=hashlib.sha256(content).hexdigest())


def make_message(**overrides: Any) -> InboundMessage:
    values: dict[str, Any] = dict(
        raw_size=2048, message_id="a1b2c3@mail.romashka.ru", in_reply_to=None, references=[],
        resent_message_id=None, from_name="Иван Петров", from_address="ivan@romashka.ru", reply_to=None,
        to=["support@storeolis.ru"], cc=[], delivered_to=["support@storeolis.ru"],
        subject="Не работает выгрузка заказов", date_header=None,
        text="", new_text="Здравствуйте! Со вчерашнего дня в личном кабинете не открывается раздел заказов, "
                          "страница выдаёт ошибку 502. Проверьте, пожалуйста.",
        quoted_text="", has_html=False, attachments=[], kind=MessageKind.REQUEST, kind_reason="",
        authentication_results=[],
    )
    values.update(overrides)
    if not values["text"]:
        values["text"] = values["new_text"]
    return InboundMessage(**values)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def make_client(name: str = "ООО «Ромашка»", *, addresses: tuple[str, ...] = ("ivan@romashka.ru",),
                      inn: str | None = None, contract: str | None = None, active: bool = True) -> Client:
    client = await Client.create(name=name, inn=inn, contract=contract, active=active)
    for value in addresses:
        await ClientAddress.create(client=client, value=value, is_domain=value.startswith("@"))
    return client


async def store_ticket(message: InboundMessage, arrived_at: datetime, *, client: Client | None = None,
                       status: TicketStatus = TicketStatus.NEW, counts: bool = True,
                       duplicate_of: Ticket | None = None) -> Ticket:
    """Store a ticket and its first message the way ingest does."""
    ticket = await Ticket.create(
        client=client, status=status, arrived_at=arrived_at, month_key=month_key(arrived_at, "Europe/Moscow"),
        counts_toward_limit=counts, subject=message.subject, sender_address=message.from_address,
        sender_name=message.from_name, content_hash=content_hash(message), duplicate_of=duplicate_of,
    )
    await Message.create(
        ticket=ticket, direction=MessageDirection.INBOUND, message_id=message.message_id,
        from_address=message.from_address, subject=message.subject, text=message.text,
        new_text=message.new_text,
        attachments=[{"filename": a.filename, "sha256": a.sha256, "size": a.size} for a in message.attachments],
    )
    return ticket


async def verdict_of(message: InboundMessage, *rules: type, at: datetime | None = None,
                     ticket_id: int | None = None, config: Any = None, data: Any = None) -> Any:
    """Run identification plus the given rules on `message` against the test database."""
    from models.policy import PolicyConfig, PolicyEngine, PolicyRequest, TortoisePolicyRepository
    from models.policy.rules.identification import IdentificationRule

    chain = tuple(dict.fromkeys((IdentificationRule, *rules)))
    engine = PolicyEngine(config or PolicyConfig(), TortoisePolicyRepository(), rules=chain, data=data)
    return await engine.evaluate(PolicyRequest(ticket_id, at or utc(2026, 11, 10, 9, 0), message))


def codes(verdict: Any) -> list[str]:
    return [str(f.code) for f in verdict.findings]


def finding(verdict: Any, code: str) -> Any:
    return next(f for f in verdict.findings if f.code == code)
