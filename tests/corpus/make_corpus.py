"""Writes the .eml test corpus byte for byte. Run: `.venv/bin/python tests/corpus/make_corpus.py`.

The files are committed; this script is how they were made, so 8-bit charsets (koi8-r, windows-1251,
cp866, raw bytes in headers) are exact and reviewable. Every message is fictional; addresses use
storeolis.ru (our side) and example domains.
"""

from __future__ import annotations

import base64
import quopri
import random
from pathlib import Path

HERE = Path(__file__).parent
CRLF = b"\r\n"


def b(text: str, charset: str = "utf-8") -> bytes:
    return text.encode(charset)


def enc_word(text: str, charset: str = "utf-8", mode: str = "B") -> str:
    data = text.encode(charset)
    if mode == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    return f"=?{charset}?Q?{''.join(f'={c:02X}' if c > 127 or chr(c) in '=?_ ' else chr(c) for c in data)}?="


def b64(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def qp(data: bytes) -> bytes:
    return quopri.encodestring(data).replace(b"\n", CRLF)


def _ascii_header(line: str) -> bytes:
    """Non-ASCII text in a str header is written as one RFC 2047 word; raw 8-bit headers are passed as bytes."""
    if line.isascii():
        return line.encode("ascii")
    name, value = line.split(": ", 1)
    return f"{name}: {enc_word(value)}".encode("ascii")


def message(headers: list[str | bytes], body: bytes, sep: bytes = CRLF) -> bytes:
    lines = [h if isinstance(h, bytes) else _ascii_header(h) for h in headers]
    return sep.join(lines) + sep + sep + body


def text_body(text: str, charset: str = "utf-8") -> bytes:
    return text.replace("\n", "\r\n").encode(charset)


COMMON = [
    "Return-Path: <{addr}>",
    "Delivered-To: support@storeolis.ru",
    "Received: from mx.example.ru (mx.example.ru [192.0.2.10]) by mx.storeolis.ru; Mon, 6 Oct 2025 14:40:00 +0300",
    "Authentication-Results: mx.storeolis.ru; dkim=pass header.d=example.ru; spf=pass smtp.mailfrom=example.ru",
    "Authentication-Results: relay.example.ru; spf=pass",
    "Date: Mon, 6 Oct 2025 14:35:00 +0300",
    "To: support@storeolis.ru",
    "MIME-Version: 1.0",
]


def common(addr: str = "ivan@example.ru", msgid: str | None = None) -> list[str]:
    lines = [line.format(addr=addr) for line in COMMON]
    lines.append(f"Message-ID: <{msgid or addr.split('@')[0] + '-1@example.ru'}>")
    return lines


def ru_from(name: str, addr: str = "ivan@example.ru") -> str:
    return f"From: {enc_word(name)} <{addr}>"


def plain(charset: str = "utf-8", cte: str = "8bit") -> list[str]:
    return [f"Content-Type: text/plain; charset={charset}", f"Content-Transfer-Encoding: {cte}"]


def multipart(parts: list[tuple[list[str], bytes]], boundary: str) -> bytes:
    out = b""
    for headers, body in parts:
        out += (
            b"--"
            + boundary.encode()
            + CRLF
            + CRLF.join(h.encode() for h in headers)
            + CRLF
            + CRLF
            + body
            + CRLF
        )
    return out + b"--" + boundary.encode() + b"--" + CRLF


RU_REQUEST = "Здравствуйте!\nНе пришёл заказ номер 4521, оплата прошла 3 октября.\nПодскажите, пожалуйста, когда его отправят?"
QUOTE_RU = "Ваш заказ передан в службу доставки."
SUPPORT_RU = "Служба поддержки Storeolis"


def corpus() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    files["plain_ru_utf8.eml"] = message(
        [ru_from("Иван Петров"), *common(), f"Subject: {enc_word('Не пришёл заказ 4521')}", *plain()],
        text_body(RU_REQUEST + "\n\nС уважением,\nИван Петров\n+7 900 000-00-00\n"),
    )
    files["plain_en.eml"] = message(
        [
            "From: John Smith <John.Smith@Example.COM>",
            *common("john.smith@example.com"),
            "Subject: Order 4521 missing",
            "Cc: Jane <JANE@example.com>, accounts@example.com",
            "X-Mailer: Microsoft Outlook 16.0",
            *plain("us-ascii", "7bit"),
        ],
        text_body("Hello,\nmy order 4521 has not arrived yet. Could you check?\n\nBest regards,\nJohn\n"),
    )
    files["koi8r_body.eml"] = message(
        [
            f"From: {enc_word('Пётр Сидоров', 'koi8-r', 'Q')} <petr@example.ru>",
            *common("petr@example.ru"),
            f"Subject: {enc_word('Вопрос по доставке', 'koi8-r', 'Q')}",
            *plain("koi8-r"),
        ],
        text_body("Добрый день!\nКогда будет доставка в Казань? Жду ответа.\n", "koi8-r"),
    )
    files["cp1251_qp_body.eml"] = message(
        [
            ru_from("Ольга", "olga@example.ru"),
            *common("olga@example.ru"),
            f"Subject: {enc_word('Счёт на оплату', 'windows-1251')}",
            *plain("windows-1251", "quoted-printable"),
        ],
        qp(
            text_body(
                "Добрый вечер! Пришлите, пожалуйста, счёт на оплату для ООО «Ромашка».\n", "windows-1251"
            )
        ),
    )
    files["cp866_base64.eml"] = message(
        [
            "From: Old DOS Mailer <dos@example.ru>",
            *common("dos@example.ru"),
            "Subject: =?ibm866?B?" + base64.b64encode("Возврат товара".encode("cp866")).decode() + "?=",
            *plain("ibm866", "base64"),
        ],
        b64(
            text_body("Прошу оформить возврат товара по заказу 7788. Товар не подошёл по размеру.\n", "cp866")
        ),
    )
    files["koi8_mislabelled_cp1251.eml"] = message(
        [
            ru_from("Сергей", "sergey@example.ru"),
            *common("sergey@example.ru"),
            "Subject: Re: zakaz",
            *plain("windows-1251"),
        ],
        text_body("Здравствуйте! Посылка пришла повреждённой, коробка смята. Что делать?\n", "koi8-r"),
    )
    files["no_charset_cp1251.eml"] = message(
        [
            "From: anna@example.ru",
            *common("anna@example.ru"),
            "Subject: vopros",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: 8bit",
        ],
        text_body(
            "Можно ли изменить адрес доставки? Новый адрес: Тверь, улица Советская, дом 5.\n", "windows-1251"
        ),
    )
    # A utf-8 multibyte character split between two encoded words, in both B and Q form.
    subject_bytes = "Оплата не прошла".encode()
    files["subject_split_words.eml"] = message(
        [
            "From: =?UTF-8?Q?=D0=9C=D0=B0=D1=80?= =?UTF-8?Q?=D0=B8=D1=8F?= <maria@example.ru>",
            *common("maria@example.ru"),
            f"Subject: =?UTF-8?B?{base64.b64encode(subject_bytes[:7]).decode()}?=\r\n"
            f" =?UTF-8?B?{base64.b64encode(subject_bytes[7:]).decode()}?=",
            *plain(),
        ],
        text_body("Оплата картой не проходит, пишет «ошибка банка».\n"),
    )
    files["subject_raw_8bit_cp1251.eml"] = message(
        [
            b"From: " + "Дмитрий Козлов".encode("cp1251") + b" <dmitry@example.ru>",
            *[h.encode() for h in common("dmitry@example.ru")],
            b"Subject: " + "Где мой заказ?".encode("cp1251"),
            *[h.encode() for h in plain("windows-1251")],
        ],
        text_body("Заказ оформлен неделю назад, статус не меняется.\n", "windows-1251"),
    )
    html_gmail = (
        '<div dir="ltr">Спасибо, адрес верный: Москва, ул. Ленина, 1.<br><a href="https://example.ru/map">карта</a>'
        '</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">пн, 6 окт. 2025'
        ' г. в 14:32, Служба поддержки &lt;<a href="mailto:support@storeolis.ru">support@storeolis.ru</a>&gt;:<br>'
        '</div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Подтвердите адрес доставки.'
        "</blockquote></div>\n"
    )
    files["html_only_gmail_quote.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="CAHtml1@mail.gmail.com"),
            "Subject: Re: Адрес доставки",
            "In-Reply-To: <t-77.1@storeolis.ru>",
            "References: <t-77.0@storeolis.ru>\r\n <t-77.1@storeolis.ru>",
            "Content-Type: text/html; charset=UTF-8",
            "Content-Transfer-Encoding: quoted-printable",
        ],
        qp(html_gmail.encode()),
    )
    files["alternative.eml"] = message(
        [
            "From: John Smith <john.smith@example.com>",
            *common("john.smith@example.com"),
            "Subject: Invoice request",
            'Content-Type: multipart/alternative; boundary="alt-1"',
        ],
        multipart(
            [
                (plain("utf-8", "7bit"), text_body("Please send the invoice for order 4521.\n")),
                (
                    ["Content-Type: text/html; charset=utf-8"],
                    b"<p>Please send the <b>invoice</b> for order 4521 (HTML).</p>",
                ),
            ],
            "alt-1",
        ),
    )
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    files["attachments_pdf_image.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(),
            "Subject: Chek i foto",
            'Content-Type: multipart/mixed; boundary="mix-1"',
        ],
        multipart(
            [
                (plain(), text_body("Чек и фото повреждения во вложении.\n")),
                (
                    [
                        'Content-Type: application/pdf; name="check.pdf"',
                        'Content-Disposition: attachment; filename="check.pdf"',
                        "Content-Transfer-Encoding: base64",
                    ],
                    b64(pdf),
                ),
                (
                    [
                        "Content-Type: image/png",
                        "Content-Disposition: inline",
                        "Content-ID: <img1@example.ru>",
                        "Content-Transfer-Encoding: base64",
                    ],
                    b64(png),
                ),
            ],
            "mix-1",
        ),
    )
    ru_name = "Акт сверки №5.xlsx"
    files["attachment_rfc2231_ru.eml"] = message(
        [
            ru_from("Ольга", "olga@example.ru"),
            *common("olga@example.ru"),
            "Subject: Akt",
            'Content-Type: multipart/mixed; boundary="mix-2"',
        ],
        multipart(
            [
                (plain(), text_body("Акт во вложении.\n")),
                (
                    [
                        "Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        "Content-Disposition: attachment; filename*=utf-8''"
                        + "".join(
                            f"%{c:02X}" if c > 127 or chr(c) in " %;" else chr(c) for c in ru_name.encode()
                        ),
                        "Content-Transfer-Encoding: base64",
                    ],
                    b64(b"PK\x03\x04fake-xlsx"),
                ),
                (
                    [
                        f'Content-Type: application/pdf; name="{enc_word("Договор.pdf")}"',
                        f'Content-Disposition: attachment; filename="{enc_word("Договор.pdf")}"',
                        "Content-Transfer-Encoding: base64",
                    ],
                    b64(b"%PDF-1.4 dogovor"),
                ),
                (
                    [
                        "Content-Type: application/octet-stream",
                        "Content-Disposition: attachment; filename*0*=utf-8''%D0%A1%D0%BF%D0%B8%D1%81%D0%BE%D0%BA;",
                        " filename*1*=%20..%2F..%2Fetc%2Fpasswd.txt",
                        "Content-Transfer-Encoding: base64",
                    ],
                    b64(b"list"),
                ),
                (
                    ["Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64"],
                    b64(b"\x00\x01nameless"),
                ),
            ],
            "mix-2",
        ),
    )
    fwd_text = (
        "\n\n---------- Forwarded message ---------\nОт: Магазин Storeolis <noreply@storeolis.ru>\n"
        "Date: пн, 6 окт. 2025 г. в 10:00\nSubject: Ваш заказ 4521\nTo: <ivan@example.ru>\n\n\n"
        "Заказ 4521 оплачен и будет отправлен в течение 3 дней.\n"
    )
    fwd_html = (
        '<div dir="ltr"><br><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">'
        "---------- Forwarded message ---------<br>От: <strong>Магазин Storeolis</strong> &lt;noreply@storeolis.ru&gt;"
        "<br>Date: пн, 6 окт. 2025 г. в 10:00<br>Subject: Ваш заказ 4521<br>To: &lt;ivan@example.ru&gt;<br></div><br>"
        "<br>Заказ 4521 оплачен и будет отправлен в течение 3 дней.</div></div>"
    )
    files["forward_gmail_ru_empty.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="CAFwd@mail.gmail.com"),
            f"Subject: {enc_word('Fwd: Ваш заказ 4521')}",
            'Content-Type: multipart/alternative; boundary="fwd"',
        ],
        multipart(
            [
                (plain("UTF-8", "8bit"), text_body(fwd_text)),
                (
                    ["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: 8bit"],
                    fwd_html.encode(),
                ),
            ],
            "fwd",
        ),
    )
    files["forward_gmail_ru_html_only.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="CAFwd2@mail.gmail.com"),
            "Subject: Fwd: order",
            "Content-Type: text/html; charset=UTF-8",
            "Content-Transfer-Encoding: 8bit",
        ],
        fwd_html.encode(),
    )
    replies: dict[str, tuple[str, str, str]] = {
        # name: (new text, attribution + quote, subject)
        "reply_gmail_ru.eml": (
            "Спасибо, получил трек-номер.",
            "пн, 6 окт. 2025 г. в 14:32, Служба поддержки <support@storeolis.ru>:\n\n> "
            + QUOTE_RU
            + "\n>\n> -- \n> "
            + SUPPORT_RU
            + "\n",
            "Re: Заказ 4521",
        ),
        "reply_gmail_en_wrapped.eml": (
            "Thanks, the tracking number works.",
            "On Mon, Oct 6, 2025 at 2:32 PM Storeolis Customer Support Team <\nsupport@storeolis.ru> wrote:\n\n> Your order has been shipped.\n",
            "Re: Order 4521",
        ),
        "reply_outlook_ru.eml": (
            "Добрый день, адрес подтверждаю.\n\nС уважением,\nИван Петров\nОтдел закупок",
            "________________________________\nОт: Служба поддержки <support@storeolis.ru>\nОтправлено: 6 октября 2025 г. 14:32\n"
            "Кому: Иван Петров <ivan@example.ru>\nТема: Адрес доставки\n\nПодтвердите адрес доставки.\n",
            "RE: Адрес доставки",
        ),
        "reply_outlook_en.eml": (
            "Confirmed, please ship it.",
            "-----Original Message-----\nFrom: Storeolis Support <support@storeolis.ru>\nSent: Monday, October 6, 2025 2:32 PM\n"
            "To: John Smith <john.smith@example.com>\nSubject: Shipping address\n\nPlease confirm the shipping address.\n",
            "RE: Shipping address",
        ),
        "reply_yandex.eml": (
            "Да, всё верно, можно отправлять.",
            '06.10.2025, 14:32, "Служба поддержки" <support@storeolis.ru>:\n> Подтвердите адрес доставки.\n\n\n-- \nОтправлено из мобильного приложения Яндекс Почты\n',
            "Re: Адрес доставки",
        ),
        "reply_mailru.eml": (
            "Хорошо, жду курьера завтра.\n\n\n--\nОтправлено из мобильной Почты Mail.ru",
            "Понедельник, 6 октября 2025, 14:32 +03:00 от Служба поддержки <support@storeolis.ru>:\n\n>Курьер приедет завтра с 10 до 18.\n>\n>С уважением,\n>Служба поддержки\n",
            "Re: Доставка",
        ),
        "reply_thunderbird_ru.eml": (
            "Вот номер платёжки: 88123.\n\n-- \nИван Петров\nООО «Ромашка»",
            "06.10.2025 14:32, Служба поддержки пишет:\n> Пришлите номер платёжного поручения.\n",
            "Re: Оплата",
        ),
        "reply_apple_ru.eml": (
            "Фото прикрепить не получилось, отправлю вечером.\n\nОтправлено с iPhone",
            "6 окт. 2025 г., в 14:32, Служба поддержки <support@storeolis.ru> написал(а):\n\n> Пришлите фото повреждения.\n",
            "Re: Повреждение",
        ),
        "reply_apple_en.eml": (
            "I will send the photo tonight.\n\nSent from my iPhone",
            "On Oct 6, 2025, at 14:32, Storeolis Support <support@storeolis.ru> wrote:\n\n> Please send a photo of the damage.\n",
            "Re: Damage",
        ),
    }
    for number, (name, (new, quote, subject)) in enumerate(replies.items()):
        files[name] = message(
            [
                ru_from("Иван Петров"),
                *common(msgid=f"reply-{number}@example.ru"),
                f"Subject: {enc_word(subject)}",
                f"In-Reply-To: <ticket-{number}.2@storeolis.ru>",
                f"References: <ticket-{number}.1@storeolis.ru> <ticket-{number}.2@storeolis.ru>",
                *plain(),
            ],
            text_body(new + "\n\n" + quote),
        )
    files["reply_thebat_bottom.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="bat-1@example.ru"),
            "Subject: Re[2]: Zakaz 4521",
            "X-Mailer: The Bat! (v10.5.3) Professional",
            *plain("windows-1251", "8bit"),
        ],
        text_body(
            "Здравствуйте, Служба.\n\nВы писали 6 октября 2025 г., 14:32:\n\n> Уточните, пожалуйста, номер заказа.\n\n"
            "Номер заказа 4521, оформлен на Петрова.\n\n-- \nС уважением,\n Иван                          "
            "mailto:ivan@example.ru\n",
            "windows-1251",
        ),
    )
    outlook_html = (
        '<html><body><div>Please cancel the order, I found it elsewhere.</div><div id="appendonsend"></div>'
        '<hr><div id="divRplyFwdMsg"><b>From:</b> Storeolis Support &lt;support@storeolis.ru&gt;<br><b>Sent:</b> '
        "Monday, October 6, 2025 2:32 PM<br><b>Subject:</b> Order 4521</div><div>Your order is being packed.</div>"
        "</body></html>"
    )
    files["reply_outlook_html_only.eml"] = message(
        [
            "From: John Smith <john.smith@example.com>",
            *common("john.smith@example.com"),
            "Subject: RE: Order 4521",
            "X-Auto-Response-Suppress: All",
            "Content-Type: text/html; charset=utf-8",
        ],
        outlook_html.encode(),
    )
    tb_html = (
        '<html><body><p>Номер платёжки 88123.</p><div class="moz-cite-prefix">06.10.2025 14:32, Служба поддержки '
        'пишет:<br></div><blockquote type="cite">Пришлите номер платёжного поручения.</blockquote></body></html>'
    )
    files["reply_thunderbird_html_only.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="tb-html@example.ru"),
            "Subject: Re: Oplata",
            "User-Agent: Mozilla Thunderbird",
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ],
        tb_html.encode(),
    )
    # ---- automatic mail
    files["auto_submitted.eml"] = message(
        [
            "From: Helpdesk <helpdesk@example.com>",
            *common("helpdesk@example.com"),
            "Subject: Re: Order 4521",
            "Auto-Submitted: auto-replied",
            *plain(),
        ],
        text_body("Thank you for your message. We will answer within 2 days.\n"),
    )
    files["auto_exchange_oof_ru.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="oof@example.ru"),
            f"Subject: {enc_word('Автоматический ответ: Заказ 4521')}",
            "X-Auto-Response-Suppress: All",
            *plain(),
        ],
        text_body("Я в отпуске до 20 октября. По срочным вопросам пишите коллеге.\n"),
    )
    files["auto_exchange_generated.eml"] = message(
        [
            "From: John Smith <john.smith@example.com>",
            *common("john.smith@example.com"),
            "Subject: Order 4521",
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
            *plain(),
        ],
        text_body("I am out of the office until Monday.\n"),
    )
    files["auto_yandex_vacation.eml"] = message(
        [
            ru_from("Ольга", "olga@example.ru"),
            *common("olga@example.ru"),
            f"Subject: {enc_word('Автоответ: Re: Счёт')}",
            *plain(),
        ],
        text_body("Здравствуйте! Я в отпуске, отвечу после 15 октября.\n"),
    )
    files["auto_mailru_vacation.eml"] = message(
        [
            ru_from("Сергей", "sergey@mail.example.ru"),
            *common("sergey@mail.example.ru"),
            "Subject: Auto: Re: Dostavka",
            *plain(),
        ],
        text_body("Сейчас не могу ответить.\n"),
    )
    files["mailing_list.eml"] = message(
        [
            "From: Example News <news@lists.example.com>",
            *common("news@lists.example.com"),
            "Subject: Weekly digest",
            "List-Id: Example weekly <weekly.lists.example.com>",
            "List-Unsubscribe: <mailto:unsub@lists.example.com>",
            *plain(),
        ],
        text_body("This week: new features.\n"),
    )
    files["precedence_bulk.eml"] = message(
        [
            "From: Shop <promo@shop.example.com>",
            *common("promo@shop.example.com"),
            f"Subject: {enc_word('Скидки')}",
            "Precedence: bulk",
            *plain(),
        ],
        text_body("Скидки до 50%!\n"),
    )
    # ---- bounces
    dsn = (
        "Reporting-MTA: dns; mx.storeolis.ru\r\nX-Postfix-Queue-ID: 4F1A2\r\nArrival-Date: Mon, 6 Oct 2025 14:30:00 +0300\r\n\r\n"
        "Final-Recipient: rfc822; No.Such.User@example.net\r\nOriginal-Recipient: rfc822;no.such.user@example.net\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
    )
    returned = (
        "Return-Path: <support@storeolis.ru>\r\nFrom: Storeolis Support <support@storeolis.ru>\r\n"
        "To: no.such.user@example.net\r\nSubject: Re: Order 4521\r\nMessage-ID: <ticket-55.3@storeolis.ru>\r\n"
        "Date: Mon, 6 Oct 2025 14:29:59 +0300\r\n"
    )
    files["bounce_postfix.eml"] = message(
        [
            "From: MAILER-DAEMON@mx.storeolis.ru (Mail Delivery System)",
            "Return-Path: <>",
            "Delivered-To: support@storeolis.ru",
            "Date: Mon, 6 Oct 2025 14:30:01 +0300",
            "To: support@storeolis.ru",
            "Subject: Undelivered Mail Returned to Sender",
            "Message-ID: <20251006113001.4F1A3@mx.storeolis.ru>",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-b"',
        ],
        multipart(
            [
                (
                    ["Content-Description: Notification", "Content-Type: text/plain; charset=us-ascii"],
                    text_body(
                        "This is the mail system at host mx.storeolis.ru.\n\nI'm sorry to have to inform you that your message\n"
                        "could not be delivered to one or more recipients.\n\n<no.such.user@example.net>: host said: 550 5.1.1 User unknown\n"
                    ),
                ),
                (
                    ["Content-Description: Delivery report", "Content-Type: message/delivery-status"],
                    dsn.encode(),
                ),
                (
                    ["Content-Description: Undelivered Message Headers", "Content-Type: text/rfc822-headers"],
                    returned.encode(),
                ),
            ],
            "dsn-b",
        ),
    )
    files["bounce_yandex_ru.eml"] = message(
        [
            "From: mailer-daemon@yandex.ru",
            "Return-Path: <>",
            "Delivered-To: support@storeolis.ru",
            "Date: Mon, 6 Oct 2025 14:31:00 +0300",
            "To: support@storeolis.ru",
            f"Subject: {enc_word('Недоставленное сообщение')}",
            "Message-ID: <bounce-ya-1@yandex.ru>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="ya-b"',
        ],
        multipart(
            [
                (
                    plain(),
                    text_body(
                        "Это письмо создано автоматически сервером Яндекс.Почты.\n\nВаше письмо не удалось доставить "
                        "адресату lost.client@yandex.ru: такого ящика не существует.\n"
                    ),
                ),
                (
                    ["Content-Type: message/rfc822", "Content-Disposition: attachment"],
                    returned.replace("no.such.user@example.net", "lost.client@yandex.ru")
                    .replace("ticket-55.3", "ticket-56.1")
                    .encode()
                    + b"\r\nOriginal text\r\n",
                ),
            ],
            "ya-b",
        ),
    )
    # ---- broken
    files["broken_boundary.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="bb@example.ru"),
            "Subject: broken boundary",
            'Content-Type: multipart/mixed; boundary="never-used"',
        ],
        b"--other-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text_body("Текст внутри сломанного письма.\n")
        + b"--other-boundary--\r\n",
    )
    files["broken_base64.eml"] = message(
        [
            ru_from("Иван Петров"),
            *common(msgid="b64@example.ru"),
            "Subject: bad base64",
            'Content-Type: multipart/mixed; boundary="bb"',
        ],
        multipart(
            [
                (plain("utf-8", "base64"), b64(text_body("Текст с битым base64.\n"))[:-3] + b"!!*"),
                (
                    ["Content-Type: application/pdf; name=x.pdf", "Content-Transfer-Encoding: base64"],
                    b"JVBERi0xLjQK$$$notbase64@@@\r\n===",
                ),
            ],
            "bb",
        ),
    )
    files["header_without_colon.eml"] = message(
        [
            b"Received: from somewhere",
            b"This line has no colon at all",
            ru_from("Иван Петров").encode(),
            *[h.encode() for h in common(msgid="nocolon@example.ru")],
            b"Subject: no colon header",
            *[h.encode() for h in plain()],
        ],
        text_body("Письмо с битым заголовком.\n"),
    )
    files["headers_8bit_utf8.eml"] = message(
        [
            b"From: " + "Анна Смирнова".encode() + b" <anna@example.ru>",
            *[h.encode() for h in common("anna@example.ru")],
            b"Subject: " + "Вопрос об оплате \x01\x07".encode(),
            b"X-Injected: a\x00b",
            *[h.encode() for h in plain()],
        ],
        text_body("Можно оплатить частями?\n"),
    )
    files["no_from.eml"] = message(
        [*common(msgid="nofrom@example.ru"), "Subject: who am I", *plain()],
        text_body("Письмо без отправителя.\n"),
    )
    huge = "X" * 50_000
    received = [
        f"Received: from relay{i}.example.net (relay{i}.example.net [198.51.100.{i % 250}]) by relay{i + 1}.example.net; "
        f"Mon, 6 Oct 2025 14:{i % 60:02d}:00 +0300"
        for i in range(500)
    ]
    files["huge_headers.eml"] = message(
        [
            *received,
            "From: Flood <flood@example.com>",
            *common("flood@example.com"),
            f"Subject: {huge}",
            f"X-Long: {huge}",
            *plain(),
        ],
        text_body("Body after huge headers.\n"),
    )
    nested = text_body("Самая глубокая часть.\n")
    inner_headers = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    part = inner_headers.encode() + nested
    for level in range(50):
        boundary = f"lvl{level}"
        part = (
            (f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}\r\n').encode()
            + part
            + (f"\r\n--{boundary}--\r\n").encode()
        )
    files["deep_nesting.eml"] = (
        message(
            [
                "From: Deep <deep@example.com>",
                *common("deep@example.com"),
                "Subject: deep",
                "X-Note: 50 levels",
            ],
            b"",
        )[:-4]
        + CRLF
        + part
    )
    files["empty.eml"] = b""
    rng = random.Random(20251006)
    junk = bytes(rng.randrange(256) for _ in range(4096)).replace(b":", b"\x00")
    files["binary_junk.eml"] = junk
    files["lf_only_endings.eml"] = message(
        [
            "From: Lf User <lf@example.org>",
            "To: support@storeolis.ru",
            "Subject: unix line endings",
            "Message-ID: <lf-1@example.org>",
            "Date: Tue, 7 Oct 2025 09:00:00 -0000",
            "Content-Type: text/plain; charset=utf-8",
        ],
        b"Hello from a unix mailbox.\n\nOn Mon, Oct 6, 2025 at 2:32 PM <support@storeolis.ru> wrote:\n> old\n",
        sep=b"\n",
    )
    files["own_address_loop.eml"] = message(
        [
            "From: Storeolis Support <Support@Storeolis.ru>",
            *common("support@storeolis.ru"),
            "Subject: Re: Order 4521",
            *plain(),
        ],
        text_body("Our own answer came back to us.\n"),
    )
    files.update(charset_and_report_corpus())
    return files


def _raw_header(name: str, value: str, charset: str) -> bytes:
    """A header written as raw 8-bit bytes in `charset` (Outlook Express, Yahoo and others do)."""
    return name.encode() + b": " + value.encode(charset)


def _eml(headers: list[str | bytes], body: bytes) -> bytes:
    return CRLF.join(h if isinstance(h, bytes) else h.encode() for h in headers) + CRLF + CRLF + body


OUR_EMAIL = [
    "From: Storeolis Support <support@storeolis.ru>",
    "To: ivan@example.ru",
    "Subject: [#57] Re: Заказ 4521",
    "Message-ID: <ticket-57.2@storeolis.ru>",
    "Date: Mon, 6 Oct 2025 15:00:00 +0300",
    "Content-Type: text/plain; charset=utf-8",
]


def charset_and_report_corpus() -> dict[str, bytes]:
    """Issue 18: charsets, 8-bit attachment names, embedded messages, reports (each fails on 8382c14)."""
    files: dict[str, bytes] = {}
    cut = "Здравствуйте!\nЗаказ 4521 так и не пришёл, трек-номер не отслеживается.\n".encode() + b"\xd0"
    files["charset_utf8_cut_character.eml"] = message(
        [ru_from("Иван Петров"), *common(), f"Subject: {enc_word('Заказ 4521 не пришёл')}", *plain()],
        cut.replace(b"\n", CRLF),
    )
    files["charset_latin1_italian.eml"] = message(
        [
            "From: Giulia Rossi <giulia@example.it>",
            *common("giulia@example.it"),
            "Subject: =?iso-8859-1?Q?Ordine_4521_=E8_arrivato?=",
            *plain("iso-8859-1", "quoted-printable"),
        ],
        qp(text_body("Buongiorno,\noggi è stato consegnato il pacco, però la scatola è rotta.\n", "iso-8859-1")),
    )
    files["charset_gb2312_headers.eml"] = message(
        [
            f"From: {enc_word('张伟', 'gb2312')} <zhang@example.cn>",
            *common("zhang@example.cn"),
            f"Subject: {enc_word('关于订单4521', 'gb2312')}",
            *plain("gb2312", "base64"),
        ],
        b64(text_body("你好，订单什么时候发货？\n", "gb2312")),
    )
    zip_b64 = b64(b"PK\x05\x06" + bytes(18))
    files["attachment_8bit_names_cp1251.eml"] = _eml(
        [
            _raw_header("From", "Ольга Смирнова <olga@example.ru>", "cp1251"),
            *common("olga@example.ru"),
            _raw_header("Subject", "Документы из ФНС", "cp1251"),
            "X-Mailer: Microsoft Outlook Express 6.00.2900.5931",
            'Content-Type: multipart/mixed; boundary="oe8bit"',
        ],
        multipart(
            [
                (['Content-Type: text/plain; charset="windows-1251"', "Content-Transfer-Encoding: 8bit"],
                 text_body("Добрый день! Во вложении выписка и договор.\n", "cp1251")),
            ],
            "oe8bit",
        ).removesuffix(b"--oe8bit--" + CRLF)
        + b"--oe8bit" + CRLF
        + b'Content-Type: application/zip; name="' + "ФНС_РФ558.zip".encode("cp1251") + b'"' + CRLF
        + b"Content-Transfer-Encoding: base64" + CRLF
        + b'Content-Disposition: attachment; filename="' + "ФНС_РФ558.zip".encode("cp1251") + b'"' + CRLF
        + CRLF + zip_b64 + CRLF
        + b"--oe8bit" + CRLF
        + b'Content-Type: application/pdf; name="' + "Договор поставки.pdf".encode("cp1251") + b'"' + CRLF
        + b"Content-Transfer-Encoding: base64" + CRLF
        + b"Content-Disposition: attachment" + CRLF
        + CRLF + b64(b"%PDF-1.4 test") + CRLF
        + b"--oe8bit--" + CRLF,
    )
    files["attachment_8bit_names_utf8_koi8.eml"] = _eml(
        [
            "From: Petr <petr@example.ru>",
            *common("petr@example.ru"),
            "Subject: Scans",
            'Content-Type: multipart/mixed; boundary="y8"',
        ],
        b"--y8" + CRLF + b"Content-Type: text/plain; charset=koi8-r" + CRLF + CRLF
        + text_body("Сканы во вложении.\n", "koi8-r") + CRLF
        + b"--y8" + CRLF
        + b'Content-Type: image/jpeg; name="' + "Счёт №17.jpg".encode() + b'"' + CRLF
        + b'Content-Disposition: attachment; filename="' + "Счёт №17.jpg".encode() + b'"' + CRLF
        + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + b64(b"\xff\xd8\xff\xe0jpeg") + CRLF
        + b"--y8" + CRLF
        + b'Content-Type: application/pdf; name="' + "Акт сверки.pdf".encode("koi8-r") + b'"' + CRLF
        + b"Content-Transfer-Encoding: base64" + CRLF + CRLF + b64(b"%PDF-1.4 act") + CRLF
        + b"--y8--" + CRLF,
    )
    forwarded = _eml(
        [
            f"From: {enc_word('Мария Иванова')} <maria@example.ru>",
            "To: ivan@example.ru",
            f"Subject: {enc_word('Возврат товара')}",
            "Message-ID: <maria-9@example.ru>",
            "Date: Sun, 5 Oct 2025 10:00:00 +0300",
            *plain(),
        ],
        text_body("Прошу оформить возврат: куртка не подошла по размеру.\n"),
    )
    files["forward_attached_message_only_ru.eml"] = message(
        [ru_from("Иван Петров"), *common(), f"Subject: {enc_word('Fwd: Возврат товара')}",
         'Content-Type: multipart/mixed; boundary="fwdatt"'],
        multipart([(["Content-Type: message/rfc822", "Content-Disposition: attachment"], forwarded)], "fwdatt"),
    )
    files["forward_toplevel_message_ru.eml"] = message(
        [ru_from("Иван Петров"), *common(msgid="ivan-2@example.ru"), "Subject: Fwd", "Content-Type: message/rfc822"],
        forwarded,
    )
    files["alternative_empty_plain_ru.eml"] = message(
        [ru_from("Иван Петров"), *common(msgid="ivan-3@example.ru"), f"Subject: {enc_word('Оплата')}",
         'Content-Type: multipart/alternative; boundary="alt0"'],
        multipart(
            [
                (["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"], b""),
                (["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
                 "<html><body><p>Оплатил заказ 4521 картой, чек прикладываю.</p></body></html>".encode()),
            ],
            "alt0",
        ),
    )
    returned = _eml(OUR_EMAIL, text_body("Ваш заказ передан в службу доставки.\n"))
    files["bounce_null_sender_ru.eml"] = message(
        [
            "Return-Path: <>",
            "From: MAILER DAEMON <>",
            "To: support@storeolis.ru",
            f"Subject: {enc_word('Недоставленное сообщение')}",
            "Message-ID: <bounce-null-1@mx.example.ru>",
            "Date: Mon, 6 Oct 2025 15:01:00 +0300",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="nb"',
        ],
        multipart(
            [
                (plain(), text_body("Сообщение не удалось доставить адресату ivan@example.ru: ящик переполнен.\n")),
                (["Content-Type: message/rfc822"], returned),
            ],
            "nb",
        ),
    )
    files["bounce_postmaster_bulk.eml"] = message(
        [
            "Return-Path: <>",
            "From: postmaster@mail.example.net",
            "To: support@storeolis.ru",
            "Subject: Delivery Status Notification",
            "Precedence: bulk",
            "Message-ID: <pm-1@mail.example.net>",
            "Date: Mon, 6 Oct 2025 15:02:00 +0300",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="pm"',
        ],
        multipart(
            [
                (plain("us-ascii", "7bit"), text_body("This report relates to a message you sent.\nThe recipient is unknown.\n")),
                (["Content-Type: message/rfc822"], returned),
            ],
            "pm",
        ),
    )
    files["feedback_report_arf.eml"] = message(
        [
            "From: Yandex Feedback Loop <fbl@example-mail.ru>",
            "To: support@storeolis.ru",
            "Subject: FW: [#57] Re: Заказ 4521".replace("Заказ 4521", "Zakaz 4521"),
            "Message-ID: <arf-1@example-mail.ru>",
            "Date: Mon, 6 Oct 2025 16:00:00 +0300",
            "MIME-Version: 1.0",
            'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"',
        ],
        multipart(
            [
                (plain(), text_body("Получатель отметил это письмо как спам.\n")),
                (
                    ["Content-Type: message/feedback-report"],
                    b"Feedback-Type: abuse" + CRLF + b"User-Agent: ExampleFBL/1.0" + CRLF + b"Version: 1" + CRLF
                    + b"Original-Rcpt-To: <ivan@example.ru>" + CRLF,
                ),
                (["Content-Type: message/rfc822"], returned),
            ],
            "arf",
        ),
    )
    return files


def main() -> None:
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
