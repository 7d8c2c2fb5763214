"""Issue 20 item 6: every new request gets one "registered" email at once (clause 2.3: its number and the
deadline of its first processing; 2.5: the FAQ links its policy matched), threaded to the client's mail and
marked Auto-Submitted; never to auto-replies, mailing lists, bounces or our own addresses; at most
ACK_MAX_PER_HOUR per sender address in a rolling hour, inside one ingest group too. The same through the
running process: tests/test_process.py::test_a_new_request_is_acknowledged_through_the_running_process."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from models.clock import as_utc
from models.tables import EmailOutbox, Message, MessageDirection, StaffMember, Ticket
from tests.helpers.desk import Desk, email_text, make_email
from tests.test_ingest_groups import store, use_groups

CORPUS = Path(__file__).parent / "corpus"


def headers(row: EmailOutbox) -> email.message.EmailMessage:
    return email.message_from_bytes(bytes(row.content), policy=email.policy.default)  # type: ignore[return-value]


async def staff() -> StaffMember:
    member, _ = await StaffMember.get_or_create(telegram_id=Desk.ALICE, defaults={"name": "Алиса"})
    return member


def local_deadline(ticket: Ticket) -> str:
    assert ticket.sla_due_at is not None
    return as_utc(ticket.sla_due_at).astimezone(ZoneInfo("Europe/Moscow")).strftime("%d.%m.%Y %H:%M")


async def test_a_new_request_gets_one_threaded_acknowledgement_with_its_deadline(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Re: Не работает выгрузка заказов",
                                               message_id="req-1@romashka.ru"))
        assert ticket is not None
        [ack] = await desk.emails(ticket.id, with_ack=True)
        assert ack.event == "acknowledged" and ack.idempotency_key == f"ack:{ticket.id}"
        msg = headers(ack)
        assert msg["Subject"] == f"Обращение [#{ticket.id}] зарегистрировано: Не работает выгрузка заказов"
        assert msg["In-Reply-To"] == "<req-1@romashka.ru>"
        assert msg["References"] == "<req-1@romashka.ru>"
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["To"].addresses[0].addr_spec == "ivan@romashka.ru"
        text = email_text(ack)
        assert f"не позднее {local_deadline(ticket)} (по московскому времени)" in text
        assert "п. 2.3" in text and "инструкциях" not in text  # no FAQ matched: no links paragraph
        # Kept on the thread, after the request: a reply to the acknowledgement joins this ticket.
        kinds = await Message.filter(ticket_id=ticket.id).order_by("id").values_list("direction", "kind")
        assert kinds == [(MessageDirection.INBOUND, "request"), (MessageDirection.OUTBOUND, "acknowledged")]
        reply = await desk.deliver(make_email(subject="Re: " + str(msg["Subject"]), body="Дополняю: ошибка 502.",
                                              in_reply_to=ack.message_id))
        assert reply is not None and reply.id == ticket.id
        assert len(await desk.emails(ticket.id, with_ack=True)) == 1  # a follow-up is not a new request: no second one

        # The decision's email that follows answers the client's request and carries the ack in References.
        await desk.desk.accept(ticket.id, await staff(), confirmed=True)
        [accepted] = await desk.emails(ticket.id, "accepted")
        chain = str(headers(accepted)["References"]).split()
        assert f"<{ack.message_id}>" in chain and "<req-1@romashka.ru>" in chain
        assert "Re:" in str(headers(accepted)["Subject"]) and "зарегистрировано" not in str(headers(accepted)["Subject"])


async def test_the_acknowledgement_carries_the_links_of_the_faq_article_the_policy_matched(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Забыл пароль",
                                               body="Здравствуйте! Забыл пароль от личного кабинета, как сбросить пароль?"))
        assert ticket is not None and ticket.verdict.get("faq_entries")
        [ack] = await desk.emails(ticket.id, "acknowledged")
        text = email_text(ack)
        assert "https://storeolis.ru/help/account/password-reset" in text
        assert "п. 2.5" in text


async def test_the_english_acknowledgement(db: str) -> None:
    async with Desk.open(language="en") as desk:
        ticket = await desk.deliver(make_email(subject="Orders export fails", body="The orders export fails.",
                                               message_id="en-1@romashka.ru"))
        assert ticket is not None
        [ack] = await desk.emails(ticket.id, with_ack=True)
        msg = headers(ack)
        assert msg["Subject"] == f"Request [#{ticket.id}] registered: Orders export fails"
        assert msg["In-Reply-To"] == "<en-1@romashka.ru>" and msg["Auto-Submitted"] == "auto-replied"
        assert f"by {local_deadline(ticket)} (Moscow time)" in email_text(ack)


async def test_auto_replies_mailing_lists_and_no_reply_senders_get_none(db: str) -> None:
    async with Desk.open() as desk:
        for name in ("auto_submitted.eml", "mailing_list.eml", "precedence_bulk.eml", "auto_exchange_oof_ru.eml"):
            ticket = await desk.deliver((CORPUS / name).read_bytes())
            assert ticket is not None, name
            assert await EmailOutbox.filter(ticket_id=ticket.id).count() == 0, name
        # A request a person wrote, from an address nobody reads: registered, never mailed.
        noreply = await desk.deliver(make_email(sender="noreply@romashka.ru", subject="Уведомление о заказе"))
        assert noreply is not None and noreply.status == "new"
        assert await EmailOutbox.filter(ticket_id=noreply.id).count() == 0
        # ... while a request among them is acknowledged (the test would pass with no acknowledgements at all).
        person = await desk.deliver(make_email(subject="Касса не печатает чеки"))
        assert person is not None
        assert [e.event for e in await desk.emails(person.id, with_ack=True)] == ["acknowledged"]


async def test_an_unidentified_sender_is_acknowledged_too(db: str) -> None:
    """The policy flags a stranger (2.1/2.6), but refusing is a staff decision: the request is registered
    and processed in order, so "registered, first processing by DATE" is true for it as well."""
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(sender="someone@unknown-shop.example", subject="Помогите с кассой"))
        assert ticket is not None and ticket.client_id is None
        assert "unidentified" in {f["code"] for f in ticket.verdict["findings"]}
        assert [e.event for e in await desk.emails(ticket.id, with_ack=True)] == ["acknowledged"]


def burst(sender: str, count: int, tag: str) -> list[bytes]:
    topics = ("выгрузка заказов", "отчёт по складу", "счёт за декабрь", "доступ к кабинету", "печать чеков",
              "интеграция с 1С", "импорт каталога", "курьерская доставка")
    return [make_email(sender=sender, subject=f"{tag} {i}: {topics[i % len(topics)]}",
                       body=f"Обращение {tag}-{i}: {topics[i % len(topics)]} не работает с утра, номер {1000 + i}.")
            for i in range(count)]


async def test_at_most_five_acknowledgements_per_sender_an_hour_inside_one_group_too(db: str) -> None:
    async with Desk.open() as desk:
        groups: list[int] = []
        use_groups(desk, groups)
        mails = burst("ivan@romashka.ru", 6, "A") + burst("olga@romashka.ru", 2, "B")
        for uid, raw in enumerate(mails, start=1):
            await store(raw, uid)
        await desk.processor.process_stored()
        assert groups == [8]  # one transaction for all of them
        tickets = await Ticket.all().order_by("id")
        assert len(tickets) == 8  # every request is registered; only the emails are capped
        acked = await EmailOutbox.filter(event="acknowledged").order_by("id").values_list("ticket_id", flat=True)
        ivan = [t.id for t in tickets if t.sender_address == "ivan@romashka.ru"]
        olga = [t.id for t in tickets if t.sender_address == "olga@romashka.ru"]
        assert list(acked) == sorted(ivan[:5] + olga)  # the first five in arrival order; Olga is not capped

        # The next group counts what is already queued within the hour.
        for uid, raw in enumerate(burst("ivan@romashka.ru", 1, "C") + burst("olga@romashka.ru", 4, "D"), start=20):
            await store(raw, uid)
        await desk.processor.process_stored()
        per_sender: dict[str, int] = {}
        for row in await EmailOutbox.filter(event="acknowledged"):
            [address] = row.recipients  # the envelope recipient the sender delivers to
            per_sender[address] = per_sender.get(address, 0) + 1
        assert per_sender == {"ivan@romashka.ru": 5, "olga@romashka.ru": 5}


async def test_the_hourly_cap_counts_only_the_last_hour(db: str) -> None:
    async with Desk.open(ack_max_per_hour=1) as desk:
        now = datetime.now(UTC)
        first = await desk.deliver(burst("ivan@romashka.ru", 1, "A")[0])
        second = await desk.deliver(burst("ivan@romashka.ru", 2, "B")[1])
        assert first is not None and second is not None
        assert await EmailOutbox.filter(ticket_id=second.id).count() == 0  # capped at one
        await EmailOutbox.filter(ticket_id=first.id).update(created_at=now - timedelta(minutes=61))
        third = await desk.deliver(burst("ivan@romashka.ru", 3, "C")[2])
        assert third is not None
        assert [e.event for e in await desk.emails(third.id, with_ack=True)] == ["acknowledged"]


async def test_acknowledge_requests_off_sends_none(db: str) -> None:
    async with Desk.open(acknowledge=False) as desk:
        ticket = await desk.deliver(make_email(subject="Касса не печатает чеки"))
        assert ticket is not None
        assert await EmailOutbox.all().count() == 0
        await desk.desk.accept(ticket.id, await staff(), confirmed=True)
        assert [e.event for e in await desk.emails(ticket.id, with_ack=True)] == ["accepted"]
