"""The staff chat end to end: a real aiogram Dispatcher polling the fake Telegram server, the real
TelegramSender delivering outbox rows, the real use cases on the test database (tests/helpers/desk.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.callbacks import Op, Reason, RefuseAction, RefuseOp, TicketAction
from mail.send import DeliveryEvent
from models.desk import REFUSAL_CLAUSES, REFUSAL_EVENTS
from models.tables import (
    Decision,
    EmailOutbox,
    Message,
    MessageDirection,
    OutboxStatus,
    StaffMember,
    TelegramOutbox,
    Ticket,
    TicketStatus,
)
from tests.helpers.desk import STAFF_CHAT, Desk, email_attachments, email_text, make_email
from tests.policy.factories import make_client
from tests.rig.fake_telegram import MAX_TEXT_LENGTH, utf16_len

BODIES = [
    "Не открывается раздел заказов, ошибка 502 при входе в личный кабинет магазина.",
    "Перестала работать выгрузка остатков на склад, отчёт пустой уже второй день.",
    "После обновления не печатаются чеки на кассе номер два, касса пишет ошибку фискального накопителя.",
    "Интеграция с маркетплейсом не передаёт цены, в журнале ошибка авторизации токена.",
    "Не приходят уведомления о новых заказах на почту менеджера с прошлой пятницы.",
]


async def romashka():
    return await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))


def tk(op: Op, ticket_id: int) -> TicketAction:
    return TicketAction(op=op, ticket_id=ticket_id)


async def test_card_shows_client_month_count_queue_position_and_time_left(db):
    await romashka()
    async with Desk.open() as desk:
        first = await desk.deliver(make_email(body=BODIES[0]))
        # A card is rendered when it is posted: wait for the first one before the second request arrives.
        first_text = (await desk.card(first.id))["text"]
        second = await desk.deliver(make_email(body=BODIES[1], subject="Выгрузка остатков"))
        text = (await desk.card(second.id))["text"]
        assert f"Обращение #{second.id}" in text
        assert "ООО «Ромашка»" in text and "ИНН 7707083893" in text
        assert "2 из 3 обращений в этом месяце" in text
        assert "В очереди: 2-е из 2" in text
        assert "осталось 5 раб. дн." in text or "осталось 4 раб. дн." in text
        assert "Иван Петров <ivan@romashka.ru>" in text and "Выгрузка остатков" in text
        assert BODIES[1] in text
        assert "1 из 3 обращений" in first_text and "В очереди: 1-е из 1" in first_text  # as it was when posted
        labels = [b["text"] for b in desk.buttons((await desk.card(first.id))["message_id"])]
        assert labels == ["✅ Принять", "⛔ Отказать", "🙋 Взять", "✉️ Шаблон", "…"]


async def test_unknown_sender_card_says_client_not_identified_with_the_finding_and_clause(db):
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(sender="stranger@example.org", name="Некто", body=BODIES[0]))
        text = (await desk.card(ticket.id))["text"]
        assert "Клиент не определён" in text
        assert "Невозможно идентифицировать клиента (п. 2.6)" in text


async def test_accept_without_findings_queues_the_accepted_email_and_updates_the_card(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.ACCEPT, ticket.id)))
        assert answer["text"].startswith("Принято")
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED
        assert [e.event for e in await desk.emails(ticket.id)] == ["accepted"]
        text = await desk.card_text(ticket.id)
        assert "принято в работу" in text and "Принял(а) Алиса" in text
        labels = [b["text"] for b in desk.buttons(card["message_id"])]
        assert "🔒 Закрыть" in labels and "✅ Принять" not in labels
        # A second press (a colleague, a stale keyboard) changes nothing.
        again = await desk.answer(desk.press(card["message_id"], desk.BOB, tk(Op.ACCEPT, ticket.id), check_markup=False))
        assert again["text"].startswith("Уже принято: Алиса в ")
        assert len(await desk.emails(ticket.id)) == 1


async def test_accept_over_the_monthly_limit_asks_for_confirmation_then_points_to_older_requests(db):
    await romashka()
    async with Desk.open() as desk:
        tickets = [await desk.deliver(make_email(body=body)) for body in BODIES[:4]]
        fourth = tickets[3]
        card = await desk.card(fourth.id)
        assert "Превышен лимит обращений в месяц (п. 2.6)" in card["text"]
        assert "4-е обращение, лимит 3" in card["text"]
        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.ACCEPT, fourth.id)))
        assert answer["show_alert"] and "Превышен лимит обращений в месяц" in answer["text"]
        assert (await Ticket.get(id=fourth.id)).status == TicketStatus.NEW
        assert not await desk.emails(fourth.id)
        labels = [b["text"] for b in desk.buttons(card["message_id"])]
        assert labels[0].startswith("✅ Принять несмотря на: Превышен лимит")

        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.CONFIRM_ACCEPT, fourth.id)))
        assert answer["text"].startswith("Принято")
        assert (await Ticket.get(id=fourth.id)).status == TicketStatus.ACCEPTED
        decision = await Decision.get(ticket_id=fourth.id, action="accepted")
        assert decision.details["despite"] == ["monthly_limit"]
        # 2.3: three older requests still wait; the bot says so with a button to the oldest.
        await desk.settled()
        notice = next(m for m in desk.fake.messages(STAFF_CHAT) if "П. 2.3" in m.get("text", ""))
        assert f"#{tickets[0].id}, #{tickets[1].id}, #{tickets[2].id}" in notice["text"]
        assert notice["reply_to_message"]["message_id"] == card["message_id"]
        open_button = notice["reply_markup"]["inline_keyboard"][0][0]
        assert open_button["text"] == f"Открыть #{tickets[0].id}"
        query = desk.fake.press_button(STAFF_CHAT, notice["message_id"], desk.BOB, open_button["callback_data"])
        await desk.answer(query)
        shown = await desk.bot_reply_after(notice["message_id"])
        assert f"Обращение #{tickets[0].id}" in shown["text"] and "История" in shown["text"]


@pytest.mark.parametrize("reason", [r.value for r in Reason])
async def test_each_refusal_reason_queues_its_email_citing_the_clause(db, reason):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.REFUSE, ticket.id)))
        assert answer["text"] == "Выберите причину отказа"
        labels = [b["text"] for b in desk.buttons(card["message_id"])]
        assert len(labels) == 7 and labels[-1] == "← Назад"
        pick = RefuseAction(op=RefuseOp.PICK, ticket_id=ticket.id, reason=Reason(reason))
        await desk.answer(desk.press(card["message_id"], desk.ALICE, pick))
        prompt = await desk.bot_reply_after(card["message_id"])
        assert "Ответьте (reply)" in prompt["text"]
        no_comment = RefuseAction(op=RefuseOp.NO_COMMENT, ticket_id=ticket.id, reason=Reason(reason))
        answer = await desk.answer(desk.fake.press_button(STAFF_CHAT, prompt["message_id"], desk.ALICE, no_comment.pack()))
        assert answer["text"].startswith("Отказ оформлен")
        refreshed = await Ticket.get(id=ticket.id)
        assert refreshed.status == TicketStatus.REFUSED and refreshed.refuse_reason == reason
        (mail,) = await desk.emails(ticket.id)
        assert mail.event == REFUSAL_EVENTS[reason]
        assert mail.status == OutboxStatus.PENDING and mail.not_before > refreshed.updated_at
        assert f"п. {REFUSAL_CLAUSES[reason]}" in email_text(mail)
        text = await desk.card_text(ticket.id)
        assert f"(п. {REFUSAL_CLAUSES[reason]})" in text and "отказано" in text


async def test_refusal_comment_is_taken_from_a_reply_to_the_prompt(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.REFUSE, ticket.id)))
        pick = RefuseAction(op=RefuseOp.PICK, ticket_id=ticket.id, reason=Reason.OUT_OF_SCOPE)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, pick))
        prompt = await desk.bot_reply_after(card["message_id"])
        desk.say(desk.ALICE, "Доработки конфигурации делаем по отдельному договору", reply_to=prompt["message_id"])

        async def refused():
            return (await Ticket.get(id=ticket.id)).status == TicketStatus.REFUSED

        await desk.fake.wait_for(refused)
        (mail,) = await desk.emails(ticket.id, "refused_out_of_scope")
        assert "Доработки конфигурации делаем по отдельному договору" in email_text(mail)
        edited = await desk.fake.wait_for(
            lambda: "Комментарий" in desk.fake.message(STAFF_CHAT, prompt["message_id"])["text"]
        )
        assert edited
        assert not desk.fake.message(STAFF_CHAT, prompt["message_id"]).get("reply_markup")


async def test_undo_within_the_grace_period_cancels_the_refusal_email(db):
    await romashka()
    async with Desk.open(grace=timedelta(minutes=5)) as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.REFUSE, ticket.id)))
        await desk.answer(desk.press(card["message_id"], desk.ALICE,
                                     RefuseAction(op=RefuseOp.PICK, ticket_id=ticket.id, reason=Reason.PROFANITY)))
        prompt = await desk.bot_reply_after(card["message_id"])
        await desk.answer(desk.fake.press_button(
            STAFF_CHAT, prompt["message_id"], desk.ALICE,
            RefuseAction(op=RefuseOp.NO_COMMENT, ticket_id=ticket.id, reason=Reason.PROFANITY).pack()))
        assert "отменить можно до" in await desk.card_text(ticket.id)
        answer = await desk.answer(desk.press(card["message_id"], desk.BOB, tk(Op.UNDO, ticket.id)))
        assert answer["text"] == "Отказ отменён"
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.NEW
        (mail,) = await desk.emails(ticket.id)
        assert mail.status == OutboxStatus.CANCELLED
        text = await desk.card_text(ticket.id)
        assert "ждёт решения" in text
        assert [b["text"] for b in desk.buttons(card["message_id"])][:2] == ["✅ Принять", "⛔ Отказать"]


async def test_faq_button_sends_the_faq_answer(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="Забыл пароль",
                                               body="Добрый день! Не могу войти, как восстановить пароль от кабинета?"))
        card = await desk.card(ticket.id)
        assert "Типовой вопрос" in card["text"] and "(п. 2.5)" in card["text"]
        labels = [b["text"] for b in desk.buttons(card["message_id"])]
        assert "📘 Ответить по FAQ" in labels
        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.FAQ, ticket.id)))
        assert answer["text"] == "Ответ по FAQ отправляется"
        (mail,) = await desk.emails(ticket.id)
        assert mail.event == "faq_answer" and "password-reset" in email_text(mail)
        assert "отвечено по FAQ" in await desk.card_text(ticket.id)


async def test_staff_reply_with_a_document_is_emailed_with_the_attachment_and_confirmed_when_sent(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        pdf = b"%PDF-1.4 instruction " + bytes(range(256))
        desk.fake.send_user_document(STAFF_CHAT, desk.ALICE, "instruction.pdf", pdf, caption="Инструкция во вложении",
                                     reply_to_message_id=card["message_id"], mime_type="application/pdf")
        mails = await desk.fake.wait_for(lambda: desk.emails(ticket.id, "staff_reply"))
        (mail,) = mails
        assert "Инструкция во вложении" in email_text(mail)
        assert ("instruction.pdf", pdf) in email_attachments(mail)
        # A reply is also a first processing (2.3).
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED
        # The SMTP sender reports the hand-over; the staff member sees it under the card.
        await desk.notifier.on_email_event(
            DeliveryEvent(outbox_id=mail.id, ticket_id=ticket.id, event="staff_reply", outcome="sent",
                          error=None, ambiguous=False))
        await desk.settled()
        sent = [m for m in desk.fake.messages(STAFF_CHAT) if m.get("text") == f"✉️ Письмо клиенту отправлено (#{ticket.id})"]
        assert len(sent) == 1 and sent[0]["reply_to_message"]["message_id"] == card["message_id"]


async def test_reply_to_a_thread_post_reaches_the_same_ticket(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0], message_id="first@romashka.ru"))
        await desk.card(ticket.id)
        await desk.deliver(make_email(body="Дополнение: ошибка появляется только в Firefox.",
                                      in_reply_to="first@romashka.ru", subject="Re: Не работает выгрузка заказов"))
        follow = await desk.fake.wait_for(lambda: Message.filter(ticket_id=ticket.id, kind="followup")
                                          .exclude(telegram_message_id=None).first())
        posted = desk.fake.message(STAFF_CHAT, follow.telegram_message_id)
        assert "Дополнение: ошибка появляется только в Firefox." in posted["text"]
        desk.say(desk.BOB, "Проверили, исправили в версии 2.1", reply_to=follow.telegram_message_id)
        (mail,) = await desk.fake.wait_for(lambda: desk.emails(ticket.id, "staff_reply"))
        assert "исправили в версии 2.1" in email_text(mail)


async def test_internal_note_is_stored_and_never_emailed(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        said = desk.say(desk.ALICE, "!клиент звонил, ждёт до обеда", reply_to=card["message_id"])
        reply = await desk.bot_reply_after(said["message_id"])
        assert reply["text"].startswith("📝 Заметка сохранена")
        said = desk.say(desk.BOB, "/note второй раз пишут про это", reply_to=card["message_id"])
        await desk.bot_reply_after(said["message_id"])
        said = desk.say(desk.BOB, f"/note {ticket.id} по номеру тоже можно")
        await desk.bot_reply_after(said["message_id"])
        notes = await Message.filter(ticket_id=ticket.id, direction=MessageDirection.NOTE).order_by("id")
        assert [n.text for n in notes] == ["клиент звонил, ждёт до обеда", "второй раз пишут про это",
                                           "по номеру тоже можно"]
        assert not await desk.emails(ticket.id)
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.NEW


async def test_close_then_client_follow_up_reopens_the_ticket(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.ACCEPT, ticket.id)))
        await desk.settled()
        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.CLOSE, ticket.id)))
        assert answer["text"] == "Обращение закрыто"
        (resolved,) = await desk.emails(ticket.id, "resolved")
        text = await desk.card_text(ticket.id)
        assert "закрыто" in text and [b["text"] for b in desk.buttons(card["message_id"])] == ["…"]

        await desk.deliver(make_email(body="Ошибка вернулась сегодня утром, посмотрите снова.",
                                      in_reply_to=resolved.message_id, subject="Re: Не работает выгрузка заказов"))
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.ACCEPTED
        await desk.settled()
        follow = next(m for m in desk.fake.messages(STAFF_CHAT) if "Ошибка вернулась" in m.get("text", ""))
        assert "Обращение открыто снова" in follow["text"]
        assert follow["reply_to_message"]["message_id"] == card["message_id"]
        assert "принято в работу" in await desk.card_text(ticket.id)


async def test_more_menu_posts_full_text_attachments_and_the_original_email(db):
    await romashka()
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    async with Desk.open() as desk:
        long_body = "Начало письма.\n" + ("Строка подробного описания проблемы. " * 40 + "\n") * 6 + "Конец письма."
        ticket = await desk.deliver(make_email(body=long_body, attachments=[
            ("акт.pdf", "application/pdf", b"%PDF-1.4 act"), ("screen.png", "image/png", png)]))
        card = await desk.card(ticket.id)
        assert "акт.pdf" in card["text"] and "обрезано" in card["text"]
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.MORE, ticket.id)))
        labels = [b["text"] for b in desk.buttons(card["message_id"])]
        assert labels == ["📄 Полный текст", "📎 Вложения (2)", "✉️ Исходное письмо .eml", "🗂 История клиента", "🔒 Закрыть",
                          "🔗 Объединить с…",
                          "← Назад"]
        for op in (Op.FULL_TEXT, Op.FILES, Op.EML):
            await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(op, ticket.id)))
        await desk.settled()
        sent = [s for s in desk.fake.sent if s.get("reply_to_message_id") == card["message_id"]]
        texts = [s["plain_text"] for s in sent if s["method"] == "sendMessage"]
        assert texts[0].startswith(f"📄 Полный текст письма #{ticket.id} (1/")
        joined = "".join(t.split("\n", 1)[1] for t in texts)
        assert "Начало письма." in joined and "Конец письма." in joined
        documents = {s["document"][0]: s["document"][1] for s in sent if s["method"] == "sendDocument"}
        assert documents["акт.pdf"] == b"%PDF-1.4 act"
        assert documents[f"ticket-{ticket.id}.eml"].startswith(b"From:") or b"Message-ID" in documents[f"ticket-{ticket.id}.eml"]
        photos = [s for s in sent if s["method"] == "sendPhoto"]
        assert photos and photos[0]["photo"][1] == png
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.BACK, ticket.id)))
        assert [b["text"] for b in desk.buttons(card["message_id"])][0] == "✅ Принять"


async def test_an_outsider_pressing_a_button_is_refused_and_nothing_changes(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        for op in (Op.ACCEPT, Op.REFUSE, Op.CLOSE):
            answer = await desk.answer(desk.press(card["message_id"], desk.MALLORY, tk(op, ticket.id), check_markup=False))
            assert answer["show_alert"] and answer["text"].startswith("Нет доступа")
        assert (await Ticket.get(id=ticket.id)).status == TicketStatus.NEW
        assert not await desk.emails(ticket.id)
        assert not await StaffMember.filter(telegram_id=desk.MALLORY).exists()
        assert [b["text"] for b in desk.buttons(card["message_id"])] == ["✅ Принять", "⛔ Отказать", "🙋 Взять", "✉️ Шаблон",
                                                                     "…"]


async def test_a_hostile_email_is_rendered_safely_within_telegram_limits(db):
    hostile_subject = "<script>alert(1)</script> </b> &amp; <i>x < y & z > w 😀"
    hostile_body = ("<b>жирный</b> </blockquote> &nbsp; & < > 👨‍👩‍👧‍👦 𝕏 " * 3000)[:100_000]
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(sender="evil@example.org", name="</b><a href='x'>Злодей",
                                               subject=hostile_subject, body=hostile_body))
        card = await desk.card(ticket.id)
        plain = card["text"]
        assert utf16_len(plain) <= MAX_TEXT_LENGTH
        assert "<script>alert(1)</script> </b> &amp; <i>x < y & z > w 😀" in plain
        assert "Злодей <evil@example.org>" in plain  # the parser keeps only the plain part of the name
        assert "<b>жирный</b> </blockquote> &nbsp; & < > 👨‍👩‍👧‍👦 𝕏" in plain
        assert "обрезано" in plain
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.FULL_TEXT, ticket.id),
                                     check_markup=False))
        await desk.settled()
        (doc,) = [s for s in desk.fake.sent if s["method"] == "sendDocument"]
        assert doc["document"][1].decode("utf-8").startswith("<b>жирный</b>")
        assert not await TelegramOutbox.filter(status=OutboxStatus.FAILED).exists()


async def test_commands_queue_ticket_client_stats_oncall_help(db):
    await romashka()
    async with Desk.open() as desk:
        assert [c["command"] for c in desk.fake.commands[('{"type": "default"}', "")]] == [
            "queue", "ticket", "client", "search", "stats", "oncall", "note", "assign", "merge", "replies",
            "savereply", "delreply", "help"]
        a = await desk.deliver(make_email(body=BODIES[0]))
        b = await desk.deliver(make_email(body=BODIES[1], subject="Остатки <склад>"))
        card_a = await desk.card(a.id)
        await desk.answer(desk.press(card_a["message_id"], desk.ALICE, tk(Op.ACCEPT, a.id)))
        await desk.card(b.id)

        said = desk.say(desk.BOB, "/queue")
        queue = await desk.bot_reply_after(said["message_id"])
        assert "Очередь: 1 ждут решения" in queue["text"] and f"#{b.id}" in queue["text"]
        assert "Остатки <склад>" in queue["text"] and "осталось" in queue["text"] and f"#{a.id} " not in queue["text"]

        said = desk.say(desk.BOB, f"/ticket {a.id}")
        shown = await desk.bot_reply_after(said["message_id"])
        assert f"Обращение #{a.id}" in shown["text"] and "История" in shown["text"]
        assert "принято (Алиса)" in shown["text"]

        said = desk.say(desk.BOB, "/client ромашка")
        found = await desk.bot_reply_after(said["message_id"])
        assert "ООО «Ромашка», ИНН 7707083893" in found["text"]
        assert "2 из 3 обращений" in found["text"] and f"#{a.id}, #{b.id}" in found["text"]
        said = desk.say(desk.BOB, "/client 7707083893")
        assert "Ромашка" in (await desk.bot_reply_after(said["message_id"]))["text"]

        said = desk.say(desk.BOB, "/stats")
        stats = await desk.bot_reply_after(said["message_id"])
        assert "Поступило: 2" in stats["text"] and "Принято: 1" in stats["text"]
        assert "в срок (п. 2.3): 100% (1/1)" in stats["text"]
        said = desk.say(desk.BOB, "/stats 2020-13")
        assert "ГГГГ-ММ" in (await desk.bot_reply_after(said["message_id"]))["text"]

        said = desk.say(desk.ALICE, "/oncall")
        first = await desk.bot_reply_after(said["message_id"])
        assert "было — никто, теперь — Алиса (@alice)" in first["text"]
        said = desk.say(desk.ALICE, "/oncall @bob")
        second = await desk.bot_reply_after(said["message_id"])
        assert "было — Алиса (@alice), теперь — Борис (@bob)" in second["text"]
        assert [s.username for s in await StaffMember.filter(is_oncall=True)] == ["bob"]
        said = desk.say(desk.ALICE, "/oncall @nobody_here")
        assert "Не знаю сотрудника" in (await desk.bot_reply_after(said["message_id"]))["text"]

        said = desk.say(desk.ALICE, "/help")
        assert "/queue" in (await desk.bot_reply_after(said["message_id"]))["text"]


async def test_commands_with_ids_beyond_the_id_column_answer_usage_instead_of_failing(db):
    """/ticket and /note with a 20-digit number used to reach the database and fail with OverflowError,
    leaving the staff member without an answer."""
    await romashka()
    async with Desk.open() as desk:
        said = desk.say(desk.BOB, "/ticket 99999999999999999999")
        assert "/ticket" in (await desk.bot_reply_after(said["message_id"]))["text"]
        said = desk.say(desk.BOB, "/ticket #2147483648")
        assert "/ticket" in (await desk.bot_reply_after(said["message_id"]))["text"]
        said = desk.say(desk.BOB, "/note #99999999999999999999 заметка")
        assert "/note" in (await desk.bot_reply_after(said["message_id"]))["text"]


async def test_english_ui(db):
    await romashka()
    async with Desk.open(language="en") as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        assert f"Ticket #{ticket.id}" in card["text"] and "1 of 3 requests this month" in card["text"]
        assert "Queue position: 1 of 1" in card["text"] and "business day" in card["text"]
        assert [b["text"] for b in desk.buttons(card["message_id"])] == ["✅ Accept", "⛔ Refuse", "🙋 Take", "✉️ Template",
                                                                     "…"]
        answer = await desk.answer(desk.press(card["message_id"], desk.MALLORY, tk(Op.ACCEPT, ticket.id),
                                              check_markup=False))
        assert answer["text"].startswith("Not allowed")
        answer = await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.ACCEPT, ticket.id)))
        assert answer["text"].startswith("Accepted")
        assert "Accepted by Алиса" in await desk.card_text(ticket.id)
        said = desk.say(desk.ALICE, "/queue")
        assert "The queue is empty" in (await desk.bot_reply_after(said["message_id"]))["text"]
        assert desk.fake.commands[('{"type": "default"}', "")][0]["description"] == "Waiting requests"


async def test_email_failure_is_reported_and_shown_on_the_card(db):
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body=BODIES[0]))
        card = await desk.card(ticket.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.ACCEPT, ticket.id)))
        (mail,) = await desk.emails(ticket.id)
        await EmailOutbox.filter(id=mail.id).update(status=OutboxStatus.FAILED, last_error="550 mailbox unavailable")
        event = DeliveryEvent(outbox_id=mail.id, ticket_id=ticket.id, event="accepted", outcome="failed",
                              error="550 mailbox unavailable", ambiguous=False)
        await desk.notifier.on_email_event(event)
        await desk.notifier.on_email_event(event)  # reported twice: posted once
        text = await desk.card_text(ticket.id)
        assert "Письмо клиенту не доставлено: 550 mailbox unavailable" in text
        notices = [m for m in desk.fake.messages(STAFF_CHAT) if "❗ Письмо клиенту не отправлено" in m.get("text", "")]
        assert len(notices) == 1


async def test_bot_leaves_groups_strangers_add_it_to_and_records_private_start(db):
    async with Desk.open() as desk:
        desk.fake.add_bot_to_group(-100999, by_user_id=desk.MALLORY)

        async def left():
            return any(method == "leaveChat" for method, _ in desk.fake.calls)

        await desk.fake.wait_for(left)
        desk.fake.send_user_message(desk.ALICE, desk.ALICE, "/start")
        await desk.fake.wait_for(lambda: StaffMember.filter(telegram_id=desk.ALICE, started_bot=True).exists())
        desk.fake.send_user_message(desk.MALLORY, desk.MALLORY, "/start")
        reply = await desk.fake.wait_for(
            lambda: [m for m in desk.fake.messages(desk.MALLORY) if m["from"]["id"] == desk.fake.bot_id])
        assert "только для сотрудников" in reply[0]["text"]
        assert not await StaffMember.filter(telegram_id=desk.MALLORY).exists()


@pytest.mark.slow
async def test_a_burst_of_100_requests_under_flood_control_posts_every_card_exactly_once(db):
    async with Desk.open() as desk:
        desk.fake.set_rate_limit(per_chat_per_minute=20, per_chat_per_second=1, global_per_second=30, time_scale=0.02)
        desk.fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, times=2)
        for i in range(100):
            await desk.deliver(make_email(sender=f"user{i}@client{i}.ru", name=f"Клиент {i}",
                                          subject=f"Вопрос номер {i}",
                                          body=f"Обращение номер {i}: " + BODIES[i % len(BODIES)] + f" код {i * 7919}"))
        await desk.settled(timeout=120)
        tickets = await Ticket.all().order_by("id")
        assert len(tickets) == 100 and all(t.card_message_id for t in tickets)
        cards = [s for s in desk.fake.sent if s["method"] == "sendMessage" and s["plain_text"].startswith("🆕")]
        numbers = sorted(int(s["plain_text"].split("#", 1)[1].split(" ", 1)[0]) for s in cards)
        assert numbers == [t.id for t in tickets]
        assert desk.fake.too_many_requests >= 2
