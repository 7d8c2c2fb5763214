from models.policy import content_hash
from models.policy.rules.duplicates import DuplicateRule, normalise_subject, text_facts
from models.tables import TicketStatus

from .factories import attachment, codes, finding, make_client, make_message, store_ticket, utc, verdict_of

INVOICE = ("Добрый день! Прошу проверить оплату по счёту № 4512 от 03.11.2026 на сумму 12 500,00 руб. "
           "Деньги списаны, но в личном кабинете счёт до сих пор не оплачен.")


def test_subject_prefixes_and_ticket_tags_are_ignored():
    assert normalise_subject("Re: FW: Отв: [#123] Не работает выгрузка") == "не работает выгрузка"
    assert normalise_subject("Пересл.: RE[2]: Вопрос") != ""


def test_content_hash_ignores_reply_prefix_case_and_spacing_but_not_attachments():
    a = make_message(subject="Оплата", new_text="Счёт  4512\nне оплачен")
    b = make_message(subject="Fwd: Оплата", new_text="счёт 4512 не   оплачен")
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash(make_message(subject="Оплата", new_text="Счёт 4512 не оплачен",
                                                        attachments=[attachment()]))


def test_facts_capture_numbers_emails_and_links():
    facts = text_facts("Счёт 4512 на 12 500,00, пишите buh@romashka.ru, см. https://romashka.ru/pay.")
    assert {"num:4512", "email:buh@romashka.ru", "url:https://romashka.ru/pay"} <= facts


async def test_same_message_id_on_another_ticket_is_a_duplicate_with_delivery_evidence(db):
    client = await make_client()
    first = await store_ticket(make_message(), utc(2026, 11, 10, 9, 0), client=client)
    copy = make_message(to=["support@storeolis.ru", "sales@storeolis.ru"], delivered_to=["sales@storeolis.ru"])
    v = await verdict_of(copy, DuplicateRule, at=utc(2026, 11, 10, 9, 1))
    f = finding(v, "duplicate")
    assert f.evidence["check"] == "message_id" and f.evidence["original_ticket"] == first.id
    assert f.evidence["delivered_to"] == ["sales@storeolis.ru"]
    assert f.evidence["company_addresses"] == ["support@storeolis.ru"]
    assert v.duplicate_of == first.id and v.suggestion == "refuse" and v.refuse_reason == "duplicate"


async def test_resent_message_id_matches_too(db):
    first = await store_ticket(make_message(message_id="orig@romashka.ru"), utc(2026, 11, 10, 9, 0))
    v = await verdict_of(make_message(message_id="new@romashka.ru", resent_message_id="orig@romashka.ru"),
                         DuplicateRule, at=utc(2026, 11, 10, 10, 0))
    assert finding(v, "duplicate").evidence["header"] == "Resent-Message-ID"
    assert v.duplicate_of == first.id


async def test_own_stored_message_is_not_a_duplicate_of_itself(db):
    client = await make_client()
    msg = make_message()
    ticket = await store_ticket(msg, utc(2026, 11, 10, 9, 0), client=client)
    v = await verdict_of(msg, DuplicateRule, at=utc(2026, 11, 10, 9, 0), ticket_id=ticket.id)
    assert "duplicate" not in codes(v)


async def test_exact_resend_with_new_message_id_is_a_duplicate(db):
    client = await make_client()
    first = await store_ticket(make_message(subject="Оплата", new_text=INVOICE), utc(2026, 11, 10, 9, 0),
                               client=client)
    resend = make_message(message_id="other@romashka.ru", subject="Fwd: Оплата", new_text=INVOICE)
    v = await verdict_of(resend, DuplicateRule, at=utc(2026, 11, 11, 9, 0))
    f = finding(v, "duplicate")
    assert f.evidence["check"] == "exact" and f.evidence["original_ticket"] == first.id


async def test_near_duplicate_with_same_facts_links_to_the_original(db):
    client = await make_client()
    first = await store_ticket(make_message(new_text=INVOICE), utc(2026, 11, 10, 9, 0), client=client)
    again = INVOICE.replace("Добрый день!", "Добрый день.").replace("до сих пор", "всё ещё")
    v = await verdict_of(make_message(message_id="x2@romashka.ru", new_text=again), DuplicateRule,
                         at=utc(2026, 11, 12, 9, 0))
    f = finding(v, "duplicate")
    assert f.evidence["check"] == "near" and f.evidence["ratio"] >= 90 and v.duplicate_of == first.id


async def test_same_template_for_another_invoice_is_not_a_duplicate(db):
    client = await make_client()
    await store_ticket(make_message(new_text=INVOICE), utc(2026, 11, 10, 9, 0), client=client)
    other = INVOICE.replace("4512", "4513").replace("03.11.2026", "05.11.2026")
    v = await verdict_of(make_message(message_id="x3@romashka.ru", new_text=other), DuplicateRule,
                         at=utc(2026, 11, 12, 9, 0))
    assert "duplicate" not in codes(v)


async def test_different_attachment_is_not_a_duplicate(db):
    client = await make_client()
    text = "Прикладываю платёжное поручение, прошу зачесть оплату по договору."
    await store_ticket(make_message(new_text=text, attachments=[attachment(content=b"p1")]),
                       utc(2026, 11, 10, 9, 0), client=client)
    v = await verdict_of(make_message(message_id="x4@romashka.ru", new_text=text,
                                      attachments=[attachment(content=b"p2")]),
                         DuplicateRule, at=utc(2026, 11, 10, 12, 0))
    assert "duplicate" not in codes(v)


async def test_old_closed_request_is_not_a_duplicate_but_old_open_one_is(db):
    client = await make_client()
    old = make_message(new_text=INVOICE)
    await store_ticket(old, utc(2026, 9, 1, 9, 0), client=client, status=TicketStatus.CLOSED)
    resend = make_message(message_id="late@romashka.ru", new_text=INVOICE)
    v = await verdict_of(resend, DuplicateRule, at=utc(2026, 11, 10, 9, 0))
    assert "duplicate" not in codes(v)

    still_open = await store_ticket(make_message(message_id="o@romashka.ru", new_text=INVOICE + " Срочно."),
                                    utc(2026, 8, 1, 9, 0), client=client, status=TicketStatus.ACCEPTED)
    v = await verdict_of(make_message(message_id="late2@romashka.ru", new_text=INVOICE + " Срочно!"),
                         DuplicateRule, at=utc(2026, 11, 10, 9, 0))
    assert v.duplicate_of == still_open.id


async def test_unidentified_sender_duplicates_are_found_by_sender_address(db):
    first = await store_ticket(make_message(from_address="anon@gmail.com", new_text=INVOICE),
                               utc(2026, 11, 10, 9, 0))
    again = INVOICE.replace("Добрый день!", "Здравствуйте!")
    v = await verdict_of(make_message(from_address="anon@gmail.com", message_id="z@gmail.com", new_text=again),
                         DuplicateRule, at=utc(2026, 11, 10, 18, 0))
    assert v.duplicate_of == first.id and finding(v, "duplicate").evidence["check"] == "near"


async def test_a_copy_of_a_duplicate_links_to_the_first_request(db):
    client = await make_client()
    first = await store_ticket(make_message(new_text=INVOICE), utc(2026, 11, 10, 9, 0), client=client)
    await store_ticket(make_message(message_id="second@romashka.ru", new_text=INVOICE), utc(2026, 11, 10, 10, 0),
                       client=client, duplicate_of=first, counts=False)
    v = await verdict_of(make_message(message_id="second@romashka.ru", new_text=INVOICE), DuplicateRule,
                         at=utc(2026, 11, 10, 11, 0))
    assert v.duplicate_of == first.id


def test_normalisation_collapses_exactly_what_the_regex_did():
    """Stored content hashes depend on it: str.split() must treat as blank exactly what re's \\s did."""
    import re
    import sys

    from models.policy.rules.duplicates import normalise_text

    blanks = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    text = f"{blanks} Счёт\u00a0№ 12\u2003от\x1c01.11 {blanks}\r\n> цитата\r\nИтого:\u3000 5 руб.{blanks}"
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(">")]
    assert normalise_text(text) == re.sub(r"\s+", " ", " ".join(lines)).strip().casefold().replace("ё", "е")
    subject = f"Re:{blanks}[#12] Счёт\u2028  за\tноябрь "
    assert normalise_subject(subject) == re.sub(r"\s+", " ", "Счёт\u2028  за\tноябрь ").strip().casefold()
