"""Quote, attribution, forward and signature separation for plain text and HTML."""

from __future__ import annotations

import base64
import re

import pytest

from mail import quotes
from mail.parse import parse_message
from mail.quotes import split_quoted, strip_html_quotes

NEW = "Спасибо, посылку получил."
OLD = "Ваш заказ передан в службу доставки."

ATTRIBUTION_STYLES = {
    "gmail_ru": "пн, 6 окт. 2025 г. в 14:32, Служба поддержки <support@storeolis.ru>:",
    "gmail_en": "On Mon, Oct 6, 2025 at 2:32 PM Storeolis Support <support@storeolis.ru> wrote:",
    "yandex": '06.10.2025, 14:32, "Служба поддержки" <support@storeolis.ru>:',
    "mailru": "Понедельник, 6 октября 2025, 14:32 +03:00 от Служба поддержки <support@storeolis.ru>:",
    "mailru_no_address": "Понедельник, 6 октября 2025, 14:32 +03:00 от Служба поддержки:",
    "thunderbird_ru": "06.10.2025 14:32, Служба поддержки пишет:",
    "thunderbird_en": "On 06.10.2025 14:32, Storeolis Support wrote:",
    "apple_ru": "6 окт. 2025 г., в 14:32, Служба поддержки <support@storeolis.ru> написал(а):",
    "apple_en": "On Oct 6, 2025, at 14:32, Storeolis Support <support@storeolis.ru> wrote:",
    "thebat_ru": "Вы писали 6 октября 2025 г., 14:32:",
    "thebat_en": "Monday, October 6, 2025, 2:32:45 PM, you wrote:",
}


@pytest.mark.parametrize("style", sorted(ATTRIBUTION_STYLES))
def test_attribution_with_quoted_block_is_cut(style: str) -> None:
    attribution = ATTRIBUTION_STYLES[style]
    result = split_quoted(f"{NEW}\n\n{attribution}\n\n> {OLD}\n>\n")
    assert result.new_text == NEW
    assert attribution in result.quoted_text
    assert OLD in result.quoted_text


@pytest.mark.parametrize("style", ["gmail_ru", "gmail_en", "yandex", "mailru", "thunderbird_ru", "apple_ru"])
def test_attribution_without_quote_marks_cuts_everything_after_it(style: str) -> None:
    result = split_quoted(f"{NEW}\n\n{ATTRIBUTION_STYLES[style]}\n\n{OLD}\n")
    assert result.new_text == NEW
    assert OLD in result.quoted_text


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("On Mon, Oct 6, 2025 at 2:32 PM Storeolis Customer Support Team <", "support@storeolis.ru> wrote:"),
        (
            "пн, 6 окт. 2025 г. в 14:32, Служба поддержки интернет-магазина Storeolis",
            "<support@storeolis.ru>:",
        ),
    ],
)
def test_attribution_wrapped_over_two_lines(first: str, second: str) -> None:
    result = split_quoted(f"{NEW}\n\n{first}\n{second}\n\n{OLD}\n")
    assert result.new_text == NEW
    assert second in result.quoted_text


@pytest.mark.parametrize("style", sorted(ATTRIBUTION_STYLES))
def test_only_a_line_ending_with_a_colon_is_an_attribution(style: str) -> None:
    attribution = ATTRIBUTION_STYLES[style]
    for ending in (".", ": see below", ":)"):
        line = attribution[:-1] + ending
        result = split_quoted(f"{NEW}\n\n{line}\n\n{OLD}\n")
        assert result.quoted_text == ""
        assert line in result.new_text and OLD in result.new_text
    # Whitespace after the colon, Unicode spaces included, still ends an attribution.
    result = split_quoted(f"{NEW}\n\n{attribution} \u00a0\t\u2003\n\n> {OLD}\n")
    assert result.new_text == NEW
    assert OLD in result.quoted_text


def test_wrapped_attribution_needs_a_colon_at_the_end_of_its_second_line() -> None:
    first = "On Mon, Oct 6, 2025 at 2:32 PM Storeolis Customer Support Team <"
    for second in ("support@storeolis.ru> wrote", "support@storeolis.ru> wrote: yes"):
        result = split_quoted(f"{NEW}\n\n{first}\n{second}\n\n{OLD}\n")
        assert second in result.new_text and OLD in result.new_text


@pytest.mark.parametrize(
    ("combined", "parts"),
    [
        (
            quotes._HISTORY_LINE,
            (quotes._FORWARD, quotes._SEPARATOR, quotes._UNDERSCORES, quotes._HEADER_FROM),
        ),
        (quotes._SIGNATURE_LINE, (quotes._DEVICE_FOOTER, quotes._SIGNATURE_DASHES, quotes._VALEDICTION)),
    ],
)
def test_line_prefilters_match_exactly_where_their_patterns_do(
    combined: re.Pattern[str], parts: tuple[re.Pattern[str], ...]
) -> None:
    lines = [
        *ATTRIBUTION_STYLES.values(), NEW, OLD, "", "--", "-- ", "---", "С УВАЖЕНИЕМ, Иван", "best regards",
        "BEGIN FORWARDED MESSAGE:", "-----original message-----", "__________", "**от:** Иван", "FROM: a",
        "Sent from my iPhone", "ОТПРАВЛЕНО С IPHONE", "Regardless of that", "  Von: x", "Fromage:",
    ]  # fmt: skip
    for line in lines:
        assert bool(combined.match(line)) == any(p.match(line) for p in parts), line


def test_thebat_greeting_and_bottom_posting() -> None:
    text = (
        "Здравствуйте, Служба.\n\nВы писали 6 октября 2025 г., 14:32:\n\n> Уточните номер заказа.\n\n"
        "Номер заказа 4521.\n\n-- \nС уважением,\n Иван                mailto:ivan@example.ru\n"
    )
    result = split_quoted(text)
    assert result.new_text == "Номер заказа 4521."
    assert "Здравствуйте, Служба." in result.quoted_text
    assert "mailto:ivan@example.ru" in result.quoted_text


def test_inline_replies_keep_answers_between_quotes() -> None:
    text = "> Какой размер?\n42\n> Какой цвет?\nсиний\n"
    result = split_quoted(text)
    assert result.new_text == "42\nсиний"
    assert result.quoted_text == "> Какой размер?\n> Какой цвет?"


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----",
        "-----Исходное сообщение-----",
        "-------- Оригинальное сообщение --------",
    ],
)
def test_outlook_separator_cuts(separator: str) -> None:
    result = split_quoted(f"{NEW}\n\n{separator}\nFrom: a\nSent: b\n\n{OLD}")
    assert result.new_text == NEW
    assert separator in result.quoted_text


@pytest.mark.parametrize(
    "block",
    [
        "От: Служба поддержки <support@storeolis.ru>\nОтправлено: 6 октября 2025 г. 14:32\nКому: Иван\nТема: Заказ",
        "From: Storeolis Support <support@storeolis.ru>\nSent: Monday, October 6, 2025 2:32 PM\nTo: John\nSubject: Order",
        "**From:** Storeolis Support\n**Sent:** Monday\n**Subject:** Order",
        "От кого: Служба поддержки <support@storeolis.ru>\nКому: ivan@example.ru\nДата: Понедельник, 6 октября 2025",
    ],
)
def test_header_block_cuts_with_or_without_underscores(block: str) -> None:
    for prefix in ("", "________________________________\n"):
        result = split_quoted(f"{NEW}\n\n{prefix}{block}\n\n{OLD}")
        assert result.new_text == NEW
        assert OLD in result.quoted_text


def test_single_from_line_in_own_text_is_not_a_header_block() -> None:
    text = "From: the warehouse, nothing arrived.\nPlease check."
    assert split_quoted(text).new_text == text


@pytest.mark.parametrize(
    "marker",
    [
        "---------- Forwarded message ---------",
        "-------- Пересылаемое сообщение --------",
        "-------- Перенаправленное сообщение --------",
        "Begin forwarded message:",
    ],
)
def test_bare_forward_keeps_forwarded_content_as_new_text(marker: str) -> None:
    text = f"\n\n{marker}\nОт: Магазин <shop@example.ru>\nДата: 6 октября 2025\nТема: Чек\n\nВаш чек во вложении.\n"
    result = split_quoted(text)
    assert result.forwarded
    assert "Ваш чек во вложении." in result.new_text
    assert "От: Магазин <shop@example.ru>" in result.new_text
    assert marker not in result.new_text


def test_forward_with_own_comment_keeps_only_the_comment() -> None:
    text = (
        "Посмотрите, что пришло.\n\n---------- Forwarded message ---------\nОт: Магазин\nТема: Чек\n\nЧек.\n"
    )
    result = split_quoted(text)
    assert not result.forwarded
    assert result.new_text == "Посмотрите, что пришло."
    assert "Чек." in result.quoted_text


def test_forwarded_reply_chain_is_split_inside_the_forward() -> None:
    text = (
        "-------- Пересылаемое сообщение --------\nОт: Олег\nТема: Заказ\n\nНовый текст Олега.\n\n"
        '06.10.2025, 14:32, "Магазин" <shop@example.ru>:\n> старое\n'
    )
    result = split_quoted(text)
    assert "Новый текст Олега." in result.new_text
    assert "старое" not in result.new_text


@pytest.mark.parametrize(
    "footer",
    [
        "Отправлено с iPhone",
        "Sent from my iPhone",
        "Отправлено из Почты Mail.ru",
        "Отправлено из мобильной Почты Mail.ru",
        "Отправлено из Яндекс.Почты",
        "Отправлено из мобильного приложения Яндекс Почты",
        "Get Outlook for Android",
    ],
)
def test_device_footers_are_signatures(footer: str) -> None:
    result = split_quoted(f"{NEW}\n\n{footer}\n")
    assert result.new_text == NEW
    assert result.quoted_text == footer


@pytest.mark.parametrize(
    "valediction", ["С уважением,", "С уважением, Иван", "Best regards,", "Kind regards"]
)
def test_valediction_and_following_lines_are_signature(valediction: str) -> None:
    result = split_quoted(f"{NEW}\n\n{valediction}\nИван Петров\n+7 900 000-00-00\n")
    assert result.new_text == NEW
    assert "+7 900 000-00-00" in result.quoted_text


def test_dash_dash_signature_then_quote() -> None:
    text = f"{NEW}\n-- \nИван\n\n{ATTRIBUTION_STYLES['gmail_en']}\n> {OLD}\n"
    result = split_quoted(text)
    assert result.new_text == NEW
    assert "Иван" in result.quoted_text and OLD in result.quoted_text


def test_valediction_followed_by_a_long_letter_is_not_a_signature() -> None:
    body = "\n".join(f"Пункт {i}: подробности." for i in range(15))
    text = f"С уважением к вашей работе, хочу уточнить:\n{body}"
    assert split_quoted(text).new_text == text


def test_own_words_mentioning_what_someone_wrote_are_kept() -> None:
    text = "Я оплатил 2 заказа, а менеджер написал:\nждите до понедельника.\nКогда же?"
    assert split_quoted(text).new_text == text


def test_text_without_history_is_unchanged() -> None:
    text = "Первая строка.\n\nВторая строка > не цитата."
    result = split_quoted(text)
    assert (result.new_text, result.quoted_text) == (text, "")


def test_crlf_and_empty_input() -> None:
    assert split_quoted("a\r\n> b\r\n").new_text == "a"
    assert split_quoted("") == split_quoted("\n\n")
    assert split_quoted("").new_text == ""


# ---- HTML


def test_gmail_quote_container_is_removed() -> None:
    html = (
        '<div dir="ltr">Спасибо!</div><div class="gmail_quote"><div class="gmail_attr">On Mon wrote:</div>'
        '<blockquote class="gmail_quote">old <div>nested</div></blockquote></div><div>P.S. after</div>'
    )
    result = strip_html_quotes(html)
    assert "Спасибо!" in result.new_html and "P.S. after" in result.new_html
    assert "old" not in result.new_html and "nested" not in result.new_html
    assert "On Mon wrote:" in result.quoted_html


@pytest.mark.parametrize("marker", ['<div id="divRplyFwdMsg">', '<div id="appendonsend"></div>'])
def test_outlook_markers_remove_everything_after_them(marker: str) -> None:
    html = f"<html><body><p>Новый текст</p>{marker}<b>From:</b> x</div><p>старый текст</p></body></html>"
    result = strip_html_quotes(html)
    assert "Новый текст" in result.new_html
    assert "старый текст" not in result.new_html
    assert "старый текст" in result.quoted_html


def test_thunderbird_cite_prefix_and_cite_blockquote_are_removed() -> None:
    html = (
        '<p>Ответ</p><div class="moz-cite-prefix">06.10.2025 14:32, X пишет:<br></div>'
        '<blockquote type="cite"><blockquote type="cite">старое</blockquote>ещё</blockquote><p>после</p>'
    )
    result = strip_html_quotes(html)
    assert "Ответ" in result.new_html and "после" in result.new_html
    assert "пишет" not in result.new_html and "старое" not in result.new_html and "ещё" not in result.new_html


def test_trailing_blockquote_is_removed_but_a_middle_one_is_kept() -> None:
    trailing = strip_html_quotes("<p>New</p><blockquote><p>old</p></blockquote>\n</body>")
    assert "old" not in trailing.new_html and "old" in trailing.quoted_html
    middle = strip_html_quotes("<p>New</p><blockquote><p>cited</p></blockquote><p>my answer</p>")
    assert "cited" in middle.new_html and middle.quoted_html == ""


def test_unclosed_quote_container_runs_to_the_end() -> None:
    result = strip_html_quotes('<p>keep</p><div class="gmail_quote"><p>old')
    assert result.new_html == "<p>keep</p>"


def test_html_without_quotes_is_unchanged() -> None:
    html = "<p>Just <b>text</b><br><img src=x></p>"
    assert strip_html_quotes(html).new_html == html


# ---- issue 18: the world's reply forms (Russian first); every case below failed before the fix


@pytest.mark.parametrize(
    ("own", "attribution"),
    [
        ("Добрый день,", "Пн, 4 дек. 2026 г. в 10:00, Иван <ivan@x.ru>:"),
        ("Заказ 4521 получил", "Пн, 4 дек. 2026 г. в 10:00, Иван <ivan@x.ru>:"),
        ("Спасибо", '04.12.2026, 10:00, "Служба поддержки" <support@storeolis.ru>:'),
        ("Спасибо", "Понедельник, 4 декабря 2026, 10:00 +03:00 от Служба поддержки <support@storeolis.ru>:"),
        ("Спасибо", "04.12.2026 10:00, Служба поддержки пишет:"),
        ("Hi,", "On Tue, Mar 1, 2011 at 18:02 +0530, Abhishek Kona wrote:"),
        ("Test reply", "On 04/19/2011 03:54 PM, Support <support@storeolis.ru> wrote:"),
    ],
)
def test_reply_line_directly_above_an_attribution_is_kept(own: str, attribution: str) -> None:
    for history in (f"\n{OLD}\n", f"\n> {OLD}\n"):
        result = split_quoted(f"{own}\n{attribution}\n{history}")
        assert result.new_text == own
        assert attribution in result.quoted_text and OLD in result.quoted_text


def test_reply_on_the_attribution_line_keeps_the_words_before_on() -> None:
    line = "reply On Wed, Apr 4, 2012 at 10:00 AM, Storeolis Support <support@storeolis.ru> wrote:"
    result = split_quoted(f"{line}\n\n{OLD}\n")
    assert result.new_text == "reply"
    assert OLD in result.quoted_text and "On Wed, Apr 4, 2012" in result.quoted_text


@pytest.mark.parametrize(
    "link",
    [
        '04.12.2026, 10:00, "Служба поддержки" <[support@storeolis.ru](mailto:support@storeolis.ru)>:',
        "04.12.2026, 10:00, Служба поддержки [support@storeolis.ru](mailto:support@storeolis.ru):",
    ],
)
def test_yandex_attribution_with_a_mailto_link_from_html_cuts(link: str) -> None:
    result = split_quoted(f"{NEW}\n\n{link}\n\n{OLD}\n")
    assert result.new_text == NEW
    assert OLD in result.quoted_text


@pytest.mark.parametrize(
    "block",
    [
        # Gmail's plain text of Outlook's bold header words, Russian and English
        "*От:* Служба поддержки <support@storeolis.ru>\n*Отправлено:* 4 декабря 2026 г. 10:00\n*Кому:* Иван\n"
        "*Тема:* Заказ",
        "*From:* Storeolis Support [mailto:support@storeolis.ru]\n*Sent:* Friday, December 4, 2026 10:00 AM\n"
        "*To:* john@example.com\n*Subject:* Order",
        # blocks that start with the date
        "Дата: 4 декабря 2026 г. 10:00\nОт: Служба поддержки <support@storeolis.ru>\nКому: Иван\nТема: Заказ",
        "Date: Fri, 4 Dec 2026 10:00\nFrom: Storeolis Support <support@storeolis.ru>\nTo: John\nSubject: Order",
    ],
)
def test_bold_and_date_first_header_blocks_cut_whole(block: str) -> None:
    result = split_quoted(f"{NEW}\n\n{block}\n\n{OLD}")
    assert result.new_text == NEW
    assert block.splitlines()[0] in result.quoted_text and OLD in result.quoted_text


def test_header_block_above_all_text_is_cut_but_the_text_under_it_kept() -> None:
    text = (
        "От: Иван Петров <ivan@example.ru>\nОтправлено: 4 декабря 2026 г. 10:00\nКому: support@storeolis.ru\n"
        "Тема: Заказ 4521\n\nДобрый день, заказ не пришёл.\n"
    )
    result = split_quoted(text)
    assert result.new_text == "Добрый день, заказ не пришёл."
    assert "Отправлено:" in result.quoted_text


@pytest.mark.parametrize(
    "lines",
    [
        ("On Dec 16, 2011, at 12:47 PM, Storeolis Support", "<support@storeolis.ru>", "wrote:"),
        ("Am So., 1. Jan. 2023 um 17:22 Uhr", "schrieb Storeolis Support <", "support@storeolis.ru>:"),
        ("пн, 4 дек. 2026 г. в 10:00, Служба поддержки", "интернет-магазина Storeolis", "<support@storeolis.ru>:"),
    ],
)
def test_attribution_wrapped_over_three_lines(lines: tuple[str, ...]) -> None:
    result = split_quoted(f"{NEW}\n\n" + "\n".join(lines) + f"\n\n{OLD}\n")
    assert result.new_text == NEW
    assert all(line in result.quoted_text for line in lines)


# A European client's own line, then its history: each form was left in the new text before.
EUROPEAN_HISTORY = {
    "uk_separator": "-----Вихідне повідомлення-----",
    "de_separator": "-----Ursprüngliche Nachricht-----",
    "da_separator": "-----Oprindelig meddelelse-----",
    "fr_separator": "-------- Message d'origine --------",
    "es_separator": "-----Mensaje original-----",
    "pl_attribution": "Dnia 28 lutego 2023 14:00 Anna Nowak <anna.nowak@example.pl> napisał(a):",
    "it_attribution": "Il giorno 4 dic 2026, alle ore 10:00 Mario Rossi <mario@example.it> ha scritto:",
    "da_attribution": "Den 24. nov. 2025 kl. 10.00 skrev Peter Petersen <peter@example.dk>:",
    "sv_attribution": "Den 4 dec. 2026 kl. 10.00 skrev Sven Svensson <sven@example.se>:",
    "pt_attribution": "Em 4 de dez. de 2026, às 10.00, Ana <ana@example.pt> escreveu:",
    "cs_attribution": "Dne 4. 12. 2026 v 10.00 Jan Novák <jan@example.cz> napsal(a):",
    "fi_attribution": "Matti Virtanen <matti@example.fi> kirjoitti 4.12.2026 kello 10.00:",
    "pl_headers": "Od: Jan Kowalski <jan@example.pl>\nWysłano: środa, 1 marca 2023 12:00\nDo: Anna\nTemat: Test",
    "fr_headers": "De : Jean Dupont <jean@example.fr>\nEnvoyé : vendredi 4 décembre 2026 10:00\nÀ : Marie\nObjet : Test",
    "es_headers": "De: Juan <juan@example.es>\nEnviado: viernes, 4 de diciembre de 2026 10:00\nPara: Ana\nAsunto: Test",
    "it_headers": "Da: Mario <mario@example.it>\nInviato: venerdì 4 dicembre 2026 10:00\nA: Anna\nOggetto: Test",
    "nl_headers": "*Van:* Jan <jan@example.nl>\n*Verzonden:* vrijdag 4 december 2026 10:00\n*Aan:* Piet\n"
    "*Onderwerp:* Test",
    "da_headers": "Fra: Hanne Hansen <hanne@example.dk>\nSendt: 24. november 2025 09:30\nTil: Søren\nEmne: Filerne",
    "sv_headers": "Från: Sven <sven@example.se>\nSkickat: den 4 december 2026 10:00\nTill: Anna\nÄmne: Test",
    "fi_headers": "Lähettäjä: Matti <matti@example.fi>\nLähetetty: 4. joulukuuta 2026 10.00\nVastaanottaja: Anna\n"
    "Aihe: Testi",
    "cs_headers": "Od: Jan Novák <jan@example.cz>\nOdesláno: 4. prosince 2026 10:00\nKomu: Eva\nPředmět: Test",
    "pt_headers": "De: Ana <ana@example.pt>\nEnviada: 4 de dezembro de 2026 10:00\nPara: João\nAssunto: Teste",
}


@pytest.mark.parametrize("form", sorted(EUROPEAN_HISTORY))
def test_european_history_forms_cut(form: str) -> None:
    history = EUROPEAN_HISTORY[form]
    result = split_quoted(f"{NEW}\n\n{history}\n\n{OLD}\n")
    assert result.new_text == NEW
    assert history.splitlines()[0] in result.quoted_text and OLD in result.quoted_text


def test_quoted_printable_soft_break_tail_stays_in_the_quote() -> None:
    text = f"{NEW}\n\nOn Fri, May 31, 2024 at 9:17 AM, Support <support@storeolis.ru> wrote:\n> Tuesday or Wednesda=\ny\n> next week.\n"
    result = split_quoted(text)
    assert result.new_text == NEW
    assert "\ny" in result.quoted_text


def test_a_sentence_starting_like_a_device_footer_is_kept() -> None:
    text = "Sent from my desk, is much easier than my mobile phone.\n\nОтправлено с работы, там удобнее."
    assert split_quoted(text).new_text == text


def test_forwarded_outlook_reply_marker_with_x_prefix_cuts_the_rest() -> None:
    html = '<p>Новый текст</p><div id="x_divRplyFwdMsg"><b>От:</b> Магазин</div><p>старый текст</p>'
    result = strip_html_quotes(html)
    assert "Новый текст" in result.new_html and "старый текст" not in result.new_html


def _html_mail(html: str) -> bytes:
    body = base64.encodebytes(html.encode("utf-8")).decode("ascii")
    return (
        "From: Ivan <ivan@example.ru>\r\nTo: support@storeolis.ru\r\nSubject: Re: order\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}"
    ).encode("ascii")


@pytest.mark.parametrize(
    "history",
    [
        # Yandex web: the address is a mailto link, which HTML-to-text writes as [..](mailto:..)
        '<div>04.12.2026, 10:00, "Служба поддержки" &lt;<a href="mailto:support@storeolis.ru">'
        "support@storeolis.ru</a>&gt;:</div><div>Ваш заказ передан в службу доставки.</div>",
        # a rule, then a French Outlook header block
        "<hr><b>De :</b> Service client<br><b>Envoyé :</b> vendredi 4 décembre 2026 10:00<br><b>À :</b> Ivan<br>"
        "<b>Objet :</b> Commande<br><p>Ваш заказ передан в службу доставки.</p>",
    ],
)
def test_html_reply_history_is_cut_after_conversion(history: str) -> None:
    msg = parse_message(_html_mail(f"<div>Добрый день, посылку получил.</div><div><br></div>{history}"))
    assert msg.new_text == "Добрый день, посылку получил."
    assert OLD in msg.quoted_text
