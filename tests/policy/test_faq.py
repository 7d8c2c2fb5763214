from models.policy.rules.faq import FaqRule

from .factories import codes, make_client, make_message, verdict_of


async def test_how_to_pay_an_invoice_matches_the_faq_with_links(db):
    await make_client()
    v = await verdict_of(make_message(subject="Оплата", new_text="Подскажите, как оплатить счёт банковской картой?"),
                         FaqRule)
    f = next(f for f in v.findings if f.code == "faq")
    assert f.severity == "info" and f.clause == "2.5"
    assert "pay_invoice" in f.evidence["entries"]
    assert all(link["url"].startswith("https://") for link in f.evidence["links"])
    entry = next(e for e in v.faq_entries if e["id"] == "pay_invoice")
    assert entry["answer_ru"] and entry["answer_en"] and entry["links"][0]["url"].startswith("https://storeolis.ru/help/")
    assert v.suggestion == "answer_faq"


async def test_english_export_question(db):
    await make_client()
    v = await verdict_of(make_message(subject="Export", new_text="How can I export my data to CSV?"), FaqRule)
    assert [e["id"] for e in v.faq_entries] == ["export_data"]


async def test_mail_program_settings_entry_mentions_third_party_clause(db):
    await make_client()
    v = await verdict_of(make_message(new_text="Не могу настроить почту в Outlook на новом ноутбуке."), FaqRule)
    entry = next(e for e in v.faq_entries if e["id"] == "mail_client_settings")
    assert "2.7" in entry["answer_ru"]


async def test_specific_incident_is_not_faq(db):
    await make_client()
    v = await verdict_of(make_message(), FaqRule)
    assert "faq" not in codes(v) and v.faq_entries == [] and v.suggestion == "accept"
