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
