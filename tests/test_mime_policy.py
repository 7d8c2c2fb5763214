"""`mail.mime_policy`: policy.default with a bounded cache of header objects."""

from __future__ import annotations

import dataclasses
import email
from email import policy
from pathlib import Path

import pytest

from mail import mime_policy
from mail.parse import parse_message
from models.inbound import MalformedMessage

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    mime_policy._cached_header.cache_clear()


def _parse_all() -> list[object]:
    results: list[object] = []
    for path in sorted(CORPUS.glob("*.eml")):
        try:
            results.append(dataclasses.asdict(parse_message(path.read_bytes())))
        except MalformedMessage as exc:
            results.append(str(exc))
    return results


def test_parsing_twice_gives_equal_results() -> None:
    cold = _parse_all()
    assert mime_policy.cache_info().hits > 0  # the email package re-reads Content-Type while parsing
    warm = _parse_all()
    assert warm == cold


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Content-Type", 'multipart/alternative; boundary="b1"'),
        ("Content-Type", "text/plain; charset*=utf-8''%D1%82"),
        ("Content-Disposition", 'attachment; filename="a.pdf"'),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Type", "text/plain; charset=\udcff"),  # raw 8-bit byte as the parser stores it
        ("Subject", "=?utf-8?b?0J/RgNC40LLQtdGC?="),
    ],
)
def test_header_objects_match_policy_default(name: str, value: str) -> None:
    expected = policy.default.header_fetch_parse(name, value)
    for _ in range(2):  # a miss, then a hit
        got = mime_policy.default.header_fetch_parse(name, value)
        assert type(got).__bases__ == type(expected).__bases__  # each registry makes its own classes
        assert str(got) == str(expected)
        assert [type(d) for d in got.defects] == [type(d) for d in expected.defects]
        assert dict(getattr(got, "params", {})) == dict(getattr(expected, "params", {}))


def test_cache_is_bounded() -> None:
    for i in range(mime_policy.CACHE_ENTRIES + 50):
        mime_policy.default.header_fetch_parse("Content-Type", f'multipart/mixed; boundary="b{i}"')
    assert mime_policy.cache_info().currsize == mime_policy.CACHE_ENTRIES


def test_long_values_are_not_cached() -> None:
    value = "text/plain; name=" + "x" * mime_policy.MAX_CACHED_VALUE
    first = mime_policy.default.header_fetch_parse("Content-Type", value)
    second = mime_policy.default.header_fetch_parse("Content-Type", value)
    assert first is not second and first == second
    assert mime_policy.cache_info().currsize == 0


def test_messages_parsed_with_it_behave_like_policy_default() -> None:
    raw = (CORPUS / "attachments_pdf_image.eml").read_bytes()
    ours = email.message_from_bytes(raw, policy=mime_policy.default)
    stdlib = email.message_from_bytes(raw, policy=policy.default)
    assert [p.get_content_type() for p in ours.walk()] == [p.get_content_type() for p in stdlib.walk()]
    assert ours.as_bytes() == stdlib.as_bytes()
