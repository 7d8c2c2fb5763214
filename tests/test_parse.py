"""`mail.parse` against the .eml corpus (tests/corpus, made by make_corpus.py) and mutated bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.parse import extract_attachment, iter_attachments, parse_message
from models.inbound import MalformedMessage, MessageKind
from tests.fuzzing import examples

CORPUS = Path(__file__).parent / "corpus"
OWN = frozenset({"support@storeolis.ru"})
R, A, B = MessageKind.REQUEST, MessageKind.AUTO_REPLY, MessageKind.BOUNCE


@dataclass(frozen=True)
class Expect:
    kind: MessageKind | None  # None: MalformedMessage
    sender: str = ""
    subject: str | None = None
    new: str = ""  # must be in new_text
    not_new: str = ""  # must NOT be in new_text (quoted history, signature)
    attachments: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


IVAN = "ivan@example.ru"
EXPECTATIONS: dict[str, Expect] = {
    "plain_ru_utf8.eml": Expect(R, IVAN, "Не пришёл заказ 4521", "когда его отправят?", "+7 900 000-00-00"),
    "plain_en.eml": Expect(
        R,
        "john.smith@example.com",
        "Order 4521 missing",
        "has not arrived yet",
        "Best regards",
        extra={"cc": ["jane@example.com", "accounts@example.com"], "x_mailer": "Microsoft Outlook 16.0"},
    ),
    "koi8r_body.eml": Expect(
        R,
        "petr@example.ru",
        "Вопрос по доставке",
        "Когда будет доставка в Казань?",
        extra={"from_name": "Пётр Сидоров"},
    ),
    "cp1251_qp_body.eml": Expect(R, "olga@example.ru", "Счёт на оплату", "для ООО «Ромашка»"),
    "cp866_base64.eml": Expect(R, "dos@example.ru", "Возврат товара", "Товар не подошёл по размеру."),
    "koi8_mislabelled_cp1251.eml": Expect(R, "sergey@example.ru", "Re: zakaz", "Посылка пришла повреждённой"),
    "no_charset_cp1251.eml": Expect(R, "anna@example.ru", "vopros", "Тверь, улица Советская"),
    "subject_split_words.eml": Expect(
        R, "maria@example.ru", "Оплата не прошла", "«ошибка банка»", extra={"from_name": "Мария"}
    ),
    "subject_raw_8bit_cp1251.eml": Expect(
        R, "dmitry@example.ru", "Где мой заказ?", "статус не меняется", extra={"from_name": "Дмитрий Козлов"}
    ),
    "html_only_gmail_quote.eml": Expect(
        R,
        IVAN,
        "Re: Адрес доставки",
        "Спасибо, адрес верный",
        "Подтвердите адрес",
        extra={
            "has_html": True,
            "in_reply_to": "t-77.1@storeolis.ru",
            "references": ["t-77.0@storeolis.ru", "t-77.1@storeolis.ru"],
        },
    ),
    "alternative.eml": Expect(
        R, "john.smith@example.com", "Invoice request", "Please send the invoice", extra={"has_html": True}
    ),
    "attachments_pdf_image.eml": Expect(
        R, IVAN, "Chek i foto", "Чек и фото", attachments=("check.pdf", "attachment-3.png")
    ),
    "attachment_rfc2231_ru.eml": Expect(
        R,
        "olga@example.ru",
        "Akt",
        "Акт во вложении.",
        attachments=("Акт сверки №5.xlsx", "Договор.pdf", "passwd.txt", "attachment-5.bin"),
    ),
    "forward_gmail_ru_empty.eml": Expect(
        R, IVAN, "Fwd: Ваш заказ 4521", "Заказ 4521 оплачен", "Forwarded message"
    ),
    "forward_gmail_ru_html_only.eml": Expect(
        R, IVAN, "Fwd: order", "Заказ 4521 оплачен", "Forwarded message"
    ),
    "reply_gmail_ru.eml": Expect(
        R, IVAN, "Re: Заказ 4521", "Спасибо, получил трек-номер.", "передан в службу доставки"
    ),
    "reply_gmail_en_wrapped.eml": Expect(
        R, IVAN, "Re: Order 4521", "tracking number works", "support@storeolis.ru"
    ),
    "reply_outlook_ru.eml": Expect(R, IVAN, "RE: Адрес доставки", "адрес подтверждаю", "Подтвердите адрес"),
    "reply_outlook_en.eml": Expect(R, IVAN, "RE: Shipping address", "please ship it", "Please confirm"),
    "reply_outlook_html_only.eml": Expect(
        R, "john.smith@example.com", "RE: Order 4521", "Please cancel the order", "being packed"
    ),
    "reply_yandex.eml": Expect(R, IVAN, "Re: Адрес доставки", "можно отправлять", "Яндекс Почты"),
    "reply_mailru.eml": Expect(R, IVAN, "Re: Доставка", "жду курьера завтра", "Курьер приедет"),
    "reply_thunderbird_ru.eml": Expect(
        R, IVAN, "Re: Оплата", "номер платёжки: 88123", "платёжного поручения"
    ),
    "reply_thunderbird_html_only.eml": Expect(R, IVAN, "Re: Oplata", "Номер платёжки 88123", "пишет:"),
    "reply_apple_ru.eml": Expect(R, IVAN, "Re: Повреждение", "отправлю вечером", "Отправлено с iPhone"),
    "reply_apple_en.eml": Expect(R, IVAN, "Re: Damage", "send the photo tonight", "Sent from my iPhone"),
    "reply_thebat_bottom.eml": Expect(R, IVAN, "Re[2]: Zakaz 4521", "Номер заказа 4521", "Уточните"),
    "auto_submitted.eml": Expect(
        A, "helpdesk@example.com", extra={"kind_reason": "Auto-Submitted: auto-replied"}
    ),
    "auto_exchange_oof_ru.eml": Expect(A, IVAN, "Автоматический ответ: Заказ 4521"),
    "auto_exchange_generated.eml": Expect(A, "john.smith@example.com"),
    "auto_yandex_vacation.eml": Expect(A, "olga@example.ru", "Автоответ: Re: Счёт"),
    "auto_mailru_vacation.eml": Expect(A, "sergey@mail.example.ru", "Auto: Re: Dostavka"),
    "mailing_list.eml": Expect(A, "news@lists.example.com", extra={"list_id": "weekly.lists.example.com"}),
    "precedence_bulk.eml": Expect(
        A, "promo@shop.example.com", "Скидки", extra={"kind_reason": "Precedence: bulk"}
    ),
    "own_address_loop.eml": Expect(A, "support@storeolis.ru"),
    "bounce_postfix.eml": Expect(
        B,
        "mailer-daemon@mx.storeolis.ru",
        "Undelivered Mail Returned to Sender",
        extra={
            "bounced_message_ids": ["ticket-55.3@storeolis.ru"],
            "bounced_recipients": ["no.such.user@example.net"],
        },
    ),
    "bounce_yandex_ru.eml": Expect(
        B,
        "mailer-daemon@yandex.ru",
        "Недоставленное сообщение",
        "не удалось доставить",
        attachments=("attachment-2.eml",),
        extra={"bounced_message_ids": ["ticket-56.1@storeolis.ru"]},
    ),
    "broken_boundary.eml": Expect(R, IVAN, "broken boundary", "Текст внутри сломанного письма."),
    "broken_base64.eml": Expect(R, IVAN, "bad base64", "Текст с битым base64.", attachments=("x.pdf",)),
    "header_without_colon.eml": Expect(R, IVAN, "no colon header", "Письмо с битым заголовком."),
    "headers_8bit_utf8.eml": Expect(
        R, "anna@example.ru", "Вопрос об оплате", "оплатить частями", extra={"from_name": "Анна Смирнова"}
    ),
    "huge_headers.eml": Expect(R, "flood@example.com", None, "Body after huge headers."),
    "deep_nesting.eml": Expect(R, "deep@example.com", "deep", "Самая глубокая часть."),
    "lf_only_endings.eml": Expect(
        R, "lf@example.org", "unix line endings", "Hello from a unix mailbox.", "> old"
    ),
    # issue 18: charsets, 8-bit attachment names, embedded messages, reports
    "charset_utf8_cut_character.eml": Expect(
        R, IVAN, "Заказ 4521 не пришёл", "Заказ 4521 так и не пришёл, трек-номер не отслеживается."
    ),
    "charset_latin1_italian.eml": Expect(
        R, "giulia@example.it", "Ordine 4521 è arrivato", "oggi è stato consegnato il pacco, però la scatola è rotta"
    ),
    "charset_gb2312_headers.eml": Expect(
        R, "zhang@example.cn", "关于订单4521", "你好，订单什么时候发货？", extra={"from_name": "张伟"}
    ),
    "attachment_8bit_names_cp1251.eml": Expect(
        R,
        "olga@example.ru",
        "Документы из ФНС",
        "Во вложении выписка и договор.",
        attachments=("ФНС_РФ558.zip", "Договор поставки.pdf"),
        extra={"from_name": "Ольга Смирнова"},
    ),
    "attachment_8bit_names_utf8_koi8.eml": Expect(
        R, "petr@example.ru", "Scans", "Сканы во вложении.", attachments=("Счёт №17.jpg", "Акт сверки.pdf")
    ),
    "forward_attached_message_only_ru.eml": Expect(
        R,
        IVAN,
        "Fwd: Возврат товара",
        "Мария Иванова <maria@example.ru>\n«Возврат товара»\n\nПрошу оформить возврат: куртка не подошла по размеру.",
        attachments=("attachment-1.eml",),
    ),
    "forward_toplevel_message_ru.eml": Expect(
        R,
        IVAN,
        "Fwd",
        "Мария Иванова <maria@example.ru>\n«Возврат товара»\n\nПрошу оформить возврат: куртка не подошла по размеру.",
        attachments=("attachment-0.eml",),
    ),
    "alternative_empty_plain_ru.eml": Expect(
        R, IVAN, "Оплата", "Оплатил заказ 4521 картой, чек прикладываю.", extra={"has_html": True}
    ),
    "bounce_null_sender_ru.eml": Expect(
        B,
        "mailer-daemon",
        "Недоставленное сообщение",
        "не удалось доставить",
        attachments=("attachment-2.eml",),
        extra={"bounced_message_ids": ["ticket-57.2@storeolis.ru"], "from_name": "MAILER DAEMON"},
    ),
    "bounce_postmaster_bulk.eml": Expect(
        B,
        "postmaster@mail.example.net",
        "Delivery Status Notification",
        "The recipient is unknown.",
        attachments=("attachment-2.eml",),
        extra={"bounced_message_ids": ["ticket-57.2@storeolis.ru"]},
    ),
    "feedback_report_arf.eml": Expect(
        MessageKind.FEEDBACK,
        "fbl@example-mail.ru",
        "FW: [#57] Re: Zakaz 4521",
        "Получатель отметил это письмо как спам.",
        attachments=("attachment-4.eml",),
        extra={"bounced_message_ids": ["ticket-57.2@storeolis.ru"], "bounced_recipients": ["ivan@example.ru"]},
    ),
    "no_from.eml": Expect(None),
    "empty.eml": Expect(None),
    "binary_junk.eml": Expect(None),
}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


def test_every_corpus_file_has_an_expectation() -> None:
    assert {p.name for p in corpus_files()} == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_corpus_expectations(name: str) -> None:
    expect = EXPECTATIONS[name]
    raw = (CORPUS / name).read_bytes()
    if expect.kind is None:
        with pytest.raises(MalformedMessage):
            parse_message(raw, own_addresses=OWN)
        return
    msg = parse_message(raw, own_addresses=OWN)
    assert msg.kind == expect.kind, msg.kind_reason
    assert msg.kind_reason
    assert msg.from_address == expect.sender
    if expect.subject is not None:
        assert msg.subject == expect.subject
    assert expect.new in msg.new_text
    assert expect.new in msg.text
    if expect.not_new:
        assert expect.not_new not in msg.new_text
        assert expect.not_new in msg.text
    assert tuple(a.filename for a in msg.attachments) == expect.attachments
    for attr, value in expect.extra.items():
        assert getattr(msg, attr) == value, attr
    assert msg.raw_size == len(raw)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_header_values_have_no_control_characters(path: Path) -> None:
    try:
        msg = parse_message(path.read_bytes())
    except MalformedMessage:
        return
    values = [
        msg.subject,
        msg.from_name,
        msg.from_address,
        msg.message_id or "",
        *msg.to,
        *msg.references,
        *msg.authentication_results,
        *(a.filename for a in msg.attachments),
    ]
    for value in values:
        assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in value), value


def test_common_headers_are_normalised() -> None:
    msg = parse_message((CORPUS / "plain_en.eml").read_bytes())
    assert msg.message_id == "john.smith-1@example.ru"
    assert msg.from_name == "John Smith"
    assert msg.delivered_to == ["support@storeolis.ru"]
    assert msg.authentication_results[0].startswith("mx.storeolis.ru;")  # topmost first
    assert msg.authentication_results[1].startswith("relay.example.ru;")
    assert msg.date_header is not None and msg.date_header.utcoffset() is not None
    assert msg.date_header.isoformat() == "2025-10-06T14:35:00+03:00"
    assert msg.reply_to is None


def test_alternative_prefers_the_plain_text_part() -> None:
    msg = parse_message((CORPUS / "alternative.eml").read_bytes())
    assert "(HTML)" not in msg.text and msg.has_html


def test_date_without_zone_is_aware() -> None:
    msg = parse_message((CORPUS / "lf_only_endings.eml").read_bytes())
    assert msg.date_header is not None and msg.date_header.tzinfo is not None


def test_attachment_metadata_and_walk_indices() -> None:
    raw = (CORPUS / "attachments_pdf_image.eml").read_bytes()
    msg = parse_message(raw)
    parts = list(message_from_bytes(raw, policy=policy.default).walk())
    pdf, image = msg.attachments
    assert parts[pdf.part_index].get_filename() == "check.pdf"
    assert (pdf.content_type, pdf.inline, image.content_type, image.inline) == (
        "application/pdf",
        False,
        "image/png",
        True,
    )
    content = parts[pdf.part_index].get_payload(decode=True)
    assert pdf.size == len(content) and pdf.sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize(
    "name", ["attachments_pdf_image.eml", "attachment_rfc2231_ru.eml", "bounce_yandex_ru.eml"]
)
def test_extract_and_iter_attachments_agree_with_parse(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    msg = parse_message(raw)
    listed = list(iter_attachments(raw))
    assert [info for info, _ in listed] == msg.attachments
    for info, content in listed:
        assert extract_attachment(raw, info.part_index) == (info.filename, info.content_type, content)
        assert hashlib.sha256(content).hexdigest() == info.sha256


def test_attached_message_is_serialised() -> None:
    raw = (CORPUS / "bounce_yandex_ru.eml").read_bytes()
    _, ctype, content = extract_attachment(raw, parse_message(raw).attachments[0].part_index)
    assert ctype == "message/rfc822"
    assert b"Message-ID: <ticket-56.1@storeolis.ru>" in content


def test_extract_attachment_rejects_missing_or_container_parts() -> None:
    raw = (CORPUS / "attachments_pdf_image.eml").read_bytes()
    with pytest.raises(IndexError):
        extract_attachment(raw, 99)
    with pytest.raises(IndexError):
        extract_attachment(raw, 0)  # the multipart/mixed container


def test_oversize_lists_attachments_without_decoding_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import mail.parse

    monkeypatch.setattr(mail.parse, "OVERSIZE_DECODE_LIMIT", 10)
    raw = (CORPUS / "attachments_pdf_image.eml").read_bytes()
    msg = parse_message(raw, max_bytes=500)
    assert msg.oversize
    assert "Чек и фото" in msg.new_text
    assert [a.filename for a in msg.attachments] == ["check.pdf", "attachment-3.png"]
    assert all(a.sha256 == "" and a.size > 0 for a in msg.attachments)
    assert any("limit" in d for d in msg.defects)
    assert not parse_message(raw).oversize


def test_mislabelled_charset_is_reported_as_a_defect() -> None:
    msg = parse_message((CORPUS / "koi8_mislabelled_cp1251.eml").read_bytes())
    assert any("koi8-r" in d for d in msg.defects)


def test_huge_headers_are_truncated_with_a_defect() -> None:
    msg = parse_message((CORPUS / "huge_headers.eml").read_bytes())
    assert 0 < len(msg.subject) <= 1000
    assert any("Subject truncated" in d for d in msg.defects)


@pytest.mark.parametrize(
    "raw", [b"", b"   \r\n", b"\x00\x01\x02", b"not an email at all", b"Subject: hi\r\n\r\nbody"]
)
def test_not_an_email_raises_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_message(raw)


def test_sender_header_is_a_fallback_for_a_broken_from() -> None:
    raw = b"From: nobody\r\nSender: Real Person <Real@Example.org>\r\nSubject: x\r\n\r\nhello\r\n"
    msg = parse_message(raw)
    assert msg.from_address == "real@example.org"
    assert msg.defects


def test_message_ids_are_stripped() -> None:
    raw = (
        b"From: a@example.org\r\nMessage-ID:   <abc@host>  \r\nIn-Reply-To: <p@host> (comment)\r\n"
        b"References: <r1@host>\r\n\t<r2@host> <r1@host>\r\nResent-Message-ID: <rs@host>\r\n\r\nx\r\n"
    )
    msg = parse_message(raw)
    assert (msg.message_id, msg.in_reply_to, msg.resent_message_id) == ("abc@host", "p@host", "rs@host")
    assert msg.references == ["r1@host", "r2@host"]


def test_auto_response_suppress_alone_is_not_an_auto_reply() -> None:
    raw = b"From: a@example.org\r\nX-Auto-Response-Suppress: All\r\nSubject: question\r\n\r\nhello\r\n"
    assert parse_message(raw).kind == MessageKind.REQUEST


@pytest.mark.parametrize("value", ["no", "No"])
def test_auto_submitted_no_is_a_request(value: str) -> None:
    raw = f"From: a@example.org\r\nAuto-Submitted: {value}\r\nSubject: q\r\n\r\nhello\r\n".encode()
    assert parse_message(raw).kind == MessageKind.REQUEST


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        if not buf:
            buf.append(value)
            continue
        pos %= len(buf)
        if op == 0:
            buf[pos] = value
        elif op == 1:
            buf.insert(pos, value)
        elif op == 2:
            del buf[pos : pos + value % 64 + 1]
        else:
            del buf[pos:]
    return bytes(buf)


MUTATION_SOURCES = [p.read_bytes() for p in corpus_files() if p.name not in ("huge_headers.eml", "empty.eml")]


@settings(max_examples=examples(3000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from(MUTATION_SOURCES),
    ops=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12
    ),
)
def test_mutated_mail_never_raises_anything_but_malformed(
    source: bytes, ops: list[tuple[int, int, int]]
) -> None:
    data = _mutate(source, ops)
    try:
        msg = parse_message(data, own_addresses=OWN)
    except MalformedMessage:
        return
    assert msg.from_address
    assert "\n" not in msg.subject and "\r" not in msg.subject
