"""The policy's text work done ahead of time (in a parse worker) gives exactly the verdict the rules give
when they do it themselves: same findings, same evidence, same suggestion, on realistic mail."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mail.parse import parse_message
from models.analysed import parse_and_analyse
from models.policy import PolicyConfig, PolicyEngine, PolicyRequest, TortoisePolicyRepository
from models.policy.analyser import TextAnalyser

from .factories import attachment, make_client, make_message, store_ticket, utc

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
AT = utc(2026, 11, 10, 9, 0)

TEXTS = (
    "Здравствуйте! Помогите написать скрипт для выгрузки, наш программист уволился.",  # consulting
    "Забыл пароль от личного кабинета, не могу войти. ИНН 7707083893, договор Д-2024/117.",  # password, INN
    "Вы мошенники и бл... ничего не работает!!!",  # accusation / profanity
    "Как подключить онлайн-кассу? Где инструкция?",  # FAQ
    "Спасибо!",  # unclear
    "Счёт № 45 на 12 500,00 руб. не пришёл на buh@romashka.ru, см. https://storeolis.ru/lk",  # facts
)


def _corpus_messages() -> list:
    messages = []
    for path in sorted(CORPUS.glob("*.eml")):
        try:
            messages.append(parse_message(path.read_bytes()))
        except Exception:  # noqa: BLE001 - malformed corpus mail is quarantined, never evaluated
            continue
    return messages


@pytest.fixture
def engine() -> PolicyEngine:
    return PolicyEngine(PolicyConfig(), TortoisePolicyRepository())


async def test_ahead_of_time_analyses_give_the_same_verdicts(db, engine: PolicyEngine) -> None:
    client = await make_client(addresses=("ivan@romashka.ru", "@romashka.ru"), inn="7707083893", contract="Д-2024/117")
    # Earlier requests so that the duplicate and monthly checks have something to find.
    for day, text in enumerate(TEXTS[:3], start=1):
        await store_ticket(make_message(new_text=text, message_id=f"old{day}@romashka.ru"), utc(2026, 11, day, 9, 0),
                           client=client)
    messages = _corpus_messages()
    messages += [make_message(new_text=text, message_id=f"new{i}@romashka.ru",
                              attachments=[attachment()] if i % 2 else [])
                 for i, text in enumerate(TEXTS)]
    messages += [make_message(new_text=TEXTS[0] + " ", message_id="resend@romashka.ru")]  # near/exact copy
    analyser = TextAnalyser(engine.config)
    assert len(messages) > 40
    compared = 0
    for message in messages:
        analyses = pickle.loads(pickle.dumps(analyser(message)))  # as it comes back from a worker
        assert analyses, "every request has some text analysis"
        inline = await engine.evaluate(PolicyRequest(None, AT, message))
        ahead = await engine.evaluate(PolicyRequest(None, AT, message, analyses=analyses))
        assert ahead.to_json() == inline.to_json()
        compared += bool(inline.findings)
    assert compared > 10  # the comparison covered verdicts with findings, not only empty ones


async def test_a_rule_without_an_analysis_does_its_own_text_work(db, engine: PolicyEngine) -> None:
    message = make_message(new_text=TEXTS[0])
    analyses = TextAnalyser(engine.config)(message)
    analyses.pop("OutOfScopeRule")
    verdict = await engine.evaluate(PolicyRequest(None, AT, message, analyses=analyses))
    assert "out_of_scope" in [f.code for f in verdict.findings]


def test_the_worker_function_parses_drops_nul_and_analyses() -> None:
    raw = (b"From: Ivan <ivan@romashka.ru>\r\nTo: support@storeolis.ru\r\nSubject: test\x00\r\n"
           b"Message-ID: <x1@romashka.ru>\r\n\r\nHelp me write a script\x00 please, our programmer left.\r\n")
    analyser = TextAnalyser(PolicyConfig())
    result = pickle.loads(pickle.dumps(parse_and_analyse(raw, parser=parse_message, analyser=analyser)))
    assert "\x00" not in result.message.subject + result.message.new_text
    assert result.analyses == analyser(result.message)
    assert parse_and_analyse(raw, parser=parse_message).analyses is None


def test_a_process_that_only_reads_analyses_needs_no_morphology() -> None:
    # The bridge's main process loads the rules' data (scope book, FAQ, password phrases) but leaves the
    # lemmatising to its parse workers: building a matcher must not lemmatise its phrases yet.
    from models.policy.lemmas import PhraseMatcher
    from models.policy.rules.faq import load_faq
    from models.policy.rules.out_of_scope import load_scope_book

    config = PolicyConfig()
    for book in (load_faq(config), load_scope_book(config)):
        assert book.matcher._index is None
    matcher = PhraseMatcher([("script", "написать скрипт")])
    assert matcher._index is None
    assert [h.text for h in matcher.find("Помогите написать наш скрипт")] == ["написать наш скрипт"]
    assert len(matcher) == 1


def test_building_the_engine_loads_no_morphology_dictionary() -> None:
    """The main process builds the engine (its loaders run at start-up) but leaves lemmatising to the
    parse workers: no loader may load pymorphy3's dictionaries (about 20 MB of the main process's peak).
    A fresh interpreter, because another test of this session may have loaded them already."""
    import subprocess
    import sys

    script = (
        "from models.policy import PolicyConfig, PolicyEngine\n"
        "from models.policy.lemmas import analyzer\n"
        "PolicyEngine(PolicyConfig(), repository=None)\n"
        "print(analyzer.cache_info().currsize)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", done.stdout


def test_word_spans_are_found_as_far_as_asked_and_agree_with_the_tokens() -> None:
    from models.policy.lemmas import _WORD, _WordSpans, tokenize

    text = "Здравствуйте! Не работает выгрузка-заказов, 2 дня; ошибка 500 в личном кабинете."
    expected = [m.span() for m in _WORD.finditer(text)]
    spans = _WordSpans(text)
    assert spans[2] == expected[2] and spans[0] == expected[0]
    assert spans.all() == expected
    assert [(t.start, t.end) for t in tokenize(text)] == expected
