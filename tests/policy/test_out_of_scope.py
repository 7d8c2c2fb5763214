from dataclasses import replace

import pytest

from models.policy.base import PolicyConfig
from models.policy.rules.out_of_scope import OutOfScopeRule, ScopeBook, analyse_scope, load_scope_book

from .factories import codes, finding, make_client, make_message, verdict_of


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


async def test_an_ask_about_the_clients_own_code_is_out_of_scope_without_a_listed_phrase(db):
    await make_client()
    text = "доработайте корзину в нашем магазине на Django, чтобы считался бонус"
    v = await verdict_of(make_message(subject="Доработка", new_text=text), OutOfScopeRule)
    f = finding(v, "out_of_scope")
    assert f.evidence["category"] == "consulting" and f.evidence["topic"] == "code" and f.clause == "2.4"
    assert f.evidence["ask"] == "доработайте"
    m = f.evidence["matches"][0]
    assert m["text"] == "Django" and text[m["start"]:m["end"]] == "Django" and m["where"] == "body"


async def test_ownership_points_out_of_scope_and_a_service_cue_points_in(db):
    await make_client()
    ours = await verdict_of(make_message(new_text="Поправьте, пожалуйста, наш парсер на Python, он падает."),
                            OutOfScopeRule)
    assert finding(ours, "out_of_scope").evidence["owner"] == "наш"
    for text in ("Поправьте, пожалуйста, ваш скрипт виджета: он тормозит загрузку страницы.",
                 "ссылка на JS-счётчик из вашей справки отдаёт 404",
                 "После вашего обновления шаблон письма о заказе перестал подставлять номер.",
                 "Подскажите, как в вашем кабинете настроить выгрузку для Ozon?"):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert "out_of_scope" not in codes(v), text


async def test_english_hosting_request_is_out_of_scope_but_our_servers_certificate_is_not(db):
    await make_client()
    v = await verdict_of(make_message(subject="SSL", new_text="Our SSL certificate expired yesterday, could you "
                                                              "install a new one on our server?"), OutOfScopeRule)
    f = finding(v, "out_of_scope")
    assert f.evidence["topic"] == "hosting" and {m["text"] for m in f.evidence["matches"]} >= {"SSL", "server"}
    v = await verdict_of(make_message(subject="SSL", new_text="Your server returns an expired SSL certificate on "
                                                              "api.storeolis.ru, our calls fail."), OutOfScopeRule)
    assert "out_of_scope" not in codes(v)


async def test_seo_advice_is_not_in_contract_with_its_topic(db):
    await make_client()
    v = await verdict_of(make_message(new_text="Почему наш сайт не поднимается в поиске Google? Что сделать, "
                                               "чтобы попасть в топ?"), OutOfScopeRule)
    f = finding(v, "out_of_scope")
    assert f.evidence["category"] == "not_in_contract" and f.evidence["topic"] == "seo_ads" and f.clause == "2.6"


async def test_generic_words_of_our_service_need_an_owner_or_a_request_to_make_them(db):
    await make_client()
    for text in ("Подключите, пожалуйста, оплату по QR-коду через СБП.",
                 "Употребляемые в описании ГОСТы устарели, обновите их.",
                 "Ноутбук б/у принимается на трейд-ин?",
                 "Интеграция зашла в тупик, нужна консультация разработчика.",
                 "Прошу проверить: интеграция с маркетплейсом перестала выгружать заказы."):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert "out_of_scope" not in codes(v), text
    for text, topic in (("Сделайте баннеры для акции «Чёрная пятница», три размера.", "design"),
                        ("Нужны продающие тексты для карточек на Ozon, 50 штук.", "content")):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert finding(v, "out_of_scope").evidence["topic"] == topic, text


async def test_a_service_noun_that_governs_a_subject_names_the_subjects_thing_not_ours(db):
    await make_client()
    # "обновление" and "справка" point to us alone ("после вашего обновления"), not when they are Windows' or Bitrix's.
    for text, topic in (("После обновления Windows не печатает принтер, помогите настроить.", "office_it"),
                        ("По справке Битрикса не получается поставить плагин, настройте его нам.", "cms")):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert finding(v, "out_of_scope").evidence["topic"] == topic, text
    for text in ("После вашего обновления не открывается кабинет, помогите.",
                 "После обновления платформы Storeolis пропали фильтры каталога, поправьте."):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert "out_of_scope" not in codes(v), text


async def test_asking_to_order_work_from_us_is_out_of_scope_and_a_quantity_takes_the_genitive(db):
    await make_client()
    for text, topic in (("А можно у вас заказать дизайн логотипа для магазина?", "design"),
                        ("Нарисуйте нам 4 иконки для разделов меню.", "design"),
                        ("Напишите несколько описаний для новых товаров.", "content")):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert finding(v, "out_of_scope").evidence["topic"] == topic, text
    for text in ("Можно ли у вас заказать SSL-сертификат для магазина?",
                 "У вас в кабинете несколько описаний тарифа расходятся, поправьте."):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert "out_of_scope" not in codes(v), text


async def test_literals_and_the_signature_are_not_the_clients_words(db):
    await make_client()
    for subject, text in (
        ("", 'Вызов GET /api/v2/products возвращает {"error": "NullPointerException"}, в трассировке '
             "ProductMapper.java. Можете посмотреть?"),
        ("", "В вашем конструкторе кнопка «Оплатить картой» выдаёт «script error», помогите."),
        ("", "Подскажите, почему в вашем кабинете не открывается отчёт по заказам?\n\nС уважением,\n"
             "программист 1С\nООО «Ромашка»"),
        # The subject line names what the body says is ours.
        ("Обмен с 1С остановился", "Ваш модуль обмена с 1С со вчера не выгружает остатки, помогите."),
    ):
        v = await verdict_of(make_message(subject=subject, new_text=text), OutOfScopeRule)
        assert "out_of_scope" not in codes(v), text
    # A quoted single word is the client naming a thing; a dotted name that starts with a subject stays.
    for text, topic in (("Хотим перенести наш сайт на «Тильду», поможете?", "cms"),
                        ("Нужна консультация: как настроить Node.js на нашем VPS?", "code")):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert finding(v, "out_of_scope").evidence["topic"] in {topic, "hosting"}, text


async def test_two_word_asks(db):
    await make_client()
    for text, topic in (("Стоит ли нам переходить с Битрикса на WordPress?", "cms"),
                        ("В Outlook на нашем компьютере не приходят письма, что делать?", "mail_client")):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert finding(v, "out_of_scope").evidence["topic"] == topic, text
    # Alone, "стоит" is "is set", not an ask.
    v = await verdict_of(make_message(new_text="В нашем обмене с 1С стоит интервал 15 минут, а остатки "
                                                "приходят раз в сутки."), OutOfScopeRule)
    assert "out_of_scope" not in codes(v)


async def test_a_subjunctive_asks_and_a_first_person_can_offers(db):
    await make_client()
    for text, topic in (("Было бы здорово, если бы вы переделали шапку нашего сайта на WordPress.", "cms"),
                        ("Хотелось бы, чтобы кто-то настроил нам Outlook на новом ноутбуке.", "mail_client"),
                        ("Прошу оказать содействие в настройке нашего сервера на Ubuntu.", "hosting")):
        v = await verdict_of(make_message(new_text=text), OutOfScopeRule)
        assert finding(v, "out_of_scope").evidence["topic"] == topic, text
    # "могу" offers: the client can send a photo of the receipt, it asks nothing of the kind.
    v = await verdict_of(make_message(new_text="Оплатил тариф, а в кабинете «не оплачено». Могу прислать "
                                                "фото чека и скриншот из Excel."), OutOfScopeRule)
    assert "out_of_scope" not in codes(v)
    # A past tense without "бы" reports what happened.
    v = await verdict_of(make_message(new_text="Ваш сотрудник вчера настроил выгрузку, и наш сайт на "
                                                "WordPress перестал получать заказы."), OutOfScopeRule)
    assert "out_of_scope" not in codes(v)


# The cues below are read straight from `analyse_scope` (no database): each case is also run with the cue
# switched off, so the test shows the cue is what decides.

@pytest.fixture(scope="module")
def book() -> ScopeBook:
    return load_scope_book(PolicyConfig())


def _topics(book: ScopeBook, text: str) -> set[str]:
    return {entry["topic"] for entry in analyse_scope(book, "", text).values()}


def test_the_clients_site_on_our_platform_is_ours_to_look_at(book: ScopeBook) -> None:
    without = replace(book, hosted_on=frozenset())
    for text in ("Наш сайт на вашей платформе после смены шаблона отдаёт 404, помогите.",
                 "На моём сайте на вашем конструкторе форма записи не открывается, посмотрите, пожалуйста.",
                 "Our website on your platform: could you fix the cart page? It shows nothing."):
        assert _topics(book, text) == set(), text
        assert _topics(without, text) == {"cms"}, text
    # A direction is not a place, and another platform is not ours.
    assert _topics(book, "Перенесите наш сайт на вашу платформу, пожалуйста.") == {"cms"}
    assert _topics(book, "Наш сайт на WordPress не открывается, помогите.") == {"cms"}


def test_a_verb_of_making_does_not_reach_into_a_clause(book: ScopeBook) -> None:
    text = "Можно ли сделать так, чтобы один код использовал только один покупатель?"
    assert _topics(book, text) == set()
    assert _topics(replace(book, clause_openers=frozenset()), text) == {"code"}
    assert _topics(book, "Сделайте нам код для вставки на сайт.") == {"code"}


def test_a_signature_is_a_mail_programs_only_where_one_is_named(book: ScopeBook) -> None:
    assert _topics(book, "Для нашей бухгалтерии нужен экземпляр договора с подписью и печатью.") == set()
    assert _topics(book, "Настройте нам подпись в Outlook для всех сотрудников.") == {"mail_client"}


def test_an_english_modal_or_question_word_asks_only_in_a_question(book: ScopeBook) -> None:
    without = replace(book, question_asks=frozenset())
    # Statements: "we can only fetch", "which doesn't resolve" ask nothing.
    for text in ("Pagination bug: page=3 returns page 2 again, we can only ever fetch 200 customers with our script.",
                 "The logo in our email template is a broken image in Gmail and Outlook: its URL points to a host "
                 "which doesn't resolve anymore."):
        assert _topics(book, text) == set(), text
        assert _topics(without, text) != set(), text
    # Questions, inverted asks, "how to" and "if you could" still ask.
    for text in ("Can you fix my Python script? It throws an error.", "Could you fix my Python script, it throws.",
                 "Any idea how to configure nginx on our VPS.", "We would be grateful if you could set up our Outlook."):
        assert _topics(book, text) != set(), text
