"""The domain stores intents, not chat API calls: models/ names no Bot API method or payload field, and
every intent survives the trip through an outbox row's JSON payload unchanged."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bot.views.delivery import shape
from models.intents import CardChanged, Followup, NewCard, PostFailed, StaffNotice, from_payload
from models.tables import StaffMember, TelegramOutbox, Ticket, TicketStatus
from tests.helpers.desk import Desk, make_email
from tests.policy.factories import make_client

MODELS = Path(__file__).resolve().parent.parent / "models"

# Bot API methods and the request fields only a chat API has (a domain that stores these renders posts).
BOT_API_NAMES = {
    "sendMessage", "editMessageText", "editMessageReplyMarkup", "sendDocument", "sendPhoto", "deleteMessage",
    "answerCallbackQuery", "reply_markup", "parse_mode", "inline_keyboard", "callback_data",
    "link_preview_options", "reply_parameters", "force_reply", "disable_notification", "aiogram",
}


def _names_in(path: Path) -> set[str]:
    """Every string constant, identifier and imported module of a module, lower-cased."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(part.lower() for part in node.value.replace('"', " ").replace(".", " ").split())
        elif isinstance(node, ast.Name):
            found.add(node.id.lower())
        elif isinstance(node, ast.Attribute):
            found.add(node.attr.lower())
        elif isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found.update(part.lower() for m in modules for part in m.split("."))
    return found


def test_models_name_no_bot_api_method_or_field() -> None:
    wanted = {name.lower() for name in BOT_API_NAMES}
    offenders = {
        str(path.relative_to(MODELS.parent)): sorted(wanted & _names_in(path))
        for path in sorted(MODELS.rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize(
    "intent",
    [
        NewCard(7),
        CardChanged(7),
        Followup(7, 12, note="bounce:a@example.org"),
        StaffNotice("sla_alert", {"ticket_id": 7, "mention": "@bob", "items": [{"n": 1}]}, ticket_id=7,
                    reply_to_card=False),
        StaffNotice("quarantined", {"raw_mail_id": 3}),
        PostFailed("card", "Bad Request: message is too long", 7),
    ],
)
def test_an_intent_round_trips_through_the_outbox_payload(intent) -> None:
    stored = json.loads(json.dumps(intent.to_payload()))  # what the JSON column gives back
    assert from_payload(stored) == intent
    assert stored["intent"] == intent.name
    assert "render" in shape(stored)  # the sender renders it when it is delivered


def test_a_payload_that_is_no_intent_is_refused() -> None:
    with pytest.raises(ValueError):
        from_payload({"intent": "launch_rockets"})
    with pytest.raises(ValueError):
        from_payload({"intent": "new_card", "ticket": 5})
    assert shape({"intent": "launch_rockets"})["method"].startswith("unknown intent")


async def test_a_decision_stores_only_an_intent_and_the_card_shows_the_ticket_when_the_edit_goes_out(db) -> None:
    """Nothing is rendered in the decision's transaction: its row holds `card_changed`, and the card the
    sender edits shows the ticket as it is at delivery (here: closed after the acceptance was queued)."""
    await make_client(inn="7707083893", addresses=("ivan@romashka.ru",))
    async with Desk.open() as desk:
        ticket = await desk.deliver(make_email())
        assert ticket is not None
        card = await desk.card(ticket.id)
        assert (await TelegramOutbox.get(idempotency_key=f"card:{ticket.id}")).payload == NewCard(ticket.id).to_payload()
        alice = await StaffMember.create(telegram_id=Desk.ALICE, name="Алиса", username="alice")
        desk.sender.limiter.penalize(desk.chat_id, 0.5)  # the edit waits a moment: the ticket moves on meanwhile
        assert (await desk.desk.accept(ticket.id, alice, confirmed=True)).ok
        edit = await TelegramOutbox.filter(ticket_id=ticket.id, kind="card_edit").first()
        assert edit is not None and edit.payload == CardChanged(ticket.id).to_payload()
        await Ticket.filter(id=ticket.id).update(status=TicketStatus.CLOSED)
        text = await desk.card_text(ticket.id)
        assert card["message_id"] == (await desk.card(ticket.id))["message_id"]
        assert "🔒" in text and "🆕" not in text
