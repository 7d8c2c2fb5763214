"""Plain values describing one inbound email, independent of how it was fetched or parsed.

`mail.parse` produces `InboundMessage`; the domain (`models.ingest`, `models.policy`) consumes it.
Nothing here imports a mail or Telegram library, so the domain stays testable in isolation.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime


class MessageKind(enum.StrEnum):
    """What an inbound email is, before any policy runs."""

    REQUEST = "request"  # a person wrote to support (new request or follow-up)
    AUTO_REPLY = "auto_reply"  # out-of-office, vacation, Auto-Submitted, Precedence bulk/junk/list, List-Id
    BOUNCE = "bounce"  # delivery status notification / MAILER-DAEMON
    FEEDBACK = "feedback_report"  # ARF feedback report (a spam complaint about one of our emails)


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


# Header text is bounded where it is parsed, to the columns of models/tables.py that store it: a hostile or
# broken header can be any length, and a value over a column's limit would fail the whole ingest.
MAX_MESSAGE_ID = 250  # longer Message-ID / In-Reply-To / References entries are kept by hash (below)
MAX_ADDRESS = 320  # Ticket.sender_address, Message.from_address, ClientAddress.value (RFC 5321 allows 254)
MAX_NAME = 300  # Ticket.sender_name, Message.from_name
MAX_SUBJECT = 1000  # Ticket.subject, Message.subject
MAX_CONTENT_TYPE = 200  # an attachment's content type (message JSON, Telegram document)
_HASHED_ID_SUFFIX = "@hashed.invalid"


def bounded_message_id(value: str) -> str:
    """A message id as stored and looked up: itself when it fits, else "sha256.<64 hex>@hashed.invalid".

    Why a hash and not a cut: the same long id in a later In-Reply-To or References maps to the same
    value, so a reply still threads, and two long ids that share a prefix do not collide. The form is a
    valid msg-id (dot-atom "@" domain; `.invalid` is reserved, RFC 2606), so it may appear in References of
    our own emails. MAX_MESSAGE_ID (250) keeps every id, with "<>" and a header name, within the 998-character
    line limit of RFC 5322 when our replies quote it."""
    if len(value) <= MAX_MESSAGE_ID:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256.{digest}{_HASHED_ID_SUFFIX}"


def is_hashed_message_id(value: str) -> bool:
    return value.startswith("sha256.") and value.endswith(_HASHED_ID_SUFFIX)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, never ending in half a surrogate pair or with a dangling space."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if head and "\ud800" <= head[-1] <= "\udbff":  # a high surrogate whose partner was cut off
        head = head[:-1]
    return head.rstrip()


class MalformedMessage(Exception):
    """The bytes cannot be understood as a support email; they are quarantined as they are.

    `code` says why in a word the staff notice translates (`quarantine.<code>` in bot/i18n.py):
    unparseable, not_bytes, empty, no_headers, no_from; `str()` is the English detail for the log and
    raw_mail.error. Both travel in `args`, so the exception pickles back from a parse worker whole."""

    def __init__(self, detail: str, code: str = "unparseable") -> None:
        super().__init__(detail, code)
        self.detail = detail
        self.code = code

    def __str__(self) -> str:
        return self.detail


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: object) -> object:
    if type(value) is str:  # not isinstance: enum members (StrEnum) must stay what they are
        value = value.replace("\x00", "")
        if _LONE_SURROGATE.search(value):  # undecodable header bytes kept as surrogate escapes
            value = _LONE_SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def without_nul(message: InboundMessage) -> InboundMessage:
    """The message with NUL characters removed, and lone surrogates replaced by U+FFFD, in every text field.

    Hostile or broken mail can carry NUL bytes in its text; PostgreSQL cannot store them in text or
    JSON columns (and they mean nothing to a reader), so the domain drops them before storing. Raw 8-bit
    bytes that no charset decoded (0x80 inside an encoded word, for one) reach us as surrogate escapes,
    which no UTF-8 database, hash or Telegram message can take: each becomes U+FFFD."""
    changes = {f.name: _clean(getattr(message, f.name)) for f in fields(message)}
    return replace(message, **changes)
