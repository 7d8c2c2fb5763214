from models.policy.rules.unclear import UnclearRule

from .factories import attachment, codes, finding, make_client, make_message, verdict_of


async def test_greeting_only_is_unclear(db):
    await make_client()
    v = await verdict_of(make_message(subject="Re:", new_text="Добрый день!\nСпасибо.\nИван Петров"), UnclearRule)
    f = finding(v, "unclear")
    assert f.severity == "warn" and f.clause == "2.1-2.2"


async def test_attachment_without_text_is_unclear(db):
    await make_client()
    v = await verdict_of(make_message(subject="", new_text="", attachments=[attachment()]), UnclearRule)
    assert finding(v, "unclear").evidence["attachments"] == 1


async def test_english_thanks_only_is_unclear(db):
    await make_client()
    v = await verdict_of(make_message(subject="Hi", new_text="Hello, thank you! Best regards"), UnclearRule)
    assert "unclear" in codes(v)


async def test_stated_task_is_clear(db):
    await make_client()
    v = await verdict_of(make_message(), UnclearRule)
    assert "unclear" not in codes(v)


async def test_short_subject_with_body_task_is_clear(db):
    await make_client()
    v = await verdict_of(make_message(subject="Вопрос", new_text="Не приходят СМС с кодом подтверждения."),
                         UnclearRule)
    assert "unclear" not in codes(v)


async def test_contentless_nudges_are_unclear(db):
    await make_client()
    for subject, text in (("Re: заявка", "ну что, есть новости?"), ("", "Напоминаю о своём письме."),
                          ("Re: order", "Any update?"), ("", "Добрый день, вы получили моё письмо?")):
        v = await verdict_of(make_message(subject=subject, new_text=text), UnclearRule)
        assert "unclear" in codes(v), text


async def test_a_body_that_is_only_a_signature_is_unclear(db):
    await make_client()
    text = "С уважением,\nОльга Смирнова\nменеджер отдела закупок\nООО «Альфа»\nтел. +7 495 123-45-67"
    v = await verdict_of(make_message(subject="", new_text=text, from_name="", from_address="o@alfa.ru"),
                         UnclearRule)
    assert "unclear" in codes(v)


async def test_short_real_tasks_are_clear(db):
    await make_client()
    for subject, text in (("", "API отдаёт 401."), ("", "Остатки обнулились!!!"), ("", "Webhooks stopped."),
                          ("Заказ 45812", "Всё ещё висит неоплаченным."), ("", "Сбросьте пароль.")):
        v = await verdict_of(make_message(subject=subject, new_text=text), UnclearRule)
        assert "unclear" not in codes(v), text


async def _unclear(subject: str, text: str, **kw: object) -> bool:
    v = await verdict_of(make_message(subject=subject, new_text=text, **kw), UnclearRule)
    return "unclear" in codes(v)


async def test_idioms_and_angry_but_clean_nudges_are_unclear(db):
    """Idioms of a nudge go whole, even with words between ("let me know"), and exasperation is no task."""
    await make_client()
    for subject, text in (("", "Сколько можно ждать?!"), ("Re: заявка", "Прошу дать обратную связь."),
                          ("", "Дайте, пожалуйста, знать, что там."), ("", "Как обстоят дела с моим вопросом?"),
                          ("", "Вы там вообще работаете?"), ("", "Please let me know."),
                          ("Re: ticket", "Kindly revert asap."), ("", "It's been two weeks. Seriously?")):
        assert await _unclear(subject, text), text


async def test_a_negation_counts_only_beside_another_word(db):
    await make_client()
    assert await _unclear("", "Ответа до сих пор нет.")
    assert await _unclear("", "Не получили ответа на письмо.")
    assert not await _unclear("", "Не работает оплата.")
    assert not await _unclear("", "Нет кнопки «Оплатить».")


async def test_a_nudge_word_that_names_a_thing_is_a_task(db):
    """"Жду ответа" is a nudge, "жду счёт" a task: the weak nudge words count beside a thing or an action
    asked for, never beside a bare number."""
    await make_client()
    for text in ("Прошу счёт.", "Жду счёт.", "Есть ли API?", "Заявка на возврат.", "Прошу закрыть заявку."):
        assert not await _unclear("", text), text
    for text in ("Заявка 4512 — есть новости?", "Жду ответа по заявке.", "Какой статус заявки?"):
        assert await _unclear("", text), text


async def test_a_signature_without_a_sign_off_and_bare_contacts_are_unclear(db):
    """Trailing title/company/contact lines (and the names beside them) are a signature; phones, e-mails and
    links are not words, so their digits are not an order number."""
    await make_client()
    for text in ("Петрова А.И.\nотдел снабжения\nвн. 2231", "Alice Brown\nHead of Sales\nalice@acme.example",
                 "+7 (903) 111-22-33", "моб. 8-916-555-12-34", "Главный бухгалтер\nООО «Вектор»"):
        assert await _unclear("", text, from_name="", from_address="x@vektor.ru"), text
    # The task above such a signature still counts; so does an order number.
    for text in ("Не приходят заказы с Ozon.\nАнна Соколова\nменеджер\nООО «Ромашка»\n+7 495 111-22-33",
                 "Заказ 51377 не выгрузился.", "Удалите менеджера Иванова из кабинета.",
                 "ООО «Ромашка» не может войти в кабинет"):
        assert not await _unclear("", text, from_name="", from_address="x@vektor.ru"), text


async def test_a_forwarded_request_counts_its_body_not_its_headers(db):
    await make_client()
    task = ("---------- Пересылаемое сообщение ----------\nОт: Анна <anna@romashka.ru>\n"
            "Дата: 16.11.2026, 10:02\nТема: выгрузка\n\nНе уходят остатки на Wildberries второй день.")
    assert not await _unclear("Fwd: выгрузка", task)
    nudge = ("-----Original Message-----\nFrom: Anna <anna@romashka.ru>\nSent: Monday, November 16, 2026 10:02\n"
             "Subject: order\n\nAny news?")
    assert await _unclear("Fwd: order", nudge)


async def test_operators_extend_the_lexicon_from_the_config_dir(db, tmp_path):
    from models.policy import PolicyConfig

    await make_client()
    (tmp_path / "unclear.toml").write_text('[words]\nnudge = ["шевелиться", "побыстрее"]\n', encoding="utf-8")
    message = make_message(subject="", new_text="Шевелитесь побыстрее!")
    v = await verdict_of(message, UnclearRule, config=PolicyConfig(config_dir=tmp_path))
    assert finding(v, "unclear").evidence["nudge"] == ["Шевелитесь", "побыстрее"]
    # The shipped words still apply beside the operator's.
    v = await verdict_of(make_message(subject="", new_text="Ау, есть новости?"), UnclearRule,
                         config=PolicyConfig(config_dir=tmp_path))
    assert "unclear" in codes(v)


async def test_the_card_names_the_nudge_words_in_its_language(db):
    from bot.board import evidence_text

    await make_client()
    v = await verdict_of(make_message(subject="", new_text="Напоминаю о своём письме, жду ответа."), UnclearRule)
    f = finding(v, "unclear").to_json()
    assert evidence_text(f, "ru") == "напоминание без новой задачи: «Напоминаю», «письме», «жду», «ответа»"
    assert evidence_text(f, "en") == "a nudge with no new task: «Напоминаю», «письме», «жду», «ответа»"
    v = await verdict_of(make_message(subject="", new_text="+7 (903) 111-22-33", from_name=""), UnclearRule)
    assert evidence_text(finding(v, "unclear").to_json(), "ru") == "только подпись или контакты"


async def test_a_replys_subject_is_the_earlier_mails_task_not_this_ones(db):
    await make_client()
    for subject, text in (("Re: не приходят уведомления о заказах", "Ждём."),
                          ("RE[2]: счёт за декабрь", "см. ниже"),
                          ("Fwd: выгрузка на Ozon", "FYI")):
        assert await _unclear(subject, text), (subject, text)
    # The task in the new text counts as always, and a reply with an empty body keeps its subject's task.
    assert not await _unclear("Re: счёт", "Пришлите счёт на оплату тарифа.")
    assert not await _unclear("Re: сбросьте пароль от кабинета", "")


async def test_a_negation_counts_beside_a_meaningful_word_only(db):
    await make_client()
    assert await _unclear("", "Пишу третий раз. Ни одного ответа.")
    assert not await _unclear("", "Оплату не получили.")


async def test_a_replys_quote_is_the_earlier_mail_and_a_forward_is_not(db):
    await make_client()
    assert await _unclear("", "Ну что?\n\n-----Original Message-----\nFrom: support@storeolis.ru\n"
                              "Передали вопрос специалистам, ожидайте.")
    assert await _unclear("", "Есть новости?\n> Ваше обращение зарегистрировано, специалист ответит.")
    assert not await _unclear("", "FYI\n\n---------- Forwarded message ----------\nFrom: buh@romashka.ru\n"
                                  "Не пришёл акт за октябрь, пришлите.")


async def test_a_body_of_company_requisites_is_a_signature(db):
    await make_client()
    assert await _unclear("", "ООО «Вектор»\nИНН 7701234567\nКПП 770101001\nОГРН 1027700132195",
                          from_name="", from_address="info@vektor.ru")


async def test_counts_of_days_pings_and_disclaimers_state_no_task(db):
    await make_client()
    assert await _unclear("", "Прошло уже пять рабочих дней. Сколько ещё ждать?")
    assert await _unclear("", "пинг по задаче ниже")
    assert await _unclear("", "Искренне Ваш,\nП. Смирнов\nТорговый дом «Восток»\nг. Казань, ул. Баумана, 12")
    assert await _unclear("", "Анна Котова\nРуководитель отдела продаж\nООО «Север»\nм. +7 (921) 555-01-02\n\n"
                              "Это сообщение и любые приложения к нему конфиденциальны.",
                          from_name="", from_address="a@sever.ru")
    assert not await _unclear("", "Задача: выгрузить пять товаров на Ozon, они не уходят.")


async def test_image_placeholders_vcards_and_a_repeated_word_state_no_task(db):
    await make_client()
    for subject, text in (
        ("", "[image: logo_zdorovie_plus.png]\n\n--\nОтдел ИТ\nАптечная сеть «Здоровье Плюс»"),
        ("Fw:", "[cid:image001.png@01DA5F2C.3E8B1A90]\nВера Лукина, аккаунт-менеджер"),
        ("Визитка", "BEGIN:VCARD\nVERSION:3.0\nN:Белова;Анастасия;;;\nORG:Digital-агентство «Пиксель»\n"
                    "TITLE:Аккаунт-менеджер\nTEL;TYPE=WORK:+7 495 000-00-00\nEND:VCARD"),
        ("SSL", "по SSL что-то решилось?"),  # the subject's word said again is one word
        ("По поводу выгрузки", "Добрый день! По поводу выгрузки — есть новости?"),
        ("Re: Вопрос по магазину", "Подниму письмо наверх."),
    ):
        v = await verdict_of(make_message(subject=subject, new_text=text), UnclearRule)
        assert "unclear" in codes(v), text
    # Text beside a placeholder or a vCard, and two different words, still state a task.
    for subject, text in (("", "[image: chart.png]\nВыгрузка на Ozon падает с ошибкой 500"),
                          ("Визитка", "Смените контактный телефон.\nBEGIN:VCARD\nFN:Анна\nEND:VCARD"),
                          ("SSL", "SSL не выпускается")):
        v = await verdict_of(make_message(subject=subject, new_text=text), UnclearRule)
        assert "unclear" not in codes(v), text


async def test_the_nudge_models_verb_guard_skips_the_signature_block(db):
    # "просим уведомить отправителя" in a disclaimer asks nothing of us; the same verb above it would.
    from models.policy.base import PolicyConfig
    from models.policy.rules.unclear import (
        load_nudge_model,
        load_unclear_lexicon,
        own_part,
        without_signature,
    )

    model = load_nudge_model(PolicyConfig())
    lexicon = load_unclear_lexicon(PolicyConfig())
    text = ("Коллеги, добрый день.\n\nНапоминаем о заявке INC-4471, ответа пока нет.\n\n--\nС уважением,\n"
            "Отдел ИТ\nЕсли вы получили это письмо по ошибке, просим уведомить отправителя и удалить его.")
    own = own_part(text)
    assert model is not None and model.task_verb("", own) is not None
    assert model.task_verb("", without_signature(own, lexicon)) is None


async def test_gmails_russian_attribution_german_nudges_and_more_sign_offs(db):
    await make_client()
    # Gmail's Russian attribution names the writer's address and no verb: the quote below it is not counted.
    quoted = ("Чт, 6 февр. 2025 г. в 16:40, Инна Крылова <inna@shkatulka-shop.ru>:\n"
              "> Добрый день, подскажите по нашему вопросу про выгрузку на Ozon.\n> Спасибо, Инна")
    assert await _unclear("Re: вопрос", quoted)
    assert not await _unclear("Re: вопрос", "Перезапустите выгрузку на Ozon: она падает с ошибкой 502.\n\n" + quoted)
    # German and formal reminders.
    assert await _unclear("AW: Anfrage", "Gibt es schon Neuigkeiten?\n\nK. Becker")
    assert await _unclear("", "Guten Tag, ich warte noch immer auf Ihre Antwort. Danke und viele Grüße.")
    assert await _unclear("Подтверждение получения", "Прошу подтвердить получение моего предыдущего письма.")
    assert await _unclear("Срок ответа", "Подскажите, когда ориентировочно можно ждать ответ?")
    # A disclaimer and an appeal after an emoji end the signature; a name in quotes is a company line.
    assert await _unclear("", "Настоящее сообщение и все приложения к нему являются конфиденциальными и "
                              "предназначены исключительно для адресата.")
    assert await _unclear("", "Юлия Ким | контент-менеджер\n+7 (383) 209-11-22 | chaynyput.ru\n"
                              "🌱 Пожалуйста, подумайте об экологии, прежде чем распечатывать это письмо.",
                          from_name="", from_address="yulia@chaynyput.ru")
    assert await _unclear("", "Прошу подтвердить получение.\n\nЮлия Ким\n«Чайный путь»",
                          from_name="", from_address="yulia@chaynyput.ru")
    # Still tasks: the same words with a thing to do.
    assert not await _unclear("", "Прошу подтвердить получение оплаты по счёту 4512 от 3 марта.")
    assert not await _unclear("", "Guten Tag, please restart our Ozon export, it fails with error 502. Viele Grüße")


def _unsigned(text: str) -> str:
    from models.policy.base import PolicyConfig
    from models.policy.rules.unclear import load_unclear_lexicon, without_signature

    return without_signature(text, load_unclear_lexicon(PolicyConfig()))


def test_signature_lines_a_desk_sees_every_day():
    """A title after its holder's name, a compound title, a kind of organisation with its name in quotes, an
    address beside them and an inline logo are a signature's lines; the request above them stays."""
    task = "Не уходит выгрузка на Ozon, ошибка 502."
    for signature in (
        "Вера Лукина, аккаунт-менеджер\n+7 (843) 200-30-40",  # "Вера" is also a noun: a name here
        "Ксения Руденко, SMM-специалист\nАгентство интернет-маркетинга «Точка роста»",
        "Наталья, пекарня «Колосок»",
        "Jonas Keller, Head of Sales\nKeller Haushaltswaren GmbH",
        "Айдар Галиев\nг. Казань, ул. Баумана, 9",
        "магазин «Лён и хлопок»\n[cid:image001.png@01DA5F2C.3E8B1A90]\nг. Казань, ул. Баумана, 9",
    ):
        assert _unsigned(f"{task}\n\n{signature}").rstrip() == task, signature
    # An address alone may end a request; a name in quotes without a kind of organisation is not a company.
    for text in ("Привезите документы по адресу:\nг. Казань, ул. Баумана, 9",
                 "Прошу сменить тариф.\nТариф «Бизнес»", "Прошу перенести домен.\nСтарый сайт «Лавка» (3 стр.)"):
        assert _unsigned(text) == text, text


async def test_a_signature_with_a_logo_title_and_address_is_no_task(db):
    await make_client()
    body = ("[cid:image001.png@01DA5F2C.3E8B1A90]\nАгентство интернет-маркетинга «Точка роста»\n"
            "Вера Лукина, аккаунт-менеджер\n+7 (843) 200-30-40 | vera@tochka-rosta.example\nг. Казань, ул. Баумана, 9")
    assert await _unclear("Fw:", body, from_name="", from_address="vera@tochka-rosta.example")
    assert not await _unclear("Fw:", "Перезапустите выгрузку на Ozon, она падает с ошибкой 502.\n" + body,
                              from_name="", from_address="vera@tochka-rosta.example")


async def test_a_bare_question_mark_under_a_replys_subject_is_a_ping(db):
    await make_client()
    assert await _unclear("Re: заказ 10452", "?")
    assert await _unclear("RE: order 10452", " ??!\n")
    # A task written in a reply's subject, the body empty, is still a task; so is a new subject with "?".
    assert not await _unclear("Re: заказ 10452", "")
    assert not await _unclear("заказ 10452 не пришёл", "?")


async def test_hurrying_the_review_and_a_confidentiality_notice_state_no_task(db):
    await make_client()
    assert await _unclear("", "Прошу ускорить рассмотрение.")
    assert await _unclear("", "Главный бухгалтер\nСПК «Заречье»")
    assert await _unclear("", "CONFIDENTIALITY NOTICE: This e-mail and any attachments are intended solely for "
                              "the addressee.\nBella Pasta Imports S.r.l. - VAT IT01234567890")
    assert not await _unclear("", "Прошу ускорить отгрузку заказа 4512.")
