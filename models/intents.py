"""What the domain asks the staff chat to show: small frozen values, stored as they are.

A use case writes an intent into a `TelegramOutbox` row in the transaction of the change that caused it
(`models/post_queue.py`); the row's payload is the intent's plain JSON (`{"intent": "card_changed",
"ticket_id": 5}`). The bot layer (`bot/views`) turns it into a message only when the outbox delivers the
row, so a card shows the ticket as it is when posted and no decision renders anything in its
transaction. The domain names no chat API here: what a card or a notice looks like is the bot's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

# The payload key that names an intent (rows written by the bot layer carry a ready message instead).
INTENT = "intent"


class Postable(Protocol):
    """What `queue_post` stores: the row's kind, its ticket and its payload. The domain's intents below,
    and the bot layer's own ready-made messages (bot/views/messages.py)."""

    @property
    def kind(self) -> str: ...

    @property
    def ticket_id(self) -> int | None: ...

    def to_payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Intent:
    name: ClassVar[str]
    kind: ClassVar[str]  # the outbox row's kind: the sender's digest and ordering read it

    def to_payload(self) -> dict[str, Any]:
        return {INTENT: self.name, **asdict(self)}


@dataclass(frozen=True)
class NewCard(_Intent):
    """The card of a new request."""

    name: ClassVar[str] = "new_card"
    kind: ClassVar[str] = "card"
    ticket_id: int


@dataclass(frozen=True)
class CardChanged(_Intent):
    """The ticket changed: its card is shown again as the ticket is when the edit goes out."""

    name: ClassVar[str] = "card_changed"
    kind: ClassVar[str] = "card_edit"
    ticket_id: int


@dataclass(frozen=True)
class Followup(_Intent):
    """A new message in a ticket's thread (a client's follow-up, a bounce, a feedback report), under its card.
    `note`: "reopened", "bounce:<recipients>", "feedback:<recipients>" or free text."""

    name: ClassVar[str] = "followup"
    kind: ClassVar[str] = "followup"
    ticket_id: int
    message_id: int
    note: str = ""


@dataclass(frozen=True)
class StaffNotice(_Intent):
    """Something staff should know: `event` names it (quarantined, email_sent, email_failed, sla_alert,
    sla_digest, outage, recovered, calendar_beyond_verified, ...), `facts` are plain JSON values. With a
    ticket it answers the ticket's card, unless `reply_to_card` is off (a chat the card is not in)."""

    name: ClassVar[str] = "staff_notice"
    kind: ClassVar[str] = "notice"
    event: str
    facts: Mapping[str, Any] = field(default_factory=dict, hash=False)
    ticket_id: int | None = None
    reply_to_card: bool = True

    def to_payload(self) -> dict[str, Any]:
        return {INTENT: self.name, "event": self.event, "facts": dict(self.facts), "ticket_id": self.ticket_id,
                "reply_to_card": self.reply_to_card}


@dataclass(frozen=True)
class PostFailed(_Intent):
    """A staff-chat post failed for good: say which, and why (plain text: whatever broke it cannot
    break this one)."""

    name: ClassVar[str] = "post_failed"
    kind: ClassVar[str] = "post_failed"
    row_kind: str
    reason: str
    ticket_id: int | None = None


Intent = NewCard | CardChanged | Followup | StaffNotice | PostFailed
INTENTS: dict[str, type[Any]] = {cls.name: cls for cls in (NewCard, CardChanged, Followup, StaffNotice, PostFailed)}


def is_intent(payload: Mapping[str, Any] | None) -> bool:
    return bool(payload) and INTENT in payload  # type: ignore[operator]


def from_payload(payload: Mapping[str, Any]) -> Intent:
    """The intent a row's payload holds; ValueError for a payload that is none (or a malformed one)."""
    name = payload.get(INTENT)
    cls = INTENTS.get(str(name))
    if cls is None:
        raise ValueError(f"unknown intent {name!r}")
    fields = {k: v for k, v in payload.items() if k != INTENT}
    try:
        return cls(**fields)  # type: ignore[no-any-return]
    except TypeError as error:
        raise ValueError(f"bad {name} intent: {error}") from error
