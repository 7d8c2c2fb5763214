"""Charset decoding as Russian mail needs it: declared labels are trusted only when the text reads well."""

from __future__ import annotations

import base64

import pytest

from mail.charsets import decode_bytes, decode_header, normalize_charset, russian_score

LONG_RU = "Здравствуйте! Посылка пришла повреждённой, коробка смята. Что делать с заказом номер 4521?"
SHORT_RU = "Когда будет доставка?"


@pytest.mark.parametrize("codec", ["utf-8", "koi8-r", "windows-1251", "cp866", "iso-8859-5"])
@pytest.mark.parametrize("text", [LONG_RU, SHORT_RU])
def test_correctly_declared_charset_is_used(codec: str, text: str) -> None:
    assert decode_bytes(text.encode(codec), codec) == (text, codec)


@pytest.mark.parametrize("codec", ["koi8-r", "windows-1251", "cp866", "iso-8859-5"])
@pytest.mark.parametrize("text", [LONG_RU, SHORT_RU, "Спасибо", "Съешь же ещё этих мягких французских булок"])
def test_undeclared_cyrillic_is_guessed(codec: str, text: str) -> None:
    decoded, used = decode_bytes(text.encode(codec), None)
    assert decoded == text
    assert used == codec


def test_koi8r_declared_as_windows_1251_is_read_as_koi8r() -> None:
    decoded, used = decode_bytes(LONG_RU.encode("koi8-r"), "windows-1251")
    assert (decoded, used) == (LONG_RU, "koi8-r")


def test_windows_1251_declared_as_koi8r_is_read_as_windows_1251() -> None:
    assert decode_bytes(LONG_RU.encode("cp1251"), "koi8-r") == (LONG_RU, "windows-1251")


def test_all_uppercase_koi8r_mislabelled_is_still_recognised() -> None:
    text = "СРОЧНО: ЗАКАЗ НЕ ПРИШЁЛ, ВЕРНИТЕ ДЕНЬГИ"
    assert decode_bytes(text.encode("koi8-r"), "windows-1251")[0] == text


def test_undeclared_cp866_is_not_taken_for_utf8() -> None:
    # "Ёлка" in cp866 is F0 AB AA A0: a valid utf-8 sequence for a rare CJK character.
    text = "Ёлка и игрушки к празднику"
    assert decode_bytes(text.encode("cp866"), None) == (text, "cp866")


def test_utf8_mislabelled_as_windows_1251_is_read_as_utf8() -> None:
    assert decode_bytes(LONG_RU.encode(), "windows-1251") == (LONG_RU, "utf-8")


def test_cp1251_mislabelled_as_latin1_is_read_as_cyrillic() -> None:
    assert decode_bytes(LONG_RU.encode("cp1251"), "iso-8859-1") == (LONG_RU, "windows-1251")


@pytest.mark.parametrize(
    ("text", "codec"),
    [("Grüße aus München, café crème", "iso-8859-1"), ("Zażółć gęślą jaźń", "iso-8859-2")],
)
def test_correctly_labelled_western_text_is_not_turned_into_cyrillic(text: str, codec: str) -> None:
    assert decode_bytes(text.encode(codec), codec) == (text, codec)


def test_ascii_is_decoded_directly() -> None:
    assert decode_bytes(b"plain ascii", "koi8-r") == ("plain ascii", "ascii")


def test_unknown_charset_falls_back_to_guessing() -> None:
    assert decode_bytes(LONG_RU.encode("cp1251"), "x-no-such-charset")[0] == LONG_RU


@pytest.mark.parametrize("name", ["unicode_escape", "raw_unicode_escape", "zlib", "base64", "idna", "rot13"])
def test_non_text_codecs_are_refused(name: str) -> None:
    assert normalize_charset(name) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("WIN-1251", "windows-1251"), ('"koi8r"', "koi8-r"), ("IBM866", "cp866"), ("", None)],
)
def test_charset_aliases(name: str, expected: str | None) -> None:
    assert normalize_charset(name) == expected


def test_utf16_declared_is_decoded() -> None:
    assert decode_bytes("Привет".encode("utf-16"), "utf-16") == ("Привет", "utf-16")


def test_garbage_never_raises_and_returns_text() -> None:
    text, used = decode_bytes(bytes(range(256)) * 4, "utf-8")
    assert isinstance(text, str) and used


def test_score_prefers_real_russian_over_wrong_readings() -> None:
    data = LONG_RU.encode("koi8-r")
    right = russian_score(data.decode("koi8-r"))
    assert right > russian_score(data.decode("cp1251"))
    assert right > russian_score(data.decode("iso-8859-5"))
    assert russian_score("РїСЂРёРІРµС‚") < russian_score("привет")


# ---- headers


def test_split_multibyte_character_across_encoded_words() -> None:
    data = "Оплата не прошла".encode()
    value = f"=?UTF-8?B?{base64.b64encode(data[:7]).decode()}?=\r\n =?UTF-8?B?{base64.b64encode(data[7:]).decode()}?="
    assert decode_header(value) == "Оплата не прошла"


def test_q_encoding_and_text_between_words() -> None:
    assert decode_header("Re: =?koi8-r?Q?=F0=D2=C9=D7=C5=D4?= world") == "Re: Привет world"
    assert decode_header("=?utf-8?q?a_b?= c") == "a b c"


def test_missing_base64_padding_is_tolerated() -> None:
    assert decode_header("=?utf-8?B?0J/RgNC40LLQtdGC?=") == "Привет"
    assert decode_header("=?utf-8?B?0J/RgNC40LLQtdGC0LA?=") == "Привета"


def test_raw_8bit_windows_1251_and_utf8_in_headers() -> None:
    cp1251 = "Где мой заказ?".encode("cp1251").decode("ascii", "surrogateescape")
    utf8 = "Где мой заказ?".encode().decode("ascii", "surrogateescape")
    assert decode_header(cp1251) == "Где мой заказ?"
    assert decode_header(utf8) == "Где мой заказ?"


def test_control_characters_and_line_breaks_are_removed() -> None:
    assert decode_header("Hello\r\n\tworld\x00\x07\u202e!") == "Hello world!"
    assert "\n" not in decode_header("=?utf-8?Q?a=0D=0Ab?=")


def test_undecodable_encoded_word_is_kept_visible() -> None:
    assert decode_header("=?utf-8?B?!!!?=") == "=?utf-8?B?!!!?="
