"""The interfaces the domain calls out through. `mail.mailer.TemplateMailer` composes emails; the domain
writes what it returns into outbox rows, inside its own transactions, so every effect is persisted
first. Staff-chat posts need no port: the domain stores intents (models/intents.py), rendered by the
bot layer when they are delivered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ThreadInfo:
    """Where an email to the client belongs: the ticket, the client's address and the mail chain."""

    ticket_id: int
    to_address: str
    to_name: str
    original_subject: str
    in_reply_to: str | None
    references: list[str]
    language: str
    client_name: str = ""


@dataclass(frozen=True)
class ComposedEmail:
    message_id: str  # bare id, no angle brackets
    recipients: list[str]
    content: bytes  # the complete RFC 5322 message, sent byte for byte
    subject: str = ""
    text: str = ""  # the plain-text part, kept on the ticket's thread


class Mailer(Protocol):
    def compose(
        self,
        event: str,
        thread: ThreadInfo,
        context: dict[str, Any],
        *,
        auto_submitted: bool = True,
        attachments: list[tuple[str, str, bytes]] | None = None,
        staff_name: str = "",
    ) -> ComposedEmail: ...
