"""Build the bytes of one outgoing client email (rendered text/HTML -> RFC 5322 message).

The outbox stores these bytes when the decision is committed, so a retry sends exactly the same message.
Every value that may come from a client (names, subjects, ids from their headers) is reduced to one
harmless line here: nothing a client writes can add a header or a recipient.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

# CRLF as SMTP wants it; cte_type="7bit" so a Cyrillic body is base64/quoted-printable instead of raw
# 8-bit, which would depend on every relay on the way supporting 8BITMIME.
POLICY = SMTP.clone(cte_type="7bit")

MAX_HEADER_TEXT = 300  # a subject or a display name longer than this is an abuse, not a subject
MAX_REFERENCES = 20  # RFC 5322 lets References grow forever; long threads would bloat every reply
MAX_ID_LENGTH = 250

# Headers this module writes itself: extra_headers must not replace or duplicate them.
_RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "auto-submitted",
        "x-auto-response-suppress",
        "return-path",
        "received",
    }
)
_FIELD_NAME_RE = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext: printable ASCII except ":"
_ID_RE = re.compile(r"^[!-;=?-~]+$")  # printable ASCII without space, "<" and ">"
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")  # dot-atom characters only
_DOMAIN_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CONTENT_TYPE_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
# Line and paragraph separators and C0/C1 controls: each can end a header line for some parser.
_BREAKING_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# Invisible format characters (zero-width, bidi overrides such as U+202E) and lone surrogates:
# dropped, because they let a subject or name display differently from what it says.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cs"})


def make_message_id(domain: str) -> str:
    """A new globally unique Message-ID for `domain`, returned WITHOUT angle brackets
    ("3f2a...@storeolis.ru"), the same form `InboundMessage.message_id` uses; compose_email adds them."""
    domain = domain.strip().lower()
    if not domain or not _ID_RE.match(domain) or "@" in domain:
        raise ValueError(f"invalid Message-ID domain: {domain!r}")
    return f"{uuid.uuid4().hex}@{domain}"


def sanitize_header_text(value: str, max_length: int = MAX_HEADER_TEXT) -> str:
    """One safe line of header text: CR, LF, NUL, tabs and every other control or line/paragraph
    separator become a space, invisible format characters are dropped, whitespace runs collapse,
    the ends are trimmed and the result is cut to `max_length` characters (with "…")."""
    chars: list[str] = []
    for ch in str(value):
        category = unicodedata.category(ch)
        if category in _BREAKING_CATEGORIES:
            chars.append(" ")
        elif category not in _INVISIBLE_CATEGORIES:
            chars.append(ch)
    text = " ".join("".join(chars).split())
    if len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def clean_message_id(value: str | None) -> str | None:
    """A message id from a header (ours or a client's) in bare form, or None when it is unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    if not value or len(value) > MAX_ID_LENGTH or not _ID_RE.match(value):
        return None
    return value


def validate_address(address: str) -> str:
    """One plain addr-spec ("user@example.com"), returned with an IDN domain converted to ASCII.

    Raises ValueError for anything else: display names, lists, CR/LF, spaces, quoted local parts,
    several "@". The address usually comes from the client's From header, so it must be strict:
    a comma or a line break here would add a recipient.
    """
    if not isinstance(address, str) or address != address.strip() or not address:
        raise ValueError(f"invalid email address: {address!r}")
    if address.count("@") != 1:
        raise ValueError(f"invalid email address: {address!r}")
    local, domain = address.split("@")
    if not _LOCAL_RE.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError(f"invalid email address: {address!r}")
    try:
        # "почта.рф" -> "xn--80a1acny.xn--p1ai"; a non-ASCII local part would need SMTPUTF8, which we don't use.
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"invalid email address: {address!r}") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL_RE.match(label) for label in labels):
        raise ValueError(f"invalid email address: {address!r}")
    result = f"{local}@{ascii_domain}"
    if len(result) > 254:
        raise ValueError(f"invalid email address: {address!r}")
    return result


def _references(references: Iterable[str], in_reply_to: str | None) -> list[str]:
    """The client's chain, cleaned, without repeats, ending with the message we answer (RFC 5322 3.6.4),
    trimmed to the newest MAX_REFERENCES ids but always keeping the thread's first id."""
    chain: list[str] = []
    for raw in [*references, *([in_reply_to] if in_reply_to else [])]:
        msg_id = clean_message_id(raw)
        if msg_id is not None:
            if msg_id in chain:
                chain.remove(msg_id)  # keep the latest position: the parent must come last
            chain.append(msg_id)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


def _attachment_filename(name: str) -> str:
    # Path separators would let a client-supplied name point elsewhere when a recipient saves it.
    name = sanitize_header_text(name, max_length=120).replace("/", "_").replace("\\", "_").strip(". ")
    return name or "attachment"


def compose_email(
    *,
    from_address: str,
    from_name: str,
    to_address: str,
    to_name: str = "",
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: bool = True,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    extra_headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
) -> bytes:
    """The complete message as CRLF bytes, ready for SMTP.

    - text only -> text/plain; with `html` -> multipart/alternative; with attachments -> multipart/mixed;
    - `message_id`, `in_reply_to`, `references` in bare or bracketed form; an unusable client id is
      dropped, an unusable `message_id` (ours) raises ValueError;
    - `auto_submitted=True` adds "Auto-Submitted: auto-replied" (RFC 3834) so that other robots do not
      answer our robot; staff replies are written by a person and pass False;
    - `date` must be timezone-aware; default now (UTC).
    Raises ValueError for an invalid to/from address, attachment content type or extra header name.
    """
    own_id = clean_message_id(message_id)
    if own_id is None or "@" not in own_id:
        raise ValueError(f"invalid Message-ID: {message_id!r}")
    if date is None:
        date = datetime.now(UTC)
    elif date.tzinfo is None:
        raise ValueError("date must be timezone-aware")

    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(
        display_name=sanitize_header_text(from_name), addr_spec=validate_address(from_address)
    )
    msg["To"] = Address(display_name=sanitize_header_text(to_name), addr_spec=validate_address(to_address))
    msg["Subject"] = sanitize_header_text(subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{own_id}>"
    parent = clean_message_id(in_reply_to)
    if parent is not None:
        msg["In-Reply-To"] = f"<{parent}>"
    chain = _references(references, parent)
    if chain:
        msg["References"] = " ".join(f"<{ref}>" for ref in chain)
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-replied"
    # Asks Exchange/Outlook not to send out-of-office and similar auto-responses back to the desk:
    # they would arrive as new mail and, at best, waste a staff member's time.
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in (extra_headers or {}).items():
        if not _FIELD_NAME_RE.match(name) or name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header not allowed in extra_headers: {name!r}")
        msg[name] = sanitize_header_text(value)

    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        if not _CONTENT_TYPE_RE.match(content_type):
            raise ValueError(f"invalid attachment content type: {content_type!r}")
        maintype, subtype = content_type.lower().split("/")
        if maintype in ("message", "multipart"):
            # Their bodies may not be base64 (RFC 2046) and parsers would descend into them; a forwarded
            # .eml travels intact as an opaque file instead.
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            bytes(data), maintype=maintype, subtype=subtype, filename=_attachment_filename(filename)
        )
    return msg.as_bytes()
