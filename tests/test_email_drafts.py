"""Emails queued as drafts (mail/drafts.py): the acknowledgement is written by ingest as a draft with its
Message-ID, and the real EmailSender composes it once it has claimed the row, in a worker process or a
thread, stores the bytes (a retry sends the same message), fills in the thread's Message and sends it to a
real aiosmtpd capture. A draft that cannot be composed fails its row and sends nothing."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from mail.drafts import DraftComposer, MailerRecipe
from mail.send import EmailSender, SmtpConfig
from models.tables import EmailOutbox, Message, MessageDirection, OutboxStatus
from tests.helpers.desk import SUPPORT, Desk, make_email
from tests.rig.smtp import SmtpCapture

RECIPE = MailerRecipe(from_address=SUPPORT, from_name="Storeolis")


def sender_for(server: SmtpCapture, executor: Executor | None = None) -> EmailSender:
    return EmailSender(SmtpConfig(host=server.host, port=server.port, security="none", timeout=5.0),
                       drafts=DraftComposer(RECIPE, executor), base_backoff=0.01, max_backoff=0.01)


async def acknowledged_request(desk: Desk) -> EmailOutbox:
    ticket = await desk.deliver(make_email(subject="Не работает выгрузка заказов", message_id="req-7@romashka.ru"))
    assert ticket is not None
    return await EmailOutbox.get(idempotency_key=f"ack:{ticket.id}")


@pytest.mark.parametrize("where", ["thread", "worker process"])
async def test_the_acknowledgement_is_queued_as_a_draft_and_composed_once_when_sent(
    db: str, smtp_server: SmtpCapture, where: str
) -> None:
    executor = (ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                if where == "worker process" else None)
    try:
        async with Desk.open() as desk:
            row = await acknowledged_request(desk)
            # Queued with the ticket: its id and recipient are known, its bytes are not composed yet.
            assert bytes(row.content) == b"" and row.draft is not None and row.draft["event"] == "acknowledged"
            assert row.recipients == ["ivan@romashka.ru"] and row.message_id.endswith("@storeolis.ru")
            sender = sender_for(smtp_server, executor)
            assert await sender.deliver_due() == 1
            await sender.aclose()
    finally:
        if executor is not None:
            executor.shutdown()

    [mail] = smtp_server.messages
    msg = mail.message
    assert str(msg["Message-ID"]) == f"<{row.message_id}>"  # the id the thread has known from the start
    assert str(msg["Subject"]) == f"Обращение [#{row.ticket_id}] зарегистрировано: Не работает выгрузка заказов"
    assert str(msg["In-Reply-To"]) == "<req-7@romashka.ru>" and str(msg["Auto-Submitted"]) == "auto-replied"
    await row.refresh_from_db()
    assert row.status == OutboxStatus.SENT and bytes(row.content) == mail.data  # stored, then sent byte for byte
    thread = await Message.get(message_id=row.message_id, direction=MessageDirection.OUTBOUND)
    assert thread.subject == str(msg["Subject"]) and "п. 2.3" in thread.text and thread.size == len(mail.data)


async def test_a_retry_sends_the_same_bytes_it_composed_the_first_time(db: str, smtp_server: SmtpCapture) -> None:
    async with Desk.open() as desk:
        row = await acknowledged_request(desk)
    sender = sender_for(smtp_server)
    smtp_server.set_mode("tempfail")  # 451 at RCPT: composed, stored, not sent
    await sender.deliver_due()
    await row.refresh_from_db()
    first = bytes(row.content)
    assert row.status == OutboxStatus.PENDING and first and row.attempts == 1
    smtp_server.set_mode(None)
    await EmailOutbox.filter(id=row.id).update(not_before=datetime.now(UTC) - timedelta(seconds=1))
    for _ in range(50):
        if await sender.deliver_due():
            break
    await sender.aclose()
    [mail] = smtp_server.messages
    assert mail.data == first  # the same Date, the same everything: not composed again


async def test_a_draft_that_cannot_be_composed_fails_its_row_and_sends_nothing(
    db: str, smtp_server: SmtpCapture
) -> None:
    async with Desk.open() as desk:
        row = await acknowledged_request(desk)
    draft = dict(row.draft)
    draft["event"] = "no_such_email"  # as an operator's broken template would: the composition raises
    await EmailOutbox.filter(id=row.id).update(draft=draft)
    sender = sender_for(smtp_server)
    assert await sender.deliver_due() == 0
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.FAILED and bytes(row.content) == b""
    assert row.last_error is not None and "could not compose the acknowledged email" in row.last_error
    assert "no_such_email" in row.last_error
    assert smtp_server.messages == []


async def test_a_sender_without_a_composer_fails_a_draft_instead_of_sending_it_empty(
    db: str, smtp_server: SmtpCapture
) -> None:
    async with Desk.open() as desk:
        row = await acknowledged_request(desk)
    sender = EmailSender(SmtpConfig(host=smtp_server.host, port=smtp_server.port, security="none", timeout=5.0))
    await sender.deliver_due()
    await sender.aclose()
    await row.refresh_from_db()
    assert row.status == OutboxStatus.FAILED and "composes none" in (row.last_error or "")
    assert smtp_server.messages == []


@pytest.mark.parametrize("language", ["ru", "en"])
async def test_a_draft_failure_reaches_staff_in_the_chat_language_not_as_english_log_text(
    db: str, smtp_server: SmtpCapture, language: str
) -> None:
    async with Desk.open(language=language) as desk:
        row = await acknowledged_request(desk)
        draft = dict(row.draft)
        draft["event"] = "no_such_email"
        await EmailOutbox.filter(id=row.id).update(draft=draft)
        sender = EmailSender(SmtpConfig(host=smtp_server.host, port=smtp_server.port, security="none", timeout=5.0),
                             drafts=DraftComposer(RECIPE), on_event=desk.notifier.on_email_event)
        await sender.deliver_due()
        await sender.aclose()
        await desk.settled()
        notices = [m["text"] for m in desk.fake.messages(desk.chat_id) if m.get("text", "").startswith("❗")]
        card = await desk.card_text(row.ticket_id)
    assert len(notices) == 1, notices
    if language == "ru":
        assert notices[0] == (f"❗ Письмо клиенту не отправлено (#{row.ticket_id}): "
                              "не удалось составить письмо по шаблону (ValueError)")
        assert "Письмо клиенту не доставлено: не удалось составить письмо по шаблону (ValueError)" in card
    else:
        assert notices[0] == (f"❗ Email to the client not sent (#{row.ticket_id}): "
                              "the email could not be composed from its template (ValueError)")
    assert "could not compose" not in notices[0] + card and "no_such_email" not in notices[0] + card
