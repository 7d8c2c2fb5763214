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
