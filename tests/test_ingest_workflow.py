"""Stored raw mail -> tickets: every email ends as a ticket message or in quarantine, nothing raises;
bounces reach their ticket, auto-replies are recorded and never answered, threads join their ticket."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.store.raw_store import load_content
from models.tables import (
    Decision,
    EmailOutbox,
    Message,
    MessageDirection,
    RawMail,
    RawMailStatus,
    StaffMember,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)
from tests.helpers.desk import Desk, make_email, store_raw_mail

CORPUS = Path(__file__).parent / "corpus"


async def staff_member() -> StaffMember:
    member, _ = await StaffMember.get_or_create(
        telegram_id=Desk.ALICE, defaults={"name": "Алиса", "username": "alice"}
    )
    return member


async def store_raw(raw: bytes, uid: int, when: datetime | None = None) -> RawMail:
    return await store_raw_mail(
        raw,
        mailbox="support@storeolis.ru/INBOX",
        uidvalidity=1,
        uid=uid,
        internal_date=when or datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=uid),
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
    )


async def test_every_corpus_email_becomes_a_ticket_message_or_is_quarantined(db: str) -> None:
    async with Desk.open() as desk:
        files = sorted(CORPUS.glob("*.eml"))
        for uid, path in enumerate(files, start=1):
            await store_raw(path.read_bytes(), uid)
        while await desk.processor.process_stored():
            pass
        rows = await RawMail.all()
        assert len(rows) == len(files)
        assert {r.status for r in rows} <= {RawMailStatus.PROCESSED, RawMailStatus.QUARANTINED}
        for row in rows:
            linked = await Message.filter(raw_mail_id=row.id).count()
            if row.status == RawMailStatus.PROCESSED:
                assert linked == 1, f"raw mail {row.id} has {linked} ticket messages"
            else:
                assert linked == 0 and row.error
        quarantined = [r for r in rows if r.status == RawMailStatus.QUARANTINED]
        # The unreadable ones are kept raw and the staff are told, once each.
        names = {files[r.uid - 1].name for r in quarantined}
        assert {"empty.eml", "binary_junk.eml", "no_from.eml"} <= names
        for row in quarantined:
            assert await load_content(row.id) == files[row.uid - 1].read_bytes()
            assert await TelegramOutbox.filter(idempotency_key=f"quarantine:{row.id}").count() == 1
        await desk.settled()
        notices = [
            m for m in desk.fake.sent if "карантин" in (m.get("plain_text") or m.get("text") or "").lower()
        ]
        assert len(notices) == len(quarantined)


async def test_a_bounce_of_our_email_marks_it_undelivered_and_is_shown_on_the_ticket(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Вопрос по счёту"))
        assert ticket is not None
        staff = await staff_member()
        outcome = await desk.desk.accept(ticket.id, staff, confirmed=True)
        assert outcome.ok
        email = (await desk.emails(ticket.id, "accepted"))[0]
        bounce = (
            (CORPUS / "bounce_postfix.eml")
            .read_bytes()
            .replace(b"ticket-55.3@storeolis.ru", email.message_id.encode())
        )
        joined = await desk.deliver(bounce)
        assert joined is not None and joined.id == ticket.id
        assert (await EmailOutbox.get(id=email.id)).delivery_failed
        assert await Message.filter(ticket_id=ticket.id, kind="bounce").count() == 1
        assert await Ticket.all().count() == 1  # a bounce never opens a request


async def test_a_bounce_for_mail_we_never_sent_is_quarantined(db: str) -> None:
    async with Desk.open() as desk:
        assert await desk.deliver((CORPUS / "bounce_postfix.eml").read_bytes()) is None
        row = await RawMail.get(uid__gte=1)
        assert row.status == RawMailStatus.QUARANTINED


async def _accepted_ticket(desk: Desk) -> tuple[Ticket, EmailOutbox]:
    ticket = await desk.deliver(make_email(subject="Вопрос по счёту"))
    assert ticket is not None
    outcome = await desk.desk.accept(ticket.id, await staff_member(), confirmed=True)
    assert outcome.ok
    return ticket, (await desk.emails(ticket.id, "accepted"))[0]


def _notices(desk: Desk) -> list[str]:
    return [m.get("plain_text") or m.get("text") or "" for m in desk.fake.sent]


async def test_a_null_sender_bounce_marks_our_email_undelivered(db: str) -> None:
    async with Desk.open() as desk:
        ticket, email = await _accepted_ticket(desk)
        bounce = (CORPUS / "bounce_null_sender_ru.eml").read_bytes()
        joined = await desk.deliver(bounce.replace(b"ticket-57.2@storeolis.ru", email.message_id.encode()))
        assert joined is not None and joined.id == ticket.id
        assert (await EmailOutbox.get(id=email.id)).delivery_failed
        assert await Message.filter(ticket_id=ticket.id, kind="bounce").count() == 1
        assert await Ticket.all().count() == 1
        # nobody answers a report: the request's acknowledgement and the acceptance only
        assert [e.event for e in await EmailOutbox.all().order_by("id")] == ["acknowledged", "accepted"]


async def test_a_null_sender_bounce_for_mail_we_never_sent_is_quarantined_as_unknown_bounce(db: str) -> None:
    async with Desk.open() as desk:
        assert await desk.deliver((CORPUS / "bounce_null_sender_ru.eml").read_bytes()) is None
        row = await RawMail.get(uid__gte=1)
        assert row.status == RawMailStatus.QUARANTINED and "delivery failure report" in (row.error or "")
        await desk.settled()
        assert any("отчёт о недоставке письма" in text for text in _notices(desk))


async def test_a_feedback_report_about_our_email_is_recorded_on_its_ticket_without_a_card(db: str) -> None:
    async with Desk.open() as desk:
        ticket, email = await _accepted_ticket(desk)
        report = (CORPUS / "feedback_report_arf.eml").read_bytes()
        joined = await desk.deliver(report.replace(b"ticket-57.2@storeolis.ru", email.message_id.encode()))
        assert joined is not None and joined.id == ticket.id
        assert await Message.filter(ticket_id=ticket.id, kind="feedback_report").count() == 1
        assert not (await EmailOutbox.get(id=email.id)).delivery_failed  # delivered, then complained about
        assert await Ticket.all().count() == 1
        assert [e.event for e in await EmailOutbox.all().order_by("id")] == ["acknowledged", "accepted"]
        await desk.settled()
        assert any("пожаловался на наше письмо" in text and "ivan@example.ru" in text for text in _notices(desk))


async def test_a_feedback_report_about_mail_we_never_sent_is_quarantined_with_its_own_code(db: str) -> None:
    async with Desk.open() as desk:
        assert await desk.deliver((CORPUS / "feedback_report_arf.eml").read_bytes()) is None
        row = await RawMail.get(uid__gte=1)
        assert row.status == RawMailStatus.QUARANTINED and "feedback report" in (row.error or "")
        assert await Ticket.all().count() == 0
        await desk.settled()
        assert any("жалоба почтовой службы (ARF)" in text for text in _notices(desk))


async def test_auto_replies_and_mailing_lists_are_recorded_never_answered_never_counted(db: str) -> None:
    async with Desk.open() as desk:
        for name in (
            "auto_submitted.eml",
            "mailing_list.eml",
            "auto_exchange_oof_ru.eml",
            "precedence_bulk.eml",
        ):
            ticket = await desk.deliver((CORPUS / name).read_bytes())
            assert ticket is not None, name
            assert ticket.status == TicketStatus.CLOSED and not ticket.counts_toward_limit, name
            assert ticket.card_message_id is None
            assert await EmailOutbox.filter(ticket_id=ticket.id).count() == 0
        assert await TelegramOutbox.filter(kind="card").count() == 0


async def test_an_auto_reply_to_our_email_joins_the_ticket_without_reopening_or_answering(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Касса не печатает чеки"))
        staff = await staff_member()
        await desk.desk.accept(ticket.id, staff, confirmed=True)
        await desk.desk.close(ticket.id, staff)
        sent = await desk.emails(ticket.id, with_ack=True)
        oof = make_email(
            subject="Автоответ: Re: Касса", body="Я в отпуске до 1 декабря.", in_reply_to=sent[-1].message_id
        )
        oof = oof.replace(b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:", 1)
        joined = await desk.deliver(oof)
        assert joined.id == ticket.id
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.CLOSED  # an auto-reply does not reopen
        assert await EmailOutbox.filter(ticket_id=ticket.id).count() == len(sent)


async def test_a_forged_ticket_tag_from_a_stranger_opens_a_new_request(db: str) -> None:
    async with Desk.open() as desk:
        first = await desk.deliver(make_email(sender="ivan@romashka.ru", subject="Не работает оплата"))
        forged = await desk.deliver(
            make_email(sender="mallory@evil.example", subject=f"Re: Не работает оплата [#{first.id}]")
        )
        assert forged.id != first.id
        same = await desk.deliver(
            make_email(sender="ivan@romashka.ru", subject=f"Re: Не работает оплата [#{first.id}]")
        )
        assert same.id == first.id


async def test_the_email_of_a_decision_is_queued_in_the_same_transaction_as_the_decision(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Смена пароля"))
        staff = await staff_member()
        await desk.desk.accept(ticket.id, staff, confirmed=True)
        again = await desk.desk.accept(ticket.id, staff, confirmed=True)  # a double click
        assert again.status == "already"
        assert await EmailOutbox.filter(ticket_id=ticket.id, event="accepted").count() == 1
        assert await Decision.filter(ticket_id=ticket.id, action="accepted").count() == 1


async def test_a_damaged_email_still_becomes_a_request_and_its_card_says_it_was_read_in_part(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver((CORPUS / "broken_boundary.eml").read_bytes())
        assert ticket is not None and ticket.status == TicketStatus.NEW
        notes = await Decision.get(ticket_id=ticket.id, action="parse_notes")
        assert notes.details["defects"]
        assert "повреждено" in await desk.card_text(ticket.id)


async def test_nul_characters_from_hostile_mail_are_dropped_on_every_database(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(
            make_email(subject="Ошибка\x00 оплаты", body="Не проходит\x00 оплата картой, ошибка 402.")
        )
        assert ticket is not None
        message = await Message.get(ticket_id=ticket.id, direction=MessageDirection.INBOUND)
        assert "\x00" not in message.text and "Не проходит оплата" in message.text
        assert "\x00" not in (await Ticket.get(id=ticket.id)).subject
