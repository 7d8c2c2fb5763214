"""The unclear rule's trained second opinion (models/policy/nudge_model.py, issue 17): the long nudges it finds,
the guards that keep real tasks out of it, and its settings. The shipped weights are checked against their
recipe in tests/policy/test_scope_model.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.views.card import evidence_text
from models.policy.base import PolicyConfig
from models.policy.nudge_model import NudgeModel
from models.policy.rules.unclear import load_nudge_model, own_part
from models.policy.text_model import LinearModel, lemmatise
from scripts.bench.policy_quality import Judge, load_corpus

TALK = frozenset({"напомнить", "ответить", "сообщить", "позволить"})


def _sure(rescue: float = 0.8, min_words: int = 6) -> NudgeModel:
    weights = {"u:напомнить": 6.0, "u:письмо": 2.0, "u:follow": 6.0}
    return NudgeModel(LinearModel(-3.0, weights), rescue, min_words, TALK, frozenset({"restart", "fix"}))


def test_a_long_talking_nudge_is_found_with_its_weightiest_words() -> None:
    text = "Добрый день! Позвольте напомнить о моём письме от 12-го числа, оставшемся без ответа."
    found = _sure().judge("", own_part(text))
    assert found is not None
    p, words = found
    assert p > 0.99 and [text[w.start:w.end] for w in words] == ["напомнить", "письме"]


def test_real_tasks_and_short_mails_are_not_the_models() -> None:
    model = _sure()
    # An action asked for, however much the rest reads like a nudge.
    text = "Напоминаю о письме: перезапустите, пожалуйста, выгрузку, она висит."
    assert model.task_verb("", text) == "перезапустите"
    assert model.judge("", text) is None
    assert model.judge("", "Just a follow up: please restart the export job.") is None
    # Too few words of the client's own to doubt the rule's count.
    assert model.judge("", "Напомнить о письме!") is None
    # Below the threshold.
    assert _sure(rescue=0.999).judge("", "Позвольте напомнить о нашем деле, уважаемые коллеги.") is None


def test_the_guards_read_only_the_clients_own_words() -> None:
    text = ("Позвольте ещё раз напомнить о моём письме, на него пока нет ответа.\n"
            "> Перезапустите, пожалуйста, выгрузку на Ozon.")
    own = own_part(text)
    assert "Перезапустите" not in own
    assert _sure().judge("", own) is not None


def test_the_model_does_not_read_a_quoted_nudge_under_a_new_task() -> None:
    # A new task in the client's words, the earlier nudge quoted below it: the quote's "напомнить о письме"
    # would make the model sure (it once read the whole new text and gave such a mail 0.98).
    quote = "\n\n> Позвольте напомнить о моём письме, напомнить о письме, ответа на которое нет.\n"
    text = "Добрый день, коллеги, на витрине третий день не видно новых товаров из каталога." + quote
    own = own_part(text)
    assert own.strip() == text.split("\n")[0]
    assert _sure().judge("", own) is None
    assert _sure().model.score(lemmatise("", text)) > 0.99  # the quote alone would have decided


def test_the_verb_guard_reads_the_text_above_the_signature_and_cuts_it_only_for_a_doubted_request() -> None:
    text = ("Позвольте ещё раз напомнить о моём письме, на него пока нет ответа.\n--\n"
            "Если вы получили это письмо по ошибке, удалите его.")
    assert _sure().task_verb("", text) == "удалите"  # the disclaimer's verb, read without the cut
    cuts: list[str] = []

    def unsigned() -> str:
        cuts.append(text)
        return text.split("\n--\n", 1)[0]

    assert _sure().judge("", text, unsigned) is not None
    assert len(cuts) == 1
    # A request the model does not take for a nudge is left alone: no cut.
    assert _sure(rescue=0.999).judge("", text, unsigned) is None
    assert len(cuts) == 1


def _config(tmp_path: Path, text: str) -> PolicyConfig:
    (tmp_path / "unclear.toml").write_text(text, encoding="utf-8")
    return PolicyConfig(config_dir=tmp_path)


def test_the_model_settings(tmp_path: Path) -> None:
    shipped = load_nudge_model(PolicyConfig())
    assert shipped is not None and (shipped.rescue_above, shipped.min_words) == (0.8, 6)
    assert {"ответить", "напомнить"} <= shipped.talk_verbs and "restart" in shipped.task_verbs_en
    assert load_nudge_model(_config(tmp_path, "[model]\nenabled = false\n")) is None
    # An operator's unclear.toml replaces the settings and adds to the lists.
    own = load_nudge_model(_config(tmp_path, '[model]\nrescue_above = 0.95\ntask_verbs_en = ["ship"]\n'))
    assert own is not None and own.rescue_above == 0.95 and {"ship", "restart"} <= own.task_verbs_en
    with pytest.raises(ValueError, match="rescue_above"):
        load_nudge_model(_config(tmp_path, "[model]\nrescue_above = 1.5\n"))


def test_the_shipped_model_finds_a_long_polite_nudge_the_count_lets_through_and_the_card_says_so() -> None:
    row = next(r for r in load_corpus() if r["split"] == "tune"
               and r["text"].startswith("Добрый день!\n\nПозвольте деликатно напомнить о моём письме"))
    assert "unclear" not in Judge(model=False).codes(row["subject"], row["text"])
    evidence = Judge().codes(row["subject"], row["text"])["unclear"]
    assert evidence["model"] > 0.8 and evidence["nudge"]
    assert all(w in row["subject"] + row["text"] for w in evidence["nudge"])
    line = evidence_text({"code": "unclear", "evidence": evidence}, "ru")
    assert "напоминание без новой задачи" in line and "найдено по сходству с размеченными запросами" in line
    assert "found by" not in line


def test_an_english_verb_in_any_form_asks_for_an_action() -> None:
    model = _sure()
    text = "Following up on my last email: I still need the test orders fixed, the follow up is here."
    assert model.task_verb("", text) == "fixed"
    assert model.judge("", text) is None
    # Words that only look like a verb's forms are not one: "follows", "needed" are not task verbs here.
    assert model.task_verb("", "Just a follow up on my email, it follows the one you needed.") is None
