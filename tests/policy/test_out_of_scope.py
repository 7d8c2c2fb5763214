from models.policy.rules.out_of_scope import OutOfScopeRule

from .factories import codes, make_client, make_message, verdict_of


async def test_request_to_write_a_script_is_consulting_with_the_phrase_as_written(db):
    await make_client()
    text = "Здравствуйте! Помогите, пожалуйста, написать скрипт для автоматической выгрузки остатков в 1С."
    v = await verdict_of(make_message(subject="Просьба", new_text=text), OutOfScopeRule)
    f = next(f for f in v.findings if f.code == "out_of_scope")
    assert f.clause == "2.4" and f.severity == "block"
    assert f.evidence["category"] == "consulting"
    m = f.evidence["matches"][0]
    assert m["text"] == "написать скрипт" and text[m["start"]:m["end"]] == "написать скрипт"
    assert m["where"] == "body"
    assert f.evidence["offer"] == "paid, by separate agreement"
    assert v.refuse_reason == "consulting"


async def test_word_forms_match_design_in_subject(db):
    await make_client()
    v = await verdict_of(make_message(subject="Сверстайте нам лендинг", new_text="Нужен дизайн сайта в синих тонах."),
                         OutOfScopeRule)
    f = next(f for f in v.findings if f.code == "out_of_scope")
    assert {m["where"] for m in f.evidence["matches"]} == {"subject", "body"}


async def test_english_fix_my_script(db):
    await make_client()
    v = await verdict_of(make_message(subject="Help", new_text="Could you fix my script? It throws a TypeError."),
                         OutOfScopeRule)
    assert v.refuse_reason == "consulting"


async def test_service_not_in_contract_is_out_of_scope(db):
    await make_client()
    v = await verdict_of(make_message(subject="Реклама",
                                      new_text="Хотим заказать у вас продвижение сайта и настроить контекстную рекламу."),
                         OutOfScopeRule)
    f = next(f for f in v.findings if f.code == "out_of_scope")
    assert f.evidence["category"] == "not_in_contract" and f.clause == "2.6"
    assert v.refuse_reason == "out_of_scope"


async def test_problems_with_our_services_are_in_scope(db):
    await make_client()
    for text in ("Не работает личный кабинет, после входа белый экран.",
                 "Прошу сбросить пароль администратора, письмо для восстановления не приходит.",
                 "Не открывается раздел заказов, ошибка 502."):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert "out_of_scope" not in codes(v), text
