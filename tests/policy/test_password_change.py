from models.policy.rules.password_change import PasswordChangeRule

from .factories import AUTH_PASS, codes, finding, make_client, make_message, verdict_of

SPOOFED = "mx.storeolis.ru; spf=fail smtp.mailfrom=romashka.ru; dmarc=fail header.from=romashka.ru"


async def test_password_change_from_verified_registered_address_is_info(db):
    await make_client()
    msg = make_message(subject="Смена пароля", new_text="Прошу сменить пароль администратора, сотрудник уволился.",
                       authentication_results=[AUTH_PASS])
    v = await verdict_of(msg, PasswordChangeRule)
    f = finding(v, "password_change")
    assert f.severity == "info" and f.clause == "1.1" and v.is_password_change


async def test_password_change_from_unverified_sender_warns_not_to_change(db):
    await make_client()
    msg = make_message(subject="Пароль", new_text="Забыла пароль, не могу войти в личный кабинет. Смените срочно.",
                       authentication_results=[SPOOFED])
    v = await verdict_of(msg, PasswordChangeRule)
    f = finding(v, "password_change")
    assert f.severity == "warn"
    assert "do not change the password" in f.evidence["warning"]
    assert {m["text"] for m in f.evidence["matches"]} >= {"Забыла пароль", "не могу войти"}


async def test_password_change_from_unknown_sender_warns(db):
    v = await verdict_of(make_message(from_address="new.admin@gmail.com", new_text="Please reset my password."),
                         PasswordChangeRule)
    f = finding(v, "password_change")
    assert f.severity == "warn" and f.evidence["reason"].startswith("client not identified")


async def test_ordinary_request_is_not_a_password_change(db):
    await make_client()
    v = await verdict_of(make_message(), PasswordChangeRule)
    assert "password_change" not in codes(v) and not v.is_password_change
