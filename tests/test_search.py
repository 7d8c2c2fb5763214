"""Ticket search (models/search.py, `/search` in the staff chat) on the test database (SQLite, or
PostgreSQL with TEST_DATABASE_URL): mail goes in through the real ingest (a group through the parse
workers' path, single mails and follow-ups through the inline one), staff replies and notes through the
desk, and the search finds them by word form, exact token, client and filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.connection import get_connection
from tortoise.migrations.api import migrate

from bot.callbacks import Op, TicketAction
from bot.handlers.views import search_view
from models.search import search_tickets
from models.store import db as database
from models.tables import Client, ClientAddress, Message, StaffMember, Ticket, TicketStatus
from tests.helpers.desk import STAFF_CHAT, Desk, make_email
from tests.test_board import make_board, telegram_view
from tests.test_ingest_groups import store, use_groups

DAY = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


async def found(text: str) -> list[int]:
    return [hit.ticket_id for hit in (await search_tickets(text)).hits]


async def romashka() -> Client:
    client = await Client.create(name="ООО «Ромашка»", inn="7707083893", contract="Д-2024/117")
    await ClientAddress.create(client=client, value="@romashka.ru", is_domain=True)
    return client


async def test_word_forms_exact_tokens_senders_and_clients_find_their_tickets(db: str) -> None:
    await romashka()
    mails = [
        make_email(subject="Уведомления", body="Не приходят письма покупателям о заказе 784512, проверьте.",
                   sender="ivan@romashka.ru"),
        make_email(subject="Сбросить пароль", body="Как поменять пароль администратора кабинета?",
                   sender="olga@romashka.ru"),
        make_email(subject="Остатки", body="Склад Полярный-7 не выгружается, код ошибки E512.",
                   sender="petr@severstal.example", name="Пётр Сидоров"),
    ]
    for uid, raw in enumerate(mails, start=1):
        await store(raw, uid)
    groups: list[int] = []
    async with Desk.open() as desk:
        use_groups(desk, groups)  # the parse workers' path: their search terms, one group
        while await desk.processor.process_stored(batch=50):
            pass
    assert max(groups) == 3
    letters, password, stock = (await Ticket.all().order_by("id")).copy()

    assert await found("письмо покупателю") == [letters.id]
    assert await found("пароля") == [password.id]
    assert await found("Полярный-7") == [stock.id]
    assert await found("e512") == [stock.id]
    assert await found("784512") == [letters.id]
    assert await found("заказы 784512") == [letters.id]  # every term, each by its own kind
    assert await found("petr@severstal.example") == [stock.id]
    assert await found("severstal.example") == [stock.id]
    assert await found("Петр Сидоров") == [stock.id]  # the sender's name ("ё" as "е")
    # The client registry: name, INN, contract (its tickets, newest first).
    assert await found("Ромашка") == [password.id, letters.id]
    assert await found("7707083893 пароль") == [password.id]
    assert await found("Д-2024/117") == [password.id, letters.id]
    assert await found("письмо пароль") == []  # both words, but in two different tickets
    assert await found("Полярный-8") == [] and await found("E513") == []
    # The registry is read as it is now: a client renamed is found by its new name only.
    await Client.filter(inn="7707083893").update(name="ООО «Василёк»")
    assert await found("василёк") == [password.id, letters.id] and await found("Ромашка") == []


async def test_filters_order_and_the_limit_of_ten(db: str) -> None:
    client = await romashka()
    async with Desk.open() as desk:
        tickets = []
        for n in range(12):
            raw = make_email(subject=f"Касса {n}", body=f"Касса номер {n} не печатает чеки.",
                             sender="ivan@romashka.ru" if n % 2 else f"shop{n}@example.org")
            tickets.append(await desk.deliver(raw, internal_date=DAY + timedelta(days=3 * n)))
    await Ticket.filter(id=tickets[11].id).update(status=TicketStatus.CLOSED)
    await Ticket.filter(id=tickets[9].id).update(status=TicketStatus.REFUSED)
    newest_first = [t.id for t in reversed(tickets)]

    result = await search_tickets("чек кассы")
    assert [h.ticket_id for h in result.hits] == newest_first[:10] and result.more
    assert result.hits[0].client == client.name and result.hits[1].client == "Иван Петров"
    assert await found("чек status:open") == [t for t in newest_first if t not in (tickets[11].id, tickets[9].id)][:10]
    assert await found("чек status:closed") == [tickets[11].id]
    assert await found("status:refused") == [tickets[9].id]
    assert await found("касса client:Ромашка") == [t.id for t in reversed(tickets) if t.sender_address.endswith(
        "romashka.ru")]
    assert await found('client:"ООО «Ромашка»" 2026-11') == [t.id for t in reversed(tickets) if t.sender_address.endswith(
        "romashka.ru") and t.month_key == "2026-11"]
    in_december = [t.id for t in reversed(tickets) if t.month_key == "2026-12"]
    assert in_december and await found("касса 2026-12") == in_december
    assert (await search_tickets("status:whatever касса")).query.empty  # the usage, not a silent "all"
    assert (await search_tickets("   ")).query.empty


async def test_hostile_text_is_escaped_in_the_snippet_and_the_hit_is_bold(db: str) -> None:
    hostile = 'Письмо <b>не</b> & <a href="javascript:x">пришло</a> </i><script>покупателю</script>'
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(subject="<i>Тема", body=hostile, sender="x@example.org"))
    board = make_board()
    result = await search_tickets("письма покупатель")
    text, markup = search_view(board, "письма покупатель", result)
    shown = telegram_view(text)  # Telegram would accept it: valid HTML within the limits
    assert '<a href="javascript:x">пришло</a>' in shown and "<script>" in shown
    assert "<b>Письмо</b> &lt;b&gt;не&lt;/b&gt; &amp;" in text
    assert "&lt;script&gt;<b>покупателю</b>&lt;/script&gt;" in text
    assert markup == {"inline_keyboard": [[{"text": f"Открыть #{ticket.id}",
                                            "callback_data": TicketAction(op=Op.OPEN, ticket_id=ticket.id).pack()}]]}
    nothing, _ = search_view(board, "<b>", await search_tickets("<b>ничего такого"))
    assert telegram_view(nothing) == "Ничего не найдено по запросу «<b>»"
    usage, _ = search_view(make_board("en"), "", await search_tickets(""))
    assert telegram_view(usage).startswith("Usage: /search text")


async def test_follow_ups_staff_replies_and_notes_are_found_as_soon_as_they_are_written(db: str) -> None:
    await romashka()
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body="Не работает выгрузка заказов.", message_id="first@romashka.ru"))
        assert await found("накладная") == []
        await desk.deliver(make_email(subject="Re: выгрузка", body="Ещё пропали накладные за октябрь.",
                                      in_reply_to="first@romashka.ru"))
        assert await Message.filter(ticket_id=ticket.id, direction="in").count() == 2  # and the acknowledgement
        assert await found("накладной") == [ticket.id]
        assert await found("накладная выгрузки") == [ticket.id]  # the words of two messages of one ticket
        staff = await StaffMember.create(telegram_id=Desk.ALICE, name="Алиса")
        assert (await desk.desk.reply(ticket.id, staff, "Перезапустили обменный модуль.", key="r1")).ok
        assert (await desk.desk.note(ticket.id, staff, "Клиент на тарифе Платина")).ok
    assert await found("модуля обмена") == []  # "обменный" is not "обмен"
    assert await found("обменного модуля") == [ticket.id]
    assert await found("платины") == [ticket.id]
    hit = (await search_tickets("платины")).hits[0]
    assert ("Платина", True) in hit.snippet
    # The template around a staff reply is not the staff's words: not what a ticket is found by.
    assert await found("уважением") == []


async def test_migration_0003_indexes_the_messages_already_there(database_url: str) -> None:
    await migrate(config=database.tortoise_config(database_url), target="models.0002_raw_mail_content")
    try:
        conn = get_connection("default")
        ticket_sql = (
            "INSERT INTO ticket (status, arrived_at, arrival_uid, month_key, counts_toward_limit, subject,"
            " sender_address, sender_name, content_hash, verdict, language, created_at, updated_at) VALUES ('new',"
            " '2026-11-24 09:00:00+00:00', 1, '2026-11', TRUE, 'Пароль', 'a@example.com', '', 'h', '{}', 'ru',"
            " '2026-11-24 09:00:00+00:00', '2026-11-24 09:00:00+00:00')"
        )
        await conn.execute_query(ticket_sql)
        for direction, kind, text in (("in", "request", "Не могу сменить пароль, ошибка E512."),
                                      ("out", "accepted", "Ваше обращение принято в работу."),
                                      ("note", "note", "Звонили клиенту")):
            await conn.execute_query(
                "INSERT INTO message (direction, kind, \"references\", from_address, from_name, \"to\", cc, subject,"
                f" text, new_text, size, attachments, created_at, ticket_id) VALUES ('{direction}', '{kind}', '',"
                f" 'a@example.com', '', '', '', 'Пароль', '{text}', '{text}', 0, '[]', '2026-11-24 09:00:00+00:00', 1)"
            )
        await database.close_db()
        assert (await database.apply_migrations(database_url))[0] == "models.0003_search"
        assert await found("пароля") == [1]
        assert await found("e512") == [1]
        assert await found("звонил") == [1]
        assert await found("принято работу") == []  # our template emails are not indexed
    finally:
        await database.close_db()


async def test_search_in_the_staff_chat_answers_members_only_and_the_button_opens_the_ticket(db: str) -> None:
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body="Не приходят письма покупателям."))
        await desk.settled()
        sent = desk.say(Desk.ALICE, "/найти письмо покупателю")
        answer = await desk.bot_reply_after(sent["message_id"])
        assert f"#{ticket.id}" in answer["text"] and "ждёт решения" in answer["text"]
        assert any(e["type"] == "bold" for e in answer.get("entities", []))
        button = answer["reply_markup"]["inline_keyboard"][0][0]
        assert button["text"] == f"Открыть #{ticket.id}"
        query = desk.press(answer["message_id"], Desk.BOB, button["callback_data"])
        await desk.answer(query)
        shown = await desk.bot_reply_after(answer["message_id"])
        assert f"Обращение #{ticket.id}" in shown["text"] and "История" in shown["text"]

        before = len(desk.fake.messages(STAFF_CHAT))
        desk.say(Desk.MALLORY, "/search письмо")  # not a member of the staff chat
        empty = desk.say(Desk.ALICE, "/search")
        usage = await desk.bot_reply_after(empty["message_id"])
        assert usage["text"].startswith("Использование: /search текст")
        bot_messages = [m for m in desk.fake.messages(STAFF_CHAT)[before:] if m["from"]["id"] == desk.fake.bot_id]
        assert bot_messages == [usage]  # nothing for Mallory's search
