"""Parsing with big base64 bodies elided (mail/elide.py) gives exactly the stdlib's parse of the bytes."""

from __future__ import annotations

import base64
import random
from email.message import Message
from pathlib import Path

import pytest

import mail.parse as parse_module
from mail.elide import MIN_ELIDED_BYTES, elide_base64_bodies, parse_eliding, restore_elided
from mail.parse import _message_from_bytes, parse_message

CORPUS = sorted(Path(__file__).with_name("corpus").glob("*.eml"))


def _b64(size: int, seed: int, width: int = 76) -> bytes:
    data = random.Random(seed).randbytes(size)
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))


def _mixed(body: bytes, part_headers: bytes, *, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    return (
        b"From: Ivan <ivan@example.ru>\r\nTo: support@storeolis.ru\r\nSubject: big\r\n"
        b"Message-ID: <big@example.ru>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="BOUND"\r\n\r\n' + preamble
        + b"--BOUND\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Добрый день, прикладываю файл.\r\n".encode()
        + b"--BOUND\r\n" + part_headers + b"\r\n" + body + b"\r\n--BOUND--\r\n" + epilogue
    )  # fmt: skip


ATTACHMENT = b'Content-Type: application/pdf; name="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
BIG = _b64(200_000, 1)


def _nested() -> bytes:
    inner = (
        b'Content-Type: multipart/alternative; boundary="ALT"\r\n\r\n--ALT\r\n'
        b"Content-Type: text/plain\r\n\r\nplain\r\n--ALT\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
        b"--ALT--\r\n"
    )
    return (
        b"From: a@example.ru\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="OUT"\r\n\r\n--OUT\r\n' + inner
        + b"--OUT\r\n" + ATTACHMENT + b"\r\n" + BIG + b"\r\n--OUT\r\n"
        + b'Content-Type: image/png; name="b.png"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + _b64(90_000, 2, 72) + b"\r\n--OUT--\r\n"
    )  # fmt: skip


def _attached_message() -> bytes:
    inner = (
        b"From: b@example.ru\r\nSubject: inner\r\n" + b'Content-Type: multipart/mixed; boundary="IN"\r\n\r\n'
    )
    inner += b"--IN\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--IN\r\n" + ATTACHMENT + b"\r\n" + BIG
    inner += b"\r\n--IN--\r\n"
    return _mixed(inner, b"Content-Type: message/rfc822\r\n")


# name -> (raw, whether the elided parse is used (True), falls back to the plain one (False), or nothing is
# elided at all (None))
CASES: dict[str, tuple[bytes, bool | None]] = {
    "attachment": (_mixed(BIG, ATTACHMENT), True),
    "attachment, LF line ends": (_mixed(BIG, ATTACHMENT).replace(b"\r\n", b"\n"), True),
    "attachment, blank lines after it": (_mixed(BIG + b"\r\n\r\n", ATTACHMENT), True),
    "attachment, 64-character lines": (_mixed(_b64(150_000, 3, 64), ATTACHMENT), True),
    "attachment, one long line": (_mixed(base64.b64encode(random.Random(4).randbytes(60_000)), ATTACHMENT), True),
    "attachment, padding in the middle": (_mixed(BIG[:50_000] + b"==\r\n" + BIG[50_000:], ATTACHMENT), True),
    "attachment, no closing boundary": (_mixed(BIG, ATTACHMENT).replace(b"\r\n--BOUND--\r\n", b"\r\n"), True),
    "attachment, epilogue": (_mixed(BIG, ATTACHMENT, epilogue=b"trailing words\r\n"), True),
    "nested alternative and two attachments": (_nested(), True),
    "attachment inside an attached message": (_attached_message(), True),
    "single-part application/pdf": (
        b"From: a@example.ru\r\nSubject: pdf\r\nMIME-Version: 1.0\r\n" + ATTACHMENT + b"\r\n" + BIG + b"\r\n",
        True,
    ),
    "text/plain in base64 (not elided)": (
        _mixed(BIG, b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n"),
        False,
    ),
    "part without transfer encoding": (_mixed(BIG, b"Content-Type: application/pdf\r\n"), False),
    "part without headers": (_mixed(BIG, b""), False),
    "base64 in the preamble": (_mixed(b"x", ATTACHMENT, preamble=BIG + b"\r\n"), False),
    "text before the base64": (_mixed(b"not base64 at all\r\n" + BIG, ATTACHMENT), None),
    "a dash line inside the base64": (_mixed(BIG[:80_000] + b"\r\n--x\r\n" + BIG[80_000:], ATTACHMENT), True),
    "client text that looks like a token": (
        _mixed(b"STOREOLISELIDED0123456789ABCDEFN0X\r\n" + BIG, ATTACHMENT),
        True,
    ),
}  # fmt: skip


def _tree(msg: Message) -> list[tuple[object, ...]]:
    """Everything the parse produced, part by part."""
    return [
        (
            part.get_content_type(),
            list(part.raw_items()),
            None if part.is_multipart() else part.get_payload(),
            [type(d).__name__ for d in part.defects],
            part.preamble,
            part.epilogue,
            part.get_unixfrom(),
        )
        for part in msg.walk()
    ]


def _parse_both(raw: bytes) -> tuple[Message, Message]:
    return parse_eliding(raw, _message_from_bytes), _message_from_bytes(raw)


@pytest.mark.parametrize("name", CASES)
def test_same_tree_as_the_stdlib(name: str) -> None:
    raw, _ = CASES[name]
    elided, plain = _parse_both(raw)
    assert _tree(elided) == _tree(plain)


@pytest.mark.parametrize("name", CASES)
def test_elided_parse_is_used_where_it_is_safe(name: str) -> None:
    raw, used = CASES[name]
    shortened, tokens = elide_base64_bodies(raw)
    if used is None:
        assert (shortened, tokens) == (raw, {})
        return
    assert tokens, "the big body must be found"
    assert len(shortened) < len(raw) - MIN_ELIDED_BYTES
    assert restore_elided(_message_from_bytes(shortened), tokens) is used


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_parses_the_same(path: Path) -> None:
    raw = path.read_bytes()
    elided, plain = _parse_both(raw)
    assert _tree(elided) == _tree(plain)


def _parse_or_error(raw: bytes) -> object:
    try:
        return parse_message(raw)
    except Exception as exc:
        return repr(exc)


@pytest.mark.parametrize("name", CASES)
def test_parse_message_is_unchanged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, _ = CASES[name]
    with_elision = _parse_or_error(raw)
    monkeypatch.setattr(parse_module, "parse_eliding", lambda raw, parse: parse(raw))
    assert with_elision == _parse_or_error(raw)


def test_small_mail_is_not_scanned() -> None:
    raw = _mixed(_b64(10_000, 5), ATTACHMENT)
    assert elide_base64_bodies(raw) == (raw, {})


def test_tokens_are_unique_to_one_parse() -> None:
    raw = _mixed(BIG, ATTACHMENT)
    assert elide_base64_bodies(raw)[1].keys() != elide_base64_bodies(raw)[1].keys()
