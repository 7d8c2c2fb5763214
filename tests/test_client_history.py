"""Issue 20 item 5: a client's history in the staff chat. /client shows each client's last ten requests
(number, date, status, subject) and this month's count against the limit of 2.6, with a button per
request that opens it like /ticket N; the card's "…" menu has "Client history", which shows the same."""

from __future__ import annotations

from typing import Any

from bot.callbacks import Op, TicketAction
from tests.helpers.desk import Desk, make_email
from tests.policy.factories import make_client

TOPICS = ["выгрузка заказов", "остатки на складе", "печать чеков", "цены на маркетплейсе", "уведомления",
          "интеграция с 1С", "импорт каталога", "курьерская доставка", "личный кабинет", "отчёт по продажам",
          "скидки в корзине", "оплата картой"]


def tk(op: Op, ticket_id: int) -> TicketAction:
    return TicketAction(op=op, ticket_id=ticket_id)


async def reply_with(desk: Desk, after: int, needle: str) -> dict[str, Any]:
    """The bot's first message after `after` that says `needle` (cards may still be posted meanwhile)."""

    def find() -> dict[str, Any] | None:
        return next((m for m in desk.fake.messages(desk.chat_id)
                     if m["message_id"] > after and needle in (m.get("text") or "")), None)

    return await desk.fake.wait_for(find, 20)


def history_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#") and " · " in line]


async def test_client_command_lists_the_last_ten_requests_with_buttons_that_open_them(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open(acknowledge=False) as desk:
        tickets = [await desk.deliver(make_email(subject=f"Не работает: {topic}",
                                                 body=f"Здравствуйте! Не работает {topic}, ошибка {500 + i}."))
                   for i, topic in enumerate(TOPICS)]
        ids = [t.id for t in tickets if t is not None]
        assert len(ids) == 12
        said = desk.say(desk.BOB, "/client ромашка")
        found = await reply_with(desk, said["message_id"], "Последние обращения")
        lines = history_lines(found["text"])
        # The newest ten, newest first: number, date, status, subject.
        assert [line.split(" · ")[0] for line in lines] == [f"#{i}" for i in reversed(ids[-10:])]
        assert lines[0].split(" · ")[2:] == ["ждёт решения", "Не работает: оплата картой"]
        assert "В этом месяце: 12 из 3 обращений" in found["text"]
        buttons: list[dict[str, Any]] = [b for row in found["reply_markup"]["inline_keyboard"] for b in row]
        assert [b["text"] for b in buttons] == [f"#{i}" for i in reversed(ids[-10:])]
        assert buttons[0]["callback_data"] == tk(Op.OPEN, ids[-1]).pack()

        desk.fake.press_button(desk.chat_id, found["message_id"], desk.BOB, buttons[3]["callback_data"])
        # The /ticket view: the card and its audit trail (the needle is the trail's heading: the cards of
        # the twelve requests, paced behind the answers, are still being posted and name "#N" too).
        opened = await reply_with(desk, found["message_id"], "История:")
        assert f"Обращение #{ids[-4]}" in opened["text"]


async def test_the_cards_menu_shows_the_clients_history(db: str) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open(acknowledge=False) as desk:
        first = await desk.deliver(make_email(subject="Не работает выгрузка", body="Выгрузка заказов: ошибка 502."))
        second = await desk.deliver(make_email(subject="Не печатаются чеки", body="Касса два: ошибка ФН 235."))
        assert first is not None and second is not None
        card = await desk.card(second.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.MORE, second.id)))
        menu = {b["text"]: b["callback_data"] for b in desk.buttons(card["message_id"])}
        assert menu["🗂 История клиента"] == tk(Op.CLIENT_HISTORY, second.id).pack()
        await desk.answer(desk.press(card["message_id"], desk.ALICE, menu["🗂 История клиента"]))
        shown = await reply_with(desk, card["message_id"], "История клиента")
        assert "История клиента" in shown["text"] and "ИНН 7707083893" in shown["text"]
        assert [line.split(" · ")[0] for line in history_lines(shown["text"])] == [f"#{second.id}", f"#{first.id}"]
        assert "2 из 3 обращений" in shown["text"]
        labels = [b["text"] for row in shown["reply_markup"]["inline_keyboard"] for b in row]
        assert labels == [f"#{second.id}", f"#{first.id}"]


async def test_the_history_in_english_and_of_a_sender_no_client_matched(db: str) -> None:
    async with Desk.open(language="en", acknowledge=False) as desk:
        ticket = await desk.deliver(make_email(sender="stranger@unknown.example", subject="Orders export fails",
                                               body="The orders export fails with error 502."))
        assert ticket is not None
        card = await desk.card(ticket.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, tk(Op.MORE, ticket.id)))
        menu = {b["text"]: b["callback_data"] for b in desk.buttons(card["message_id"])}
        await desk.answer(desk.press(card["message_id"], desk.ALICE, menu["🗂 Client history"]))
        shown = await reply_with(desk, card["message_id"], "Client history")
        assert "Client history" in shown["text"] and "stranger@unknown.example" in shown["text"]
        assert history_lines(shown["text"]) and "waiting for a decision · Orders export fails" in shown["text"]
