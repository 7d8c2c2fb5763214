"""Tests for the clause 2.6 detector (models/policy/profanity.py).

The corpora under tests/data are the specification: every clean sentence (full of trap words
such as "употреблять", "команда", "рубля", "Scunthorpe") must produce no obscene/insult/english
hit, every offensive sentence must be caught with its expected category, and accusations must
be reported only as "accusation".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.policy.profanity import DEFAULT_CONFIG_PATH, ProfanityDetector, ProfanityHit

DATA = Path(__file__).parent / "data"
OFFENSIVE_CATEGORIES = {"obscene", "insult", "english"}


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


CLEAN = _lines("profanity_clean.txt")
OFFENSIVE = [tuple(line.split("\t", 1)) for line in _lines("profanity_offensive.txt")]
ACCUSATIONS = _lines("profanity_accusations.txt")


@pytest.fixture(scope="module")
def detector() -> ProfanityDetector:
    return ProfanityDetector()


def _assert_evidence(text: str, hits: list[ProfanityHit]) -> None:
    for hit in hits:
        assert 0 <= hit.start < hit.end <= len(text)
        assert text[hit.start : hit.end] == hit.word
    assert [h.start for h in hits] == sorted(h.start for h in hits)


# ----------------------------------------------------------------------------- corpora


def test_corpora_are_big_enough() -> None:
    assert len(CLEAN) >= 320
    assert len(OFFENSIVE) >= 120
    assert len(ACCUSATIONS) >= 15
    assert all(len(item) == 2 and item[0] in OFFENSIVE_CATEGORIES for item in OFFENSIVE)


@pytest.mark.parametrize("sentence", CLEAN)
def test_clean_sentence_has_no_offensive_hit(detector: ProfanityDetector, sentence: str) -> None:
    hits = detector.find(sentence)
    _assert_evidence(sentence, hits)
    assert [h for h in hits if h.category in OFFENSIVE_CATEGORIES] == []


@pytest.mark.parametrize(("category", "sentence"), OFFENSIVE)
def test_offensive_sentence_is_caught(detector: ProfanityDetector, category: str, sentence: str) -> None:
    hits = detector.find(sentence)
    _assert_evidence(sentence, hits)
    assert category in {h.category for h in hits}, hits


@pytest.mark.parametrize("sentence", ACCUSATIONS)
def test_accusation_is_only_an_accusation(detector: ProfanityDetector, sentence: str) -> None:
    hits = detector.find(sentence)
    _assert_evidence(sentence, hits)
    assert hits
    assert {h.category for h in hits} == {"accusation"}


# ----------------------------------------------------------------------------- evidence


@pytest.mark.parametrize(
    ("text", "word", "root"),
    [
        ("Вы х у й знаете, как работать.", "х у й", "хуй"),
        ("Это п*здец, а не поддержка.", "п*здец", "пизд"),
        ("Это п.и.з.д.е.ц, товарищи.", "п.и.з.д.е.ц", "пизд"),
        ("Ну и xyйня у вас.", "xyйня", "хуй"),
        ("Бл@ть, опять ошибка.", "Бл@ть", "блядь"),
        ("Ваш сервис — ХУЙНЯ!", "ХУЙНЯ", "хуй"),
        ("Идите вы #нахуй", "нахуй", "хуй"),
        ("Х\u200bуйня с невидимым пробелом", "Х\u200bуйня", "хуй"),
    ],
)
def test_hit_points_at_original_characters(
    detector: ProfanityDetector, text: str, word: str, root: str
) -> None:
    hits = detector.find(text)
    assert len(hits) == 1
    hit = hits[0]
    assert hit.word == word
    assert text[hit.start : hit.end] == word
    assert hit.start == text.index(word)
    assert hit.root == root
    assert hit.category == "obscene"


def test_several_hits_are_reported_in_text_order(detector: ProfanityDetector) -> None:
    text = "Дебилы! Это пиздец, you idiots, вы мошенники."
    hits = detector.find(text)
    _assert_evidence(text, hits)
    assert [(h.word, h.category) for h in hits] == [
        ("Дебилы", "insult"),
        ("пиздец", "obscene"),
        ("idiots", "english"),
        ("мошенники", "accusation"),
    ]


def test_phrase_hit_covers_the_whole_phrase(detector: ProfanityDetector) -> None:
    text = "Здравствуйте. Вы что, тупые? Третий раз пишу."
    hits = detector.find(text)
    assert [(h.word, h.category, h.root) for h in hits] == [("Вы что, тупые", "insult", "тупой")]
    _assert_evidence(text, hits)


def test_offsets_survive_characters_that_grow_when_lowercased(detector: ProfanityDetector) -> None:
    text = "İİİ вы тупые"  # "İ".lower() is two characters long
    hits = detector.find(text)
    _assert_evidence(text, hits)
    assert [h.word for h in hits] == ["вы тупые"]


@pytest.mark.parametrize(
    "text",
    [
        "Всё прошло без сучка и задоринки.",  # idiom, not the insult "сучка"
        "Пишите на bl.yat@example.com",  # e-mail addresses are not read as words
        "**Важно**: отгрузка в пятницу",  # markdown emphasis is not a mask
        "х** знает",  # too much masked to judge
        "Dick Smith will call you",  # capitalised: a first name
        "к*манда поддержки",  # the mask fits no listed word
    ],
)
def test_guarded_cases_are_clean(detector: ProfanityDetector, text: str) -> None:
    assert detector.find(text) == []


def test_empty_text(detector: ProfanityDetector) -> None:
    assert detector.find("") == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("хуйпиздеблятьсука *#@.-_ xyaeoc0369Ёё\u200bİ")), max_size=60))
def test_hits_always_point_into_the_text(detector: ProfanityDetector, text: str) -> None:
    # Obfuscation-heavy random text: whatever is found must be a real slice of the input.
    _assert_evidence(text, detector.find(text))


_PIECES = sorted({w for line in CLEAN + [o[1] for o in OFFENSIVE] for w in line.split()}) + [
    "х",
    "у",
    "й",
    "б",
    "л",
    "я",
    " ",
    " ",
    ". ",
    "-",
    "_",
    "*",
    "#",
    "@",
    "\u200b",
    "ё",
    "Y",
    "x",
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=25).map(" ".join))
def test_verdict_caches_do_not_change_results(detector: ProfanityDetector, text: str) -> None:
    # The shared detector has seen many words already (fast path, cached verdicts); a new
    # one classifies every word from scratch. Both must report exactly the same hits.
    assert detector.find(text) == ProfanityDetector().find(text)


# ----------------------------------------------------------------------------- config


def test_extending_config_adds_a_root_and_keeps_defaults(tmp_path: Path) -> None:
    custom = tmp_path / "profanity.toml"
    custom.write_text(
        "extend_defaults = true\n\n[[insult]]\nroot = \"бестолочь\"\npattern = 'бестолоч\\w*'\n",
        encoding="utf-8",
    )
    detector = ProfanityDetector(custom)
    hits = detector.find("Бестолочи! Это пиздец.")
    assert [(h.word, h.category, h.root) for h in hits] == [
        ("Бестолочи", "insult", "бестолочь"),
        ("пиздец", "obscene", "пизд"),
    ]
    assert detector.find("Наша команда на связи") == []


def test_replacing_config_uses_only_the_custom_words(tmp_path: Path) -> None:
    custom = tmp_path / "profanity.toml"
    custom.write_text(
        '[prefixes]\nrussian = ["за"]\n\n[[obscene]]\nroot = "фиг"\npattern = \'фиг\\w*\'\nprefixes = true\n',
        encoding="utf-8",
    )
    detector = ProfanityDetector(custom)
    assert [h.root for h in detector.find("Зафигачили обновление, пиздец")] == ["фиг"]


def test_bad_pattern_is_reported_with_its_root(tmp_path: Path) -> None:
    custom = tmp_path / "profanity.toml"
    custom.write_text("[[obscene]]\nroot = \"broken\"\npattern = '('\n", encoding="utf-8")
    with pytest.raises(ValueError, match="broken"):
        ProfanityDetector(custom)


def test_default_config_is_the_shipped_file() -> None:
    assert DEFAULT_CONFIG_PATH.is_file()
    assert DEFAULT_CONFIG_PATH.parts[-3:] == ("config", "defaults", "profanity.toml")


# ----------------------------------------------------------------------------- layering


def test_module_imports_no_transport_libraries() -> None:
    """models/ must stay importable without aiogram/aioimaplib/aiosmtplib, bot/ or mail/."""
    source = Path(__file__).parents[1] / "models" / "policy" / "profanity.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"aiogram", "aioimaplib", "aiosmtplib", "bot", "mail"}
