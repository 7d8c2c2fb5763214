"""Plain values describing one inbound email, independent of how it was fetched or parsed.

`mail.parse` produces `InboundMessage`; the domain (`models.workflow`, `models.policy`) consumes it.
Nothing here imports a mail or Telegram library, so the domain stays testable in isolation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from datetime import datetime


class MessageKind(enum.StrEnum):
    """What an inbound email is, before any policy runs."""

    REQUEST = "request"  # a person wrote to support (new request or follow-up)
    AUTO_REPLY = "auto_reply"  # out-of-office, vacation, Auto-Submitted, Precedence bulk/junk/list, List-Id
    BOUNCE = "bounce"  # delivery status notification / MAILER-DAEMON


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """One attachment. `part_index` is the position in `EmailMessage.walk()` order, so the bytes
    can be extracted again from the stored raw message (`mail.parse.extract_attachment`)."""

    part_index: int
    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False


@dataclass(slots=True)
class InboundMessage:
    """Everything the domain needs from one email. All strings are already decoded to `str`;
    addresses are lower-cased; header values have CR/LF removed."""

    raw_size: int
    message_id: str | None  # with angle brackets stripped, e.g. "abc@host"
    in_reply_to: str | None
    references: list[str]
    resent_message_id: str | None
    from_name: str
    from_address: str  # "" when there is no usable From
    reply_to: str | None
    to: list[str]
    cc: list[str]
    delivered_to: list[str]  # Delivered-To and X-Original-To values
    subject: str
    date_header: datetime | None  # the sender's claim; never used for ordering
    text: str  # full plain text of the body (HTML converted when there is no text/plain)
    new_text: str  # the text without quoted history and signature
    quoted_text: str  # what was cut from `text` (history and signature)
    has_html: bool
    attachments: list[AttachmentInfo]
    kind: MessageKind
    kind_reason: str  # why it was classified so, e.g. "Auto-Submitted: auto-replied"
    authentication_results: list[str]  # raw Authentication-Results values, topmost (newest) first
    list_id: str | None = None
    bounced_message_ids: list[str] = field(default_factory=list)  # for bounces: ids of our mail that bounced
    bounced_recipients: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)  # parser complaints worth showing to staff
    oversize: bool = False  # larger than MAX_MESSAGE_BYTES: body may be truncated
    x_mailer: str | None = None


class MalformedMessage(Exception):
    """The bytes cannot be understood as a support email; they are quarantined as they are."""


def _clean(value: object) -> object:
    if type(value) is str:  # not isinstance: enum members (StrEnum) must stay what they are
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def without_nul(message: InboundMessage) -> InboundMessage:
    """The message with NUL characters removed from every text field.

    Hostile or broken mail can carry NUL bytes in its text; PostgreSQL cannot store them in text or
    JSON columns (and they mean nothing to a reader), so the domain drops them before storing."""
    changes = {f.name: _clean(getattr(message, f.name)) for f in fields(message)}
    return replace(message, **changes)
