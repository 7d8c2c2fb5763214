"""The interfaces the domain calls out through. `mail.mailer.TemplateMailer` composes emails; the domain
writes what it returns into outbox rows, inside its own transactions, so every effect is persisted
first. Staff-chat posts need no port: the domain stores intents (models/intents.py), rendered by the
bot layer when they are delivered."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
class EmailDraft:
    """An email queued before it is composed: what it will say, stored as JSON on its outbox row, and
    composed when it is sent (mail/drafts.py), off the transaction that queued it. Its Message-ID is
    given when it is queued, so the thread's References can name it at once."""

    event: str
    thread: ThreadInfo
    context: dict[str, Any]  # the template's variables: JSON values only
    auto_submitted: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "thread": asdict(self.thread), "context": self.context,
                "auto_submitted": self.auto_submitted}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmailDraft:
        thread = dict(data["thread"])
        thread["references"] = list(thread.get("references") or [])
        return cls(event=str(data["event"]), thread=ThreadInfo(**thread), context=dict(data.get("context") or {}),
                   auto_submitted=bool(data.get("auto_submitted", True)))


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
        message_id: str | None = None,
    ) -> ComposedEmail: ...

    def new_message_id(self) -> str:
        """A Message-ID for an email composed later (a draft: mail/drafts.py), bare, without brackets."""
        ...
