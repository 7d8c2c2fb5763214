from hypothesis import given, settings
from hypothesis import strategies as st

from models.policy import PolicyConfig
from models.policy.rules.identification import _CONTRACT, _contract_matches, contract_candidates

from .factories import AUTH_PASS, codes, finding, make_client, make_message, verdict_of

SPOOFED = ("mx.storeolis.ru; dkim=none; spf=fail smtp.mailfrom=romashka.ru; "
           "dmarc=fail header.from=romashka.ru")


async def test_registered_address_identifies_the_client(db):
    client = await make_client()
    v = await verdict_of(make_message(authentication_results=[AUTH_PASS]))
    assert v.client is not None and v.client.client_id == client.id and v.client.matched_by == "address"
    assert v.sender_verified is True
    assert "unidentified" not in codes(v)


async def test_registered_domain_identifies_a_colleague_of_the_client(db):
    client = await make_client(addresses=("@romashka.ru",))
    v = await verdict_of(make_message(from_address="buh@romashka.ru"))
    assert v.client.client_id == client.id and v.client.matched_by == "domain"
    assert v.sender_verified is None  # no trusted Authentication-Results at all


async def test_unknown_sender_is_unidentified_with_reason(db):
    await make_client()
    v = await verdict_of(make_message(from_address="someone@gmail.com"))
    assert v.client is None
    f = finding(v, "unidentified")
    assert f.severity == "block" and f.clause == "2.6"
    assert f.evidence["reason"] == "not_registered" and f.evidence["from"] == "someone@gmail.com"
    assert v.suggestion == "refuse" and v.refuse_reason == "unidentified"


async def test_one_domain_of_two_clients_is_ambiguous_and_never_guessed(db):
    a = await make_client("ООО «Ромашка»", addresses=("@holding.ru",))
    b = await make_client("АО «Лютик»", addresses=("@holding.ru",))
    v = await verdict_of(make_message(from_address="office@holding.ru"))
    assert v.client is None
    f = finding(v, "unidentified")
    assert f.evidence["reason"] == "ambiguous_domain"
    assert {c["client_id"] for c in f.evidence["candidates"]} == {a.id, b.id}
    assert {c.client_id for c in v.candidates} == {a.id, b.id}


async def test_inn_in_text_resolves_a_shared_domain(db):
    await make_client("ООО «Ромашка»", addresses=("@holding.ru",), inn="7707083893")
    b = await make_client("АО «Лютик»", addresses=("@holding.ru",), inn="7736207543")
    msg = make_message(from_address="office@holding.ru",
                       new_text="Добрый день. Не приходят уведомления о заказах. ИНН 7736207543")
    v = await verdict_of(msg)
    assert v.client.client_id == b.id and v.client.matched_by == "inn"


async def test_inn_of_one_client_from_address_of_another_is_ambiguous(db):
    a = await make_client("ООО «Ромашка»", addresses=("ivan@romashka.ru",), inn="7707083893")
    b = await make_client("АО «Лютик»", addresses=("@lutik.ru",), inn="7736207543")
    msg = make_message(new_text="Просим сменить контактное лицо по договору. Наш ИНН 7736207543.")
    v = await verdict_of(msg)
    assert v.client is None
    f = finding(v, "unidentified")
    assert f.evidence["reason"] == "address_and_document_disagree"
    assert f.evidence["inns"][0]["inn"] == "7736207543"
    assert {c.client_id for c in v.candidates} == {a.id, b.id}


async def test_invalid_inn_checksum_is_not_used(db):
    await make_client("АО «Лютик»", addresses=("@lutik.ru",), inn="7736207543")
    v = await verdict_of(make_message(from_address="x@gmail.com", new_text="Не работает касса. ИНН 7736207544"))
    assert v.client is None and "inns" not in finding(v, "unidentified").evidence


async def test_contract_number_identifies_an_unregistered_address(db):
    client = await make_client("ИП Сидоров", addresses=("@sidorov.ru",), contract="Д-2024/117")
    msg = make_message(from_address="sidorov.personal@mail.ru", subject="Договор № Д-2024/117: не работает оплата",
                       new_text="После обновления не проходит оплата картой на сайте магазина, ошибка 3DS.")
    v = await verdict_of(msg)
    assert v.client.client_id == client.id and v.client.matched_by == "contract"


def test_contract_candidates_include_prefixed_and_plain_numbers():
    tokens = contract_candidates("по договору д-2024/117 и № 12345 от 01.02.2026")
    assert "Д-2024/117" in tokens and "12345" in tokens


async def test_failed_authentication_means_address_alone_does_not_identify(db):
    client = await make_client()
    v = await verdict_of(make_message(authentication_results=[SPOOFED]))
    assert v.client is None and v.sender_verified is False
    warn = finding(v, "unverified_sender")
    assert warn.severity == "warn"
    assert warn.evidence["auth"]["results"]["dmarc"] == "fail"
    assert warn.evidence["address_matches"] == [client.id]
    assert finding(v, "unidentified").evidence["reason"] == "sender_not_verified"
    assert [c.client_id for c in v.candidates] == [client.id]


async def test_unverified_sender_with_contract_lists_the_client_as_candidate_only(db):
    client = await make_client(addresses=("@romashka.ru",), contract="SO-77/1")
    msg = make_message(authentication_results=[SPOOFED], new_text="Договор SO-77/1. Смените реквизиты для счетов.")
    v = await verdict_of(msg)
    assert v.client is None
    assert [c.client_id for c in v.candidates] == [client.id]


async def test_forged_lower_header_does_not_help_when_our_topmost_header_fails(db):
    await make_client()
    forged = "mx.storeolis.ru; dkim=pass header.d=romashka.ru; dmarc=pass header.from=romashka.ru"
    v = await verdict_of(make_message(authentication_results=[SPOOFED, forged]))
    assert v.sender_verified is False and v.client is None


async def test_trusted_authserv_id_config_is_honoured(db):
    await make_client()
    cfg = PolicyConfig(trusted_authserv_ids=frozenset({"mx.storeolis.ru"}))
    top = "relay.partner.example; dmarc=fail header.from=romashka.ru"
    v = await verdict_of(make_message(authentication_results=[top, AUTH_PASS]), config=cfg)
    assert v.sender_verified is True and v.client is not None


async def test_inactive_client_is_identified_with_a_warning(db):
    client = await make_client(active=False)
    v = await verdict_of(make_message())
    assert v.client.client_id == client.id and v.client.active is False
    f = finding(v, "out_of_scope")
    assert f.severity == "warn" and f.clause == "2.6" and f.evidence["reason"] == "inactive"
    assert v.suggestion == "accept"  # a warning for staff, not a refusal


_CONTRACT_ALPHABET = "aZяЁё-‐–/._ \n12٣9xДд№"


@given(st.text(alphabet=_CONTRACT_ALPHABET, max_size=40))
@settings(max_examples=3000, deadline=None)
def test_contract_matches_are_exactly_the_patterns_matches(text: str) -> None:
    assert [m.span() for m in _contract_matches(text)] == [m.span() for m in _CONTRACT.finditer(text)]


def test_contract_matches_on_mail_like_text() -> None:
    text = ("Добрый день! Договор SO-17/2 от 06.10.2025, счет №12345, тел. +7 (495) 123-45-67, ИНН 7707083893;"
            " abcde12 x-12-34a Д–2024/117. 1 2 33/ 44 ABCD-12 ёжик–3/4") * 3
    assert [m.group() for m in _contract_matches(text)] == [m.group() for m in _CONTRACT.finditer(text)]
    assert {"SO-17/2", "ABCD-12", "ЁЖИК-3/4"} <= set(contract_candidates(text))
