"""An outbox row's shape: the Bot API method and the references (card, message) of its payload.

A row's payload is either an intent of the domain (models/intents.py), rendered when it is delivered,
or a message the bot layer rendered already (bot/views/messages.py, the sender's digest). The sender
reads the shape of every row on every pass (order, waiting for a card, recording the message id), so
it is computed from the payload alone: no query, no rendering.

Shape (the contract with bot/telegram_outbox.py)::

    {"method":   "sendMessage" | "editMessageText" | ...,
     "params":   {...},                         (ready messages)
     "render":   <intent payload>,              (intents: params rendered just before sending)
     "reply_to" | "target" | "record": {"ticket_card": id} | {"telegram_message_id": id} | {"message_row": id},
     "file":     {...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.intents import INTENT


def shape(payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The delivery shape of a row's payload (a ready message is its own shape)."""
    if not payload or INTENT not in payload:
        return payload or {}
    name = payload[INTENT]
    ticket_id = payload.get("ticket_id")
    if name == "new_card":
        return {"method": "sendMessage", "render": payload, "record": {"ticket_card": ticket_id}}
    if name == "card_changed":
        return {"method": "editMessageText", "render": payload, "target": {"ticket_card": ticket_id}}
    if name == "followup":
        return {"method": "sendMessage", "render": payload, "reply_to": {"ticket_card": ticket_id},
                "record": {"message_row": payload.get("message_id")}}
    if name == "staff_notice":
        if ticket_id is not None and payload.get("reply_to_card", True):
            return {"method": "sendMessage", "render": payload, "reply_to": {"ticket_card": ticket_id}}
        return {"method": "sendMessage", "render": payload}
    if name == "post_failed":
        return {"method": "sendMessage", "render": payload}
    return {"method": f"unknown intent {name!r}"}  # the sender fails such a row: "unknown method"
