"""The staff post an email's outcome causes is written in the transaction that records the outcome
(mail/send.py `_record`): a sender stopped in between cannot lose it, and a listener that fails
undoes only its own writes."""

from __future__ import annotations

import asyncio
import contextlib

from bot.notifications import EmailNotifier
from mail.mailer import TemplateMailer
from mail.render import EmailRenderer
from mail.send import DeliveryEvent, EmailSender
from models.deps import UseCaseConfig
from models.effects import Effects
from models.intents import StaffNotice
from models.tables import EmailOutbox, OutboxStatus, TelegramOutbox
from tests.rig.smtp import SmtpCapture
from tests.test_send import config_for, make_row

STAFF_CHAT = -100


def make_notifier() -> EmailNotifier:
    mailer = TemplateMailer(EmailRenderer(), from_address="support@storeolis.ru", from_name="Storeolis")
    return EmailNotifier(Effects(UseCaseConfig(staff_chat_id=STAFF_CHAT), mailer=mailer))


async def test_the_notice_of_a_sent_reply_survives_a_sender_stopped_while_it_is_written(
    db: str, smtp_server: SmtpCapture
) -> None:
    row = await make_row()
    await EmailOutbox.filter(id=row.id).update(event="staff_reply")
    notifier = make_notifier()
    writing = asyncio.Event()

    async def slow_listener(event: DeliveryEvent) -> None:
        writing.set()
        await asyncio.sleep(0.3)  # the shutdown arrives here, after the SMTP server took the email
        await notifier.on_email_event(event)

    woken: list[bool] = []
    sender = EmailSender(config_for(smtp_server), on_event=slow_listener, after_event=lambda: woken.append(True))
    task = asyncio.create_task(sender.deliver_due())
    await writing.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for _ in range(100):  # the recording transaction runs to its end, shielded from the cancellation
        if await TelegramOutbox.exists(idempotency_key=f"email_sent:{row.id}"):
            break
        await asyncio.sleep(0.05)
    notice = await TelegramOutbox.get(idempotency_key=f"email_sent:{row.id}")
    assert notice.payload == StaffNotice("email_sent", {"ticket_id": None}).to_payload()
    assert (await EmailOutbox.get(id=row.id)).status == OutboxStatus.SENT
    assert woken == [True]  # the Telegram outbox is woken once the notice is committed
    await sender.aclose()


async def test_a_failing_listener_undoes_only_its_own_writes(db: str, smtp_server: SmtpCapture) -> None:
    row = await make_row()
    notifier = make_notifier()

    async def broken_listener(event: DeliveryEvent) -> None:
        assert (await EmailOutbox.get(id=event.outbox_id)).status == OutboxStatus.SENT  # the same transaction
        await notifier.effects.queue_post(StaffNotice("email_sent", {}), f"half:{event.outbox_id}")
        raise RuntimeError("the listener broke after writing half of what it meant to")

    sender = EmailSender(config_for(smtp_server), on_event=broken_listener)
    assert await sender.deliver_due() == 1
    await sender.aclose()
    assert (await EmailOutbox.get(id=row.id)).status == OutboxStatus.SENT
    assert not await TelegramOutbox.exists(idempotency_key=f"half:{row.id}")
