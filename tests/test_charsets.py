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


# ---- issue 18: a declared label is trusted unless the bytes prove it wrong


def test_utf8_with_one_bad_byte_stays_utf8_with_a_replacement_character() -> None:
    data = "Привет, посылка не пришла…".encode() + b"\xd0"
    assert decode_bytes(data, "utf-8") == ("Привет, посылка не пришла…\ufffd", "utf-8")


def test_big_utf8_html_with_a_cut_character_is_not_read_as_cyrillic_8bit() -> None:
    html = "<html><body>" + "<p>Здравствуйте, заказ 4521 не пришёл.</p>" * 200 + "</body></html>"
    data = html.encode() + b"\xe2\x80"  # the last character cut in half
    text, used = decode_bytes(data, "utf-8")
    assert used == "utf-8"
    assert text.startswith(html) and text.endswith("\ufffd")


def test_unlabelled_utf8_with_a_stray_byte_is_utf8() -> None:
    data = "Когда будет доставка заказа?".encode() + b"\xff"
    assert decode_bytes(data, None) == ("Когда будет доставка заказа?\ufffd", "utf-8")


def test_8bit_cyrillic_labelled_utf8_is_still_recognised() -> None:
    assert decode_bytes(LONG_RU.encode("cp1251"), "utf-8") == (LONG_RU, "windows-1251")
    assert decode_bytes(LONG_RU.encode("koi8-r"), "utf-8") == (LONG_RU, "koi8-r")


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("oggi è stato", "iso-8859-1"),
        ("Perché la consegna è in ritardo? Però grazie", "iso-8859-1"),
        ("Très bien, à demain", "windows-1252"),
        ("Dzień dobry, przesyłka", "iso-8859-2"),
    ],
)
def test_correct_latin_labels_with_scattered_accents_stay(text: str, codec: str) -> None:
    assert decode_bytes(text.encode(codec), codec) == (text, codec)


@pytest.mark.parametrize("codec", ["iso-8859-1", "windows-1252"])
@pytest.mark.parametrize("text", [SHORT_RU, "Ответ", LONG_RU])
def test_cyrillic_mislabelled_as_latin_is_read_as_cyrillic(text: str, codec: str) -> None:
    assert decode_bytes(text.encode("cp1251"), codec)[0] == text


def test_8bit_cyrillic_labelled_us_ascii_is_read_as_cyrillic() -> None:
    assert decode_bytes(SHORT_RU.encode("cp1251"), "us-ascii") == (SHORT_RU, "windows-1251")


@pytest.mark.parametrize("text", ["你好，订单什么时候发货？", "张伟", "关于订单"])
def test_gb2312_label_is_kept(text: str) -> None:
    assert decode_bytes(text.encode("gb2312"), "gb2312") == (text, "gb2312")
    assert decode_header(f"=?gb2312?B?{base64.b64encode(text.encode('gb2312')).decode()}?=") == text


def test_latin1_encoded_word_stays_latin1() -> None:
    assert decode_header("=?iso-8859-1?Q?oggi_=E8_stato?=") == "oggi è stato"


def test_utf8_encoded_word_with_a_cut_character_stays_utf8() -> None:
    data = "Заказ не пришёл".encode()[:-1]
    assert decode_header(f"=?utf-8?B?{base64.b64encode(data).decode()}?=") == "Заказ не пришё\ufffd"


def test_raw_8bit_utf8_header_with_a_cut_character_stays_utf8() -> None:
    value = ("Где мой заказ?".encode() + b"\xd0").decode("ascii", "surrogateescape")
    assert decode_header(value) == "Где мой заказ?\ufffd"
