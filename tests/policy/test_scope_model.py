"""The text rules' trained second opinions (models/policy/scope_model.py, models/policy/nudge_model.py, issue
17): their features and evidence, how they overrule the rules, their settings, and that the shipped weights
are what the training script makes of the corpus's tune part and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import scripts.train_text_models as train
from bot.views.card import evidence_text
from models.policy.base import DEFAULTS_DIR, PolicyConfig, PolicyData
from models.policy.rules.out_of_scope import load_scope_book, load_scope_model, second_opinion
from models.policy.scope_model import MODEL_FILE, ScopeModel, model_to_json
from models.policy.text_model import LinearModel, features
from scripts.bench.policy_quality import Judge, load_corpus


def test_the_shipped_weights_are_what_training_gives_and_the_test_part_is_never_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every test record's label turned around: had training read one, the weights would differ.
    def corpus_with_test_labels_turned() -> list[dict[str, str]]:
        rows = load_corpus()
        for row in rows:
            if row["split"] == "test":
                row["label"] = {"out_of_scope": "unclear", "unclear": "in_scope"}.get(row["label"], "out_of_scope")
        return rows

    monkeypatch.setattr(train, "load_corpus", corpus_with_test_labels_turned)
    assert train.main(["--check"]) == 0, "retrain: python -m scripts.train_text_models"
    meta = json.loads((DEFAULTS_DIR / MODEL_FILE).read_text(encoding="utf-8"))["meta"]
    assert meta["part"] == "tune"
    assert meta["requests"] == sum(r["split"] == "tune" for r in load_corpus())
    nudge_meta = json.loads((DEFAULTS_DIR / "unclear_model.json").read_text(encoding="utf-8"))["meta"]
    assert nudge_meta["requests"] == sum(r["split"] == "tune" and r["label"] != "profanity" for r in load_corpus())


def test_features_are_lemmas_and_pairs_with_the_words_that_show_them() -> None:
    found = list(features("Сайты", "Поправьте наши сайты"))
    names = [f.name for f in found]
    assert names == ["u:сайт", "u:поправить", "u:наш", "b:поправить_наш", "u:сайт", "b:наш_сайт"]
    pair = found[-1]
    assert (pair.where, "Поправьте наши сайты"[pair.start:pair.end]) == ("body", "наши сайты")
    assert found[0].where == "subject"


def _model(p_words: dict[str, float], veto: float = 0.05, rescue: float = 0.8) -> ScopeModel:
    topics = {"design": LinearModel(0.0, {"u:логотип": 2.0}), "code": LinearModel(0.0, {"u:скрипт": 2.0})}
    return ScopeModel(LinearModel(-4.0, p_words), topics, veto, rescue)


@pytest.fixture(scope="module")
def book() -> Any:
    return load_scope_book(PolicyConfig())


def test_a_sure_model_finds_what_the_rule_let_through_and_says_why(book: Any) -> None:
    model = _model({"u:логотип": 8.0, "u:новый": 1.0, "u:ваш": -3.0})
    body = "Добрый день. Логотип бы нам новый, возьмётесь?"
    found = second_opinion(model, book, {}, "Вопрос", body)
    entry = found["consulting"]
    assert entry["topic"] == "design" and entry["model"] == pytest.approx(0.99, abs=0.01)
    # The words that weighed most, as written, most weighty first in text order.
    assert [(m["kind"], m["text"]) for m in entry["matches"]] == [("model", "Логотип"), ("model", "новый")]
    assert all(body[m["start"]:m["end"]] == m["text"] for m in entry["matches"])


def test_a_request_that_asks_nothing_is_not_found_by_the_model(book: Any) -> None:
    model = _model({"u:логотип": 8.0})
    assert second_opinion(model, book, {}, "", "Наш логотип на сайте перестал показываться после обновления.") == {}


def test_a_sure_model_drops_the_rule_finding_and_an_unsure_one_leaves_it(book: Any) -> None:
    rule = {"consulting": {"topic": "code", "matches": [], "ask": "напишите", "owner": None}}
    sure_in_scope = _model({"u:ваш": -8.0})
    assert second_opinion(sure_in_scope, book, rule, "", "Напишите, почему ваш скрипт оплаты падает?") == {}
    unsure = _model({"u:ваш": 3.0})  # p = 0.27: neither veto nor rescue
    assert second_opinion(unsure, book, rule, "", "Напишите, почему ваш скрипт оплаты падает?") == rule
    assert second_opinion(unsure, book, {}, "", "Напишите, почему ваш скрипт оплаты падает?") == {}
    # No word names our service: the model's low score on a short plain ask does not overrule the rule.
    assert second_opinion(sure_in_scope, book, rule, "", "Напишите нам скрипт для сайта.") == rule
    # The guard reads service cues as the rule does: "у вас заказать" asks whether we sell the work, and
    # "обновление Windows" is Microsoft's; "у вас в кабинете" is ours.
    assert second_opinion(sure_in_scope, book, rule, "", "А можно у вас заказать скрипт для сайта?") == rule
    assert second_opinion(sure_in_scope, book, rule, "", "После обновления Windows напишите скрипт.") == rule
    assert second_opinion(sure_in_scope, book, rule, "", "Напишите, почему у вас в кабинете скрипт падает?") == {}


def _config_dir(tmp_path: Path, model_section: str) -> PolicyConfig:
    text = (DEFAULTS_DIR / "out_of_scope.toml").read_text(encoding="utf-8")
    head, _, _ = text.partition("\n[model]\n")
    (tmp_path / "out_of_scope.toml").write_text(head + "\n[model]\n" + model_section, encoding="utf-8")
    return PolicyConfig(config_dir=tmp_path)


def test_the_model_settings(tmp_path: Path) -> None:
    shipped = load_scope_model(PolicyConfig())
    assert shipped is not None and (shipped.veto_below, shipped.rescue_above) == (0.15, 0.75)
    assert load_scope_model(_config_dir(tmp_path, "enabled = false\n")) is None
    with pytest.raises(ValueError, match="veto_below < rescue_above"):
        load_scope_model(_config_dir(tmp_path, "veto_below = 0.9\nrescue_above = 0.5\n"))
    # An operator's own weights, looked up in CONFIG_DIR like the other data files.
    own = ScopeModel(LinearModel(1.5, {"u:x": 1.0}), {}, 0.0, 1.0)
    (tmp_path / "own.json").write_text(json.dumps(model_to_json(own, {})), encoding="utf-8")
    loaded = load_scope_model(_config_dir(tmp_path, 'file = "own.json"\nveto_below = 0.1\n'))
    assert loaded is not None and loaded.out_of_scope == own.out_of_scope and loaded.veto_below == 0.1


def test_the_shipped_model_finds_a_bare_question_the_rules_miss_and_the_card_says_so_in_russian() -> None:
    # A tune record the rules alone miss (tests/policy/test_corpus_sample.py: KNOWN_MISSES): "Как лечится?"
    row = next(r for r in load_corpus() if r["split"] == "tune"
               and r["text"].startswith("Привет. На нашем старом магазине на OpenCart 3 модуль SEO URL"))
    assert "out_of_scope" not in Judge(model=False).codes(row["subject"], row["text"])
    evidence = Judge().codes(row["subject"], row["text"])["out_of_scope"]
    assert evidence["topic"] == "cms" and evidence["model"] > 0.7
    assert evidence["matches"] and {m["kind"] for m in evidence["matches"]} == {"model"}
    line = evidence_text({"code": "out_of_scope", "evidence": evidence}, "ru")
    assert "тема: сайт клиента" in line and "найдено по сходству с размеченными запросами" in line
    assert "found by" not in line and "topic:" not in line
    assert "found by likeness to labelled requests" in evidence_text({"code": "out_of_scope", "evidence": evidence}, "en")


def test_the_model_is_loaded_once_per_engine_data() -> None:
    data = PolicyData(PolicyConfig())
    assert data.get(load_scope_model) is data.get(load_scope_model)


def test_the_fast_scoring_gives_what_the_feature_names_give() -> None:
    # The models score from lemma tuples and pairs (text_model.LinearModel.score), were trained on feature
    # names; and the out-of-scope model cuts the body's lemmas from the whole new text's. All must agree.
    from models.policy.rules.unclear import load_nudge_model, load_unclear_lexicon, without_signature
    from models.policy.text_model import feature_names, lemmatise

    scope, nudge = load_scope_model(PolicyConfig()), load_nudge_model(PolicyConfig())
    assert scope is not None and nudge is not None
    lexicon = load_unclear_lexicon(PolicyConfig())
    rows = load_corpus()[::7]
    cut = 0
    for row in rows:
        body = without_signature(row["text"], lexicon)
        cut += body != row["text"]
        names = feature_names(row["subject"], body)
        assert scope.probability(row["subject"], body) == pytest.approx(scope.out_of_scope.probability(names), abs=1e-12)
        assert scope.probability(row["subject"], body, row["text"]) == pytest.approx(
            scope.probability(row["subject"], body), abs=1e-12)
        assert nudge.model.score(lemmatise(row["subject"], row["text"])) == pytest.approx(
            nudge.model.probability(feature_names(row["subject"], row["text"])), abs=1e-12)
    assert cut >= 10  # the prefix path was taken
