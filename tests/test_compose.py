"""Outgoing message bytes: parsed back with the stdlib, headers and parts are what a client must get."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import pytest

from mail.compose import (
    MAX_REFERENCES,
    clean_message_id,
    compose_email,
    make_message_id,
    normalize_content_type,
    sanitize_header_text,
    validate_address,
)
from mail.parse import parse_message

MSK = timezone(timedelta(hours=3))


def build(**changes: Any) -> bytes:
    kwargs: dict[str, Any] = {
        "from_address": "support@storeolis.ru",
        "from_name": "Служба поддержки Storeolis",
        "to_address": "client@example.ru",
        "to_name": "Ирина Соколова",
        "subject": "Re: Не загружается каталог [#1042]",
        "text": "Здравствуйте!\nВаше обращение принято.\n",
        "html": "<p>Здравствуйте!</p><p>Ваше обращение принято.</p>",
        "message_id": "abc123@storeolis.ru",
        "date": datetime(2026, 11, 25, 12, 30, tzinfo=MSK),
    }
    kwargs.update(changes)
    return compose_email(**kwargs)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_headers_round_trip_with_cyrillic_display_names() -> None:
    message = parse(
        build(in_reply_to="<client-1@mail.ru>", references=["<root@mail.ru>", "client-1@mail.ru"])
    )

    assert message["From"].addresses[0].display_name == "Служба поддержки Storeolis"
    assert message["From"].addresses[0].addr_spec == "support@storeolis.ru"
    assert message["To"].addresses[0].display_name == "Ирина Соколова"
    assert message["To"].addresses[0].addr_spec == "client@example.ru"
    assert message["Subject"] == "Re: Не загружается каталог [#1042]"
    assert message["Message-ID"] == "<abc123@storeolis.ru>"
    assert message["In-Reply-To"] == "<client-1@mail.ru>"
    assert message["References"] == "<root@mail.ru> <client-1@mail.ru>"
    assert message["Date"].datetime == datetime(2026, 11, 25, 12, 30, tzinfo=MSK)
    assert message["X-Auto-Response-Suppress"] == "All"
    assert "Precedence" not in message


def test_raw_bytes_are_crlf_and_7bit_with_encoded_cyrillic_headers() -> None:
    raw = build()

    raw.decode("ascii")  # no raw 8-bit anywhere: Cyrillic is RFC 2047 / base64 encoded
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]


def test_auto_submitted_only_for_automatic_replies() -> None:
    assert parse(build())["Auto-Submitted"] == "auto-replied"
    assert "Auto-Submitted" not in parse(build(auto_submitted=False))


def test_text_and_html_are_alternatives() -> None:
    message = parse(build())

    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    # base64 bodies carry the canonical CRLF line ends of MIME text.
    assert plain.get_content().replace("\r\n", "\n") == "Здравствуйте!\nВаше обращение принято.\n"
    assert "<p>Ваше обращение принято.</p>" in html.get_content()


def test_text_only_message_is_a_single_part() -> None:
    message = parse(build(html=None))

    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == "Здравствуйте!\nВаше обращение принято.\n"


def test_attachments_make_a_mixed_message_and_keep_bytes_and_names() -> None:
    pdf = b"%PDF-1.4\x00\xff binary"
    message = parse(
        build(attachments=[("счёт №5.pdf", "application/pdf", pdf), ("../../etc/passwd", "text/plain", b"x")])
    )

    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(preferencelist=("html",))
    assert body is not None and "принято" in body.get_content()
    parts = list(message.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("счёт №5.pdf", "application/pdf"),
        ("_.._etc_passwd", "text/plain"),
    ]
    assert parts[0].get_content() == pdf


def test_an_attached_email_travels_as_an_opaque_file() -> None:
    message = parse(build(attachments=[("original.eml", "message/rfc822", b"From: a@b.ru\r\n\r\nhi\r\n")]))

    (part,) = message.iter_attachments()
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_content() == b"From: a@b.ru\r\n\r\nhi\r\n"


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("text/plain; charset=utf-8", "text/plain"),  # what Telegram reports for many staff documents
        ("TEXT/Plain ;charset=\"utf-8\"", "text/plain"),
        (" application/pdf ", "application/pdf"),
        ("application/vnd.ms excel", "application/octet-stream"),  # a space inside: not a type
        ("text/plain\r\nX-Evil: 1", "application/octet-stream"),
        ("", "application/octet-stream"),
        ("plain", "application/octet-stream"),
    ],
)
def test_attachment_content_type_is_normalised_instead_of_failing(given: str, sent: str) -> None:
    assert normalize_content_type(given) == sent
    message = parse(build(attachments=[("a.txt", given, b"x")]))

    (part,) = message.iter_attachments()
    assert part.get_content_type() == sent
    assert part.get_params() == [(sent, "")]  # no parameter of Telegram's travels
    assert part.get_filename() == "a.txt" and part.get_content() in (b"x", "x")
    assert "X-Evil" not in message and all("X-Evil" not in p for p in message.walk())


# --- threading ids --------------------------------------------------------------------------------


def test_references_end_with_the_parent_and_are_limited() -> None:
    chain = [f"m{i}@mail.ru" for i in range(40)]
    message = parse(build(in_reply_to="parent@mail.ru", references=chain))

    ids = message["References"].split()
    assert len(ids) == MAX_REFERENCES
    assert ids[0] == "<m0@mail.ru>"  # the thread root survives trimming
    assert ids[-1] == "<parent@mail.ru>"
    assert ids[-2] == "<m39@mail.ru>"


def test_bad_client_ids_are_dropped_not_copied() -> None:
    message = parse(
        build(
            in_reply_to="<a b@evil>",
            references=["<ok@mail.ru>", "x@y>\r\nBcc: victim@example.com", "<<nested@x>>", ""],
        )
    )

    assert "In-Reply-To" not in message
    assert message["References"] == "<ok@mail.ru>"
    assert "Bcc" not in message


def test_an_invalid_own_message_id_raises() -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build(message_id="no at sign")


def test_make_message_id_is_bare_unique_and_on_our_domain() -> None:
    first, second = make_message_id("storeolis.ru"), make_message_id("Storeolis.RU")

    assert first != second
    assert first.endswith("@storeolis.ru") and second.endswith("@storeolis.ru")
    assert "<" not in first and clean_message_id(first) == first
    assert parse(build(message_id=first))["Message-ID"] == f"<{first}>"


@pytest.mark.parametrize("domain", ["", "bad domain", "a@b", "x\r\ny"])
def test_make_message_id_rejects_a_bad_domain(domain: str) -> None:
    with pytest.raises(ValueError):
        make_message_id(domain)


# --- header injection -----------------------------------------------------------------------------

INJECTIONS = [
    "Hello\r\nBcc: victim@example.com",
    "Hello\nX-Evil: 1",
    "Hello\rX-Evil: 1",
    "Hello\u2028X-Evil: 1",
    "Hello\u2029Bcc: victim@example.com",
    "Hello\x85X-Evil: 1",
    "Hello\x00\r\n\r\nX-Evil: 1",
]


def assert_not_injected(message: EmailMessage) -> None:
    assert "Bcc" not in message
    assert "X-Evil" not in message
    assert "Cc" not in message
    assert len(message.get_all("Subject") or []) == 1
    assert len(message.get_all("To") or []) == 1
    assert [a.addr_spec for a in message["To"].addresses] == ["client@example.ru"]


@pytest.mark.parametrize("hostile", INJECTIONS)
def test_subject_cannot_inject_headers(hostile: str) -> None:
    message = parse(build(subject=hostile))

    assert_not_injected(message)
    assert message["Subject"].startswith("Hello ")


@pytest.mark.parametrize("hostile", INJECTIONS)
def test_display_names_cannot_inject_headers(hostile: str) -> None:
    message = parse(build(to_name=hostile, from_name=hostile))

    assert_not_injected(message)
    assert message["To"].addresses[0].display_name.startswith("Hello ")


@pytest.mark.parametrize(
    "name",
    [
        'Иванов, "ООО Ромашка" <boss@evil.ru>',
        "Иванов Иван Иванович, ООО «Ромашка и партнёры», генеральный директор",
    ],
)
def test_long_or_special_display_name_stays_one_recipient_and_decodes_exactly(name: str) -> None:
    raw = build(to_name=name)
    message = parse(raw)

    assert_not_injected(message)
    # Long names are split into several encoded-words. RFC 2047 (6.2) says the folding space between
    # them is ignored; the legacy decoder does so, while Python 3.11's policy.default parser wrongly keeps
    # it inside address phrases, so the exact text is checked with decode_header.
    to_line = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\nTo: ", 1)[1].split("\r\nSubject:")[0]
    assert str(make_header(decode_header(to_line.replace("\r\n", "")))) == f"{name} <client@example.ru>"


def test_extra_headers_are_sanitized_and_cannot_replace_ours() -> None:
    message = parse(build(extra_headers={"X-Storeolis-Ticket": "1042\r\nBcc: victim@example.com"}))

    assert message["X-Storeolis-Ticket"] == "1042 Bcc: victim@example.com"
    assert_not_injected(message)
    for name in ("Bcc", "subject", "Message-ID", "X-Bad\r\nName", "Bad Name", "X:Y"):
        with pytest.raises(ValueError, match="header"):
            build(extra_headers={name: "x"})


@pytest.mark.parametrize(
    "address",
    [
        "client@example.ru\r\nBcc: victim@example.com",
        "client@example.ru\n",
        "a@example.ru, b@example.ru",
        "a@example.ru;b@example.ru",
        "a@b@example.ru",
        "Ирина <client@example.ru>",
        "client@example.ru ",
        "client example@example.ru",
        "client",
        "@example.ru",
        "client@",
        "client@localhost",
        "client@-bad-.ru",
        ".client@example.ru",
        "cli..ent@example.ru",
        "клиент@example.ru",
        "",
    ],
)
def test_invalid_to_address_raises(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build(to_address=address)


def test_internationalized_domain_is_sent_as_punycode() -> None:
    assert validate_address("client@почта.рф") == "client@xn--80a1acny.xn--p1ai"
    message = parse(build(to_address="client@почта.рф"))

    assert message["To"].addresses[0].addr_spec == "client@xn--80a1acny.xn--p1ai"


# --- sanitize_header_text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Счёт\tза\r\nноябрь  ", "Счёт за ноябрь"),
        ("a\u2028b\u2029c\x00d\x85e", "a b c d e"),
        ("zero\u200bwidth \u202eevil", "zerowidth evil"),
        ("", ""),
    ],
)
def test_sanitize_header_text(value: str, expected: str) -> None:
    assert sanitize_header_text(value) == expected


def test_sanitize_header_text_limits_length() -> None:
    result = sanitize_header_text("я" * 5000)

    assert len(result) == 300
    assert result.endswith("…")


def test_naive_date_is_refused_and_default_date_is_present() -> None:
    with pytest.raises(ValueError, match="timezone"):
        build(date=datetime(2026, 11, 25, 12, 30))
    message = parse(build(date=None))
    assert message["Date"].datetime.tzinfo is not None
    assert message["Date"].datetime.utcoffset() == UTC.utcoffset(None)



# --- nested encoded words (issue 16, finding 3) -----------------------------------------------------
# The client's header is decoded ONCE at intake (mail/parse.py); what compose gets is text that may itself
# look like an encoded word. It must travel as that literal text: encoded again by us, so that a reader
# decoding once sees "=?utf-8?b?...?=", never the CR/LF hidden inside.

HOSTILE_PAYLOADS = {
    "crlf": "Hi\r\nBcc: victim@evil.example\r\nReply-To: evil@evil.example\r\nX-Injected: yes\r\n\r\n<h1>Phish</h1>",
    "lf": "Hi\nBcc: victim@evil.example\n\n<b>Phish</b>",
    "cr": "Hi\rX-Injected: yes\r\rbody",
    "nul": "Hi\x00\r\nX-Injected: yes",
    "u2028": "Hi\u2028X-Injected: yes\u2029Bcc: victim@evil.example",
    "tab": "Hi\t\r\n\tX-Injected: yes",
    "cyrillic": "Привет\r\nBcc: victim@evil.example\r\n\r\n<h1>Фишинг</h1>",
}


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def q_word(text: str) -> str:
    encoded = "".join(
        chr(byte) if chr(byte).isalnum() and byte < 128 else "_" if byte == 32 else f"={byte:02X}"
        for byte in text.encode()
    )
    return f"=?utf-8?q?{encoded}?="


def once_decoded(payload: str, encodings: str) -> str:
    """What intake hands on for a header encoded len(encodings) + 1 times: the payload wrapped in
    `encodings` ("b", "q", "bq"...), innermost first."""
    text = payload
    for kind in encodings:
        text = b_word(text) if kind == "b" else q_word(text)
    return text


NESTED = [
    pytest.param(once_decoded(payload, enc), id=f"{name}-{enc}")
    for name, payload in HOSTILE_PAYLOADS.items()
    for enc in ("b", "q", "bb", "qb")  # decoded text = 1 or 2 more layers: nested twice or three times
] + [
    pytest.param("Re: " + b_word(HOSTILE_PAYLOADS["crlf"]) + " [#7]", id="inside-text"),
    pytest.param("x" + b_word(HOSTILE_PAYLOADS["crlf"]) + "y", id="glued-to-text"),
    pytest.param(b_word(HOSTILE_PAYLOADS["crlf"][:20]) + b_word(HOSTILE_PAYLOADS["crlf"][20:]), id="split-word"),
]

# Headers of build(html=None) with a parent id, in this order and nothing else.
TEXT_ONLY_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
    "X-Auto-Response-Suppress", "Content-Type", "Content-Transfer-Encoding", "MIME-Version",
]
MIXED_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
    "X-Auto-Response-Suppress", "MIME-Version", "Content-Type",
]
ATTACHMENT_HEADERS = ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version"]
OUR_TEXT = "Здравствуйте!\nВаше обращение принято.\n"


def raw_header(raw: bytes, name: str) -> str:
    """One header's unfolded raw value from our bytes (Python's own parser is the thing under test)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    (line,) = [line for line in head.split("\r\n") if line.startswith(f"{name}: ")]
    return line.split(": ", 1)[1]


def rfc2047(value: str) -> str:
    """The legacy RFC 2047 decoder, which (unlike 3.11's policy.default in address phrases) drops the
    folding space between adjacent encoded words as section 6.2 says."""
    return str(make_header(decode_header(value)))


@pytest.mark.parametrize("text", NESTED)
def test_a_nested_encoded_subject_travels_as_literal_text(text: str) -> None:
    raw = build(subject=text, html=None, in_reply_to="parent@mail.ru")
    message = parse(raw)

    assert list(message.keys()) == TEXT_ONLY_HEADERS
    assert message["Subject"] == sanitize_header_text(text)  # decoded once: the literal text, nothing more
    assert message.get_content().replace("\r\n", "\n").startswith(OUR_TEXT)
    assert [a.addr_spec for a in message["To"].addresses] == ["client@example.ru"]
    # Our own intake, reading our email back (a client's reply quotes it), decodes it once as well.
    assert parse_message(raw).subject == sanitize_header_text(text)


@pytest.mark.parametrize("text", NESTED)
def test_nested_encoded_display_names_stay_one_literal_name(text: str) -> None:
    raw = build(to_name=text, from_name=text, html=None, in_reply_to="parent@mail.ru")
    message = parse(raw)

    assert list(message.keys()) == TEXT_ONLY_HEADERS
    assert [a.addr_spec for a in message["To"].addresses] == ["client@example.ru"]
    assert [a.addr_spec for a in message["From"].addresses] == ["support@storeolis.ru"]
    assert message.get_content().replace("\r\n", "\n").startswith(OUR_TEXT)
    expected = sanitize_header_text(text)
    assert rfc2047(raw_header(raw, "To")) == f"{expected} <client@example.ru>"
    assert rfc2047(raw_header(raw, "From")) == f"{expected} <support@storeolis.ru>"
    assert parse_message(raw).from_name == expected


@pytest.mark.parametrize(
    "name",
    [
        *NESTED,
        # RFC 2231 look-alikes and attempts to leave the quoted parameter: carried as text.
        pytest.param("utf-8''" + quote(HOSTILE_PAYLOADS["crlf"], safe=""), id="rfc2231-text"),
        pytest.param("utf-8''" + quote(b_word(HOSTILE_PAYLOADS["crlf"]), safe=""), id="rfc2231-of-word"),
        pytest.param('a.txt"; filename*=utf-8\'\'evil%0D%0ABcc%3A%20v%40e.x; x="', id="quote-breakout"),
        pytest.param("счёт " * 40 + ".pdf", id="long-cyrillic"),
    ],
)
def test_nested_encoded_file_names_stay_inside_content_disposition(name: str) -> None:
    raw = build(html=None, in_reply_to="parent@mail.ru",
                attachments=[(name, "text/plain; charset=utf-8", b"report")])
    message = parse(raw)

    assert list(message.keys()) == MIXED_HEADERS
    body, attachment = message.get_payload()
    assert body.get_content().replace("\r\n", "\n").startswith(OUR_TEXT)
    assert list(attachment.keys()) == ATTACHMENT_HEADERS
    assert attachment.get_content_type() == "text/plain"
    assert attachment.get_content_disposition() == "attachment"
    expected = sanitize_header_text(name, max_length=120).replace("/", "_").replace("\\", "_").strip(". ")
    assert attachment.get_filename() == expected
    assert attachment.get_content() == "report"
    assert not message.defects and not attachment.defects
    assert parse_message(raw).attachments[-1].size == len(b"report")


def test_client_ids_holding_an_encoded_word_are_not_copied() -> None:
    hidden = b_word("x>\r\nBcc: victim@evil.example\r\n") + "@evil.example"
    message = parse(build(in_reply_to=hidden, references=[hidden, "ok@mail.ru"]))

    assert "In-Reply-To" not in message
    assert message["References"] == "<ok@mail.ru>"
    assert "Bcc" not in message
