from tests.helpers.desk import Desk, make_email
from tests.policy.factories import make_client
from bot.callbacks import Op, TicketAction


async def test_smoke(db):
    await make_client(inn="7707083893")
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email())
        card = await desk.card(ticket.id)
        print(card["text"])
        print(desk.buttons(card["message_id"]))
        q = desk.press(card["message_id"], desk.ALICE, TicketAction(op=Op.ACCEPT, ticket_id=ticket.id))
        print(await desk.answer(q))
        print(await desk.card_text(ticket.id))
