"""The suggestion table, the full chain and the stored form of a verdict."""

import pytest

from models.policy import (
    RULES,
    SUGGESTIONS,
    ClientMatch,
    Finding,
    FindingCode,
    PolicyConfig,
    PolicyData,
    PolicyEngine,
    PolicyRequest,
    TortoisePolicyRepository,
    Verdict,
    suggest,
)
from models.policy.rules.identification import IdentificationRule
from models.policy.rules.profanity import ProfanityRule

from .factories import make_client, make_message, utc


def f(code: FindingCode, severity: str = "block", **evidence) -> Finding:
    return Finding(code, "2.6", "t", "t", evidence, severity)  # type: ignore[arg-type]


@pytest.mark.parametrize(("findings", "expected"), [
    ([], ("accept", None)),
    ([f(FindingCode.UNIDENTIFIED)], ("refuse", "unidentified")),
    ([f(FindingCode.PROFANITY)], ("refuse", "profanity")),
    ([f(FindingCode.PROFANITY, "info", kind="accusation")], ("accept", None)),
    ([f(FindingCode.DUPLICATE)], ("refuse", "duplicate")),
    ([f(FindingCode.OUT_OF_SCOPE, category="consulting")], ("refuse", "consulting")),
    ([f(FindingCode.OUT_OF_SCOPE, category="not_in_contract")], ("refuse", "out_of_scope")),
    ([f(FindingCode.OUT_OF_SCOPE, "warn", reason="inactive")], ("accept", None)),
    ([f(FindingCode.MONTHLY_LIMIT)], ("refuse", "monthly_limit")),
    ([f(FindingCode.FAQ, "info")], ("answer_faq", None)),
    ([f(FindingCode.FAQ, "info"), f(FindingCode.MONTHLY_LIMIT)], ("refuse", "monthly_limit")),
    ([f(FindingCode.UNCLEAR, "warn"), f(FindingCode.PASSWORD_CHANGE, "warn")], ("accept", None)),
    ([f(FindingCode.MONTHLY_LIMIT), f(FindingCode.DUPLICATE)], ("refuse", "duplicate")),
])
def test_suggestion_table(findings, expected):
    assert suggest(findings) == expected


def test_every_refusal_reason_is_one_the_templates_know():
    reasons = {link.reason for link in SUGGESTIONS if link.suggestion == "refuse"}
    assert reasons == {"unidentified", "out_of_scope", "profanity", "duplicate", "monthly_limit", "consulting"}


def test_identification_runs_first_and_every_rule_cites_a_clause():
    assert RULES[0] is IdentificationRule
    assert all(rule.clause and rule.title_ru and rule.title_en for rule in RULES)


def test_verdict_json_round_trip():
    v = Verdict(
        findings=[Finding(FindingCode.DUPLICATE, "2.6", "Дублирование", "Duplicate",
                          {"check": "near", "ratio": 93.5, "original_ticket": 12}, "block")],
        client=ClientMatch(7, "ООО «Ромашка»", "7707083893", "Д-2024/117", True, "address"),
        candidates=[ClientMatch(8, "АО «Лютик»", None, None, False, "domain")],
        sender_verified=None, month_count=2, monthly_limit=3, suggestion="refuse", refuse_reason="duplicate",
        duplicate_of=12, faq_entries=[{"id": "pay_invoice", "links": [{"title": "t", "url": "https://x"}]}],
        is_password_change=True,
    )
    import json

    data = json.loads(json.dumps(v.to_json(), ensure_ascii=False))
    assert data["findings"][0]["code"] == "duplicate"
    assert Verdict.from_json(data) == v


def test_engine_loads_data_files_once_per_engine(monkeypatch):
    calls = []

    def counting_loader(config):
        calls.append(config)
        return object()

    class Probe(IdentificationRule):
        loaders = (counting_loader,)

    data = PolicyData(PolicyConfig())
    PolicyEngine(PolicyConfig(), TortoisePolicyRepository(), rules=(Probe,), data=data)
    data.get(counting_loader)
    assert len(calls) == 1


def test_operator_config_dir_overrides_a_data_file(tmp_path):
    (tmp_path / "faq.toml").write_text('[[entry]]\nid = "only"\npatterns = ["тестовая фраза"]\n', "utf-8")
    from models.policy.rules.faq import load_faq

    book = load_faq(PolicyConfig(config_dir=tmp_path))
    assert list(book.entries) == ["only"]
    assert "pay_invoice" in load_faq(PolicyConfig(config_dir=tmp_path / "missing")).entries


async def test_naive_arrival_time_is_refused(db):
    engine = PolicyEngine(PolicyConfig(), TortoisePolicyRepository(), rules=(IdentificationRule,))
    from datetime import datetime

    with pytest.raises(ValueError):
        await engine.evaluate(PolicyRequest(None, datetime(2026, 11, 1, 9, 0), make_message()))


async def test_full_chain_accepts_an_ordinary_request(db, engine):
    client = await make_client()
    v = await engine.evaluate(PolicyRequest(None, utc(2026, 11, 10, 9, 0), make_message()))
    assert v.client.client_id == client.id
    assert v.findings == [] and v.suggestion == "accept" and v.month_count == 1 and v.monthly_limit == 3


async def test_full_chain_password_reset_from_client_suggests_faq_answer(db, engine):
    await make_client()
    msg = make_message(subject="Не могу войти", new_text="Забыл пароль от личного кабинета, как его восстановить?")
    v = await engine.evaluate(PolicyRequest(None, utc(2026, 11, 10, 9, 0), msg))
    assert v.is_password_change and v.suggestion == "answer_faq"
    assert [e["id"] for e in v.faq_entries] == ["password_reset"]
    assert {str(x.code) for x in v.findings} == {"faq", "password_change"}


async def test_full_chain_unknown_sender_asking_for_code_is_refused_as_unidentified_first(db, engine):
    msg = make_message(from_address="stranger@yandex.ru", new_text="Напишите нам код для интеграции с CRM, срочно.")
    v = await engine.evaluate(PolicyRequest(None, utc(2026, 11, 10, 9, 0), msg))
    assert {"unidentified", "out_of_scope"} <= {str(x.code) for x in v.findings}
    assert v.refuse_reason == "unidentified"


def test_profanity_rule_is_in_the_chain():
    assert ProfanityRule in RULES
