"""The interfaces the domain calls out through. Adapters implement them: `mail.mailer.TemplateMailer`
composes emails, `bot.board.TelegramBoard` renders staff-chat posts. The domain only ever writes what
they return into outbox rows, inside its own transactions, so every effect is persisted first."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class BoardPost:
    """One Telegram effect in the outbox's payload format (see bot/telegram_outbox.py)."""

    kind: str
    chat_id: int
    payload: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


class StaffBoard(Protocol):
    """Renders what the staff chat shows. Called inside domain transactions: reads only."""

    def new_card(self, ticket_id: int) -> BoardPost:
        """The card of a new request. Not rendered here: its payload names the ticket
        ({"render": {"ticket_card": id}}) and the sender renders it just before posting, so the card
        shows the ticket as it is then, and ingesting a request costs no rendering at all."""
        ...

    async def card_update(self, ticket_id: int) -> BoardPost: ...

    async def followup(self, ticket_id: int, message_id: int, note: str = "") -> BoardPost: ...

    async def notice(self, event: str, facts: dict[str, Any], ticket_id: int | None = None) -> BoardPost: ...
