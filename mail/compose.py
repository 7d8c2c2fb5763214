"""Build the bytes of one outgoing client email (rendered text/HTML -> RFC 5322 message).

The outbox stores these bytes when the decision is committed, so a retry sends exactly the same message.
Every value that may come from a client (names, subjects, ids from their headers) is reduced to one
harmless line here: nothing a client writes can add a header or a recipient.

Header values built from client or staff text are encoded HERE (RFC 2047 encoded words, RFC 2231 for file
names) and handed to the email package as finished header objects: the stdlib header registry would
otherwise parse our already-decoded text again and decode any "=?utf-8?b?...?=" in it a second time,
turning a client's literal text into CR/LF and new header lines (issue 16, finding 3).
"""

from __future__ import annotations

import base64
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime
from urllib.parse import quote

from models.clock import utcnow

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

OCTET_STREAM = "application/octet-stream"
# A word sent as is: printable ASCII that no reader can take for the start of an encoded word ("=?").
_PLAIN_WORD_RE = re.compile(r"^[!-~]{1,60}$")
# A display name sent as is: atoms only (RFC 5322 atext); anything else in a phrase is encoded.
_ATOM_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,60}$")
# A file name sent as filename="..." without RFC 2231: no quotes, backslashes, ";" or "=?".
_PLAIN_FILENAME_RE = re.compile(r"^[A-Za-z0-9 ._()+,-]{1,60}$")
# 42 UTF-8 bytes -> 56 base64 characters -> a 68-character encoded word (RFC 2047 allows 75).
_ENCODED_WORD_BYTES = 42
_RFC2231_PIECE = 60  # percent-encoded characters per filename*N* section
_FOLD_AT = 76  # header lines are folded before this many characters where a token allows it


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
    if "=?" in value:
        # No real id holds an encoded word; readers that decode In-Reply-To as text would see CR/LF.
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


def normalize_content_type(value: str | None) -> str:
    """A MIME type from outside (Telegram's `mime_type` of a staff document: "text/plain; charset=utf-8",
    "TEXT/PLAIN", " text/csv ") as a bare lower-case "type/subtype"; parameters are dropped and anything
    that is not a valid type becomes application/octet-stream. Never raises: the file still goes."""
    base = str(value or "").split(";", 1)[0].strip().lower()
    return base if _CONTENT_TYPE_RE.match(base) else OCTET_STREAM


def _attachment_filename(name: str) -> str:
    # Path separators would let a client-supplied name point elsewhere when a recipient saves it.
    name = sanitize_header_text(name, max_length=120).replace("/", "_").replace("\\", "_").strip(". ")
    return name or "attachment"


# ---- headers we encode ourselves -------------------------------------------------------------------


class BuiltHeader(str):
    """A header value we encoded ourselves, as ASCII tokens that may be folded between each other.

    The email policy stores an object with a matching `name` as is and folds it with `fold()`
    (`EmailPolicy.header_store_parse` / `_fold`), so the header registry never parses, and never
    decodes, the value again."""

    name: str
    tokens: tuple[str, ...]

    def __new__(cls, name: str, tokens: Sequence[str]) -> BuiltHeader:
        self = super().__new__(cls, " ".join(tokens))
        self.name = name
        self.tokens = tuple(tokens)
        return self

    def fold(self, *, policy: Policy) -> str:
        lines = [f"{self.name}:"]
        for token in self.tokens:
            if len(lines[-1]) + 1 + len(token) > _FOLD_AT and lines[-1] != f"{self.name}:":
                lines.append("")
            lines[-1] += " " + token  # a continuation line starts with this space
        return policy.linesep.join(lines) + policy.linesep


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 base64 words of at most 75 characters, never splitting a character. Readers
    drop the folding space between adjacent words, so the text's own spaces travel inside the words."""
    chunks: list[bytes] = []
    chunk = b""
    for ch in text:
        data = ch.encode("utf-8")
        if chunk and len(chunk) + len(data) > _ENCODED_WORD_BYTES:
            chunks.append(chunk)
            chunk = b""
        chunk += data
    if chunk:
        chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks]


def _is_plain_word(word: str) -> bool:
    return bool(_PLAIN_WORD_RE.match(word)) and "=?" not in word


def _text_tokens(text: str) -> list[str]:
    """Tokens of an unstructured header (Subject) for sanitized `text`: plain ASCII words as they are,
    each run of other words (non-ASCII, or holding "=?") as encoded words, so that a reader decoding
    once gets exactly `text` back, literal "=?...?=" included."""
    tokens: list[str] = []
    run: list[str] = []
    for word in text.split(" ") if text else []:
        if _is_plain_word(word):
            if run:
                tokens += _encoded_words(" ".join(run))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += _encoded_words(" ".join(run))
    return tokens


def _phrase_tokens(name: str) -> list[str]:
    """A display name (RFC 5322 phrase): atoms as they are, anything else wholly as encoded words."""
    words = name.split(" ") if name else []
    if all(_ATOM_RE.match(w) and "=?" not in w for w in words):
        return words
    return _encoded_words(name)


def text_header(name: str, value: str) -> BuiltHeader:
    """An unstructured header from client or staff text: sanitized, then encoded by us."""
    return BuiltHeader(name, _text_tokens(sanitize_header_text(value)))


def address_header(name: str, display_name: str, address: str) -> BuiltHeader:
    """'Name <addr>' with the name sanitized and encoded by us; a bare address without a name."""
    addr_spec = validate_address(address)
    phrase = _phrase_tokens(sanitize_header_text(display_name))
    return BuiltHeader(name, [*phrase, f"<{addr_spec}>"] if phrase else [addr_spec])


def disposition_header(filename: str) -> BuiltHeader:
    """'attachment; filename=...' for a sanitized file name: a plain name quoted, any other as RFC 2231
    UTF-8 percent-encoding in sections (filename*0*=utf-8''...), which readers decode exactly once."""
    name = _attachment_filename(filename)
    if _PLAIN_FILENAME_RE.match(name):
        return BuiltHeader("Content-Disposition", ["attachment;", f'filename="{name}"'])
    encoded = quote(name.encode("utf-8"), safe="")
    pieces: list[str] = []
    while encoded:
        cut = min(_RFC2231_PIECE, len(encoded))
        # Never split a %XX triplet between sections.
        if "%" in encoded[max(cut - 2, 0) : cut] and cut < len(encoded):
            cut = encoded.rindex("%", 0, cut)
        pieces.append(encoded[:cut])
        encoded = encoded[cut:]
    if len(pieces) == 1:
        return BuiltHeader("Content-Disposition", ["attachment;", f"filename*=utf-8''{pieces[0]}"])
    params = [
        f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{piece}{';' if i < len(pieces) - 1 else ''}"
        for i, piece in enumerate(pieces)
    ]
    return BuiltHeader("Content-Disposition", ["attachment;", *params])


def _literal_header(name: str, value: str) -> BuiltHeader:
    """A header whose value we produced and validated as ASCII (ids, references): stored unparsed, because
    a client's Message-ID may hold "=?...?=" that the registry would decode into CR/LF."""
    return BuiltHeader(name, value.split(" "))


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
    - attachment content types are normalised (`normalize_content_type`), file names encoded by us.
    Raises ValueError for an invalid to/from address or extra header name.
    """
    own_id = clean_message_id(message_id)
    if own_id is None or "@" not in own_id:
        raise ValueError(f"invalid Message-ID: {message_id!r}")
    if date is None:
        date = utcnow()
    elif date.tzinfo is None:
        raise ValueError("date must be timezone-aware")

    msg = EmailMessage(policy=POLICY)
    msg["From"] = address_header("From", from_name, from_address)
    msg["To"] = address_header("To", to_name, to_address)
    msg["Subject"] = text_header("Subject", subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = _literal_header("Message-ID", f"<{own_id}>")
    parent = clean_message_id(in_reply_to)
    if parent is not None:
        msg["In-Reply-To"] = _literal_header("In-Reply-To", f"<{parent}>")
    chain = _references(references, parent)
    if chain:
        msg["References"] = _literal_header("References", " ".join(f"<{ref}>" for ref in chain))
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-replied"
    # Asks Exchange/Outlook not to send out-of-office and similar auto-responses back to the desk:
    # they would arrive as new mail and, at best, waste a staff member's time.
    msg["X-Auto-Response-Suppress"] = "All"
    for name, value in (extra_headers or {}).items():
        if not _FIELD_NAME_RE.match(name) or name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header not allowed in extra_headers: {name!r}")
        msg[name] = text_header(name, value)

    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        # Types come from Telegram (a staff document's mime_type): normalised, never a reason to fail.
        maintype, subtype = normalize_content_type(content_type).split("/")
        if maintype in ("message", "multipart"):
            # Their bodies may not be base64 (RFC 2046) and parsers would descend into them; a forwarded
            # .eml travels intact as an opaque file instead.
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(bytes(data), maintype=maintype, subtype=subtype, disposition="attachment")
        part = msg.get_payload()[-1]
        assert isinstance(part, EmailMessage)
        # Not add_attachment(filename=...): set_param re-parses the name and decodes "=?...?=" in it.
        part.replace_header("Content-Disposition", disposition_header(filename))
    return msg.as_bytes()
