"""Every message the bot posts or edits in a chat goes through the Telegram outbox (paced, retried,
recorded); only the answer to a button press goes straight to Telegram."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.callbacks import Op, Reason, RefuseAction, RefuseOp, TicketAction
from models.tables import OutboxStatus, TelegramOutbox, Ticket, TicketStatus
from tests.helpers.desk import STAFF_CHAT, Desk, email_text, make_email
from tests.policy.factories import make_client

HANDLERS = Path(__file__).resolve().parent.parent / "bot" / "handlers"
# aiogram's shortcuts and Bot methods that post or edit a message in a chat.
POSTING = {
    "answer", "reply", "send_message", "send_document", "send_photo", "edit_message_text",
    "edit_message_reply_markup", "edit_message_caption", "delete_message", "copy_message", "forward_message",
}
# The one exception: when the database itself fails, the outbox cannot take the answer to a staff reply,
# so it is said directly as a last resort (replies.tell).
LAST_RESORT = {("replies.py", "reply")}


def _direct_posts(path: Path) -> list[tuple[str, str]]:
    """(file, method) of every `x.method(...)` call that posts or edits through aiogram, except
    `CallbackQuery.answer` (the press's answer, done by CallbackAnswerMiddleware or access.py)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in POSTING:
            owner = ast.unparse(node.func.value)
            if node.func.attr == "answer" and owner in ("event", "query", "callback_answer"):
                continue  # answerCallbackQuery
            found.append((path.name, node.func.attr))
    return found


def test_handlers_post_nothing_past_the_outbox() -> None:
    posts = [p for path in sorted(HANDLERS.glob("*.py")) for p in _direct_posts(path)]
    assert sorted(set(posts) - LAST_RESORT) == []


async def sent_row(desk: Desk, key: str) -> TelegramOutbox:
    """The outbox row under `key` once its delivery is recorded (a moment after Telegram has the message)."""

    async def sent() -> TelegramOutbox | None:
        return await TelegramOutbox.get_or_none(idempotency_key=key, status=OutboxStatus.SENT)

    return await desk.fake.wait_for(sent)


async def test_a_command_answer_a_keyboard_swap_and_a_prompt_are_outbox_rows(db) -> None:
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email())
        card = await desk.card(ticket.id)
        said = desk.say(desk.BOB, "/help")
        help_text = await desk.bot_reply_after(said["message_id"])
        row = await sent_row(desk, f"answer:{STAFF_CHAT}:{said['message_id']}")
        assert row.result_message_id == help_text["message_id"]

        query = desk.press(card["message_id"], desk.ALICE, TicketAction(op=Op.REFUSE, ticket_id=ticket.id))
        await desk.answer(query)
        swap = await sent_row(desk, f"keyboard:{query}")
        assert swap.ticket_id == ticket.id
        assert len(desk.buttons(card["message_id"])) == 7  # the reasons and "back"


async def test_a_prompt_posted_late_still_takes_the_comment_from_a_reply(db) -> None:
    """The refusal prompt waits in the outbox (flood control here); the reply to it, once it is
    posted, is matched by the message id the outbox recorded."""
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email(body="Напишите нам модуль для 1С-Битрикс под наш сайт"))
        card = await desk.card(ticket.id)
        await desk.answer(desk.press(card["message_id"], desk.ALICE, TicketAction(op=Op.REFUSE, ticket_id=ticket.id)))
        desk.sender.limiter.penalize(STAFF_CHAT, 1.0)
        pick = RefuseAction(op=RefuseOp.PICK, ticket_id=ticket.id, reason=Reason.OUT_OF_SCOPE)
        desk.press(card["message_id"], desk.ALICE, pick)
        prompt = await desk.bot_reply_after(card["message_id"])
        row = await TelegramOutbox.get(kind="refuse_prompt")
        assert (await sent_row(desk, row.idempotency_key)).result_message_id == prompt["message_id"]
        desk.say(desk.ALICE, "Доработки делаем по отдельному договору", reply_to=prompt["message_id"])

        async def refused() -> bool:
            return (await Ticket.get(id=ticket.id)).status == TicketStatus.REFUSED

        await desk.fake.wait_for(refused)
        (mail,) = await desk.emails(ticket.id, "refused_out_of_scope")
        assert "Доработки делаем по отдельному договору" in email_text(mail)
        await desk.fake.wait_for(lambda: "Комментарий" in desk.fake.message(STAFF_CHAT, prompt["message_id"])["text"])
